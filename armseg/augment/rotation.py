"""Rotation in the transverse (B-mode) plane, about the arm's long axis.

One `scipy.ndimage.affine_transform` call per array rotates the whole volume: the 3D matrix
turns the two in-plane axes and leaves the slice axis alone, so no slice loop is needed. The
centre is the in-plane centre of the image, as the seed did: the skin line tilts with the
tissue, which is what a probe held at a slightly different angle would show.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def in_plane_axes(slice_axis: int) -> tuple[int, int]:
    """The two array axes of a transverse slice, in array order."""
    first, second = (axis for axis in range(3) if axis != slice_axis)
    return first, second


def rotation_transform(shape: Sequence[int], degrees: float, slice_axis: int = 2,
                       spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """(matrix, offset) for `affine_transform`: output index -> input index of a rotation.

    Positive degrees turn the first in-plane array axis towards the second (a blob on the
    first axis's positive side of the centre moves towards the second axis's positive side).
    The rotation is made in millimetres, so a non-square pixel does not shear the anatomy.
    """
    a, b = in_plane_axes(slice_axis)
    theta = np.deg2rad(degrees)
    forward = np.eye(3)
    forward[np.ix_([a, b], [a, b])] = [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
    scale = np.diag(np.asarray(spacing, dtype=float))
    # input = S^-1 R^T S (output - centre) + centre: pull each output voxel from where it came.
    matrix = np.linalg.inv(scale) @ forward.T @ scale
    centre = (np.asarray(shape, dtype=float) - 1.0) / 2.0
    return matrix, centre - matrix @ centre


def rotate_pair(volume: np.ndarray, labels: np.ndarray, degrees: float, slice_axis: int = 2,
                spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """Rotate a volume (linear, float32) and its raw labels (nearest: no invented values).

    Outside the field of view both are 0, the background of a B-mode image and of the labels.
    """
    matrix, offset = rotation_transform(volume.shape, degrees, slice_axis, spacing)
    rotated = ndimage.affine_transform(volume, matrix, offset, order=1, mode="constant", cval=0.0,
                                       output=np.float32)
    rotated_labels = ndimage.affine_transform(labels, matrix, offset, order=0, mode="constant",
                                              cval=0, output=labels.dtype)
    return rotated, rotated_labels
