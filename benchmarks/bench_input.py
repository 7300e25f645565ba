"""armseg's training input path against a plain `model.fit` on in-memory arrays: same network, same device.

    KERAS_BACKEND=tensorflow .venv/bin/python benchmarks/bench_input.py
    KERAS_BACKEND=jax .venv/bin/python benchmarks/bench_input.py
        [--size 256] [--batch-size 8] [--steps 12] [--epochs 3] [--rounds 2] [--depth 4]
        [--base-filters 16] [--precision auto] [--no-transforms]

armseg trains from the stored uint8 slices, gathered into (B, H, W, 2) batches by worker threads
(armseg.train.batches.SliceBatches), cast and randomly transformed inside the compiled train step
(armseg.train.trainer.SegmentationTrainer). The plain way fits the same U-Net, compiled the same
way (loss, IoU metrics, Adam), on float32 arrays already in memory and with no transforms at all:
what the device can do with this network at best. The ratio is the share of that armseg keeps.

Timing counts the training steps of each epoch (epoch start to the end of its last step, after
Keras has read the step's results), never the first epoch (it compiles). The two ways take turns
for `--rounds` rounds, so a busy machine slows both alike; each keeps its best epoch.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from armseg.backend import backend_name  # noqa: E402
from armseg.model.losses import make_loss  # noqa: E402
from armseg.model.precision import dtype_policy, resolve_precision  # noqa: E402
from armseg.model.unet import build_unet  # noqa: E402
from armseg.train.batches import SliceBatches  # noqa: E402
from armseg.train.config import TrainConfig  # noqa: E402
from armseg.train.run import compiled_trainer  # noqa: E402
from armseg.train.slices import SliceSet  # noqa: E402


class StepClock(keras.callbacks.Callback):
    """Seconds of each epoch's training steps, validation and end-of-epoch work excluded."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []
        self._start = 0.0
        self._open = False

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._open = time.perf_counter(), True

    def on_test_begin(self, logs=None):
        self._close()

    def on_epoch_end(self, epoch, logs=None):
        self._close()

    def _close(self) -> None:
        if self._open:
            self.seconds.append(time.perf_counter() - self._start)
            self._open = False


def phantom_slices(count: int, size: int, seed: int = 0) -> SliceSet:
    """uint8 slices with a bright disc (class 2) over a darker band (class 1): content does not
    change the speed, but the transforms and the loss see realistic values."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    labels = np.zeros((count, size, size), np.uint8)
    for index in range(count):
        cy, cx = rng.uniform(0.3, 0.7, 2) * size
        labels[index][(rows - cy) ** 2 + (cols - cx) ** 2 < (size * 0.15) ** 2] = 2
        labels[index][(rows > size * 0.75) & (rows < size * 0.85)] = 1
    images = np.clip(labels * 70 + rng.normal(40, 15, labels.shape), 0, 255).astype(np.uint8)
    return SliceSet(images, labels)


def plain_model(config: TrainConfig, policy: str, steps: int) -> keras.Model:
    """The same U-Net compiled as armseg compiles it, without the trainer around it."""
    with dtype_policy(policy):
        model = build_unet(depth=config.depth, base_filters=config.base_filters, dropout=config.dropout,
                           weight_decay=config.weight_decay, downsample=config.downsample)
    iou = [keras.metrics.IoU(3, [i], sparse_y_pred=False, name=f"iou_{i}") for i in (1, 2)]
    iou.append(keras.metrics.IoU(3, [1, 2], sparse_y_pred=False, name="mean_iou"))
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, steps * config.epochs, alpha=0.05)
    model.compile(keras.optimizers.Adam(schedule), make_loss(config.loss, 3), metrics=iou)
    return model


def plain_fit(model: keras.Model, slices: SliceSet, batch_size: int, steps: int, epochs: int) -> list[float]:
    """Slices/s of each timed epoch of `fit` on in-memory float32 arrays (first epoch left out)."""
    count = steps * batch_size
    x = slices.images[:count].astype(np.float32)[..., None]
    y = slices.labels[:count]
    clock = StepClock()
    model.fit(x, y, batch_size=batch_size, epochs=epochs + 1, shuffle=True, callbacks=[clock], verbose=0)
    return [count / s for s in clock.seconds[1:]]


def armseg_fit(model: keras.Model, slices: SliceSet, batch_size: int, steps: int, epochs: int) -> list[float]:
    """Slices/s of each timed epoch of armseg's own training input (first epoch left out)."""
    clock = StepClock()
    batches = SliceBatches(slices, batch_size, True, seed=0, steps=steps)
    model.fit(batches, epochs=epochs + 1, callbacks=[clock], verbose=0)
    return [steps * batch_size / s for s in clock.seconds[1:]]


def compare(config: TrainConfig, policy: str, slices: SliceSet, steps: int, epochs: int,
            rounds: int) -> tuple[float, float]:
    """(armseg, plain) best training slices/s over the rounds, the two taking turns."""
    keras.utils.set_random_seed(0)
    ours, plain = compiled_trainer(config, policy, steps), plain_model(config, policy, steps)
    best = {"armseg": 0.0, "plain": 0.0}
    for _ in range(rounds):
        best["plain"] = max(best["plain"], *plain_fit(plain, slices, config.batch_size, steps, epochs))
        best["armseg"] = max(best["armseg"], *armseg_fit(ours, slices, config.batch_size, steps, epochs))
    return best["armseg"], best["plain"]


def device_name() -> str:
    from armseg.train.distribute import training_placement

    return training_placement().describe()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12, help="training steps per timed epoch")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per round (after one warm-up)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--base-filters", type=int, default=16)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--no-transforms", action="store_true", help="armseg without its random transforms")
    args = parser.parse_args()
    # Whole slices on both sides (rand_crop 1): this compares the input path, not the crops' savings.
    config = TrainConfig(group="bench", depth=args.depth, base_filters=args.base_filters,
                         batch_size=args.batch_size, random_transforms=not args.no_transforms, rand_crop=1.0)
    policy = resolve_precision(args.precision)
    slices = phantom_slices(args.steps * args.batch_size, args.size)
    print(f"backend {backend_name()} on {device_name()}, precision {policy}; U-Net depth {args.depth}, "
          f"{args.base_filters} base filters, {args.size}x{args.size}, batch {args.batch_size}, "
          f"{args.steps} steps x {args.epochs} timed epochs x {args.rounds} rounds")
    ours, plain = compare(config, policy, slices, args.steps, args.epochs, args.rounds)
    what = "uint8 batches, " + ("transforms in the step" if config.random_transforms else "no transforms")
    print(f"  plain fit, float32 arrays in memory, no transforms: {plain:8.1f} slices/s")
    print(f"  armseg training ({what}): {ours:8.1f} slices/s")
    print(f"  ratio armseg / plain: {ours / plain:.2f}")


if __name__ == "__main__":
    main()
