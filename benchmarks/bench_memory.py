"""Data memory: OpenArm's float64 arrays with one-hot labels vs armseg's uint8 slices + streamed batches.

OpenArm loaded a whole training group as float64 images and float64 one-hot labels before
training. armseg keeps the volume's own uint8 voxels and uint8 class indices, and only the
batch being trained on exists as float32. This script computes both from shapes for the
phantom's default groups and a larger OpenArm-sized one, then actually loads a small phantom
group both ways and measures the allocations (tracemalloc sees NumPy's buffers).
Run: `.venv/bin/python benchmarks/bench_memory.py`.
"""

from __future__ import annotations

import tempfile
import tracemalloc
from pathlib import Path

import numpy as np

from armseg.io.geometry import to_slices
from armseg.io.pairs import read_labelled_scan
from armseg.io.tree import find_group, group_scans
from armseg.synth.tree import write_tree
from armseg.train.config import TrainConfig
from armseg.train.slices import load_group

CLASSES = 3
BATCH = 8


def openarm_bytes(voxels: int) -> int:
    """float64 image + float64 one-hot over the classes."""
    return voxels * 8 * (1 + CLASSES)


def armseg_bytes(voxels: int, height: int, width: int) -> int:
    """uint8 image + uint8 labels, plus one float32 batch (image) with its uint8 labels in flight."""
    return voxels * 2 + BATCH * height * width * (4 + 1)


def openarm_load(scans) -> list[np.ndarray]:
    """The OpenArm way: every slice as float64, labels as a float64 one-hot."""
    arrays = []
    for scan in scans:
        image, classes = read_labelled_scan(scan)
        arrays.append(to_slices(image.array, 2).astype(np.float64))
        arrays.append(np.eye(CLASSES, dtype=np.float64)[to_slices(classes, 2)])
    return arrays


def measured_peak(function) -> int:
    tracemalloc.start()
    result = function()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return peak


def main() -> None:
    print("from shapes (images + labels held for training):")
    cases = [("phantom group_1_1: 2 scans 256x256x100", 2, 256, 256, 100),
             ("phantom group_1_2: 4 scans 256x256x100", 4, 256, 256, 100),
             ("a larger group: 12 scans 512x512x600", 12, 512, 512, 600)]
    for name, scans, height, width, slices in cases:
        voxels = scans * height * width * slices
        old, new = openarm_bytes(voxels), armseg_bytes(voxels, height, width)
        print(f"  {name}: OpenArm {old / 2**20:9,.0f} MiB, armseg {new / 2**20:7,.0f} MiB, "
              f"ratio {old / new:.1f}x")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "data"
        write_tree(root, subjects=3, seed=0, size=(256, 256), slices=20, progress=None)
        scans = group_scans(find_group(root, "group_1_2"))
        config = TrainConfig(group="group_1_2", data_root=str(root), keep_percent=100)
        old = measured_peak(lambda: openarm_load(scans))
        new = measured_peak(lambda: load_group(config, pad_multiple=16, progress=False))
    print("measured (tracemalloc peak) loading phantom group_1_2 at 4 scans 256x256x20:")
    print(f"  OpenArm float64 + one-hot: {old / 2**20:7.1f} MiB")
    print(f"  armseg uint8 slices:       {new / 2**20:7.1f} MiB (incl. reading; batches stream on top)")
    print(f"  ratio: {old / new:.1f}x less memory")


if __name__ == "__main__":
    main()
