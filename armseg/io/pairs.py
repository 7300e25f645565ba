"""A volume and its segmentation (or a prediction) read together, checked to lie on one grid.

Every stage that pairs two images of one scan (train, augment, registration, evaluate) goes
through here, so "these two files do not match" is one check with one message.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from armseg.errors import ArmsegError
from armseg.io.images import Image, read_image
from armseg.io.labels import DEFAULT_LABEL_MAP, LabelMap, integer_labels
from armseg.io.tree import Scan


def check_same_grid(image: Image, reference: Image, what: str = "its volume") -> None:
    """Refuse two images of one scan whose voxel grids differ, naming both files."""
    if image.array.shape != reference.array.shape:
        raise ArmsegError(f"{image.path}: shape {image.array.shape} differs from {what} "
                          f"{reference.path.name} {reference.array.shape}")


def read_on_grid(path: Path | str, reference: Image, what: str = "its volume") -> Image:
    """Read an image that must share `reference`'s grid (a segmentation, a prediction)."""
    image = read_image(path)
    check_same_grid(image, reference, what)
    return image


def read_pair(volume: Path | str, segmentation: Path | str) -> tuple[Image, Image]:
    """The volume and its raw segmentation; the segmentation must hold integers on the same grid."""
    volume_image = read_image(volume)
    labels = read_on_grid(segmentation, volume_image)
    integer_labels(np.asarray(labels.array), labels.path)
    return volume_image, labels


def scan_pair(scan: Scan) -> tuple[Image, Image]:
    """`read_pair` for a trial folder, which must hold a segmentation."""
    if scan.segmentation is None:
        raise ArmsegError(f"{scan.folder}: has a volume but no segmentation (*seg*)")
    return read_pair(scan.volume, scan.segmentation)


def read_labelled_scan(scan: Scan, label_map: LabelMap = DEFAULT_LABEL_MAP) -> tuple[Image, np.ndarray]:
    """(volume image, uint8 class indices); shape mismatch or unknown labels name the files."""
    volume, labels = scan_pair(scan)
    return volume, label_map.encode(np.asarray(labels.array), labels.path)
