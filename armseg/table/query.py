"""The cross-model accuracy table as a query over tracked per-(model, scan) runs (OpenArm's accuracy table).

Rows are models (with their registered version), columns the scans of one data root (`trial6B`,
by subject then trial number), cells the chosen metrics, and each row its mean, SD and n. Every
cell is the newest FINISHED evaluate (or measure) run of that (model, scan) that logged the
metric: re-evaluating replaces a cell, it never adds a row.

`tracked_cells` finds the cells in as few store calls as it can:
1. parents whose `armseg.cells` tag names a cells record: one small file per parent, not one run
   per cell (what keeps a table of tens of thousands of runs within seconds);
2. parents still `pending` (running, or stopped hard before writing it): their finished children;
3. per-scan runs that no record lists (measure runs, runs logged by older armseg): one search.
`plain_cells` is the straightforward query, `mlflow.search_runs` over every per-scan run; the
tests and `benchmarks/bench_table.py` check that both give the same table, byte for byte.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Run, ViewType
from mlflow.exceptions import MlflowException

from armseg.errors import ArmsegError
from armseg.io.tree import natural_key
from armseg.tracking.cells import Cell, cell_from_run, read_record
from armseg.tracking.contract import (
    CELLS_ARTIFACT,
    CELLS_PENDING,
    CELLS_RUN_TAG,
    CELLS_TAG,
    DATA_ROOT_TAG,
    SCAN_TAG,
    STAGE_TAG,
    TABLE_STAGES,
)

MEAN_COLUMN, SD_COLUMN, N_COLUMN = "mean", "sd", "n"
SUMMARY_COLUMNS = (MEAN_COLUMN, SD_COLUMN, N_COLUMN)
_PAGE = 50_000  # MLflow's largest page: one call for most searches, paged beyond
_DOWNLOADS = 8  # records fetched side by side from a remote artifact store
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


def absolute_root(data_root: Path | str) -> str:
    """A data root as evaluate tags it: absolute, symbolic links resolved."""
    return str(Path(data_root).expanduser().resolve())


# --- finding the cells ----------------------------------------------------------------------------

def chosen_experiments(client: mlflow.MlflowClient, given: list[str] | None) -> list[str]:
    """The experiments given, else every active one (as `search_runs(search_all_experiments=True)`)."""
    if given:
        return list(given)
    found, token = [], None
    while True:
        page = client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=_PAGE, page_token=token)
        found += [experiment.experiment_id for experiment in page]
        token = page.token
        if not token:
            return found


def search(client: mlflow.MlflowClient, experiments: list[str], filter_string: str) -> list[Run]:
    """Every run matching the filter, in pages of MLflow's largest size."""
    runs: list[Run] = []
    token = None
    while experiments:
        page = client.search_runs(experiments, filter_string, max_results=_PAGE, page_token=token)
        runs += page
        token = page.token
        if not token:
            break
    return runs


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def tracked_cells(experiment_ids: list[str] | None = None, data_root: str | None = None) -> list[Cell]:
    """Every cell in the store, of one absolute data root or of all: records, pending parents, loose runs."""
    client = mlflow.MlflowClient()
    experiments = chosen_experiments(client, experiment_ids)
    root = f" and tags.`{DATA_ROOT_TAG}` = '{_quote(data_root)}'" if data_root else ""
    finished = " and attributes.status = 'FINISHED'"
    cells = read_records(search(client, experiments, f"tags.`{CELLS_TAG}` = '{CELLS_ARTIFACT}'{root}"))
    for parent in search(client, experiments, f"tags.`{CELLS_TAG}` = '{CELLS_PENDING}'{root}"):
        children = search(client, experiments, f"tags.`{CELLS_RUN_TAG}` = '{parent.info.run_id}'{finished}")
        cells += runs_to_cells(children)
    # Stage and status are checked here, not in the filter: SQLite then answers from the tags
    # index alone (a tenth of the time on a store of 50,000 runs, none of them loose).
    loose = search(client, experiments, f"tags.`{CELLS_RUN_TAG}` IS NULL and tags.`{SCAN_TAG}` IS NOT NULL")
    cells += runs_to_cells(run for run in loose if run.info.status == "FINISHED"
                           and run.data.tags.get(STAGE_TAG) in TABLE_STAGES)
    return cells


