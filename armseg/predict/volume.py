"""Whole-volume inference: slices in batches through the network, classes back on the source grid.

OpenArm called the network once per slice, padded to 512 or 1024; here a volume's slices go
through in batches padded only to the network's multiple (2**depth) and are cropped back
exactly, so any in-plane size is predicted voxel for voxel where the source has voxels.
The batching loop itself lives with the logged model (armseg.model.pyfunc).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from armseg.io.geometry import to_slices
from armseg.io.images import finite_voxels, read_image, write_like
from armseg.model.choices import (
    DEFAULT_FILL_HOLES,
    DEFAULT_LARGEST_COMPONENT,
    DEFAULT_SLICE_VOTE,
    DEFAULT_TTA,
)

if TYPE_CHECKING:  # importing Keras starts TensorFlow: only when a model exists to run
    import keras

    from armseg.model.registry import InferenceInfo

DEFAULT_BATCH_SIZE = 16
# NaN or infinite voxels: refuse the scan (naming it and the count), or predict with them set to 0.
# Left in, one such voxel turns its slice to NaN inside the network and the slice to background.
NONFINITE_CHOICES = ("error", "replace")


def predict_classes(
    model: keras.Model,
    volume: np.ndarray,
    info: InferenceInfo,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
    tta: bool = DEFAULT_TTA,
    largest_component: bool = DEFAULT_LARGEST_COMPONENT,
    fill_holes: bool = DEFAULT_FILL_HOLES,
    slice_vote: int = DEFAULT_SLICE_VOTE,
) -> np.ndarray:
    """Class index per voxel (uint8, same shape as `volume`), slices taken along `info.slice_axis`.

    The loop is the logged model's own (armseg.model.pyfunc), so `armseg predict` and a served
    model segment a scan identically.
    """
    from armseg.model.pyfunc import classify_volume

    to_slices(volume, info.slice_axis)  # the shape and axis checks, as armseg errors
    return classify_volume(model, volume, info.pad_multiple, info.slice_axis, batch_size, on_batch,
                           tta=tta, largest_component=largest_component, fill_holes=fill_holes,
                           slice_vote=slice_vote)


def predict_file(
    model: keras.Model,
    info: InferenceInfo,
    source: Path,
    out: Path,
    batch_size: int = DEFAULT_BATCH_SIZE,
    description: str | None = None,
    tta: bool = DEFAULT_TTA,
    largest_component: bool = DEFAULT_LARGEST_COMPONENT,
    fill_holes: bool = DEFAULT_FILL_HOLES,
    slice_vote: int = DEFAULT_SLICE_VOTE,
    nonfinite: str = "error",
) -> tuple[float, int]:
    """Predict one volume file and write raw labels on its grid (atomically); returns the seconds
    taken and how many non-finite voxels were replaced."""
    started = time.perf_counter()
    image = read_image(source)
    volume, replaced = finite_voxels(np.asarray(image.array), source, nonfinite, "predict")
    slices = image.array.shape[info.slice_axis]
    with tqdm(total=slices, desc=description or source.name, unit="slice") as bar:
        classes = predict_classes(model, volume, info, batch_size, bar.update,
                                  tta=tta, largest_component=largest_component, fill_holes=fill_holes,
                                  slice_vote=slice_vote)
    write_like(out, info.label_map.decode(classes), image)
    return time.perf_counter() - started, replaced
