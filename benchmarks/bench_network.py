"""What each part of the default network and loss costs in training speed, side by side in one run.

    .venv/bin/python benchmarks/bench_network.py [--size 224] [--steps 6] [--epochs 2] [--rounds 2]

Each variant is armseg's own training (`compiled_trainer`: its U-Net in its trainer, uint8 batches,
the random transforms in the step) with one train parameter changed from the defaults: no batch
normalisation, no weight regulariser, the cross-entropy or Dice loss alone, 12 base filters, float32,
the U-Net at the slice's full resolution.
They take turns for `--rounds` rounds, so a busy machine slows all alike; each keeps its best epoch,
the first (compiling) never timed. What a variant buys in accuracy is `bench_accuracy.py`'s to say
(`--train-args "--batch-norm false"`); this prints what it costs, as slices/s and as the ratio to
the defaults.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from bench_input import armseg_fit, device_name, phantom_slices  # noqa: E402

from armseg.backend import backend_name  # noqa: E402
from armseg.model.precision import resolve_precision  # noqa: E402
from armseg.train.config import TrainConfig  # noqa: E402
from armseg.train.run import compiled_trainer  # noqa: E402

VARIANTS: dict[str, dict[str, object]] = {
    "defaults": {},
    "--batch-norm false": {"batch_norm": False},
    "--weight-decay 0": {"weight_decay": 0.0},
    "--loss ce": {"loss": "ce"},
    "--loss dice": {"loss": "dice"},
    "--base-filters 12": {"base_filters": 12},
    "--precision float32": {"precision": "float32"},
    "--downsample 1": {"downsample": 1},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=6, help="training steps per timed epoch")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per round (after one warm-up)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    base = TrainConfig(group="bench")
    slices = phantom_slices(args.steps * base.batch_size, args.size)
    keras.utils.set_random_seed(0)
    models = {}
    for name, change in VARIANTS.items():
        config = base.replace(**change)
        models[name] = (config, compiled_trainer(config, resolve_precision(config.precision), args.steps))
    best = dict.fromkeys(VARIANTS, 0.0)
    for _ in range(args.rounds):
        for name, (config, model) in models.items():
            rates = armseg_fit(model, slices, config.batch_size, args.steps, args.epochs)
            best[name] = max(best[name], *rates)
    print(f"backend {backend_name()} on {device_name()}; armseg's training, U-Net depth {base.depth}, "
          f"{base.base_filters} base filters, {args.size}x{args.size}, batch {base.batch_size}, "
          f"{args.steps} steps x {args.epochs} timed epochs x {args.rounds} rounds")
    for name, rate in best.items():
        print(f"  {name:<22}{rate:8.1f} slices/s   ratio to defaults {rate / best['defaults']:.2f}")


if __name__ == "__main__":
    main()
