"""Segmentation metrics: OpenArm's table metrics on raw values, and armseg's per structure.

OpenArm's (generate_accuracy_table.py), by its names and on its scale (fractions 0-1), on the raw
label values of prediction P and reference R, both rounded (np.rint) and not mapped in any way:
- `total_percent` = voxels where P == R / all voxels (every tissue and background counts);
- `humerus_iou` / `bicep_iou` = |P=v and R=v| / |P=v or R=v| for v = 7 / 52;
- `humerus_percent` / `bicep_percent` = |P=v and R=v| / |R=v| (recall);
- `mean_iou` = (humerus_iou + bicep_iou) / 2.
A 0/0 is NaN, as in OpenArm: a structure absent from both gives NaN IoU and NaN percent (and so a
NaN `mean_iou`); absent only from R, its percent is NaN (nothing to find) and its IoU 0.

armseg's, on the classes of the model's label map (the reference read through the same map), all
overlap scores from one confusion matrix (nnU-Net style); TP/FP/FN over every voxel of the scan:
- `class_agreement_percent` = 100 x voxels whose class equals the reference's class / all voxels;
- per structure c of the map: `iou_c` = TP / (TP + FP + FN); `dice_c` = 2TP / (2TP + FP + FN);
  `percent_c` = 100 TP / (TP + FN), the share (in %) of the structure's reference voxels found;
- `hd95_c` = symmetric 95th-percentile Hausdorff distance between the two surfaces in mm (voxel
  spacing from the image affine): the larger of the two directed 95th percentiles (as MONAI).
Edge cases: a structure absent from both gives NaN (nothing to score, not a fake 1.0); present
in only one, IoU and Dice are 0, `percent_c` is 0 when the prediction misses it and NaN when only
the prediction has it, and `hd95_c` is the scan's diagonal in mm, the largest distance inside
it: a finite worst value (MLflow would store infinity as 1.8e308).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from armseg.errors import ArmsegError
from armseg.io.labels import BICEPS_RAW, HUMERUS_RAW
from armseg.tracking.contract import (
    CLASS_AGREEMENT_METRIC,
    EVALUATE_METRIC_PATTERNS,
    OPENARM_METRICS,
    STRUCTURE_KINDS,
    is_evaluate_metric,
    structure_metric,
)
from armseg.tracking.contract import EVALUATE_METRICS as METRICS

# OpenArm's metric names for its two structures (its spelling: `bicep`).
OPENARM_STRUCTURES = {"humerus": HUMERUS_RAW, "bicep": BICEPS_RAW}


def confusion_matrix(reference: np.ndarray, prediction: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[r, p] = voxels of reference class r predicted as p (one bincount, no per-class loops)."""
    if reference.shape != prediction.shape:
        raise ValueError(f"reference {reference.shape} and prediction {prediction.shape} differ in shape")
    flat = reference.astype(np.int64).ravel() * num_classes + prediction.astype(np.int64).ravel()
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def tp_fp_fn(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class true positives, false positives and false negatives from the confusion matrix."""
    tp = np.diag(counts)
    return tp, counts.sum(axis=0) - tp, counts.sum(axis=1) - tp


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator with NaN where the denominator is 0 (nothing to score)."""
    numerator = numerator.astype(float)
    denominator = denominator.astype(float)
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def overlap_metrics(counts: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """`class_agreement_percent` and iou/dice/percent per foreground class, from the counts."""
    tp, fp, fn = tp_fp_fn(counts)
    scores = {"iou": _ratio(tp, tp + fp + fn), "dice": _ratio(2 * tp, 2 * tp + fp + fn),
              "percent": 100.0 * _ratio(tp, tp + fn)}
    metrics = {CLASS_AGREEMENT_METRIC: float(100.0 * _ratio(tp.sum(), counts.sum()))}
    metrics.update({structure_metric(kind, name): float(values[index])
                    for kind, values in scores.items() for index, name in enumerate(classes) if index > 0})
    return metrics


def metric_names(classes: Sequence[str]) -> list[str]:
    """Every evaluate metric for a model with these classes, in the order they are reported."""
    return [*OPENARM_METRICS, CLASS_AGREEMENT_METRIC,
            *(structure_metric(kind, name) for kind in STRUCTURE_KINDS for name in classes[1:])]


def rounded(raw: np.ndarray) -> np.ndarray:
    """OpenArm's np.rint of a label array (a no-op copy-free pass for integer arrays)."""
    return raw if np.issubdtype(raw.dtype, np.integer) else np.rint(raw)


def openarm_metrics(reference: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    """OpenArm's six table metrics on raw label values, as generate_accuracy_table.py computed them."""
    if reference.shape != prediction.shape:
        raise ValueError(f"reference {reference.shape} and prediction {prediction.shape} differ in shape")
    reference, prediction = rounded(reference), rounded(prediction)
    metrics = {"total_percent": float(np.count_nonzero(reference == prediction) / reference.size)}
    for name, value in OPENARM_STRUCTURES.items():
        truth, guess = reference == value, prediction == value
        both = np.count_nonzero(truth & guess)
        union = np.count_nonzero(truth | guess)
        found = np.count_nonzero(truth)
        metrics[f"{name}_iou"] = both / union if union else float("nan")
        metrics[f"{name}_percent"] = both / found if found else float("nan")
    metrics["mean_iou"] = (metrics["humerus_iou"] + metrics["bicep_iou"]) / 2  # NaN if either is
    return {name: float(metrics[name]) for name in OPENARM_METRICS}


def surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of the mask with a face-neighbour outside it (the image border counts as outside)."""
    return mask & ~ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(mask.ndim, 1))


def hd95(reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float],
         percentile: float = 95.0) -> float:
    """Symmetric percentile Hausdorff distance (mm) between the surfaces of two boolean masks.

    Distances come from Euclidean distance transforms with `sampling=spacing`, computed only
    in the bounding box of both masks (plus a margin), which holds every surface voxel.
    """
    has_reference, has_prediction = bool(reference.any()), bool(prediction.any())
    if not has_reference and not has_prediction:
        return float("nan")
    if not has_reference or not has_prediction:
        return diagonal_mm(reference.shape, spacing)
    box = _bounding_box(reference | prediction)
    reference_surface = surface(np.pad(reference[box], 1))
    prediction_surface = surface(np.pad(prediction[box], 1))
    to_reference = ndimage.distance_transform_edt(~reference_surface, sampling=spacing)
    to_prediction = ndimage.distance_transform_edt(~prediction_surface, sampling=spacing)
    return float(max(np.percentile(to_reference[prediction_surface], percentile),
                     np.percentile(to_prediction[reference_surface], percentile)))


def diagonal_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """The largest distance between two voxel centres of the scan: hd95's worst value."""
    return float(np.linalg.norm((np.asarray(shape) - 1) * np.asarray(spacing, dtype=float)))


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    box = []
    for axis in range(mask.ndim):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(int(present[0]), int(present[-1]) + 1))
    return tuple(box)


def segmentation_metrics(
    reference: np.ndarray,
    prediction: np.ndarray,
    classes: Sequence[str],
    spacing: Sequence[float],
    wanted: Sequence[str] | None = None,
) -> dict[str, float]:
    """armseg's metrics of a predicted class map against the reference (both class indices).

    `wanted` (default: all of them) may name structures the map lacks; those are left out.
    hd95 is only computed when asked for: it is the one metric that costs more than a count.
    """
    names = [n for n in metric_names(classes) if n not in OPENARM_METRICS and (wanted is None or n in wanted)]
    counts = confusion_matrix(reference, prediction, len(classes))
    metrics = overlap_metrics(counts, classes)
    for index, name in enumerate(classes):
        key = structure_metric("hd95", name)
        if index > 0 and key in names:
            metrics[key] = hd95(reference == index, prediction == index, spacing)
    return {key: metrics[key] for key in names}


def scan_metrics(
    reference_raw: np.ndarray,
    prediction_raw: np.ndarray,
    reference: np.ndarray,
    prediction: np.ndarray,
    classes: Sequence[str],
    spacing: Sequence[float],
    wanted: Sequence[str] | None = None,
) -> dict[str, float]:
    """Every wanted metric of one (model, scan): OpenArm's on the raw arrays, armseg's on the classes."""
    metrics: dict[str, float] = {}
    if wanted is None or any(name in OPENARM_METRICS for name in wanted):
        metrics.update(openarm_metrics(reference_raw, prediction_raw))
    metrics.update(segmentation_metrics(reference, prediction, classes, spacing, wanted))
    return {name: metrics[name] for name in metric_names(classes)
            if name in metrics and (wanted is None or name in wanted)}


def check_metric_names(names: Sequence[str] | None, flag: str = "--metrics") -> list[str] | None:
    """The chosen names (None = all); one that no map could have names the valid forms."""
    if not names:
        return None
    unknown = [name for name in names if not is_evaluate_metric(name)]
    if unknown:
        raise ArmsegError(f"{flag}: unknown {', '.join(unknown)} (valid: {', '.join(OPENARM_METRICS)}, "
                          f"{CLASS_AGREEMENT_METRIC}, and per structure of the model's map "
                          f"{', '.join(EVALUATE_METRIC_PATTERNS)}, e.g. {', '.join(METRICS[7:9])})")
    return list(dict.fromkeys(names))
