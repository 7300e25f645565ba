"""The `evaluate` stage: one MLflow run per (model, scan), children of one parent `evaluate` run.

Each child carries the tags the table pivots on (`armseg.model`, `armseg.scan`, ...), the
chosen metrics and an overlay picture. Re-evaluating logs new runs and keeps the old ones
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

from armseg.errors import ArmsegError
from armseg.evaluate.metrics import METRICS, segmentation_metrics
from armseg.evaluate.overlay import overlay_figure
from armseg.evaluate.pairs import Evaluation, find_evaluations
from armseg.io.images import Image
from armseg.io.labels import DEFAULT_LABEL_MAP, LabelMap
from armseg.io.pairs import read_labelled_scan, read_on_grid
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


def check_metrics(metrics: Sequence[str] | None) -> list[str]:
    """The chosen metrics in the canonical order; an unknown one lists the valid names."""
    if not metrics:
        return list(METRICS)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ArmsegError(f"--metrics: unknown {', '.join(unknown)} (valid: {', '.join(METRICS)})")
    return [m for m in METRICS if m in metrics]


def evaluate_subjects(
    data_root: Path | str,
    subjects: list[str] | None = None,
    models: list[str] | None = None,
    metrics: list[str] | None = None,
    label_map: LabelMap = DEFAULT_LABEL_MAP,
) -> pd.DataFrame:
    """Score every (model, labelled scan) prediction; one row per pair, one child run per row."""
    wanted = check_metrics(metrics)
    params = {"subjects": subjects or "all", "models": models or "all", "metrics": metrics or "all",
              "data_root": str(data_root)}
    with stage_run("evaluate", params=params, tags={DATA_ROOT_TAG: str(data_root)},
                   run_name=f"evaluate-{'-'.join(subjects) if subjects else 'all'}"):
        folders = [predictions_folder_name(spec) for spec in models] if models else None
        evaluations = find_evaluations(data_root, subjects, folders)
        rows = []
        # Scan by scan: the ground truth is read once for all the models that predicted it.
        for _, same_scan in groupby(evaluations, key=lambda e: (e.subject, e.scan.folder)):
            same_scan = list(same_scan)
            volume, reference = read_labelled_scan(same_scan[0].scan, label_map)
            for evaluation in same_scan:
                rows.append(_evaluate_one(evaluation, volume, reference, label_map, wanted, data_root))
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


def _evaluate_one(evaluation: Evaluation, volume: Image, reference: np.ndarray, label_map: LabelMap,
                  wanted: list[str], data_root: Path | str) -> dict[str, object]:
    prediction = label_map.encode(np.asarray(read_on_grid(evaluation.prediction, volume, "its scan").array),
                                  evaluation.prediction)
    metrics = segmentation_metrics(reference, prediction, label_map.classes, volume.spacing, wanted)
    tags = {MODEL_TAG: evaluation.model, SUBJECT_TAG: evaluation.subject,
            TRIAL_TAG: evaluation.scan.trial_id, SCAN_TAG: evaluation.key, DATA_ROOT_TAG: str(data_root)}
    params = {"model": evaluation.model, "subject": evaluation.subject, "trial": evaluation.scan.trial,
              "prediction": str(evaluation.prediction), "reference": str(evaluation.scan.segmentation)}
    with stage_run("evaluate", params=params, tags=tags, run_name=f"{evaluation.model} {evaluation.key}",
                   announce=False) as run:
        log_scored_scan(evaluation)
        mlflow.log_metrics(metrics)
        figure = overlay_figure(np.asarray(volume.array), reference, prediction, label_map.classes,
                                title=f"{evaluation.model} on {evaluation.key}")
        mlflow.log_figure(figure, "overlay.png")
    shown = ", ".join(f"{k}={v:.3f}" for k, v in list(metrics.items())[:2])
    print(f"[armseg evaluate] {evaluation.model} {evaluation.key}: {shown} (run {run.info.run_id})")
    return {"model": evaluation.model, "subject": evaluation.subject, "trial": evaluation.scan.trial_id,
            "scan": evaluation.key, "prediction": str(evaluation.prediction), "run_id": run.info.run_id,
            **metrics}
