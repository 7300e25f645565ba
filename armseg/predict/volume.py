"""Whole-volume inference: slices in batches through the network, classes back on the source grid.

OpenArm called the network once per slice, padded to 512 or 1024; here a volume's slices go
through in batches padded only to the network's multiple (2**depth) and are cropped back
exactly, so any in-plane size is predicted voxel for voxel where the source has voxels.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from armseg.io.geometry import crop_to_shape, from_slices, pad_to_multiple, to_slices
from armseg.io.images import read_image, write_like

if TYPE_CHECKING:  # importing Keras starts TensorFlow: only when a model exists to run
    import keras

    from armseg.model.registry import InferenceInfo

DEFAULT_BATCH_SIZE = 16


def predict_classes(
    model: keras.Model,
    volume: np.ndarray,
    info: InferenceInfo,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Class index per voxel (uint8, same shape as `volume`), slices taken along `info.slice_axis`."""
    slices = to_slices(volume, info.slice_axis)
    count, height, width = slices.shape
    classes = np.empty((count, height, width), dtype=np.uint8)
    for start in range(0, count, batch_size):
        batch = slices[start:start + batch_size].astype(np.float32)[..., np.newaxis]
        probabilities = np.asarray(model.predict_on_batch(pad_to_multiple(batch, info.pad_multiple)))
        # argmax per batch: the float probabilities of a whole volume are never held at once.
        classes[start:start + len(batch)] = crop_to_shape(probabilities.argmax(axis=-1), height, width)
        if on_batch is not None:
            on_batch(len(batch))
    return np.ascontiguousarray(from_slices(classes, info.slice_axis))


def predict_file(
    model: keras.Model,
    info: InferenceInfo,
    source: Path,
    out: Path,
    batch_size: int = DEFAULT_BATCH_SIZE,
    description: str | None = None,
) -> float:
    """Predict one volume file and write raw labels on its grid (atomically); returns seconds taken."""
    started = time.perf_counter()
    image = read_image(source)
    slices = image.array.shape[info.slice_axis]
    with tqdm(total=slices, desc=description or source.name, unit="slice") as bar:
        classes = predict_classes(model, np.asarray(image.array), info, batch_size, bar.update)
    write_like(out, info.label_map.decode(classes), image)
    return time.perf_counter() - started
