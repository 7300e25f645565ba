"""The `evaluate` stage: one MLflow run per (model, scan), children of one parent `evaluate` run.

Each child carries the tags the table pivots on (`armseg.model`, `armseg.scan`, ...), the model
that wrote the predictions (from the folder's sidecar), the chosen metrics and an overlay picture.
OpenArm's metrics are computed on the raw values of the two files; armseg's on the classes of the
model's label map (`evaluate/maps.py` says which map), the ground truth read through that same map.
The parent lists every child's cell in `cells.json` (also when it fails part-way: the children that
finished count), which is what `armseg table` reads, and a per-(model, subject) `summary.csv` for a
reader of the MLflow UI. Re-evaluating logs new runs and keeps the old ones (MLflow keeps history);
the table takes the newest finished run per (model, scan).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from armseg.evaluate.maps import FolderMaps
from armseg.evaluate.metrics import check_metric_names, rounded, scan_metrics
from armseg.evaluate.overlay import overlay_figure
from armseg.evaluate.pairs import Evaluation, find_evaluations
from armseg.io.images import Image
from armseg.io.labels import LabelMap, integer_labels
from armseg.io.pairs import read_on_grid, scan_pair
from armseg.io.tree import data_root_key
from armseg.predict.models import predictions_folder_name
from armseg.predict.sidecar import ModelRecord, read_sidecar
from armseg.tracking.cells import Cell, cell_from_run, record_text
from armseg.tracking.contract import (
    CELLS_ARTIFACT,
    CELLS_PENDING,
    CELLS_RUN_TAG,
    CELLS_TAG,
    DATA_ROOT_TAG,
    EVALUATION_CONTEXT,
    MODEL_RUN_TAG,
    MODEL_TAG,
    MODEL_URI_TAG,
    MODEL_VERSION_TAG,
    SCAN_TAG,
    SUBJECT_TAG,
    TRIAL_TAG,
)
from armseg.tracking.datasets import log_scans, scans_dataset
from armseg.tracking.runs import stage_run

_ROW_COLUMNS = ("model", "subject", "trial", "scan", "prediction", "run_id", "model_version")


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
    root = data_root_key(data_root)
    params = {"subjects": subjects or "all", "models": models or "all", "metrics": metrics or "all",
              "data_root": str(data_root), "label_map": label_map.to_json() if label_map else "per model"}
    with stage_run("evaluate", params=params, tags={DATA_ROOT_TAG: root, CELLS_TAG: CELLS_PENDING},
                   run_name=f"evaluate-{'-'.join(subjects) if subjects else 'all'}") as parent:
        cells: list[Cell] = []
        try:
            folders = [predictions_folder_name(spec) for spec in models] if models else None
            evaluations = find_evaluations(data_root, subjects, folders)
            scoring = Scoring(FolderMaps(label_map), wanted, root, parent.info.run_id)
            for evaluation in evaluations:
                scoring.predictions.setdefault(evaluation.prediction.parent, []).append(evaluation.prediction)
            rows = []
            # Scan by scan: the ground truth is read once for all the models that predicted it.
            for _, same_scan in groupby(evaluations, key=lambda e: (e.subject, e.scan.folder)):
                same_scan = list(same_scan)
                volume, truth = scan_pair(same_scan[0].scan)
                reference_raw = rounded(integer_labels(np.asarray(truth.array), truth.path))
                for evaluation in same_scan:
                    row, cell = _evaluate_one(evaluation, volume, truth, reference_raw, scoring)
                    rows.append(row)
                    cells.append(cell)
        except BaseException:
            _log_cells(cells, quietly=True)  # the children that finished still reach the table
            raise
        _log_cells(cells)
        results = pd.DataFrame.from_records(rows)
        mlflow.log_text(results.to_csv(index=False), "evaluation.csv")
        mlflow.log_text(subject_summary(results).to_csv(index=False), "summary.csv")
        mlflow.log_metric("scored", float(len(results)))
    return results


def subject_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Per (model, subject): scans scored and each metric's mean and SD, for the parent run's page."""
    groups = results.groupby(["model", "subject"], sort=False)
    summary = groups.size().rename("scans").to_frame()
    metrics = [column for column in results.columns
               if column not in _ROW_COLUMNS and pd.api.types.is_numeric_dtype(results[column])]
    for metric in metrics:
        values = groups[metric]
        summary[f"{metric}_mean"] = values.mean()
        summary[f"{metric}_sd"] = values.std()
    return summary.reset_index()


