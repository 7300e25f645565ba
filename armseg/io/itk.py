"""The bridge between armseg's arrays and SimpleITK images, and the MHA reader built on it.

armseg holds images as nibabel does: array axes (x, y, z) and an affine to RAS millimetres.
ITK indexes (z, y, x) and places images in LPS millimetres. Every crossing goes through here,
with the one RAS <-> LPS flip, so a scan lands voxel for voxel on its own grid either way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from armseg.errors import ArmsegError

# RAS <-> LPS: flip the first two axes (the matrix is its own inverse).
LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


def to_itk(array: np.ndarray, affine: np.ndarray, pixel_type: type = np.float32) -> sitk.Image:
    """A SimpleITK image of an armseg array ((x, y, z) order) placed by its RAS affine.

    ITK's index axes are the array axes, spacing the affine's column lengths, and direction and
    origin the affine's, flipped from RAS to LPS.
    """
    matrix = np.asarray(affine, dtype=float)[:3, :3]
    spacing = np.sqrt((matrix ** 2).sum(axis=0))
    if np.any(spacing <= 0) or abs(np.linalg.det(matrix)) < 1e-12:
        raise ArmsegError("image affine is singular; cannot place the scan in space")
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array, dtype=pixel_type).T))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(v) for v in (LPS_FROM_RAS @ matrix / spacing).ravel()))
    image.SetOrigin(tuple(float(v) for v in LPS_FROM_RAS @ np.asarray(affine, dtype=float)[:3, 3]))
    return image


def from_itk(image: sitk.Image) -> np.ndarray:
    """The voxels back in armseg's (x, y, z) order."""
    return sitk.GetArrayFromImage(image).T


def affine_of(image: sitk.Image) -> np.ndarray:
    """The RAS voxel-to-mm affine of an ITK image (the inverse of `to_itk`'s placement)."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = LPS_FROM_RAS @ direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = LPS_FROM_RAS @ np.asarray(image.GetOrigin(), dtype=float)
    return affine


def read_mha(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(array in (x, y, z) order, RAS affine) of an MHA/MHD file."""
    image = sitk.ReadImage(str(path))
    return from_itk(image), affine_of(image)
