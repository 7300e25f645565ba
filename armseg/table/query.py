"""The cross-model accuracy table as a query over tracked evaluate runs (OpenArm's accuracy table).

Rows are models, columns scans (`trial6B`, ordered by subject then trial number), cells one
metric, plus the row mean. Evaluate keeps every run it ever logged, so each cell is the newest
FINISHED evaluate run of that (model, scan) that logged the metric: re-evaluating replaces a
cell, it never adds a row.
"""

from __future__ import annotations

import math

import mlflow
import pandas as pd
from mlflow.entities import Run

from armseg.errors import ArmsegError
from armseg.io.tree import natural_key
from armseg.measure.names import STAGE as MEASURE_STAGE
from armseg.measure.names import is_measure_metric, measure_metric_patterns
from armseg.tracking.contract import (
    EVALUATE_METRIC_PATTERNS,
    MODEL_TAG,
    OPENARM_METRICS,
    SCAN_TAG,
    STAGE_TAG,
    SUBJECT_TAG,
    TRIAL_TAG,
    is_evaluate_metric,
)

MEAN_COLUMN = "mean"


def check_metric(metric: str) -> str:
    if not is_evaluate_metric(metric) and not is_measure_metric(metric):
        raise ArmsegError(f"--metric {metric}: unknown metric (valid: {', '.join(OPENARM_METRICS)}, "
                          f"class_agreement_percent, {', '.join(EVALUATE_METRIC_PATTERNS)}; from `armseg "
                          f"measure`: {', '.join(measure_metric_patterns())})")
    return metric


def metric_stage(metric: str) -> str:
    """Accuracy metrics live in evaluate runs, measures (`volume_error_biceps`) in measure runs;
    both kinds of per-(model, scan) run carry the same tags, so the pivot is the same."""
    return "evaluate" if is_evaluate_metric(metric) else MEASURE_STAGE


def evaluate_runs(experiment_ids: list[str] | None = None, stage: str = "evaluate") -> list[Run]:
    """Finished per-(model, scan) runs of `stage`, newest first (the parent runs carry no scan tag)."""
    runs = mlflow.search_runs(
        experiment_ids=experiment_ids, search_all_experiments=not experiment_ids, output_format="list",
        filter_string=f"tags.`{STAGE_TAG}` = '{stage}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
    )
    return [run for run in runs if SCAN_TAG in run.data.tags and MODEL_TAG in run.data.tags]


def newest_cells(runs: list[Run], metric: str) -> pd.DataFrame:
    """One record per (model, scan): the newest run's value of `metric` (runs come newest first)."""
    records: dict[tuple[str, str], dict[str, object]] = {}
    for run in runs:
        tags = run.data.tags
        key = (tags[MODEL_TAG], tags[SCAN_TAG])
        if key in records or metric not in run.data.metrics:
            continue
        records[key] = {"model": key[0], "scan": key[1], "subject": tags.get(SUBJECT_TAG, ""),
                        "trial": tags.get(TRIAL_TAG, key[1]), "value": run.data.metrics[metric],
                        "run_id": run.info.run_id}
    return pd.DataFrame.from_records(list(records.values()),
                                     columns=["model", "scan", "subject", "trial", "value", "run_id"])


def pivot(cells: pd.DataFrame) -> pd.DataFrame:
    """Models x scans (+ mean over the scans each model has a value for)."""
    scans = cells.drop_duplicates("scan")
    keys = zip(scans["subject"].map(natural_key), scans["trial"].map(natural_key), scans["scan"], strict=True)
    order = [scan for *_, scan in sorted(keys)]
    table = cells.pivot(index="model", columns="scan", values="value").reindex(columns=order)
    table = table.reindex(sorted(table.index, key=natural_key))
    # Infinity is not a number to average; NaN (structure absent from both) is skipped too.
    table[MEAN_COLUMN] = table[order].replace([math.inf, -math.inf], math.nan).mean(axis=1)
    table.index.name = "model"
    table.columns.name = None
    return table


def accuracy_table(metric: str, experiment_ids: list[str] | None = None) -> pd.DataFrame:
    """The table of `metric` over the newest evaluate (or measure) run of each (model, scan)."""
    check_metric(metric)
    stage = metric_stage(metric)
    runs = evaluate_runs(experiment_ids, stage)
    if not runs:
        where = f"experiments {', '.join(experiment_ids)}" if experiment_ids else "any experiment"
        raise ArmsegError(f"no finished {stage} runs in {where} of {mlflow.get_tracking_uri()}; "
                          f"run `armseg {stage}` first")
    cells = newest_cells(runs, metric)
    if cells.empty:
        again = f"--metrics {metric}" if stage == "evaluate" else "--structures <that structure>"
        raise ArmsegError(f"--metric {metric}: no {stage} run logged it; run `armseg {stage} {again}`")
    return pivot(cells)
