"""The `table` stage: the accuracy table printed, written beside `--out` and logged in a `table` run.

The files share the stem of `--out` and are each written atomically; they, and a PNG heat
map, are also artifacts of the run, so a table is traceable to the store it came from.
"""

from __future__ import annotations

from pathlib import Path

import mlflow

from armseg.io.atomic import write_bytes_atomic
from armseg.table.formats import heatmap_figure, number_text, output_paths, to_html, to_markdown
from armseg.table.query import accuracy_table, check_metric
from armseg.tracking.runs import stage_run


def write_table(metric: str, out: Path, experiment_ids: list[str] | None = None) -> dict[str, Path]:
    """Build the table of `metric`, print it, write csv/md/html beside `out` and log them in a `table` run."""
    check_metric(metric)
    paths = output_paths(Path(out))
    with stage_run("table", params={"metric": metric, "out": str(out)}, run_name=f"table-{metric}"):
        table = accuracy_table(metric, experiment_ids)
        print(f"{metric} (rows: models, columns: scans)")
        print(table.to_string(float_format=number_text, na_rep="-"))
        texts = {"csv": table.to_csv(), "md": to_markdown(table, metric), "html": to_html(table, metric)}
        for kind, path in paths.items():
            write_bytes_atomic(path, texts[kind].encode("utf-8"))
            mlflow.log_artifact(str(path))
        mlflow.log_figure(heatmap_figure(table, metric), f"{paths['csv'].stem}.png")
        mlflow.log_metrics({"models": float(len(table)), "scans": float(table.shape[1] - 1)})
    return paths
