"""The cross-model accuracy table as a query over tracked per-(model, scan) runs (OpenArm's accuracy table).

Rows are models (with their registered version), columns the scans of one data root (`trial6B`,
by subject then trial number), cells the chosen metrics, and each row its mean, SD and n. Every
cell is the newest FINISHED evaluate (or measure) run of that (model, scan) that logged the
metric: re-evaluating replaces a cell, it never adds a row.

`tracked_cells` finds the cells in as few store calls as it can:
1. parents whose `armseg.cells` tag names a cells record: one small file per parent, not one run
   per cell (what keeps a table of tens of thousands of runs within seconds);
2. parents still `pending` (running, or stopped hard before writing it) or deleted: their
   finished children, as a plain search would see them; deleted children leave the records;
3. per-scan runs that no record lists (measure runs, runs logged by older armseg): one search.
`plain_cells` is the straightforward query, `mlflow.search_runs` over every per-scan run; the
tests and `benchmarks/bench_table.py` check that both give the same table, byte for byte.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import mlflow
from mlflow.entities import Run, ViewType
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from armseg.errors import ArmsegError
from armseg.io.tree import data_root_key
from armseg.table.pivot import AccuracyTable, build_table, check_metric_names, in_scope
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

_PAGE = 50_000  # MLflow's largest page: one call for most searches, paged beyond
_DOWNLOADS = 8  # records fetched side by side from a remote artifact store
_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


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


def search(client: mlflow.MlflowClient, experiments: list[str], filter_string: str,
           view: int = ViewType.ACTIVE_ONLY) -> list[Run]:
    """Every run matching the filter, in pages of MLflow's largest size."""
    runs: list[Run] = []
    token = None
    while experiments:
        page = client.search_runs(experiments, filter_string, run_view_type=view, max_results=_PAGE,
                                  page_token=token)
        runs += page
        token = page.token
        if not token:
            break
    return runs


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def tracked_cells(experiment_ids: list[str] | None = None, data_root: str | None = None) -> list[Cell]:
    """Every cell in the store, of one absolute data root or of all, as `plain_cells` would find them.

    Deleted runs are looked up too (usually none): a deleted per-scan run leaves the records,
    and the children of a deleted parent speak for themselves, as they do to a plain search.
    Parents are few, so they are sorted by data root here rather than by a second tag filter
    (which would make SQLite join the data-root tag of every run in the store).
    """
    client = mlflow.MlflowClient()
    experiments = chosen_experiments(client, experiment_ids)

    def parents(filter_string: str, view: int = ViewType.ACTIVE_ONLY) -> list[Run]:
        found = search(client, experiments, filter_string, view)
        return [run for run in found if not data_root or run.data.tags.get(DATA_ROOT_TAG) == data_root]

    deleted = ViewType.DELETED_ONLY
    deleted_children = search(client, experiments, f"tags.`{CELLS_RUN_TAG}` IS NOT NULL", deleted)
    gone = {run.info.run_id for run in deleted_children}
    cells = [cell for cell in read_records(parents(f"tags.`{CELLS_TAG}` = '{CELLS_ARTIFACT}'"))
             if cell.run_id not in gone]
    unlisted = parents(f"tags.`{CELLS_TAG}` = '{CELLS_PENDING}'")
    unlisted += parents(f"tags.`{CELLS_TAG}` IS NOT NULL", deleted)
    for parent in unlisted:
        children = f"tags.`{CELLS_RUN_TAG}` = '{parent.info.run_id}' and attributes.status = 'FINISHED'"
        cells += runs_to_cells(search(client, experiments, children))
    # Stage and status are checked here, not in the filter: SQLite then answers from the tags
    # index alone (a tenth of the time on a store of 50,000 runs, none of them loose).
    loose = search(client, experiments, f"tags.`{CELLS_RUN_TAG}` IS NULL and tags.`{SCAN_TAG}` IS NOT NULL")
    cells += runs_to_cells(run for run in loose if run.info.status == "FINISHED"
                           and run.data.tags.get(STAGE_TAG) in TABLE_STAGES)
    return cells


def data_roots_in_store(experiment_ids: list[str] | None = None) -> list[str]:
    """Every data root an evaluate parent or a loose per-scan run names, for an error message."""
    client = mlflow.MlflowClient()
    experiments = chosen_experiments(client, experiment_ids)
    runs = search(client, experiments, f"tags.`{CELLS_TAG}` IS NOT NULL")
    runs += search(client, experiments, f"tags.`{CELLS_RUN_TAG}` IS NULL and tags.`{SCAN_TAG}` IS NOT NULL")
    return sorted({run.data.tags.get(DATA_ROOT_TAG) or "(none)" for run in runs})


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
    if all(_local_folder(parent.info.artifact_uri) is not None for parent in parents):
        texts = [_local_record_text(parent) for parent in parents]
    else:
        texts = _remote_record_texts(parents)
    cells: list[Cell] = []
    for parent, text in zip(parents, texts, strict=True):
        try:
            cells += read_record(text)
        except (ValueError, KeyError, TypeError) as error:
            raise ArmsegError(f"run {parent.info.run_id}: its {parent.data.tags[CELLS_TAG]} is not a cells "
                              f"record ({error}); delete that run or evaluate again") from error
    return cells


