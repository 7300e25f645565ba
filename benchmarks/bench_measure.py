"""Measuring a scan: armseg's whole-array reductions vs a per-slice, per-pixel Python loop.

The loop is how such measures are usually first written (visit every pixel of every slice,
count it, track the first and last row and column it touches); `armseg.measure.shapes` asks
NumPy for a few reductions over the whole volume instead. Both measure the humerus and the
biceps of the same 256x256x100 phantom label map (the loop on 10 slices, extrapolated to 100),
and the results are checked equal on those slices. Run: `.venv/bin/python benchmarks/bench_measure.py`.
"""

from __future__ import annotations

import time

import numpy as np

from armseg.io.labels import DEFAULT_LABEL_MAP
from armseg.measure.names import AREA_MAX, THICKNESS, VOLUME, WIDTH
from armseg.measure.shapes import measure_structures
from armseg.synth.phantom import field_of_view, sample_subject, synth_scan

SIZE, SLICES, LOOP_SLICES = (256, 256), 100, 10
STRUCTURES = {"humerus": 1, "biceps": 2}


def loop_measures(classes: np.ndarray, index: int, spacing: tuple[float, float, float]) -> dict[str, float]:
    """The naive way: Python loops over slices and pixels (depth = axis 0, slices along axis 2)."""
    dz, dx, ds = spacing
    rows, cols, slices = classes.shape
    voxels, best_area, best = 0, -1, (0, 0)
    for k in range(slices):
        count, top, bottom, left, right = 0, rows, -1, cols, -1
        for i in range(rows):
            for j in range(cols):
                if classes[i, j, k] == index:
                    count += 1
                    top, bottom = min(top, i), max(bottom, i)
                    left, right = min(left, j), max(right, j)
        voxels += count
        if count and count > best_area:
            best_area, best = count, (bottom - top + 1, right - left + 1)
    return {VOLUME: voxels * dz * dx * ds, AREA_MAX: best_area * dz * dx, THICKNESS: best[0] * dz,
            WIDTH: best[1] * dx}


def best_of(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    _, raw = synth_scan(SIZE, SLICES, sample_subject(rng), 60.0, 0.3, rng)
    classes = DEFAULT_LABEL_MAP.encode(raw, "bench")
    spacing = field_of_view(SIZE, SLICES).spacing
    armseg_seconds = best_of(lambda: measure_structures(classes, STRUCTURES, spacing), repeats=5)
    from_raw_seconds = best_of(lambda: measure_structures(DEFAULT_LABEL_MAP.encode(raw, "bench"), STRUCTURES,
                                                          spacing), repeats=5)
    part = np.ascontiguousarray(classes[..., :LOOP_SLICES])
    loop_seconds = best_of(lambda: [loop_measures(part, i, spacing) for i in STRUCTURES.values()], repeats=1)
    loop_seconds *= SLICES / LOOP_SLICES
    fast = measure_structures(part, STRUCTURES, spacing)
    for name, index in STRUCTURES.items():
        slow = loop_measures(part, index, spacing)
        assert all(np.isclose(fast[name].summary[k], v) for k, v in slow.items()), f"{name} disagrees"
    print(f"label map {'x'.join(map(str, classes.shape))} ({classes.size / 1e6:.1f} M voxels), "
          f"{len(STRUCTURES)} structures, same result checked on {LOOP_SLICES} slices")
    print(f"  armseg measure_structures (whole-array):  {armseg_seconds * 1e3:8.1f} ms")
    print(f"  the same from raw labels (+ encode):      {from_raw_seconds * 1e3:8.1f} ms")
    print(f"  per-slice, per-pixel Python loop:         {loop_seconds:8.1f} s (extrapolated from "
          f"{LOOP_SLICES} slices)")
    print(f"  ratio: {loop_seconds / armseg_seconds:,.0f}x faster; target < 1 s per scan: "
          f"{'met' if from_raw_seconds < 1.0 else 'MISSED'}")


if __name__ == "__main__":
    main()
