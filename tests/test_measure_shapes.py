"""The measures of `armseg measure` against values computed by hand or by an independent
(slow, obvious) computation: boxes and ellipses with known spacing, absent structures, errors
against a reference, Bland-Altman limits, trial conditions and metric names."""

from __future__ import annotations

import math

import numpy as np
import pytest

from armseg.errors import ArmsegError
from armseg.measure.agreement import bland_altman, structure_errors
from armseg.measure.conditions import Condition, load_order, trial_condition
from armseg.measure.names import (
    AREA_MAX,
    AREA_MEAN,
    AREA_RMSE,
    CENTROID_DEPTH,
    LENGTH,
    MEASURES,
    RATIO,
    THICKNESS,
    THICKNESS_ERROR,
    VOLUME,
    VOLUME_ERROR,
    WIDTH,
    agreement_metric,
    is_measure_metric,
    measure_of,
)
from armseg.measure.shapes import ScanAxes, measure_mask, measure_structures
from armseg.measure.sources import choose_label_map, choose_structures

SPACING = (0.5, 0.25, 2.0)  # depth, width, along the arm (mm)


def box(shape=(10, 12, 8), rows=(2, 6), cols=(3, 9), slices=(1, 6)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[rows[0]:rows[1], cols[0]:cols[1], slices[0]:slices[1]] = True
    return mask


def test_box_measures_match_hand_computed_values() -> None:
    # 4 rows x 6 columns x 5 slices of 0.5 x 0.25 x 2 mm voxels
    found = measure_mask(box(), SPACING)
    assert found.voxels == 4 * 6 * 5
    assert found.summary == pytest.approx({
        VOLUME: 120 * 0.25, AREA_MAX: 24 * 0.125, AREA_MEAN: 3.0, THICKNESS: 4 * 0.5, WIDTH: 6 * 0.25,
        RATIO: 2.0 / 1.5, CENTROID_DEPTH: (3.5 + 0.5) * 0.5, LENGTH: 5 * 2.0})
    assert list(found.summary) == list(MEASURES)
    np.testing.assert_allclose(found.profile.area_mm2, [0, 3, 3, 3, 3, 3, 0, 0])
    np.testing.assert_allclose(found.profile.position_mm, np.arange(8) * 2.0)
    np.testing.assert_allclose(found.profile.thickness_mm, [np.nan, 2, 2, 2, 2, 2, np.nan, np.nan])
    np.testing.assert_allclose(found.profile.width_mm, [np.nan, 1.5, 1.5, 1.5, 1.5, 1.5, np.nan, np.nan])


def ellipses(shape=(40, 50, 9)) -> np.ndarray:
    """A muscle-like structure: an ellipse per slice whose axes swell then shrink along the arm."""
    rows, cols, slices = shape
    z, x = np.mgrid[0:rows, 0:cols]
    mask = np.zeros(shape, dtype=bool)
    for k in range(slices):
        a, b = 8 + 6 * math.sin(math.pi * k / (slices - 1)), 4 + 5 * math.sin(math.pi * k / (slices - 1))
        mask[..., k] = ((x - 24.3) / a) ** 2 + ((z - 15.6 - k / 3) / b) ** 2 < 1
    return mask


def slow_measures(mask: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, float]:
    """The obvious way, slice by slice, with np.nonzero: an independent check of the vectorised code."""
    dz, dx, ds = spacing
    areas, extents = [], []
    for k in range(mask.shape[2]):
        rows, cols = np.nonzero(mask[..., k])
        areas.append(rows.size * dz * dx)
        extents.append(((rows.max() - rows.min() + 1) * dz, (cols.max() - cols.min() + 1) * dx)
                       if rows.size else (math.nan, math.nan))
    peak = int(np.argmax(areas))
    held = [k for k, area in enumerate(areas) if area > 0]
    voxels = np.argwhere(mask)
    return {VOLUME: len(voxels) * dz * dx * ds, AREA_MAX: areas[peak],
            AREA_MEAN: sum(areas) / len(held), THICKNESS: extents[peak][0], WIDTH: extents[peak][1],
            RATIO: extents[peak][0] / extents[peak][1], CENTROID_DEPTH: (voxels[:, 0].mean() + 0.5) * dz,
            LENGTH: (held[-1] - held[0] + 1) * ds}


def test_ellipses_agree_with_a_slice_by_slice_computation() -> None:
    mask = ellipses()
    spacing = (0.3, 0.2, 1.5)
    found = measure_mask(mask, spacing)
    assert found.summary == pytest.approx(slow_measures(mask, spacing))
    np.testing.assert_allclose(found.profile.area_mm2, mask.sum(axis=(0, 1)) * 0.3 * 0.2)
    assert int(np.argmax(found.profile.area_mm2)) == 4  # the belly is the largest cross-section


def test_length_runs_from_first_to_last_slice_and_mean_area_skips_empty_slices() -> None:
    mask = np.zeros((6, 6, 10), dtype=bool)
    mask[1:3, 1:4, 2] = True  # 6 pixels
    mask[1:2, 1:3, 6] = True  # 2 pixels
    found = measure_mask(mask, (1.0, 1.0, 0.5))
    assert found.summary[LENGTH] == (6 - 2 + 1) * 0.5
    assert found.summary[AREA_MEAN] == (6 + 2) / 2
    assert found.summary[THICKNESS] == 2 and found.summary[WIDTH] == 3  # of the largest slice (2)


def test_ties_take_the_first_largest_cross_section() -> None:
    mask = np.zeros((8, 8, 3), dtype=bool)
    mask[0:4, 0:1, 0] = True  # 4 pixels, 4 deep
    mask[0:1, 0:4, 2] = True  # 4 pixels, 1 deep
    assert measure_mask(mask, (1.0, 1.0, 1.0)).summary[THICKNESS] == 4


def test_an_absent_structure_gives_nan_never_zero() -> None:
    found = measure_mask(np.zeros((5, 6, 4), dtype=bool), SPACING)
    assert found.voxels == 0 and not found.present
    assert all(math.isnan(value) for value in found.summary.values())
    assert list(found.summary) == list(MEASURES)
    np.testing.assert_array_equal(found.profile.area_mm2, np.zeros(4))
    assert np.isnan(found.profile.thickness_mm).all()


def test_other_axis_orders_give_the_same_measures() -> None:
    mask = ellipses((30, 40, 7))
    expected = measure_mask(mask, (0.3, 0.2, 1.5)).summary
    # slices along axis 0, depth along axis 2: (along, width, depth)
    moved = np.transpose(mask, (2, 1, 0))
    found = measure_mask(moved, (1.5, 0.2, 0.3), ScanAxes(depth=2, along=0)).summary
    assert found == pytest.approx(expected)
    with pytest.raises(ArmsegError, match="--depth-axis and --slice-axis must differ"):
        ScanAxes(depth=2, along=2)
    with pytest.raises(ArmsegError, match="--slice-axis must be 0, 1 or 2"):
        ScanAxes(along=3)


def test_measure_structures_reads_class_indices() -> None:
    classes = np.zeros((10, 12, 8), dtype=np.uint8)
    classes[box()] = 2
    classes[0, 0, 0] = 1
    found = measure_structures(classes, {"humerus": 1, "biceps": 2}, SPACING)
    assert found["biceps"].summary[VOLUME] == pytest.approx(30.0)
    assert found["humerus"].voxels == 1 and found["humerus"].summary[LENGTH] == 2.0


def test_errors_against_the_truth() -> None:
    truth = measure_mask(box(), SPACING)  # 24 pixels per slice over slices 1-5, 4 rows deep
    model = measure_mask(box(rows=(2, 5), slices=(2, 7)), SPACING)  # 18 pixels over slices 2-6
    errors = structure_errors(truth, model)
    assert errors[VOLUME_ERROR] == pytest.approx(100 * (90 - 120) / 120)
    # union of slices 1..6: truth areas 3,3,3,3,3,0 and model 0,2.25,2.25,2.25,2.25,2.25
    differences = np.array([-3, -0.75, -0.75, -0.75, -0.75, 2.25])
    assert errors[AREA_RMSE] == pytest.approx(np.sqrt(np.mean(differences**2)))
    assert errors[THICKNESS_ERROR] == pytest.approx(3 * 0.5 - 4 * 0.5)


def test_errors_when_a_structure_is_missing() -> None:
    present = measure_mask(box(), SPACING)
    absent = measure_mask(np.zeros((10, 12, 8), dtype=bool), SPACING)
    missed = structure_errors(present, absent)
    assert missed[VOLUME_ERROR] == -100.0
    assert missed[AREA_RMSE] == pytest.approx(3.0)  # all of the truth's area, on its 5 slices
    assert math.isnan(missed[THICKNESS_ERROR])
    invented = structure_errors(absent, present)
    assert math.isnan(invented[VOLUME_ERROR]) and invented[AREA_RMSE] == pytest.approx(3.0)
    assert all(math.isnan(value) for value in structure_errors(absent, absent).values())


def test_bland_altman_bias_and_limits() -> None:
    truth = [10.0, 20.0, 30.0, 40.0, math.nan]
    model = [12.0, 19.0, 33.0, 41.0, 50.0]  # the NaN pair is left out
    limits = bland_altman(truth, model)
    differences = np.array([2.0, -1.0, 3.0, 1.0])
    sd = math.sqrt(((differences - 1.25) ** 2).sum() / 3)
    assert (limits.n, limits.bias, limits.sd) == (4, pytest.approx(1.25), pytest.approx(sd))
    assert (limits.lower, limits.upper) == (pytest.approx(1.25 - 1.96 * sd), pytest.approx(1.25 + 1.96 * sd))
    one = bland_altman([1.0], [2.0])
    assert one.n == 1 and one.bias == 1.0 and math.isnan(one.lower) and math.isnan(one.upper)
    assert math.isnan(bland_altman([], []).bias)


@pytest.mark.parametrize(("name", "expected"), [
    ("trial6_30_fs", Condition(30.0, "fs")), ("trial10_30_p5", Condition(30.0, "p5")),
    ("trial1_0_fs", Condition(0.0, "fs")), ("trial16_90_fs_rot10", Condition(90.0, "fs")),
    ("Trial7_30_GC", Condition(30.0, "gc")), ("trial1_pred", None), ("trial3", None),
    ("trial6_thirty_fs", None), ("trial6_30_fs_extra", None),
])
def test_trial_names_carry_the_condition(name: str, expected: Condition | None) -> None:
    assert trial_condition(name) == expected


def test_condition_text_and_load_order() -> None:
    assert trial_condition("trial6_30_fs").angle_text == "30"
    assert trial_condition("trial6_22.5_fs").angle_text == "22.5"
    loads = ["p5", "zz", "gc", "p1", "fs", "p3"]
    assert sorted(loads, key=load_order) == ["fs", "gc", "p1", "p3", "p5", "zz"]


def test_metric_names() -> None:
    assert is_measure_metric("volume_error_biceps") and is_measure_metric("area_max_mm2_raw53")
    assert measure_of("thickness_error_mm_humerus") == "thickness_error_mm"
    assert measure_of("thickness_mm_biceps") == "thickness_mm"
    assert not any(map(is_measure_metric, ["volume_error", "iou_biceps", "mean_iou", "volume_biceps"]))
    assert agreement_metric("group_1_1", "bias", VOLUME, "biceps") == "group_1_1/bias_volume_mm3_biceps"


def test_label_presets_and_structures() -> None:
    default = choose_label_map()
    assert choose_structures(default) == {"humerus": 1, "biceps": 2}
    assert choose_structures(default, ["biceps"]) == {"biceps": 2}
    everything = choose_label_map("openarm-all")
    assert everything.classes[:3] == ("background", "humerus", "raw8")
    assert everything.raw_values["humerus"] == (7, 6, 1) and "biceps" in everything.classes
    custom = choose_label_map(None, '{"background": [0], "muscle": [52, 53]}')
    assert choose_structures(custom) == {"muscle": 1}
    with pytest.raises(ArmsegError, match=r"--structures: unknown tendon \(the label map has humerus, bic"):
        choose_structures(default, ["tendon"])
    with pytest.raises(ArmsegError, match="--labels nonsense: unknown preset"):
        choose_label_map("nonsense")
    with pytest.raises(ArmsegError, match="give one of them, not both"):
        choose_label_map("openarm", '{"background": [0]}')