def plain_cells(experiment_ids: list[str] | None = None) -> list[Cell]:
    """The reference query: `mlflow.search_runs` over every finished per-scan run, newest first."""
    runs: list[Run] = []
    for stage in TABLE_STAGES:
        runs += mlflow.search_runs(
            experiment_ids=experiment_ids, search_all_experiments=not experiment_ids, output_format="list",
            filter_string=f"tags.`{STAGE_TAG}` = '{stage}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"])
    return runs_to_cells(runs)


def runs_to_cells(runs: Iterable[Run]) -> list[Cell]:
    return [cell for cell in map(cell_from_run, runs) if cell is not None]


def read_records(parents: list[Run]) -> list[Cell]:
    """The cells every parent's record lists; remote records are fetched side by side."""
    if not parents:
        return []
    if all(_local_folder(parent.info.artifact_uri) is not None for parent in parents):
        texts = map(_record_text, parents)
    else:
        with ThreadPoolExecutor(_DOWNLOADS) as pool:
            texts = list(pool.map(_record_text, parents))
    cells: list[Cell] = []
    for parent, text in zip(parents, texts, strict=True):
        try:
            cells += read_record(text)
        except (ValueError, KeyError, TypeError) as error:
            raise ArmsegError(f"run {parent.info.run_id}: its {parent.data.tags[CELLS_TAG]} is not a cells "
                              f"record ({error}); delete that run or evaluate again") from error
    return cells


def _local_folder(artifact_uri: str | None) -> Path | None:
    """The folder of a run's artifacts when it is on this machine (a path or a file: URI)."""
    parsed = urlparse(artifact_uri or "")
    if parsed.scheme == "file":
        return Path(parsed.path)
    return Path(artifact_uri) if artifact_uri and not parsed.scheme else None


def _record_text(parent: Run) -> str:
    """A parent's record: read in place when local, else through MLflow's artifact repository."""
    name = parent.data.tags[CELLS_TAG]
    folder = _local_folder(parent.info.artifact_uri)
    try:
        if folder is not None:
            return (folder / name).read_text(encoding="utf-8")
        return mlflow.artifacts.load_text(f"{parent.info.artifact_uri.rstrip('/')}/{name}")
    except (OSError, MlflowException) as error:
        raise ArmsegError(f"run {parent.info.run_id}: cannot read its {name} ({error})") from error


# --- from cells to the table ----------------------------------------------------------------------

def in_scope(cells: list[Cell], data_root: str | None) -> list[Cell]:
    """The cells of one absolute data root (None: all). Roots tagged relative by older armseg are
    taken relative to the working directory."""
    if data_root is None:
        return cells
    resolved: dict[str | None, str | None] = {None: None}
    for root in {cell.data_root for cell in cells} - {None}:
        resolved[root] = root if Path(root).is_absolute() else absolute_root(root)
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


def accuracy_table(metrics: list[str] | str, experiment_ids: list[str] | None = None,
                   data_root: Path | str | None = "data", plain: bool = False) -> AccuracyTable:
    """The table of `metrics` over the newest run of each (model, scan) of one data root (None: all).

    `plain` reads every per-scan run with `mlflow.search_runs` instead of the records (the reference).
    """
    names = check_metric_names([metrics] if isinstance(metrics, str) else metrics)
    root = absolute_root(data_root) if data_root is not None else None
    cells = plain_cells(experiment_ids) if plain else tracked_cells(experiment_ids, root)
    scoped = in_scope(cells, root)
    where = f"experiments {', '.join(experiment_ids)}" if experiment_ids else "any experiment"
    if not scoped:
        other = sorted({cell.data_root or "(none)" for cell in cells})
        hint = (f" (runs exist for data roots {', '.join(other)}: give --data-root or --all-data-roots)"
                if other and root else "")
        raise ArmsegError(f"no finished evaluate or measure runs in {where} of {mlflow.get_tracking_uri()}"
                          f"{f' for data root {root}' if root else ''}{hint}; run `armseg evaluate` first")
    logged = sorted({name for cell in scoped for name in cell.metrics})
    missing = [name for name in names if name not in logged]
    if missing:
        raise ArmsegError(f"--metric {' '.join(missing)}: no evaluate or measure run in {where}"
                          f"{f' for data root {root}' if root else ''} logged it (metrics there: "
                          f"{', '.join(logged)})")
    return build_table(scoped, names)
