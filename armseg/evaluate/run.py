"""The `evaluate` stage: one MLflow run per (model, scan), children of one parent `evaluate` run.

Each child carries the tags the table pivots on (`armseg.model`, `armseg.scan`, ...), the
chosen metrics and an overlay picture. OpenArm's metrics are computed on the raw values of the
two files; armseg's on the classes of the model's label map (`evaluate/maps.py` says which map),
the ground truth read through that same map. Re-evaluating logs new runs and keeps the old ones
(MLflow keeps history); `armseg table` reads the newest finished run per (model, scan).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from itertools import groupby
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from armseg.evaluate.maps import FolderMap, FolderMaps
from armseg.evaluate.metrics import check_metric_names, rounded, scan_metrics
from armseg.evaluate.overlay import overlay_figure
from armseg.evaluate.pairs import Evaluation, find_evaluations
from armseg.io.images import Image
from armseg.io.labels import LabelMap, integer_labels
from armseg.io.pairs import read_on_grid, scan_pair
from armseg.io.tree import data_root_key
from armseg.predict.models import predictions_folder_name
from armseg.tracking.contract import (
    DATA_ROOT_TAG,
    EVALUATION_CONTEXT,
    MODEL_TAG,
    SCAN_TAG,
    SUBJECT_TAG,
    TRIAL_TAG,
)
from armseg.tracking.datasets import log_scans, scans_dataset
from armseg.tracking.runs import stage_run


def check_metrics(metrics: Sequence[str] | None) -> list[str] | None:
    """The chosen metric names (None = every metric of each model's map); refused before any run."""
    return check_metric_names(metrics)


def evaluate_subjects(
    data_root: Path | str,
    subjects: list[str] | None = None,
    models: list[str] | None = None,
    metrics: list[str] | None = None,
    label_map: LabelMap | None = None,
) -> pd.DataFrame:
    """Score every (model, labelled scan) prediction; one row per pair, one child run per row.

    `label_map` (from `--labels`/`--label-map`) overrides each folder's own map for every model.
    """
    wanted = check_metrics(metrics)
    params = {"subjects": subjects or "all", "models": models or "all", "metrics": metrics or "all",
              "data_root": str(data_root), "label_map": label_map.to_json() if label_map else "per model"}
    with stage_run("evaluate", params=params, tags={DATA_ROOT_TAG: data_root_key(data_root)},
                   run_name=f"evaluate-{'-'.join(subjects) if subjects else 'all'}"):
        folders = [predictions_folder_name(spec) for spec in models] if models else None
        evaluations = find_evaluations(data_root, subjects, folders)
        maps = FolderMaps(label_map)
        by_folder: dict[Path, list[Path]] = {}
        for evaluation in evaluations:
            by_folder.setdefault(evaluation.prediction.parent, []).append(evaluation.prediction)
        rows = []
        # Scan by scan: the ground truth is read once for all the models that predicted it.
        for _, same_scan in groupby(evaluations, key=lambda e: (e.subject, e.scan.folder)):
            same_scan = list(same_scan)
            volume, truth = scan_pair(same_scan[0].scan)
            reference_raw = rounded(integer_labels(np.asarray(truth.array), truth.path))
            for evaluation in same_scan:
                folder = evaluation.prediction.parent
                used = maps.of(folder, by_folder[folder])
                reference = used.label_map.encode(reference_raw, truth.path)
                rows.append(_evaluate_one(evaluation, volume, reference_raw, reference, used, wanted,
                                          data_root))
        results = pd.DataFrame.from_records(rows)
        buffer = io.StringIO()
        results.to_csv(buffer, index=False)
        mlflow.log_text(buffer.getvalue(), "evaluation.csv")
    return results


def log_scored_scan(evaluation: Evaluation) -> None:
    """The scan scored, as the run's MLflow dataset input: named like its table column (`trial6B`),
    digested over its volume and ground truth, its trial folder as the source."""
    scan = evaluation.scan
    files = [(scan.volume, "volume"), *([(scan.segmentation, "segmentation")] if scan.segmentation else [])]
    log_scans(scans_dataset(evaluation.key, scan.folder, files), EVALUATION_CONTEXT)


def _evaluate_one(evaluation: Evaluation, volume: Image, reference_raw: np.ndarray, reference: np.ndarray,
                  used: FolderMap, wanted: list[str] | None, data_root: Path | str) -> dict[str, object]:
    label_map = used.label_map
    prediction_raw = rounded(np.asarray(read_on_grid(evaluation.prediction, volume, "its scan").array))
    prediction = label_map.encode(prediction_raw, evaluation.prediction)
    metrics = scan_metrics(reference_raw, prediction_raw, reference, prediction, label_map.classes,
                           volume.spacing, wanted)
    tags = {MODEL_TAG: evaluation.model, SUBJECT_TAG: evaluation.subject,
            TRIAL_TAG: evaluation.scan.trial_id, SCAN_TAG: evaluation.key,
            DATA_ROOT_TAG: data_root_key(data_root)}
    params = {"model": evaluation.model, "subject": evaluation.subject, "trial": evaluation.scan.trial,
              "prediction": str(evaluation.prediction), "reference": str(evaluation.scan.segmentation),
              "label_map": label_map.to_json(), "label_map_from": used.source}
    with stage_run("evaluate", params=params, tags=tags, run_name=f"{evaluation.model} {evaluation.key}",
                   announce=False) as run:
        log_scored_scan(evaluation)
        mlflow.log_metrics(metrics)
        figure = overlay_figure(np.asarray(volume.array), reference, prediction, label_map.classes,
                                title=f"{evaluation.model} on {evaluation.key}")
        mlflow.log_figure(figure, "overlay.png")
    shown = ", ".join(f"{k}={v:.3f}" for k, v in list(metrics.items())[:2])
    print(f"[armseg evaluate] {evaluation.model} {evaluation.key}: {shown} (map {used.describe()}; "
          f"run {run.info.run_id})")
    return {"model": evaluation.model, "subject": evaluation.subject, "trial": evaluation.scan.trial_id,
            "scan": evaluation.key, "prediction": str(evaluation.prediction), "run_id": run.info.run_id,
            **metrics}