@dataclass(frozen=True)
class Scoring:
    """What every (model, scan) of one evaluate call shares."""

    maps: FolderMaps
    wanted: list[str] | None
    data_root: str
    parent_run_id: str
    predictions: dict[Path, list[Path]] = field(default_factory=dict)  # folder -> the files scored
    sidecars: dict[Path, ModelRecord | None] = field(default_factory=dict)

    def model_record(self, prediction: Path) -> ModelRecord | None:
        """The sidecar of the prediction's folder, read once per folder."""
        folder = prediction.parent
        if folder not in self.sidecars:
            self.sidecars[folder] = read_sidecar(folder)
        return self.sidecars[folder]


def _log_cells(cells: list[Cell], quietly: bool = False) -> None:
    """Write the parent's `cells.json`, then point its tag at it (the table's fast path).

    `quietly` on the way out of a failure, where the first error is the one to report; if the
    record cannot be written the tag stays `pending` and the table reads the children instead.
    """
    try:
        mlflow.log_text(record_text(cells), CELLS_ARTIFACT)
        mlflow.set_tag(CELLS_TAG, CELLS_ARTIFACT)
    except Exception:
        if not quietly:
            raise


def model_tags(record: ModelRecord | None) -> dict[str, str]:
    """The model run, version and URI of a predictions folder's sidecar (none without one)."""
    if record is None:
        return {}
    values = {MODEL_RUN_TAG: record.run_id, MODEL_VERSION_TAG: record.version,
              MODEL_URI_TAG: record.model_uri}
    return {key: value for key, value in values.items() if value}


def log_scored_scan(evaluation: Evaluation) -> None:
    """The scan scored, as the run's MLflow dataset input: named like its table column (`trial6B`),
    digested over its volume and ground truth, its trial folder as the source."""
    scan = evaluation.scan
    files = [(scan.volume, "volume"), *([(scan.segmentation, "segmentation")] if scan.segmentation else [])]
    log_scans(scans_dataset(evaluation.key, scan.folder, files), EVALUATION_CONTEXT)


def _evaluate_one(evaluation: Evaluation, volume: Image, truth: Image, reference_raw: np.ndarray,
                  scoring: Scoring) -> tuple[dict[str, object], Cell]:
    folder = evaluation.prediction.parent
    used = scoring.maps.of(folder, scoring.predictions[folder])
    label_map = used.label_map
    reference = label_map.encode(reference_raw, truth.path)
    prediction_raw = rounded(np.asarray(read_on_grid(evaluation.prediction, volume, "its scan").array))
    prediction = label_map.encode(prediction_raw, evaluation.prediction)
    metrics = scan_metrics(reference_raw, prediction_raw, reference, prediction, label_map.classes,
                           volume.spacing, scoring.wanted)
    tags = {MODEL_TAG: evaluation.model, SUBJECT_TAG: evaluation.subject,
            TRIAL_TAG: evaluation.scan.trial_id, SCAN_TAG: evaluation.key, DATA_ROOT_TAG: scoring.data_root,
            CELLS_RUN_TAG: scoring.parent_run_id, **model_tags(scoring.model_record(evaluation.prediction))}
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
    # The cell as the store now holds it (start time, values as stored), so the parent's record
    # says exactly what a search over the children would.
    cell = cell_from_run(mlflow.MlflowClient().get_run(run.info.run_id))
    shown = ", ".join(f"{k}={v:.3f}" for k, v in list(metrics.items())[:2])
    print(f"[armseg evaluate] {evaluation.model} {evaluation.key}: {shown} (map {used.describe()}; "
          f"run {run.info.run_id})")
    row = {"model": evaluation.model, "subject": evaluation.subject, "trial": evaluation.scan.trial_id,
           "scan": evaluation.key, "prediction": str(evaluation.prediction), "run_id": run.info.run_id,
           "model_version": tags.get(MODEL_VERSION_TAG, ""), **metrics}
    return row, cell
