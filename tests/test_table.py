"""The accuracy table: a pivot of tracked per-scan runs, its formats, its run, and its scoping."""

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

ROOT = "/lab/data"


def evaluation(model: str, subject: str, trial: int, status: str = "FINISHED", root: str | None = ROOT,
               version: str | None = None, stage: str = "evaluate", **metrics: float) -> str:
    """A run tagged as a per-scan `armseg evaluate` run of older armseg (no parent record)."""
    tags = {"armseg.stage": stage, "armseg.model": model, "armseg.subject": subject,
            "armseg.trial": f"trial{trial}", "armseg.scan": f"trial{trial}{subject[3:]}"}
    tags.update({"armseg.data_root": root} if root else {})
    tags.update({"armseg.model_version": version} if version else {})
    with mlflow.start_run() as run:
        mlflow.set_tags(tags)
        mlflow.log_metrics(metrics)
    mlflow.MlflowClient().set_terminated(run.info.run_id, status)
    time.sleep(0.005)  # distinct start times: "newest" must be well defined
    return run.info.run_id


@pytest.fixture(scope="module")
def store(module_tracking: str) -> None:
    """Three models (natural order group_1_2 < group_1_10), scans of SubA and SubB, plus noise:
    an older duplicate, a failed run, a parent without scan tag, an evaluation lacking a metric,
    a run of another data root and a measure run."""
    evaluation("group_1_10", "SubA", 10, mean_iou=0.1)  # older duplicate: replaced below
    with mlflow.start_run():
        mlflow.set_tags({"armseg.stage": "evaluate", "armseg.data_root": ROOT})  # a parent: not a cell
        mlflow.log_metric("mean_iou", 0.0)
    cells = {("group_1_2", "SubB", 6): 0.7, ("group_1_2", "SubA", 10): 0.8, ("group_1_2", "SubA", 2): 0.9,
             ("group_1_10", "SubA", 10): 0.6, ("group_1_10", "SubB", 6): math.nan,
             ("registration-trial1", "SubA", 2): 0.5}
    for (model, subject, trial), value in cells.items():
        evaluation(model, subject, trial, mean_iou=value, hd95_biceps=2 * trial,
                   version="3" if model == "group_1_2" else None)
    evaluation("group_1_2", "SubA", 2, status="FAILED", mean_iou=0.0)
    evaluation("group_1_2", "SubA", 10, hd95_biceps=1.0)  # newest, but without mean_iou
    evaluation("group_1_2", "SubA", 2, root="/elsewhere/data", mean_iou=0.25)
    evaluation("truth", "SubA", 2, stage="measure", volume_error_biceps=0.0)


def test_pivot_rows_models_columns_scans(store: None) -> None:
    table = accuracy_table("mean_iou", data_root=ROOT).frame
    assert list(table.index) == ["group_1_2 (v3)", "group_1_10", "registration-trial1"]
    assert list(table.columns) == ["trial2A", "trial10A", "trial6B", "mean", "sd", "n"]
    nan = math.nan
    expected = pd.DataFrame({"trial2A": [0.9, nan, 0.5], "trial10A": [0.8, 0.6, nan],
                             "trial6B": [0.7, nan, nan]}, index=table.index)
    pd.testing.assert_frame_equal(table[expected.columns], expected, check_names=False)
    assert table["mean"].tolist() == pytest.approx([0.8, 0.6, 0.5])
    assert table["sd"].iloc[0] == pytest.approx(0.1) and math.isnan(table["sd"].iloc[1])
    assert table["n"].tolist() == [3, 1, 1]


def test_newest_run_wins_per_model_and_scan(store: None) -> None:
    table = accuracy_table("hd95_biceps", data_root=ROOT).frame
    assert table.loc["group_1_2 (v3)", "trial10A"] == 1.0  # the newest evaluation that logged it
    assert table.loc["group_1_2 (v3)", "trial2A"] == 4.0


def test_several_metrics_are_blocks_of_rows(store: None) -> None:
    table = accuracy_table(["mean_iou", "hd95_biceps"], data_root=ROOT)
    assert list(table.frame.index.names) == ["model", "metric"]
    assert table.frame.loc[("group_1_2 (v3)", "hd95_biceps"), "trial6B"] == 12.0
    assert table.frame.loc[("group_1_10", "mean_iou"), "trial10A"] == 0.6
    assert table.run_ids.loc[("group_1_2 (v3)", "mean_iou"), "trial2A"] != ""


def test_one_data_root_by_default_or_all_in_their_own_columns(store: None) -> None:
    elsewhere = accuracy_table("mean_iou", data_root="/elsewhere/data").frame
    assert list(elsewhere.index) == ["group_1_2"] and elsewhere.loc["group_1_2", "trial2A"] == 0.25
    everything = accuracy_table("mean_iou", data_root=None).frame
    assert "trial2A (/elsewhere/data)" in everything.columns and f"trial2A ({ROOT})" in everything.columns
    with pytest.raises(ArmsegError, match=r"for data root /nowhere .*runs exist for data roots .*/lab/data"):
        accuracy_table("mean_iou", data_root="/nowhere")


