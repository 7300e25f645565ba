"""Slicing volumes along the arm and padding slices to what the network needs.

A U-Net of depth d halves the image d times, so slices are zero-padded at the far edges to a
multiple of 2**d and cropped back exactly afterwards: any in-plane size works, and the output
lands on the source grid voxel for voxel.
"""

from __future__ import annotations

import numpy as np

from armseg.errors import ArmsegError


def to_slices(volume: np.ndarray, slice_axis: int = 2) -> np.ndarray:
    """(N, H, W) view of a volume with the slice axis first (no copy)."""
    if volume.ndim != 3:
        raise ArmsegError(f"expected a 3D volume, got shape {volume.shape}")
    if slice_axis not in (0, 1, 2):
        raise ArmsegError(f"slice_axis must be 0, 1 or 2, got {slice_axis}")
    return np.moveaxis(volume, slice_axis, 0)


def from_slices(stack: np.ndarray, slice_axis: int = 2) -> np.ndarray:
    """Inverse of `to_slices`: put the stacked slices back along `slice_axis`."""
    return np.moveaxis(stack, 0, slice_axis)


def padded_size(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


def pad_to_multiple(stack: np.ndarray, multiple: int) -> np.ndarray:
    """Zero-pad axes 1 and 2 of (N, H, W, ...) up to multiples of `multiple`."""
    height, width = stack.shape[1:3]
    pads = [(0, 0), (0, padded_size(height, multiple) - height),
            (0, padded_size(width, multiple) - width)]
    pads += [(0, 0)] * (stack.ndim - 3)
    if all(after == 0 for _, after in pads):
        return stack
    return np.pad(stack, pads)


def crop_to_shape(stack: np.ndarray, height: int, width: int) -> np.ndarray:
    """Undo `pad_to_multiple`: keep the top-left (height, width) of each slice."""
    return stack[:, :height, :width]
