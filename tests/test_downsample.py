"""`downsample`: the U-Net at a fraction of the scan's resolution, everything outside it at the scan's."""

from __future__ import annotations

from collections.abc import Callable

import keras
import nibabel as nib
import numpy as np
import pytest

from armseg.errors import ParameterError
from armseg.model.pyfunc import classify_slices
from armseg.model.registry import load_unet
from armseg.model.unet import _bilinear_upsampling, build_unet, pad_multiple
from armseg.train.config import TrainConfig


def test_downsample_outside_its_choices_is_refused_by_name() -> None:
    for value in (0, 3, 8):
        with pytest.raises(ParameterError, match="--downsample"):
            TrainConfig(group="g", downsample=value)


def test_the_pad_multiple_grows_with_the_factor() -> None:
    assert [pad_multiple(3, f) for f in (1, 2, 4)] == [8, 16, 32]


def test_a_downsampled_unet_answers_every_pixel_of_the_slice() -> None:
    network = build_unet(depth=2, base_filters=4, downsample=2)
    probabilities = network.predict(np.random.default_rng(0).random((2, 48, 64, 1), np.float32), verbose=0)
    assert probabilities.shape == (2, 48, 64, 3)
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-5)
    # The scores are interpolated, not repeated: neighbouring full-resolution pixels differ within a block.
    assert np.abs(np.diff(probabilities[0, :, :, 1], axis=1)[:, 0::2]).max() > 0
    # Its convolutions see a quarter of the pixels: the first one's input is half the size each way.
    assert network.get_layer("downsample").compute_output_shape((1, 48, 64, 1))[1:3] == (24, 32)


@pytest.mark.parametrize("factor", [2, 4])
def test_the_upsampling_is_the_bilinear_resize_inside_the_border(factor: int) -> None:
    scores = np.random.default_rng(factor).normal(size=(2, 8, 12, 3)).astype(np.float32)
    found = np.asarray(_bilinear_upsampling(3, factor)(scores))
    expected = np.asarray(keras.ops.image.resize(scores, (8 * factor, 12 * factor), interpolation="bilinear"))
    edge = factor // 2
    inside = (slice(None), slice(edge, -edge), slice(edge, -edge))
    np.testing.assert_allclose(found[inside], expected[inside], atol=1e-5)
    # On the border every class's score is scaled alike, so the class chosen there is the resize's too.
    np.testing.assert_array_equal(found.argmax(-1), expected.argmax(-1))


def test_slices_of_one_size_after_another_come_back_at_their_own_sizes() -> None:
    """Predict meets every scan's size in turn through one compiled classifier (with the mirror)."""
    network = build_unet(depth=2, base_filters=4, downsample=2)
    rng = np.random.default_rng(1)
    for shape in ((3, 45, 61), (2, 45, 61), (3, 56, 61), (3, 70, 100)):
        stack = rng.integers(0, 255, shape, dtype=np.uint8)
        classes = classify_slices(network, stack, pad_multiple(2, 2), tta=True)
        assert classes.shape == stack.shape and classes.dtype == np.uint8


@pytest.mark.slow
def test_train_downsampled_logs_it_and_predict_writes_the_scans_grid(train_and_predict: Callable) -> None:
    trained = train_and_predict("--downsample", "2")
    assert trained.run.data.params["downsample"] == "2"
    network, info = load_unet("models:/armseg-unet/1")
    assert info.pad_multiple == 8 and network.get_layer("upsample") is not None
    assert trained.predictions and nib.load(trained.predictions[0]).shape[:3] == trained.scan.shape[:3]


def test_a_run_logged_before_downsample_resumes_at_full_resolution() -> None:
    from armseg.train.run import logged_config

    old, _ = logged_config({"group": "g", "epochs": "4"})
    new, _ = logged_config({"group": "g", "downsample": "2"})
    assert (old.downsample, new.downsample) == (1, 2)
