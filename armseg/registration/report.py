"""A registration's record in its MLflow run: per-stage metrics, the transforms, one picture."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
import SimpleITK as sitk
from mlflow.entities import Metric

from armseg.io.labels import BICEPS_RAW, HUMERUS_RAW
from armseg.registration.pipeline import Preview, RegistrationResult
from armseg.tracking.runs import log_params_flat

_BATCH = 1000  # MLflow's limit on metrics per log_batch call
_CONTOURS = {HUMERUS_RAW: "#ffd700", BICEPS_RAW: "#ff4040"}


def log_result(result: RegistrationResult) -> None:
    """Log into the active run: metrics per stage (with the metric curve), transforms, picture."""
    summary: dict[str, float] = {"seconds": result.seconds}
    for name in ("initial_metric", "final_metric"):
        if np.isfinite(getattr(result, name)):
            summary[name] = getattr(result, name)
    for stage in result.stages:
        summary[f"{stage.name}_final_metric"] = stage.final_metric
        summary[f"{stage.name}_iterations"] = float(stage.iterations)
        summary[f"{stage.name}_seconds"] = stage.seconds
    mlflow.log_metrics(summary)
    factors, sigmas = result.pyramid
    log_params_flat({"shrink_factors_used": factors, "smoothing_sigmas_used": sigmas})
    _log_histories(result)
    with tempfile.TemporaryDirectory() as folder:
        folder_path = Path(folder)
        _write_transforms(result, folder_path / "transforms")
        mlflow.log_artifacts(str(folder_path / "transforms"), "transforms")
        (folder_path / "registration.json").write_text(json.dumps(_record(result), indent=2) + "\n")
        mlflow.log_artifact(str(folder_path / "registration.json"))
        if result.preview is not None:
            picture = folder_path / "registration.png"
            draw_preview(result.preview, picture, title=f"{result.moving.name} -> {result.fixed.name}")
            mlflow.log_artifact(str(picture))


def _log_histories(result: RegistrationResult) -> None:
    """`<stage>_metric` at every optimiser iteration (step), so the UI plots convergence."""
    run_id = mlflow.active_run().info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric(f"{stage.name}_metric", value, now, step)
               for stage in result.stages for step, value in enumerate(stage.metric_history)
               if np.isfinite(value)]
    client = mlflow.MlflowClient()
    for begin in range(0, len(metrics), _BATCH):
        client.log_batch(run_id, metrics=metrics[begin:begin + _BATCH])


def _write_transforms(result: RegistrationResult, folder: Path) -> None:
    """Each stage's own transform (in the order they compose) and the whole fixed -> moving map."""
    folder.mkdir(parents=True)
    if result.manual is not None:
        sitk.WriteTransform(result.manual, str(folder / "0_manual.tfm"))
    for index, stage in enumerate(result.stages, start=1):
        sitk.WriteTransform(stage.transform, str(folder / f"{index}_{stage.name}.tfm"))
    sitk.WriteTransform(result.transform, str(folder / "fixed_to_moving.h5"))


def _record(result: RegistrationResult) -> dict[str, object]:
    return {
        "fixed": str(result.fixed), "moving": str(result.moving), "moving_seg": str(result.moving_seg),
        "out": str(result.out), "labels_written": list(result.labels),
        "metric": "Mattes mutual information, negated (lower is better)",
        "initial_metric": result.initial_metric if np.isfinite(result.initial_metric) else None,
        "final_metric": result.final_metric if np.isfinite(result.final_metric) else None,
        "seconds": result.seconds, "shrink_factors": list(result.pyramid[0]),
        "smoothing_sigmas": list(result.pyramid[1]),
        "transform_direction": "fixed point (LPS mm) -> moving point (LPS mm), as ITK; "
                               "fixed_to_moving.h5 = manual o last linear stage o bspline (the affine "
                               "stage starts from the rigid result); a point goes through bspline first",
        "stages": [{"name": s.name, "final_metric": s.final_metric, "iterations": s.iterations,
                    "seconds": s.seconds, "stop_condition": s.stop_condition} for s in result.stages],
    }


def draw_preview(preview: Preview, path: Path, title: str = "") -> Path:
    """Before | after checkerboards of fixed and moving, and the fixed scan with its new labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    aspect = preview.pixel_mm[0] / preview.pixel_mm[1]
    panels = [
        ("before: fixed / moving", _checkerboard(preview.fixed, preview.moving_before),
         preview.labels_before),
        ("after: fixed / moving", _checkerboard(preview.fixed, preview.moving_after),
         preview.labels_after),
        ("fixed with mapped labels", _normalise(preview.fixed), preview.labels_after),
    ]
    figure, axes = plt.subplots(1, 3, figsize=(13, 4.6))
    for axis, (name, picture, labels) in zip(axes, panels, strict=True):
        axis.imshow(picture, cmap="gray", vmin=0, vmax=1, aspect=aspect, interpolation="nearest")
        for value, colour in _CONTOURS.items():
            if (labels == value).any():
                axis.contour(labels == value, levels=[0.5], colors=colour, linewidths=1.0)
        axis.set_title(name)
        axis.set_axis_off()
    figure.suptitle(f"{title}   (yellow: humerus 7, red: biceps 52; middle slice)")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def _normalise(image: np.ndarray) -> np.ndarray:
    low, high = np.percentile(image, [1, 99])
    return np.clip((image - low) / max(high - low, 1e-6), 0, 1)


def _checkerboard(first: np.ndarray, second: np.ndarray, tiles: int = 8) -> np.ndarray:
    """Alternate tiles of two images: misalignment shows as broken edges at tile borders."""
    rows, cols = np.indices(first.shape)
    pick = ((rows * tiles // first.shape[0]) + (cols * tiles // first.shape[1])) % 2 == 0
    return np.where(pick, _normalise(first), _normalise(second))
