"""The `table` stage: the accuracy table printed, written beside `--out` and logged in a `table` run.

The files share the stem of `--out` (CSV, Markdown, LaTeX, HTML, a PNG heat map and
`<stem>_runs.csv` with the run behind every cell), each written atomically; they are also
artifacts of the run, so a table is traceable to the store it came from.
"""

from __future__ import annotations

from pathlib import Path

import mlflow

from armseg.io.atomic import write_bytes_atomic
from armseg.io.tree import data_root_key
from armseg.table.formats import grid as table_grid
from armseg.table.formats import output_paths, text_files, to_text
from armseg.table.pivot import check_metric_names
from armseg.table.query import accuracy_table
from armseg.table.render import Renderer, draw
from armseg.tracking.runs import stage_run


def write_table(metrics: list[str] | str, out: Path, experiment_ids: list[str] | None = None,
                data_root: Path | str | None = "data", all_data_roots: bool = False,
                renderer: Renderer | None = None) -> dict[str, Path]:
    """Build the table of `metrics` for one data root (or all), print it, write it beside `out`, log it.

    `renderer`, a helper started early (`armseg table` does), draws the heat maps; else they are
    drawn here.
    """
    names = check_metric_names([metrics] if isinstance(metrics, str) else metrics)
    paths = output_paths(Path(out))
    root = None if all_data_roots else data_root_key(data_root or "data")
    params = {"metric": names, "out": str(out), "data_root": root or "all", "all_data_roots": all_data_roots}
    with stage_run("table", params=params, run_name=f"table-{'-'.join(names)}"):
        table = accuracy_table(names, experiment_ids, root)
        print(to_text(table), end="")
        files = text_files(table)
        grid = table_grid(table)
        files.update(renderer.pictures(grid) if renderer is not None else draw(grid))
        for kind, content in files.items():
            data = content if isinstance(content, bytes) else content.encode("utf-8")
            write_bytes_atomic(paths[kind], data)
            mlflow.log_artifact(str(paths[kind]))
        mlflow.log_metrics({"models": float(len(table.run_ids.index.get_level_values(0).unique())),
                            "scans": float(len(table.scans)),
                            "cells": float((table.run_ids[table.scans] != "").to_numpy().sum())})
    return paths
