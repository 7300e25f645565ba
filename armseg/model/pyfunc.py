"""The logged model's Python-function flavour: a raw scan in, raw labels of the same shape out.

This file is logged with every model as MLflow "model from code", so it imports only numpy,
MLflow and (when the model loads) Keras: whoever loads `models:/armseg-unet@champion`
(`mlflow.pyfunc.load_model`, `mlflow models predict`, `mlflow models serve`) needs no armseg.
It is also armseg's own inference loop (`armseg.predict.volume` calls `classify_volume`), so
`armseg predict` and the served model segment a scan identically.

Input: a 3-D scan of any numeric dtype (uint8, int16, float...) and any in-plane size, its
slices along the model's slice axis (param `slice_axis` overrides it: 0 takes a batch of
2-D slices), or one 2-D slice. Each slice is zero-padded to the network's multiple, normalised
inside the network, classified and cropped back (a network trained with `context` takes each
slice with its neighbours along the arm as channels, built here); the classes are written as the model's raw
label values (OpenArm: 0, 7 humerus, 52 biceps). MLflow's tensor schema admits exactly one
dtype and would refuse a uint8 scan, so the signature declares the output and the params and
the input example shows the input; the model checks its input itself.

Four optional refinements, params of the served model and flags of `armseg predict` alike:
`tta` averages each slice's class probabilities with those of its mirror image (left-right, the
probe's lateral axis), `largest_component` keeps, per structure, the largest 3-D connected
component of the scan (a biceps or a humerus is one body: islands elsewhere are false positives),
`fill_holes` gives a structure the background it encloses in a slice (a cross-section of a
muscle or a bone has no holes: a patch of background inside one is a miss, most often where a
bright aponeurosis crosses a muscle wider than the network's view), and `slice_vote` gives each
voxel the class most of its neighbours along the arm have (a window of that many slices; 1 = off):
a 2-D network decides each slice alone, and a muscle's outline changes little from one slice to
the next, so a bay that one slice alone shows is a miss.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import numpy as np
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

NETWORK_ARTIFACT = "network"  # the Keras network, under the model's artifacts/
SETTINGS_ARTIFACT = "inference"  # JSON: pad_multiple, slice_axis, label_map, group
DEFAULT_BATCH_SIZE = 16
DEFAULT_TTA = True
DEFAULT_LARGEST_COMPONENT = True
DEFAULT_FILL_HOLES = True
DEFAULT_SLICE_VOTE = 5


def padded_size(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


def classify_slices(network: Any, stack: np.ndarray, pad_multiple: int, batch_size: int = DEFAULT_BATCH_SIZE,
                    on_batch: Callable[[int], None] | None = None, tta: bool = False) -> np.ndarray:
    """Class index per pixel (uint8) of (N, H, W) slices, in batches, padded and cropped back.

    A network trained with `context` k takes 2k + 1 channels: each slice between its k neighbours
    on each side in `stack` (the end slice repeated past the ends), as it was trained."""
    count, height, width = stack.shape
    rows, columns = padded_size(height, pad_multiple), padded_size(width, pad_multiple)
    classes = np.empty((count, height, width), dtype=np.uint8)
    classify = batch_classifier(network, tta)
    channels = input_channels(network)
    offsets = np.arange(channels) - channels // 2
    for start in range(0, count, batch_size):
        stop = min(start + batch_size, count)
        around = np.clip(np.arange(start, stop)[:, None] + offsets, 0, count - 1)
        batch = np.zeros((stop - start, rows, columns, channels), dtype=np.float32)
        batch[:, :height, :width] = np.moveaxis(stack[around], 1, -1)
        classes[start:stop] = classify(batch)[:, :height, :width]
        if on_batch is not None:
            on_batch(stop - start)
    return classes


def input_channels(network: Any) -> int:
    """The grey channels the network takes: 1, or 2k + 1 for a slice between k neighbours a side."""
    inputs = getattr(network, "inputs", None)
    channels = inputs[0].shape[-1] if inputs else None
    return int(channels) if channels else 1


def batch_classifier(network: Any, tta: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """Padded batch -> class per pixel. For a functional Keras network (what is logged) the argmax
    (and the mirror average) runs on the network's own device: a GPU hands back one byte per
    pixel, not every class's probability, and the host does no argmax. Anything else with
    `predict_on_batch` (the probabilities) is reduced on the host, a batch at a time."""
    if not getattr(network, "outputs", None):
        def probabilities(batch: np.ndarray) -> np.ndarray:
            found = np.asarray(network.predict_on_batch(batch))
            if tta:  # the padding sits on the right: the mirror of a padded slice is still a slice
                found = found + np.asarray(network.predict_on_batch(batch[:, :, ::-1]))[:, :, ::-1]
            return found
        return lambda batch: probabilities(batch).argmax(axis=-1)
    classifier = _class_network(network, tta)
    return lambda batch: np.asarray(classifier.predict_on_batch(batch))


@functools.lru_cache(maxsize=4)
def _class_network(network: Any, tta: bool = False) -> Any:
    """`network` ending in the argmax over classes; cached, so it compiles once for every volume."""
    import keras

    probabilities = network.outputs[0]
    if tta:
        mirrored = network(keras.ops.flip(network.inputs[0], axis=2))
        probabilities = probabilities + keras.ops.flip(mirrored, axis=2)
    classes = keras.ops.cast(keras.ops.argmax(probabilities, axis=-1), "uint8")
    return keras.Model(network.inputs, classes, name=f"{network.name}_classes{'_tta' if tta else ''}")


def keep_largest_components(classes: np.ndarray, num_classes: int) -> np.ndarray:
    """Per foreground class, only its largest 26-connected 3-D component stays; the rest is background."""
    from scipy import ndimage  # only when asked for: loading the model needs no SciPy

    kept = classes.copy()
    structure = np.ones((3,) * classes.ndim, dtype=bool)
    for value in range(1, num_classes):
        components, count = ndimage.label(classes == value, structure=structure)
        if count > 1:
            sizes = np.bincount(components.ravel())
            sizes[0] = 0
            kept[(components != 0) & (components != int(sizes.argmax()))] = 0
    return kept


def fill_enclosed_background(classes: np.ndarray) -> np.ndarray:
    """(N, H, W) class slices: in each slice, background wholly enclosed by one structure becomes it.

    Slice by slice (4-connected in the plane, never across slices): the first and last slices of
    a scan could not close a hole in 3-D. A hole that holds any other structure stays as it is.
    """
    from scipy import ndimage  # only when asked for: loading the model needs no SciPy

    filled = classes.copy()
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    for value in np.unique(classes[classes != 0]):
        body = classes == value
        holes, count = ndimage.label(ndimage.binary_fill_holes(body, structure=in_plane) & ~body,
                                     structure=in_plane)
        if count:
            mixed = np.bincount(holes[(holes != 0) & (classes != 0)], minlength=count + 1).astype(bool)
            mixed[0] = True  # label 0 is everything outside the holes
            filled[~mixed[holes]] = value
    return filled


def vote_along_slices(classes: np.ndarray, window: int) -> np.ndarray:
    """(N, H, W) class slices: each voxel takes the class most common in the `window` slices centred
    on it (the scan's end slices repeated beyond its ends); a tie keeps the voxel's own class.

    One class at a time, counts in uint8: no per-class stack of the volume is held.
    """
    if not 1 <= window <= 255 or window % 2 == 0:  # counts are uint8, and a window has a centre
        raise ValueError(f"slice_vote must be an odd number of slices from 1 (off) to 255, got {window}")
    if window == 1 or len(classes) < 2:
        return classes
    from scipy import ndimage  # only when asked for: loading the model needs no SciPy

    ones = np.ones(window, dtype=np.uint8)
    best_count = np.zeros(classes.shape, dtype=np.uint8)
    best_class = classes.copy()
    own_count = np.zeros(classes.shape, dtype=np.uint8)
    for value in np.unique(classes):
        mask = classes == value
        count = ndimage.convolve1d(mask.view(np.uint8), ones, axis=0, mode="nearest")
        more = count > best_count
        best_count[more], best_class[more] = count[more], value
        own_count[mask] = count[mask]
    return np.where(own_count == best_count, classes, best_class)


def classify_volume(network: Any, volume: np.ndarray, pad_multiple: int, slice_axis: int = 2,
                    batch_size: int = DEFAULT_BATCH_SIZE,
                    on_batch: Callable[[int], None] | None = None, tta: bool = False,
                    largest_component: bool = False, fill_holes: bool = False,
                    slice_vote: int = 1) -> np.ndarray:
    """Class index per voxel (uint8, the volume's shape), slices taken along `slice_axis`; the
    refinements in this order: the vote along the arm, the largest component, the hole filling."""
    if volume.ndim != 3:
        raise ValueError(f"expected a 3-D scan, got shape {volume.shape}")
    if slice_axis not in (0, 1, 2):
        raise ValueError(f"slice_axis must be 0, 1 or 2, got {slice_axis}")
    slices = np.moveaxis(volume, slice_axis, 0)
    classes = vote_along_slices(classify_slices(network, slices, pad_multiple, batch_size, on_batch, tta),
                                slice_vote)
    if largest_component:
        classes = keep_largest_components(classes, int(network.outputs[0].shape[-1])
                                          if getattr(network, "outputs", None) else int(classes.max()) + 1)
    if fill_holes:
        classes = fill_enclosed_background(classes)
    return np.ascontiguousarray(np.moveaxis(classes, 0, slice_axis))


def raw_value_table(label_map_json: str) -> np.ndarray:
    """Class index -> the raw value it is written as (background 0, else the class's first value)."""
    mapping = json.loads(label_map_json)
    values = [0 if index == 0 else int(raws[0]) for index, raws in enumerate(mapping.values())]
    return np.array(values, dtype=np.uint8 if max(values) <= 255 else np.uint16)


def as_scan(model_input: Any) -> np.ndarray:
    """The scan as a numeric numpy array, whatever container MLflow handed over."""
    if hasattr(model_input, "to_numpy"):  # a DataFrame (CSV input): one 2-D slice
        model_input = model_input.to_numpy()
    if isinstance(model_input, dict) and len(model_input) == 1:  # {"image": ...}
        model_input = next(iter(model_input.values()))
    array = np.asarray(model_input)
    if array.dtype == object:
        try:
            array = array.astype(np.float32)
        except (TypeError, ValueError) as error:
            raise ValueError("the scan must be an array of numbers") from error
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"the scan must hold numbers, got dtype {array.dtype}")
    if array.ndim not in (2, 3) or 0 in array.shape:
        raise ValueError(f"expected a 3-D scan or a 2-D slice, got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        # Inside the network one NaN voxel makes its whole slice NaN, and the slice background.
        raise ValueError(f"the scan holds {int((~np.isfinite(array)).sum())} NaN or infinite value(s)")
    return array


class ArmsegUnet(PythonModel):
    """The U-Net with what inference needs: pad multiple, slice axis and label map."""

    def load_context(self, context: Any) -> None:
        import keras

        with open(context.artifacts[SETTINGS_ARTIFACT], encoding="utf-8") as stream:
            config = json.load(stream)
        self.network = keras.saving.load_model(context.artifacts[NETWORK_ARTIFACT], compile=False)
        self.pad_multiple = int(config["pad_multiple"])
        self.slice_axis = int(config.get("slice_axis", 2))
        self.raw_values = raw_value_table(config["label_map"])

    def predict(self, context: Any, model_input: np.ndarray,
                params: dict[str, Any] | None = None) -> np.ndarray:
        # np.ndarray is a hint MLflow validates nothing by: as_scan checks (and takes lists, DataFrames).
        scan = as_scan(model_input)
        params = params or {}
        axis = int(params.get("slice_axis", self.slice_axis))
        tta = bool(params.get("tta", DEFAULT_TTA))
        fill_holes = bool(params.get("fill_holes", DEFAULT_FILL_HOLES))
        if scan.ndim == 2:
            classes = classify_slices(self.network, scan[np.newaxis], self.pad_multiple, tta=tta)
            classes = (fill_enclosed_background(classes) if fill_holes else classes)[0]
        else:
            classes = classify_volume(self.network, scan, self.pad_multiple, axis, tta=tta,
                                      largest_component=bool(params.get("largest_component",
                                                                        DEFAULT_LARGEST_COMPONENT)),
                                      fill_holes=fill_holes,
                                      slice_vote=int(params.get("slice_vote", DEFAULT_SLICE_VOTE)))
        return self.raw_values[classes]


set_model(ArmsegUnet())
