"""The accuracy table: a pivot of tracked evaluate runs, and its csv/md/html files and run."""

from __future__ import annotations

import math
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from armseg.cli import main
from armseg.errors import ArmsegError
from armseg.table.formats import output_paths
from armseg.table.query import accuracy_table
from armseg.table.run import write_table


def evaluation(model: str, subject: str, trial: int, status: str = "FINISHED", **metrics: float) -> str:
    """A run tagged as `armseg evaluate` tags a (model, scan) child."""
    with mlflow.start_run() as run:
        mlflow.set_tags({"armseg.stage": "evaluate", "armseg.model": model, "armseg.subject": subject,
                         "armseg.trial": f"trial{trial}", "armseg.scan": f"trial{trial}{subject[3:]}"})
        mlflow.log_metrics(metrics)
    mlflow.MlflowClient().set_terminated(run.info.run_id, status)
    time.sleep(0.005)  # distinct start times: "newest" must be well defined
    return run.info.run_id


@pytest.fixture(scope="module")
def store(module_tracking: str) -> None:
    """Three models (natural order group_1_2 < group_1_10), scans of SubA and SubB, plus noise:
    an older duplicate, a failed run, a parent without scan tag, an evaluation lacking a metric."""
    evaluation("group_1_10", "SubA", 10, mean_iou=0.1)  # older duplicate: replaced below
    with mlflow.start_run():
        mlflow.set_tag("armseg.stage", "evaluate")  # a parent run: no scan, not a cell
        mlflow.log_metric("mean_iou", 0.0)
    cells = {("group_1_2", "SubB", 6): 0.7, ("group_1_2", "SubA", 10): 0.8, ("group_1_2", "SubA", 2): 0.9,
             ("group_1_10", "SubA", 10): 0.6, ("group_1_10", "SubB", 6): math.nan,
             ("registration-trial1", "SubA", 2): 0.5}
    for (model, subject, trial), value in cells.items():
        evaluation(model, subject, trial, mean_iou=value, hd95_biceps=2 * trial)
    evaluation("group_1_2", "SubA", 2, status="FAILED", mean_iou=0.0)
    evaluation("group_1_2", "SubA", 10, hd95_biceps=1.0)  # newest, but without mean_iou


def test_pivot_rows_models_columns_scans(store: None) -> None:
    table = accuracy_table("mean_iou")
    assert list(table.index) == ["group_1_2", "group_1_10", "registration-trial1"]
    assert list(table.columns) == ["trial2A", "trial10A", "trial6B", "mean"]
    nan = math.nan
    expected = pd.DataFrame({"trial2A": [0.9, nan, 0.5], "trial10A": [0.8, 0.6, nan],
                             "trial6B": [0.7, nan, nan]}, index=table.index)
    pd.testing.assert_frame_equal(table.drop(columns="mean"), expected, check_names=False)
    assert table["mean"].tolist() == pytest.approx([0.8, 0.6, 0.5])


def test_newest_run_wins_per_model_and_scan(store: None) -> None:
    table = accuracy_table("hd95_biceps")
    assert table.loc["group_1_2", "trial10A"] == 1.0  # the newest evaluation that logged it
    assert table.loc["group_1_2", "trial2A"] == 4.0


def test_unknown_metric_lists_the_valid_ones(store: None) -> None:
    with pytest.raises(ArmsegError, match=r"--metric iou: unknown metric \(valid: mean_iou, total_percent, "):
        accuracy_table("iou")


def test_no_evaluate_runs_is_one_sentence(store: None) -> None:
    empty = mlflow.create_experiment("nothing-evaluated")
    with pytest.raises(ArmsegError, match=r"no finished evaluate runs .*; run `armseg evaluate` first"):
        accuracy_table("mean_iou", experiment_ids=[empty])
    with pytest.raises(ArmsegError, match=r"--metric percent_humerus: no evaluate run logged it"):
        accuracy_table("percent_humerus")


def test_output_paths_share_the_stem(tmp_path: Path) -> None:
    for given in ("acc.csv", "acc.md", "acc.html", "acc"):
        expected = {kind: tmp_path / f"acc.{kind}" for kind in ("csv", "md", "html")}
        assert output_paths(tmp_path / given) == expected


def test_write_table_files_and_run(store: None, tmp_path: Path) -> None:
    paths = write_table("mean_iou", tmp_path / "out" / "accuracy.csv")
    csv = pd.read_csv(paths["csv"], index_col="model")
    assert list(csv.columns) == ["trial2A", "trial10A", "trial6B", "mean"]
    assert csv.loc["group_1_2", "trial2A"] == 0.9
    markdown = paths["md"].read_text().splitlines()
    assert markdown[2] == "| model | trial2A | trial10A | trial6B | mean |"
    assert markdown[4] == "| group_1_2 | 0.900 | 0.800 | 0.700 | 0.800 |"
    assert "background-color" in paths["html"].read_text()
    assert not [p for p in paths["csv"].parent.iterdir() if p.name.startswith(".")]  # no temporaries
    run = mlflow.search_runs(search_all_experiments=True, output_format="list", max_results=1,
                             filter_string="tags.`armseg.stage` = 'table'")[0]
    assert run.info.status == "FINISHED" and run.data.params["metric"] == "mean_iou"
    artifacts = sorted(a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id))
    assert artifacts == ["accuracy.csv", "accuracy.html", "accuracy.md", "accuracy.png"]


def test_cli(store: None, tmp_path: Path, capsys) -> None:
    assert main(["table", "--metric", "hd95_biceps", "--out", str(tmp_path / "t.md")]) == 0
    out = capsys.readouterr().out
    assert "trial10A" in out and (tmp_path / "t.html").is_file()
    assert main(["table", "--metric", "bogus", "--out", str(tmp_path / "u.csv")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("armseg table: error: --metric bogus: unknown metric") and "\n" not in error
    assert not (tmp_path / "u.csv").exists()
