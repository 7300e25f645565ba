"""From cells to the accuracy table: the newest cell per (data root, model, scan), pivoted per metric.

Pure functions of cells (no MLflow), shared by the fast query, the plain one and the heat-map
renderer: both queries end here, so they give the same table byte for byte when their cells agree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from armseg.errors import ArmsegError
from armseg.io.tree import data_root_key, natural_key
from armseg.tracking.cells import Cell

MEAN_COLUMN, SD_COLUMN, N_COLUMN = "mean", "sd", "n"
SUMMARY_COLUMNS = (MEAN_COLUMN, SD_COLUMN, N_COLUMN)
_METRIC_NAME = re.compile(r"^[\w.\-/ ]+$")


@dataclass(frozen=True)
class AccuracyTable:
    """The table as numbers (`frame`), the run behind every cell (`run_ids`) and what it covers."""

    metrics: tuple[str, ...]
    frame: pd.DataFrame  # index: model label, or (model label, metric) for several metrics
    run_ids: pd.DataFrame  # same index, one column per scan: the per-scan run of each cell
    data_roots: tuple[str, ...]

    @property
    def scans(self) -> list[str]:
        return [column for column in self.frame.columns if column not in SUMMARY_COLUMNS]


def check_metric_names(metrics: Iterable[str]) -> list[str]:
    """The metrics asked for, each once; a name MLflow could never have logged is refused early."""
    names = list(dict.fromkeys(metrics))
    if not names:
        raise ArmsegError("--metric: give at least one metric name, e.g. mean_iou")
    for name in names:
        if not _METRIC_NAME.match(name):
            raise ArmsegError(f"--metric {name}: not a metric name (letters, digits, _ - . / and spaces)")
    return names


def in_scope(cells: list[Cell], data_root: str | None) -> list[Cell]:
    """The cells of one absolute data root (None: all). Roots tagged relative by older armseg are
    taken relative to the working directory."""
    if data_root is None:
        return cells
    resolved: dict[str | None, str | None] = {None: None}
    for root in {cell.data_root for cell in cells} - {None}:
        resolved[root] = root if Path(root).is_absolute() else data_root_key(root)
    return [cell for cell in cells if resolved[cell.data_root] == data_root]


def newest_per_cell(cells: list[Cell], metric: str) -> dict[tuple[str, str, str], Cell]:
    """(data root, model, scan) -> the newest cell that logged `metric`; ties go as search_runs orders.

    `cells` must come newest first (`Cell.newest_first`).
    """
    chosen: dict[tuple[str, str, str], Cell] = {}
    for cell in cells:
        if metric in cell.metrics:
            chosen.setdefault((cell.data_root or "", cell.model, cell.scan), cell)
    return chosen


def model_label(model: str, versions: set[str]) -> str:
    """`group_1_1 (v3)`; a registry folder (`armseg-unet-v3`) already says it; mixed versions all shown."""
    ordered = sorted(versions, key=natural_key)
    if not ordered or (len(ordered) == 1 and model.endswith(f"-v{ordered[0]}")):
        return model
    return f"{model} ({', '.join('v' + v for v in ordered)})"


def build_table(cells: list[Cell], metrics: list[str]) -> AccuracyTable:
    """Pivot the newest cell of each (data root, model, scan) per metric into one table."""
    newest_first = sorted(cells, key=lambda cell: cell.newest_first)
    chosen = {metric: newest_per_cell(newest_first, metric) for metric in metrics}
    shown = [cell for per_metric in chosen.values() for cell in per_metric.values()]
    roots = sorted({cell.data_root or "" for cell in shown})
    scans = {(cell.data_root or "", cell.scan): cell for cell in shown}
    order = sorted(scans, key=lambda key: (key[0], natural_key(scans[key].subject),
                                           natural_key(scans[key].trial), key[1]))
    columns = {key: j for j, key in enumerate(order)}
    labels = [scan if len(roots) == 1 else f"{scan} ({root or 'no data root'})" for root, scan in order]
    versions: dict[str, set[str]] = {}
    for cell in shown:
        versions.setdefault(cell.model, set()).update([cell.model_version] if cell.model_version else [])
    models = sorted(versions, key=natural_key)
    rows = {model: i for i, model in enumerate(models)}
    names = [model_label(model, versions[model]) for model in models]
    frames, run_frames = [], []
    for metric in metrics:
        values = np.full((len(models), len(order)), np.nan)
        run_ids = np.full(values.shape, "", dtype=object)
        for (root, model, scan), cell in chosen[metric].items():
            at = rows[model], columns[(root, scan)]
            values[at] = cell.metrics[metric]
            run_ids[at] = cell.run_id
        frames.append(with_summary(pd.DataFrame(values, index=names, columns=labels)))
        run_frames.append(pd.DataFrame(run_ids, index=names, columns=labels))
    return AccuracyTable(tuple(metrics), _stack(frames, metrics), _stack(run_frames, metrics), tuple(roots))


def with_summary(values: pd.DataFrame) -> pd.DataFrame:
    """The row mean, sample SD and n over the scans the model has a finite value for.

    Infinity is not a number to average; NaN (a structure absent from both) is skipped too.
    """
    finite = values.replace([math.inf, -math.inf], math.nan)
    summary = values.copy()
    summary[MEAN_COLUMN] = finite.mean(axis=1)
    summary[SD_COLUMN] = finite.std(axis=1)
    summary[N_COLUMN] = finite.count(axis=1)
    return summary


def _stack(frames: list[pd.DataFrame], metrics: list[str]) -> pd.DataFrame:
    if len(frames) == 1:
        frame = frames[0]
        frame.index.name = "model"
    else:
        frame = pd.concat(frames, keys=metrics, names=["metric", "model"]).swaplevel(0, 1)
        models = list(dict.fromkeys(frames[0].index))
        frame = frame.reindex(pd.MultiIndex.from_product([models, metrics], names=["model", "metric"]))
    frame.columns.name = None
    return frame
