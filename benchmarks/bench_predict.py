"""Whole-volume prediction: armseg's batched slices vs OpenArm's one network call per slice.

    .venv/bin/python benchmarks/bench_predict.py [--size 256 256] [--slices 40] [--depth 4]
        [--base-filters 16] [--batch-size 16] [--repeats 2]

OpenArm predicted a scan by running the network on one slice at a time, each padded to
512x512 (1024x1024 above 512). armseg sends `batch_size` slices per call, padded only to the
network's multiple (2**depth), and crops back exactly (`armseg.predict.volume.predict_classes`).
The same U-Net (untrained: speed does not depend on the weights) predicts the same volume
in every way below in one run; each is warmed up once (graph tracing), then the ways take turns
(so a busy machine slows them alike) and each keeps its best of `--repeats` rounds:
  1. OpenArm: one slice per call, padded to 512x512;
  2. one slice per call, padded to the multiple (what batching alone buys);
  3. armseg: batches of `--batch-size` slices, padded to the multiple;
  4. armseg at other batch sizes (`--sweep`), to choose one for the machine at hand.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from armseg.io.geometry import crop_to_shape, padded_size, to_slices  # noqa: E402
from armseg.model.registry import InferenceInfo  # noqa: E402
from armseg.model.unet import build_unet, pad_multiple  # noqa: E402
from armseg.predict.volume import predict_classes  # noqa: E402


def one_slice_per_call(model, volume: np.ndarray, pad_to: int) -> np.ndarray:
    """The OpenArm loop: pad each slice to a square of `pad_to`, one network call each."""
    slices = to_slices(volume, 2)
    _, height, width = slices.shape
    side = max(pad_to, padded_size(max(height, width), pad_to))
    out = np.empty(slices.shape, dtype=np.uint8)
    for index, image in enumerate(slices):
        padded = np.zeros((1, side, side, 1), dtype=np.float32)
        padded[0, :height, :width, 0] = image
        probabilities = np.asarray(model.predict_on_batch(padded))
        out[index] = crop_to_shape(probabilities.argmax(-1), height, width)[0]
    return np.moveaxis(out, 0, 2)


def best_of_rounds(ways: dict[str, Callable[[], np.ndarray]],
                   repeats: int) -> dict[str, tuple[float, np.ndarray]]:
    """Warm each way up (traces its graph), then time them in turns; keep each one's best round."""
    results = {name: (float("inf"), way()) for name, way in ways.items()}
    for _ in range(repeats):
        for name, way in ways.items():
            start = time.perf_counter()
            output = way()
            results[name] = (min(results[name][0], time.perf_counter() - start), output)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", nargs=2, type=int, default=[256, 256])
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--base-filters", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sweep", nargs="*", type=int, default=[1, 4, 8, 32],
                        help="other batch sizes to time (default: %(default)s)")
    args = parser.parse_args()

    import tensorflow as tf

    shape = (*args.size, args.slices)
    volume = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    model = build_unet(depth=args.depth, base_filters=args.base_filters)
    info = InferenceInfo(pad_multiple=pad_multiple(args.depth))
    device = "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores)"
    print(f"volume {shape[0]}x{shape[1]}x{shape[2]}, U-Net depth {args.depth} base {args.base_filters}, "
          f"{device}, best of {args.repeats}")

    multiple = info.pad_multiple
    armseg = f"armseg: {args.batch_size} slices/call, padded to {multiple}x"
    ways = {
        "OpenArm: 1 slice/call, padded to 512": lambda: one_slice_per_call(model, volume, 512),
        f"1 slice/call, padded to {multiple}x": lambda: one_slice_per_call(model, volume, multiple),
        armseg: lambda: predict_classes(model, volume, info, args.batch_size),
    }
    for size in (s for s in args.sweep if s != args.batch_size):
        ways[f"armseg: {size} slices/call"] = lambda size=size: predict_classes(model, volume, info, size)
    results = best_of_rounds(ways, args.repeats)
    baseline = results[armseg][0]
    for name, (seconds, _) in results.items():
        print(f"  {name:<44} {seconds:7.2f} s  {seconds / args.slices * 1000:7.1f} ms/slice  "
              f"{seconds / baseline:5.2f}x armseg's time")
    same = np.array_equal(results[f"1 slice/call, padded to {multiple}x"][1], results[armseg][1])
    print(f"  batched and per-slice predictions (same padding) identical: {same}")


if __name__ == "__main__":
    main()
