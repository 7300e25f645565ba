"""A volume and its segmentation read together, checked to lie on the same grid."""

from __future__ import annotations

import numpy as np

from armseg.errors import ArmsegError
from armseg.io.images import Image, read_image
from armseg.io.labels import DEFAULT_LABEL_MAP, LabelMap
from armseg.io.tree import Scan


def read_labelled_scan(scan: Scan, label_map: LabelMap = DEFAULT_LABEL_MAP) -> tuple[Image, np.ndarray]:
    """(volume image, uint8 class indices); shape mismatch or unknown labels name the files."""
    if scan.segmentation is None:
        raise ArmsegError(f"{scan.folder}: has a volume but no segmentation (*seg*)")
    volume = read_image(scan.volume)
    segmentation = read_image(scan.segmentation)
    if volume.array.shape != segmentation.array.shape:
        raise ArmsegError(
            f"{scan.segmentation}: shape {segmentation.array.shape} differs from its volume "
            f"{scan.volume.name} {volume.array.shape}"
        )
    return volume, label_map.encode(np.asarray(segmentation.array), scan.segmentation)