def test_measure_runs_and_any_logged_metric_can_be_tabled(store: None) -> None:
    table = accuracy_table("volume_error_biceps", data_root=ROOT).frame
    assert list(table.index) == ["truth"] and table.loc["truth", "trial2A"] == 0.0


def test_a_metric_nobody_logged_lists_the_ones_there(store: None) -> None:
    with pytest.raises(ArmsegError, match=r"--metric iou: no evaluate or measure run .* logged it "
                                          r"\(metrics there: hd95_biceps, mean_iou, volume_error_biceps\)"):
        accuracy_table("iou", data_root=ROOT)
    with pytest.raises(ArmsegError, match=r"--metric mean iou!: not a metric name"):
        accuracy_table("mean iou!", data_root=ROOT)


def test_no_evaluate_runs_is_one_sentence(store: None) -> None:
    empty = mlflow.create_experiment("nothing-evaluated")
    with pytest.raises(ArmsegError, match=r"no finished evaluate or measure runs .*; run `armseg evaluate`"):
        accuracy_table("mean_iou", experiment_ids=[empty])


def test_fast_and_plain_queries_agree(store: None) -> None:
    for metrics in (["mean_iou"], ["hd95_biceps", "mean_iou"]):
        fast, plain = (accuracy_table(metrics, data_root=ROOT, plain=p) for p in (False, True))
        assert fast.frame.to_csv() == plain.frame.to_csv()
        assert fast.run_ids.to_csv() == plain.run_ids.to_csv()


def test_output_paths_share_the_stem(tmp_path: Path) -> None:
    for given in ("acc.csv", "acc.md", "acc.html", "acc.tex", "acc"):
        expected = {kind: tmp_path / f"acc.{kind}" for kind in ("csv", "md", "tex", "html", "png")}
        assert output_paths(tmp_path / given) == {**expected, "runs": tmp_path / "acc_runs.csv"}


def test_write_table_files_and_run(store: None, tmp_path: Path) -> None:
    paths = write_table("mean_iou", tmp_path / "out" / "accuracy.csv", data_root=ROOT)
    csv = pd.read_csv(paths["csv"], index_col="model")
    assert list(csv.columns) == ["trial2A", "trial10A", "trial6B", "mean", "sd", "n"]
    assert csv.loc["group_1_2 (v3)", "trial2A"] == 0.9
    markdown = paths["md"].read_text().splitlines()
    assert markdown[2] == "| model | trial2A | trial10A | trial6B | mean ± SD | n |"
    assert markdown[4] == "| group_1_2 (v3) | 0.900 | 0.800 | 0.700 | 0.800 ± 0.100 | 3 |"
    assert "background: #" in paths["html"].read_text() and "title='run " in paths["html"].read_text()
    latex = paths["tex"].read_text()
    assert r"\toprule" in latex
    assert r"group\_1\_2 (v3) & 0.900 & 0.800 & 0.700 & 0.800 $\pm$ 0.100 & 3 \\" in latex
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    runs = pd.read_csv(paths["runs"], index_col="model")
    assert len(runs.loc["group_1_2 (v3)", "trial2A"]) == 32
    assert not [p for p in paths["csv"].parent.iterdir() if p.name.startswith(".")]  # no temporaries
    run = mlflow.search_runs(search_all_experiments=True, output_format="list", max_results=1,
                             filter_string="tags.`armseg.stage` = 'table'")[0]
    assert run.info.status == "FINISHED" and run.data.params["metric"] == "mean_iou"
    artifacts = sorted(a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id))
    assert artifacts == ["accuracy.csv", "accuracy.html", "accuracy.md", "accuracy.png", "accuracy.tex",
                         "accuracy_runs.csv"]


def test_units_in_headers(store: None, tmp_path: Path) -> None:
    paths = write_table(["mean_iou", "hd95_biceps"], tmp_path / "two", data_root=ROOT)
    markdown = paths["md"].read_text()
    assert "| group_1_2 (v3) | hd95_biceps (mm) | 4.000 | 1.000 | 12.000 |" in markdown
    assert markdown.startswith("**mean_iou, hd95_biceps (mm) (rows: models")


def test_cli(store: None, tmp_path: Path, capsys) -> None:
    assert main(["table", "--metric", "hd95_biceps", "mean_iou", "--data-root", ROOT,
                 "--out", str(tmp_path / "t.md")]) == 0
    out = capsys.readouterr().out
    assert "trial10A" in out and "hd95_biceps (mm)" in out and (tmp_path / "t.html").is_file()
    assert main(["table", "--metric", "bogus", "--data-root", ROOT, "--out", str(tmp_path / "u.csv")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("armseg table: error: --metric bogus: no evaluate or measure run")
    assert "\n" not in error
    assert not (tmp_path / "u.csv").exists()
    assert main(["table", "--all-data-roots", "--out", str(tmp_path / "all.csv")]) == 0
    assert "trial2A (/elsewhere/data)" in (tmp_path / "all.csv").read_text()
