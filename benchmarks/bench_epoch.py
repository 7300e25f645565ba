"""Where the seconds of an `armseg train` epoch go: training steps, validation, end-of-epoch bookkeeping.

    .venv/bin/python benchmarks/bench_epoch.py [--epochs 6] [--cache .bench_cache/accuracy]

Trains armseg's defaults (the real `train`, MLflow run and callbacks included, into a scratch store)
on the accuracy benchmark's independent group (benchmarks/independent_phantom.py, written once into
the cache it shares with bench_accuracy.py, by its `prepare`) and splits each epoch after the first
(which compiles) into the steps, the validation pass and the work the callbacks do after it (the
resume checkpoint, with `--keep-weights best` a best one too, the metrics, the heartbeat). The
shares say what a fixed time budget could win by validating or checkpointing less: only what those
two take.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import mlflow  # noqa: E402
from bench_accuracy import CACHE, GROUP, prepare  # noqa: E402

from armseg.train.config import TrainConfig  # noqa: E402
from armseg.train.run import train  # noqa: E402


class EpochParts(keras.callbacks.Callback):
    """Seconds of each epoch's steps, validation and the callbacks that run before this one.

    It is the last callback, so its `on_epoch_end` comes after every other callback's."""

    def __init__(self):
        super().__init__()
        self.parts: list[tuple[float, float, float]] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._begin = time.perf_counter()

    def on_test_begin(self, logs=None):
        self._validation = time.perf_counter()

    def on_test_end(self, logs=None):
        self._bookkeeping = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        self.parts.append((self._validation - self._begin, self._bookkeeping - self._validation,
                           now - self._bookkeeping))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args()
    if args.epochs < 2:
        raise SystemExit("--epochs must be at least 2 (the first epoch compiles and is not counted)")
    root, _ = prepare("independent", args.cache)
    clock = EpochParts()
    with tempfile.TemporaryDirectory(prefix="bench-epoch-") as scratch:
        mlflow.set_tracking_uri(f"sqlite:///{Path(scratch) / 'mlflow.db'}")
        config = TrainConfig(group=GROUP, data_root=str(root), epochs=args.epochs)
        train(config, [clock], register=False)
    timed = clock.parts[1:]
    steps, validation, bookkeeping = (statistics.median(part[i] for part in timed) for i in range(3))
    total = steps + validation + bookkeeping
    print(f"\nmedian of epochs 2-{args.epochs} of armseg's defaults on the independent group "
          f"(first epoch, compiling: {sum(clock.parts[0]):.1f} s)")
    for name, seconds in (("training steps", steps), ("validation", validation),
                          ("checkpoints, metrics, heartbeat", bookkeeping)):
        print(f"  {name:<34}{seconds:>6.2f} s  {seconds / total:>5.1%}")
    print(f"  {'epoch':<34}{total:>6.2f} s")


if __name__ == "__main__":
    main()
