"""Label encoding: armseg's lookup table vs OpenArm's per-pixel Python one-hot loop.

OpenArm turned each raw segmentation into a float64 one-hot by visiting every pixel in Python
and setting the channel of its class; armseg maps raw values to uint8 class indices with one
NumPy lookup (`LabelMap.encode`) and never builds a one-hot. Both run here on the same
256x256x20 label volume (OpenArm's raw values), and the loop's time is extrapolated to a
256x256x100 scan. Run: `.venv/bin/python benchmarks/bench_labels.py`.
"""

from __future__ import annotations

import time

import numpy as np

from armseg.io.labels import DEFAULT_LABEL_MAP, OPENARM_RAW_VALUES

SHAPE = (256, 256, 20)
SCAN_SLICES = 100


def openarm_one_hot(raw: np.ndarray, class_of: dict[int, int], num_classes: int) -> np.ndarray:
    """The OpenArm way: a Python loop over every pixel into a float64 one-hot."""
    rows, cols, slices = raw.shape
    one_hot = np.zeros((slices, rows, cols, num_classes), dtype=np.float64)
    for k in range(slices):
        for i in range(rows):
            for j in range(cols):
                one_hot[k, i, j, class_of[int(raw[i, j, k])]] = 1.0
    return one_hot


def best_of(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    raw = rng.choice(np.array(OPENARM_RAW_VALUES, dtype=np.uint8), size=SHAPE)
    table = DEFAULT_LABEL_MAP.lookup_table()
    class_of = {int(v): int(table[v]) for v in OPENARM_RAW_VALUES}
    lut_seconds = best_of(lambda: DEFAULT_LABEL_MAP.encode(raw, "bench"), repeats=20)
    loop_seconds = best_of(lambda: openarm_one_hot(raw, class_of, DEFAULT_LABEL_MAP.num_classes), repeats=1)
    encoded = DEFAULT_LABEL_MAP.encode(raw, "bench")
    reference = openarm_one_hot(raw[..., :2], class_of, DEFAULT_LABEL_MAP.num_classes).argmax(-1)
    assert np.array_equal(np.moveaxis(encoded[..., :2], 2, 0), reference), "the two encodings disagree"
    per_scan = SCAN_SLICES / SHAPE[2]
    print(f"label volume {'x'.join(map(str, SHAPE))} ({raw.size / 1e6:.1f} M voxels), same result checked")
    print(f"  armseg LabelMap.encode (LUT, uint8):  {lut_seconds * 1e3:8.1f} ms")
    print(f"  OpenArm per-pixel one-hot (float64):  {loop_seconds * 1e3:8.1f} ms")
    print(f"  ratio: {loop_seconds / lut_seconds:,.0f}x faster")
    print(f"  per 256x256x{SCAN_SLICES} scan: armseg {lut_seconds * per_scan * 1e3:.0f} ms, "
          f"OpenArm {loop_seconds * per_scan:.1f} s")


if __name__ == "__main__":
    main()
