"""Names and atomic writing of augmented trial folders.

A folder appears whole or not at all: both files are written into a hidden staging folder
beside it, which is then renamed into place, so a crash never leaves a volume without its
segmentation where `train` would find it (and fail on it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from armseg.io.images import Image, write_like


def format_number(value: float) -> str:
    """`10`, `-10`, `2.5`: an integer when integral, never an exponent (folder names stay readable)."""
    return np.format_float_positional(float(value), trim="-")


def rotation_folder_name(trial: str, degrees: float) -> str:
    """`trial1_0_fs_rot-10`, as the seed named rotated copies."""
    return f"{trial}_rot{format_number(degrees)}"


def elastic_folder_name(trial: str, alpha: float, sigma: float) -> str:
    """`trial1_0_fs_a5_s10_ed`: elastic copies end in `_ed`, as the seed's did."""
    return f"{trial}_a{format_number(alpha)}_s{format_number(sigma)}_ed"


def cast_like(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Back to the source's data type; integers are rounded and clipped, not wrapped."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(array), info.min, info.max).astype(dtype)
    return array.astype(dtype, copy=False)


def write_pair_folder(folder: Path, volume: np.ndarray, labels: np.ndarray, source_volume: Image,
                      source_labels: Image) -> list[Path]:
    """Write `<folder>/<folder>_volume.nii` and `_seg.nii` on the sources' grids, atomically.

    An existing folder of the same name is replaced only after the new one is complete.
    """
    staging = folder.with_name(f".{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        write_like(staging / f"{folder.name}_volume.nii", cast_like(volume, source_volume.array.dtype),
                   source_volume)
        write_like(staging / f"{folder.name}_seg.nii", labels, source_labels)
        _replace_folder(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [folder / f"{folder.name}_volume.nii", folder / f"{folder.name}_seg.nii"]


def _replace_folder(staging: Path, folder: Path) -> None:
    if not folder.exists():
        os.replace(staging, folder)
        return
    retired = folder.with_name(f".{folder.name}.old{os.getpid()}")
    shutil.rmtree(retired, ignore_errors=True)
    os.replace(folder, retired)
    os.replace(staging, folder)
    shutil.rmtree(retired, ignore_errors=True)
