"""2.5D context: each slice between its neighbours along the arm, the same in training and predicting."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
import mlflow
import nibabel as nib
import numpy as np
import pytest

from armseg.errors import ParameterError
from armseg.model.pyfunc import classify_volume, input_channels
from armseg.train.config import TrainConfig
from armseg.train.slices import load_group, neighbours
from armseg.train.split import block_bounds

TINY = dict(depth=2, base_filters=4, batch_size=8, keep_percent=100, precision="float32", skip_empty=False)


def test_neighbours_repeat_the_scans_end_slices() -> None:
    assert neighbours(np.array([0, 3, 9]), 10, 2).tolist() == [
        [0, 0, 0, 1, 2], [1, 2, 3, 4, 5], [7, 8, 9, 9, 9]]
    assert neighbours(np.array([4]), 10, 0).tolist() == [[4]]


def test_context_outside_its_range_is_refused_by_name() -> None:
    for value in (-1, 5):
        with pytest.raises(ParameterError, match="--context"):
            TrainConfig(group="g", context=value)


def test_blocks_of_one_scan_leave_twice_the_context_between_them() -> None:
    """A training slice's neighbours and a validation slice's neighbours never meet."""
    shares = np.array([70.0, 15.0, 15.0])
    for context in (0, 1, 3, 4):
        bounds = block_bounds(40, shares, context)
        gap = bounds["val"][0] - bounds["train"][-1] - 1
        assert gap >= max(2, 2 * context)
        assert bounds["train"][-1] + context < bounds["val"][0] - context


def test_a_group_with_context_stacks_each_slice_between_its_neighbours(tiny_tree: Path) -> None:
    plain = load_group(TrainConfig(group="group_1_1", data_root=str(tiny_tree), **TINY), 4, progress=False)
    deep = load_group(TrainConfig(group="group_1_1", data_root=str(tiny_tree), context=1, **TINY), 4,
                      progress=False)
    for name in ("train", "val"):
        flat, stacked = plain.sets[name], deep.sets[name]
        assert stacked.images.shape == (*flat.images.shape, 3) and stacked.images.dtype == flat.images.dtype
        assert stacked.channels == 3 and flat.channels == 1
        np.testing.assert_array_equal(stacked.images[..., 1], flat.images)  # the slice in the middle
        np.testing.assert_array_equal(stacked.middle(np.arange(len(stacked))), flat.images)
        np.testing.assert_array_equal(stacked.labels, flat.labels)
    # Within one scan's run of consecutive slices, channel 2 is the next slice and channel 0 the one before.
    at = 0
    for part in plain.split.parts["train"]:
        images = deep.sets["train"].images[at:at + part.indices.size]
        consecutive = np.flatnonzero(np.diff(part.indices) == 1)
        assert consecutive.size
        np.testing.assert_array_equal(images[consecutive, ..., 2], images[consecutive + 1, ..., 1])
        np.testing.assert_array_equal(images[consecutive + 1, ..., 0], images[consecutive, ..., 1])
        if part.indices[0] == 0:  # the scan's first slice: its missing neighbours are itself
            np.testing.assert_array_equal(images[0, ..., 0], images[0, ..., 1])
        at += part.indices.size


def _previous_slice_detector() -> keras.Model:
    """A stand-in network of 3 channels that calls a pixel class 1 where the slice *before* it is bright."""
    inputs = keras.Input((None, None, 3))
    bright = keras.ops.cast(inputs[..., :1] > 50, "float32")
    outputs = keras.ops.concatenate([1 - bright, bright, keras.ops.zeros_like(bright)], axis=-1)
    return keras.Model(inputs, outputs)


def test_predicting_gives_a_context_network_each_slice_between_its_neighbours() -> None:
    network = _previous_slice_detector()
    assert input_channels(network) == 3
    volume = np.zeros((6, 10, 5), np.uint8)  # (rows, cols, slices): slices along axis 2
    volume[..., 1] = 200
    volume[..., 4] = 200
    classes = classify_volume(network, volume, pad_multiple=4, slice_axis=2, batch_size=2)
    # Slice i is class 1 where slice i - 1 is bright: slices 2 and 5; slice 0's "before" is itself.
    assert classes.shape == volume.shape
    assert [int(classes[..., i].max()) for i in range(5)] == [0, 0, 1, 0, 0]
    volume[..., 0] = 200
    assert int(classify_volume(network, volume, 4, 2)[..., 0].min()) == 1


@pytest.mark.slow
def test_train_with_context_logs_it_and_predict_feeds_the_neighbours(train_and_predict: Callable) -> None:
    trained = train_and_predict("--context", "1")
    assert trained.run.data.params["context"] == "1"
    assert len(trained.predictions) == 12
    scan = trained.scan
    assert nib.load(trained.predictions[0]).shape[:3] == scan.shape[:3]
    served = mlflow.pyfunc.load_model("models:/armseg-unet/1")  # no armseg needed: the neighbours too
    labels = served.predict(scan[:, :, :5], params={"slice_vote": 1})
    assert labels.shape == scan[:, :, :5].shape
