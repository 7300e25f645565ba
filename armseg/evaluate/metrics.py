"""Segmentation metrics per structure, all overlap scores from one confusion matrix (nnU-Net style).

Definitions (c = humerus or biceps; TP/FP/FN counted over every voxel of the scan):
- `iou_c` = TP / (TP + FP + FN); `dice_c` = 2TP / (2TP + FP + FN);
- `percent_c` = 100 TP / (TP + FN): the share of the structure's reference voxels labelled c;
- `mean_iou` = mean of `iou_humerus` and `iou_biceps` (OpenArm's accuracy), over those defined;
- `total_percent` = 100 x (voxels whose predicted class equals the reference class) / all voxels,
  OpenArm's "total percentage of correctly identified pixels" (background counts too);
- `hd95_c` = symmetric 95th-percentile Hausdorff distance between the two surfaces in mm (voxel
  spacing from the image affine): the larger of the two directed 95th percentiles (as MONAI).
Edge cases: a structure absent from both reference and prediction gives NaN (nothing to score,
not a fake 1.0); present in only one, IoU and Dice are 0, `percent_c` is 0 when the prediction
misses it and NaN when only the prediction has it (no reference voxels to count), and `hd95_c`
is the scan's diagonal in mm, the largest distance inside it: a finite worst value (MLflow
would store infinity as 1.8e308).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from armseg.tracking.contract import EVALUATE_METRICS as METRICS
from armseg.tracking.contract import STRUCTURES


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
    """iou/dice/percent per foreground class, `mean_iou` and `total_percent` from the counts."""
    tp, fp, fn = tp_fp_fn(counts)
    scores = {"iou": _ratio(tp, tp + fp + fn), "dice": _ratio(2 * tp, 2 * tp + fp + fn),
              "percent": 100.0 * _ratio(tp, tp + fn)}
    metrics = {f"{kind}_{name}": float(values[index])
               for kind, values in scores.items() for index, name in enumerate(classes) if index > 0}
    scored = [name for name in STRUCTURES if name in classes] or list(classes[1:])
    defined = [metrics[f"iou_{name}"] for name in scored if not np.isnan(metrics[f"iou_{name}"])]
    metrics["mean_iou"] = float(np.mean(defined)) if defined else float("nan")
    metrics["total_percent"] = float(100.0 * _ratio(tp.sum(), counts.sum()))
    return metrics


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
    wanted: Sequence[str] = METRICS,
) -> dict[str, float]:
    """The `wanted` metrics of a predicted class map against the reference (both class indices).

    hd95 is only computed when asked for: it is the one metric that costs more than a count.
    """
    counts = confusion_matrix(reference, prediction, len(classes))
    metrics = overlap_metrics(counts, classes)
    for index, name in enumerate(classes):
        key = f"hd95_{name}"
        if index > 0 and key in wanted:
            metrics[key] = hd95(reference == index, prediction == index, spacing)
    return {key: metrics[key] for key in dict.fromkeys([*METRICS, *metrics]) if key in wanted}