def _local_record_text(parent: Run) -> str:
    path = _local_folder(parent.info.artifact_uri) / parent.data.tags[CELLS_TAG]
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise ArmsegError(f"run {parent.info.run_id}: cannot read its record {path} ({error})") from error


def _remote_record_texts(parents: list[Run]) -> list[str]:
    """Records from a remote artifact store (a tracking server, S3, ...), one request each.

    Runs of one experiment share an artifact root, so one artifact repository serves them all,
    and each record is one download (`_download_file`, the call every MLflow artifact repository
    implements) where `download_artifacts` would first list the file.
    """
    places = [_artifact_place(parent) for parent in parents]
    repositories = {root: get_artifact_repository(root) for root, _ in places}
    with tempfile.TemporaryDirectory() as scratch, _no_progress_bars():
        with ThreadPoolExecutor(_DOWNLOADS) as pool:
            return list(pool.map(lambda parent, place: _download_record(parent, place, repositories,
                                                                         Path(scratch)), parents, places))


def _download_record(parent: Run, place: tuple[str, str], repositories: dict, scratch: Path) -> str:
    root, folder = place
    name = parent.data.tags[CELLS_TAG]
    local = scratch / f"{parent.info.run_id}.json"
    try:
        repositories[root]._download_file(posixpath.join(folder, name), str(local))
        return local.read_text(encoding="utf-8")
    except Exception:  # any trouble on the short route: MLflow's public one, whose error names it
        try:
            return mlflow.artifacts.load_text(f"{parent.info.artifact_uri.rstrip('/')}/{name}")
        except (OSError, MlflowException) as error:
            raise ArmsegError(f"run {parent.info.run_id}: cannot read its {name} ({error})") from error


def _artifact_place(parent: Run) -> tuple[str, str]:
    """(artifact root, folder under it) of a run: `<experiment root>`, `<run id>/artifacts`."""
    uri = parent.info.artifact_uri.rstrip("/")
    tail = f"/{parent.info.run_id}/artifacts"
    return (uri[: -len(tail)], tail.lstrip("/")) if uri.endswith(tail) else (uri, "")


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """MLflow draws a progress bar per downloaded file: hundreds of them for one table."""
    before = os.environ.get(_PROGRESS_BAR)
    os.environ[_PROGRESS_BAR] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(_PROGRESS_BAR, None)
        else:
            os.environ[_PROGRESS_BAR] = before


def _local_folder(artifact_uri: str | None) -> Path | None:
    """The folder of a run's artifacts when it is on this machine (a path or a file: URI)."""
    parsed = urlparse(artifact_uri or "")
    if parsed.scheme == "file":
        return Path(parsed.path)
    return Path(artifact_uri) if artifact_uri and not parsed.scheme else None


def accuracy_table(metrics: list[str] | str, experiment_ids: list[str] | None = None,
                   data_root: Path | str | None = "data", plain: bool = False) -> AccuracyTable:
    """The table of `metrics` over the newest run of each (model, scan) of one data root (None: all).

    `plain` reads every per-scan run with `mlflow.search_runs` instead of the records (the reference).
    """
    names = check_metric_names([metrics] if isinstance(metrics, str) else metrics)
    root = data_root_key(data_root) if data_root is not None else None
    cells = plain_cells(experiment_ids) if plain else tracked_cells(experiment_ids, root)
    scoped = in_scope(cells, root)
    where = f"experiments {', '.join(experiment_ids)}" if experiment_ids else "any experiment"
    if not scoped:
        other = data_roots_in_store(experiment_ids) if root else []
        hint = (f" (runs exist for data roots {', '.join(other)}: give --data-root or --all-data-roots)"
                if other else "")
        raise ArmsegError(f"no finished evaluate or measure runs in {where} of {mlflow.get_tracking_uri()}"
                          f"{f' for data root {root}' if root else ''}{hint}; run `armseg evaluate` first")
    logged = sorted({name for cell in scoped for name in cell.metrics})
    missing = [name for name in names if name not in logged]
    if missing:
        raise ArmsegError(f"--metric {' '.join(missing)}: no evaluate or measure run in {where}"
                          f"{f' for data root {root}' if root else ''} logged it (metrics there: "
                          f"{', '.join(logged)})")
    return build_table(scoped, names)
