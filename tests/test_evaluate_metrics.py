"""Metrics from counts, checked against SimpleITK and brute force on known and random masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.distance import cdist

from armseg.evaluate.metrics import (
    confusion_matrix,
    diagonal_mm,
    hd95,
    metric_names,
    openarm_metrics,
    segmentation_metrics,
)

CLASSES = ("background", "humerus", "biceps")
SPACING = (0.3, 0.5, 2.0)


def labels(shape=(20, 24, 6)) -> np.ndarray:
    return np.zeros(shape, dtype=np.uint8)


def blobs(rng: np.random.Generator, shape=(18, 22, 7)) -> np.ndarray:
    """Random lumpy structures (smoothed noise thresholded), classes 0..2."""
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.normal(size=shape), sigma=2.0)
    out = np.zeros(shape, np.uint8)
    out[field > 0.05] = 1
    out[field < -0.08] = 2
    return out


def test_known_overlap_from_counts() -> None:
    reference, prediction = labels(), labels()
    reference[0:10, 0:10, 0] = 1
    prediction[5:15, 0:10, 0] = 1  # half of it shifted: TP 50, FP 50, FN 50
    reference[12:16, 12:16, 2:4] = 2
    prediction[12:16, 12:16, 2:4] = 2
    metrics = segmentation_metrics(reference, prediction, CLASSES, SPACING)
    assert list(metrics) == metric_names(CLASSES)[6:]  # armseg's; OpenArm's six need raw values
    assert metrics["iou_humerus"] == pytest.approx(1 / 3)
    assert metrics["dice_humerus"] == pytest.approx(0.5)
    assert metrics["percent_humerus"] == pytest.approx(50.0)
    assert metrics["iou_biceps"] == metrics["dice_biceps"] == 1.0
    assert metrics["class_agreement_percent"] == pytest.approx(100 * (1 - 100 / reference.size))
    assert metrics["hd95_biceps"] == 0.0
    assert metrics["hd95_humerus"] == pytest.approx(5 * SPACING[0])


def test_perfect_prediction() -> None:
    reference = blobs(np.random.default_rng(1))
    metrics = segmentation_metrics(reference, reference.copy(), CLASSES, SPACING)
    for name in ("humerus", "biceps"):
        assert metrics[f"iou_{name}"] == metrics[f"dice_{name}"] == 1.0
        assert metrics[f"percent_{name}"] == 100.0
        assert metrics[f"hd95_{name}"] == 0.0
    assert metrics["class_agreement_percent"] == 100.0


def test_structure_absent_from_both_is_nan_not_one() -> None:
    reference, prediction = labels(), labels()
    reference[2:6, 2:6, 1] = 1
    prediction[2:6, 2:7, 1] = 1
    metrics = segmentation_metrics(reference, prediction, CLASSES, SPACING)
    for kind in ("iou", "dice", "percent", "hd95"):
        assert math.isnan(metrics[f"{kind}_biceps"])
    assert metrics["iou_humerus"] == pytest.approx(16 / 20)
    empty = segmentation_metrics(labels(), labels(), CLASSES, SPACING)
    assert math.isnan(empty["iou_humerus"]) and empty["class_agreement_percent"] == 100.0


def test_structure_in_only_one_of_them() -> None:
    reference, prediction = labels(), labels()
    reference[2:6, 2:6, 1] = 1  # humerus missed entirely
    prediction[10:12, 10:12, 3] = 2  # biceps predicted where there is none
    metrics = segmentation_metrics(reference, prediction, CLASSES, SPACING)
    worst = diagonal_mm(reference.shape, SPACING)
    assert metrics["iou_humerus"] == metrics["dice_humerus"] == metrics["percent_humerus"] == 0.0
    assert metrics["iou_biceps"] == metrics["dice_biceps"] == 0.0
    assert math.isnan(metrics["percent_biceps"])  # no reference voxels to get right
    assert metrics["hd95_humerus"] == metrics["hd95_biceps"] == worst
    assert math.isfinite(worst) and worst == pytest.approx(math.hypot(19 * 0.3, 23 * 0.5, 5 * 2.0))


def test_subset_of_metrics_in_canonical_order() -> None:
    reference = blobs(np.random.default_rng(2))
    metrics = segmentation_metrics(reference, reference, CLASSES, SPACING,
                                   wanted=["hd95_biceps", "dice_humerus", "iou_tissue_8"])
    assert list(metrics) == ["dice_humerus", "hd95_biceps"]  # a structure the map lacks is left out


@pytest.mark.parametrize("seed", [3, 4])
def test_overlaps_match_simpleitk(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference, prediction = blobs(rng), blobs(rng)
    metrics = segmentation_metrics(reference, prediction, CLASSES, SPACING)
    measures = sitk.LabelOverlapMeasuresImageFilter()
    measures.Execute(sitk.GetImageFromArray(reference), sitk.GetImageFromArray(prediction))
    for index, name in ((1, "humerus"), (2, "biceps")):
        assert metrics[f"iou_{name}"] == pytest.approx(measures.GetJaccardCoefficient(index))
        assert metrics[f"dice_{name}"] == pytest.approx(measures.GetDiceCoefficient(index))
        truth = reference == index
        assert metrics[f"percent_{name}"] == pytest.approx(100 * (prediction[truth] == index).mean())
    assert metrics["class_agreement_percent"] == pytest.approx(100 * (reference == prediction).mean())
    assert confusion_matrix(reference, prediction, 3).sum() == reference.size


def brute_surface(mask: np.ndarray) -> np.ndarray:
    """Voxel coordinates of the mask with a face-neighbour outside it, by explicit shifts."""
    padded = np.pad(mask, 1)
    inner = np.ones_like(mask)
    for axis in range(3):
        for step in (-1, 1):
            inner &= np.roll(padded, step, axis=axis)[1:-1, 1:-1, 1:-1]
    return np.argwhere(mask & ~inner)


@pytest.mark.parametrize("seed", [5, 6])
def test_hd95_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference, prediction = blobs(rng) == 1, blobs(rng) == 1
    distances = cdist(brute_surface(reference) * SPACING, brute_surface(prediction) * SPACING)
    expected = max(np.percentile(distances.min(axis=1), 95), np.percentile(distances.min(axis=0), 95))
    assert hd95(reference, prediction, SPACING) == pytest.approx(expected)


def test_hausdorff_matches_simpleitk_on_boxes() -> None:
    reference = np.zeros((30, 26, 12), bool)
    prediction = np.zeros_like(reference)
    reference[4:20, 5:21, 2:10] = True
    prediction[7:23, 5:21, 2:10] = True  # shifted 3 voxels along the first axis
    itk = []
    for mask in (reference, prediction):
        image = sitk.GetImageFromArray(mask.T.astype(np.uint8))  # SimpleITK's x is our axis 0
        image.SetSpacing(SPACING)
        itk.append(image)
    hausdorff = sitk.HausdorffDistanceImageFilter()
    hausdorff.Execute(*itk)
    expected = hausdorff.GetHausdorffDistance()
    assert hd95(reference, prediction, SPACING, percentile=100) == pytest.approx(expected)
    assert hd95(reference, prediction, SPACING) == pytest.approx(3 * SPACING[0])


def test_openarms_metrics_on_raw_values_by_hand() -> None:
    """Raw values compared as they are: 6 is not 7, other tissues count in total_percent."""
    reference = np.array([0, 7, 7, 6, 52, 52, 8, 53], dtype=np.uint8).reshape(2, 2, 2)
    prediction = np.array([0, 7, 0, 7, 52, 0, 0, 53], dtype=np.float32).reshape(2, 2, 2) + 0.2
    metrics = openarm_metrics(reference, prediction)
    assert list(metrics) == ["mean_iou", "total_percent", "humerus_iou", "bicep_iou", "humerus_percent",
                             "bicep_percent"]
    assert metrics["total_percent"] == 4 / 8
    assert metrics["humerus_iou"] == 1 / 3 and metrics["humerus_percent"] == 1 / 2
    assert metrics["bicep_iou"] == 1 / 2 and metrics["bicep_percent"] == 1 / 2
    assert metrics["mean_iou"] == (1 / 3 + 1 / 2) / 2
    nothing = openarm_metrics(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))
    assert math.isnan(nothing["mean_iou"]) and math.isnan(nothing["bicep_percent"])
    assert nothing["total_percent"] == 1.0
