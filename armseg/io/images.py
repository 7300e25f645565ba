"""One reader/writer for the image formats users have (NIfTI, MHA).

The rest of armseg never asks which format a file was: it gets an `Image` whose array axes
follow nibabel's (x, y, z) order and whose affine maps voxels to RAS millimetres, and it
writes predictions on the source's grid through `write_like`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from armseg.errors import ArmsegError
from armseg.io.atomic import remove_quietly, writing

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha")


@dataclass(frozen=True)
class Image:
    """A 3D image as read from disk: voxels, their placement in space and where they came from."""

    array: np.ndarray
    affine: np.ndarray
    path: Path
    header: nib.Nifti1Header | None = None
    file_shape: tuple[int, ...] | None = None  # the shape in the file, when not 3-D (2-D, or x,y,z,1)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each array axis (from the affine, so any orientation works)."""
        sizes = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        return (float(sizes[0]), float(sizes[1]), float(sizes[2]))


def image_suffix(path: Path | str) -> str | None:
    """The recognised image suffix of a file name, or None for anything else."""
    name = str(path).lower()
    return next((s for s in IMAGE_SUFFIXES if name.endswith(s)), None)


def read_image(path: Path | str) -> Image:
    """Read a NIfTI (.nii, .nii.gz) or MHA file; any failure is one sentence naming the file."""
    path = Path(path)
    suffix = image_suffix(path)
    if suffix is None:
        raise ArmsegError(f"{path}: not an image armseg reads (expected {', '.join(IMAGE_SUFFIXES)})")
    if not path.is_file():
        raise ArmsegError(f"{path}: no such file")
    try:
        image = _read_mha(path) if suffix == ".mha" else _read_nifti(path)
    except ArmsegError:
        raise
    except Exception as error:  # nibabel/SimpleITK raise many kinds; the user needs the file name
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ArmsegError(f"{path}: cannot be read as an image ({reason})") from error
    return image


def _read_nifti(path: Path) -> Image:
    nifti = nib.load(str(path))
    stored = np.asanyarray(nifti.dataobj)
    array = _as_3d(stored, path)
    return Image(array=array, affine=np.asarray(nifti.affine, dtype=float), path=path,
                 header=nifti.header.copy(), file_shape=_if_not_3d(stored.shape, array.shape))


def _read_mha(path: Path) -> Image:
    from armseg.io.itk import read_mha  # SimpleITK loads only when an MHA file is read

    stored, affine = read_mha(path)
    array = _as_3d(stored, path)
    return Image(array=array, affine=affine, path=path, file_shape=_if_not_3d(stored.shape, array.shape))


def _if_not_3d(stored: tuple[int, ...], volume: tuple[int, ...]) -> tuple[int, ...] | None:
    return tuple(stored) if tuple(stored) != tuple(volume) else None


def _as_3d(array: np.ndarray, path: Path) -> np.ndarray:
    """Squeeze trailing singleton axes (2D+time exports), refuse anything that is not a volume."""
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = array[..., np.newaxis]
    if array.ndim != 3:
        raise ArmsegError(f"{path}: expected a 3D volume, found shape {array.shape}")
    return array


def temporary_sibling(path: Path) -> Path:
    """A hidden name beside `path` with the same suffix, so writers pick the same format."""
    suffix = image_suffix(path) or path.suffix
    stem = path.name[: len(path.name) - len(suffix)]
    return path.with_name(f".{stem}.tmp{os.getpid()}{suffix}")


def write_like(path: Path | str, array: np.ndarray, reference: Image) -> Path:
    """Write `array` as NIfTI on the reference's grid (affine, header), atomically.

    The data lands under a temporary name and is renamed into place, so a crash or Ctrl-C
    never leaves a half-written file where a user (or `evaluate`) would find it.
    """
    path = Path(path)
    if array.shape != reference.array.shape:
        raise ArmsegError(
            f"{path}: shape {array.shape} differs from its source {reference.path} "
            f"{reference.array.shape}"
        )
    if reference.file_shape is not None:  # a 2-D or (x, y, z, 1) source gets a prediction of its shape
        array = array.reshape(reference.file_shape)
    header = reference.header.copy() if reference.header is not None else None
    image = nib.Nifti1Image(array, reference.affine, header=header)
    image.set_data_dtype(array.dtype)
    # A label map must not inherit the intensity scaling of the source volume.
    image.header.set_slope_inter(1.0, 0.0)
    return save_atomically(image, path)


def write_volume(path: Path | str, array: np.ndarray, affine: np.ndarray) -> Path:
    """Write a new NIfTI volume with a given affine, atomically (synthetic and augmented data)."""
    image = nib.Nifti1Image(array, affine)
    image.set_data_dtype(array.dtype)
    return save_atomically(image, Path(path))


def nifti_bytes(array: np.ndarray, affine: np.ndarray) -> bytes:
    """A .nii file in memory, voxels in their own dtype, placed by `affine` (RAS mm) in both the
    qform and the sform (code 1, scanner), so every reader (nibabel, ITK, ITK-SNAP) agrees on where
    the scan lies; written with `io.atomic.write_bytes_atomic`."""
    image = nib.Nifti1Image(np.asarray(array), np.asarray(affine, dtype=float))
    image.set_data_dtype(np.asarray(array).dtype)
    image.header.set_xyzt_units("mm")
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    return image.to_bytes()


def save_atomically(image: nib.Nifti1Image, path: Path) -> Path:
    """Save under a hidden temporary name, then rename: readers never see a partial file."""
    temporary = temporary_sibling(path)
    with writing(path):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            nib.save(image, str(temporary))
            os.replace(temporary, path)
        finally:
            remove_quietly(temporary)
    return path


def finite_voxels(array: np.ndarray, path: Path, policy: str, stage: str) -> tuple[np.ndarray, int]:
    """The array with no NaN or infinite voxel, and how many were replaced by 0.

    One NaN voxel turns its whole slice to NaN after the per-slice normalisation: in training the
    loss goes NaN, at prediction the slice comes out background. Such a scan is an error naming
    the file and the count, unless `policy` is `replace`. `stage` (train, predict) words the message.
    """
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        return array, 0
    bad = ~np.isfinite(array)
    count = int(bad.sum())
    if count == 0:
        return array, 0
    if policy != "replace":
        raise ArmsegError(f"{path}: {count} voxel(s) are NaN or infinite; fix the scan, or give "
                          f"--nonfinite replace to {stage} with them set to 0")
    print(f"[armseg {stage}] {path}: replaced {count} NaN or infinite voxel(s) by 0 (--nonfinite replace)")
    return np.where(bad, 0, array).astype(array.dtype), count
