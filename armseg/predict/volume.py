"""Whole-volume inference: slices in batches through the network, classes back on the source grid.

OpenArm called the network once per slice, padded to 512 or 1024; here a volume's slices go
through in batches padded only to the network's multiple (2**depth) and are cropped back
exactly, so any in-plane size is predicted voxel for voxel where the source has voxels.
"""

from __future__ import annotations

import functools
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
    classify = batch_classifier(model)
    for start in range(0, count, batch_size):
        batch = slices[start:start + batch_size].astype(np.float32)[..., np.newaxis]
        predicted = classify(pad_to_multiple(batch, info.pad_multiple))
        classes[start:start + len(batch)] = crop_to_shape(predicted, height, width)
        if on_batch is not None:
            on_batch(len(batch))
    return np.ascontiguousarray(from_slices(classes, info.slice_axis))


def batch_classifier(model: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    """Batch of slices -> class per pixel: on the device for a functional Keras model (what is
    logged), argmax of `predict_on_batch` on the host for anything else that has one."""
    if not getattr(model, "outputs", None):
        return lambda batch: np.asarray(model.predict_on_batch(batch)).argmax(axis=-1)
    classify = class_model(model)
    return lambda batch: np.asarray(classify.predict_on_batch(batch))


@functools.lru_cache(maxsize=4)
def class_model(model: keras.Model) -> keras.Model:
    """`model` with the argmax over classes on the device that runs it: a GPU hands back one byte
    per pixel instead of the float probabilities of every class, and the host does no argmax.
    Cached, so a model compiles once for all the volumes it predicts."""
    import keras

    classes = keras.ops.cast(keras.ops.argmax(model.outputs[0], axis=-1), "uint8")
    return keras.Model(model.inputs, classes, name=f"{model.name}_classes")


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
