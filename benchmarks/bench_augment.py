"""Seconds per scan of `armseg augment` against the slice-by-slice way, side by side.

    .venv/bin/python benchmarks/bench_augment.py [--size 256 256] [--slices 100] [--repeats 3]

armseg rotates a whole volume in one `affine_transform` call and deforms it with one
`map_coordinates` call on a 3D grid (float32); the baseline is the notebook way: a Python loop
over slices, `ndimage.rotate` per slice, and a per-slice Simard field on a float64 2D grid.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from armseg.augment.elastic import deform_pair, displacement_field
from armseg.augment.rotation import rotate_pair

DEGREES, ALPHA, SIGMA = 10.0, 4.0, 10.0


def phantom(size: tuple[int, int], slices: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A speckled uint8 volume with a disc of raw label 52 and one of 7, like a B-mode scan."""
    rng = np.random.default_rng(seed)
    volume = rng.integers(0, 256, (*size, slices), dtype=np.uint8)
    rows, cols = np.ogrid[: size[0], : size[1]]
    labels = np.zeros((*size, slices), np.uint8)
    labels[(rows - size[0] * 0.35) ** 2 + (cols - size[1] * 0.5) ** 2 < (size[0] * 0.2) ** 2] = 52
    labels[(rows - size[0] * 0.75) ** 2 + (cols - size[1] * 0.5) ** 2 < (size[0] * 0.1) ** 2] = 7
    return volume, labels


def rotate_slices(volume: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out_volume, out_labels = np.empty(volume.shape), np.empty_like(labels)
    for k in range(volume.shape[2]):
        out_volume[..., k] = ndimage.rotate(volume[..., k].astype(float), DEGREES, reshape=False, order=1)
        out_labels[..., k] = ndimage.rotate(labels[..., k], DEGREES, reshape=False, order=0)
    return out_volume, out_labels


def elastic_slices(volume: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    rows, cols = volume.shape[:2]
    grid_r, grid_c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    out_volume, out_labels = np.empty(volume.shape), np.empty_like(labels)
    for k in range(volume.shape[2]):
        dr = ndimage.gaussian_filter(rng.uniform(-1, 1, (rows, cols)), SIGMA) * ALPHA * 30
        dc = ndimage.gaussian_filter(rng.uniform(-1, 1, (rows, cols)), SIGMA) * ALPHA * 30
        coords = [grid_r + dr, grid_c + dc]
        out_volume[..., k] = ndimage.map_coordinates(volume[..., k].astype(float), coords, order=1)
        out_labels[..., k] = ndimage.map_coordinates(labels[..., k], coords, order=0)
    return out_volume, out_labels


def armseg_rotation(volume: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return rotate_pair(volume, labels, DEGREES)


def armseg_elastic(volume: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    field = displacement_field(volume.shape, ALPHA, SIGMA, np.random.default_rng(0))
    return deform_pair(volume, labels, field)


def best_seconds(step: Callable[[np.ndarray, np.ndarray], object], volume: np.ndarray, labels: np.ndarray,
                 repeats: int) -> tuple[float, float]:
    """Best wall and best CPU seconds: CPU time stays meaningful on a machine others are using."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        step(volume, labels)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return min(wall), min(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", nargs=2, type=int, default=[256, 256])
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    volume, labels = phantom(tuple(args.size), args.slices)
    shape = "x".join(str(n) for n in volume.shape)
    print(f"augment benchmark, one {shape} uint8 scan + labels, best of {args.repeats}")
    print(f"{'step':<10} {'armseg s/scan':>14} {'slice loop s/scan':>18} {'ratio':>6}   "
          f"{'armseg cpu-s':>12} {'loop cpu-s':>10} {'ratio':>6}")
    for name, ours, theirs in (("rotation", armseg_rotation, rotate_slices),
                               ("elastic", armseg_elastic, elastic_slices)):
        fast, fast_cpu = best_seconds(ours, volume, labels, args.repeats)
        slow, slow_cpu = best_seconds(theirs, volume, labels, args.repeats)
        print(f"{name:<10} {fast:>14.3f} {slow:>18.3f} {slow / fast:>5.1f}x   "
              f"{fast_cpu:>12.3f} {slow_cpu:>10.3f} {slow_cpu / fast_cpu:>5.1f}x")


if __name__ == "__main__":
    main()
