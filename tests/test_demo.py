"""The demo end to end on tiny scans: every stage runs, and the table has all three model rows."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest

from armseg.cli import main


@pytest.mark.slow
def test_quick_demo_ends_with_the_accuracy_table(tracking: str, tmp_path: Path) -> None:
    assert main(["demo", "--out", str(tmp_path / "demo"), "--quick"]) == 0
    table = pd.read_csv(tmp_path / "demo" / "table.csv", index_col=0)
    assert list(table.index) == ["group_1_1", "group_2_1", "registration-trial1_0_fs"]
    assert list(table.columns)[:2] == ["trial1C", "trial6C"] and table.columns[-1] == "mean"
    assert table.notna().all().all() and ((table >= 0) & (table <= 1)).all().all()
    deformation = pd.read_csv(tmp_path / "demo" / "measures" / "deformation.csv")
    assert list(deformation["scan"]) == ["trial1C", "trial6C", "trial7C", "trial10C", "trial11C", "trial16C"]
    agreement = pd.read_csv(tmp_path / "demo" / "measures" / "agreement.csv")
    assert set(agreement["model"]) == set(table.index)
    summary = pd.read_csv(tmp_path / "demo" / "summary.csv", index_col=0)
    assert list(summary.index) == list(table.index)
    assert list(summary.columns[:5]) == ["scans", "mean_iou", "total_percent", "humerus_iou", "bicep_iou"]
    assert {"class_agreement_percent", "iou_humerus", "dice_biceps", "hd95_biceps"} <= set(summary.columns)
    assert summary["mean_iou"].tolist() == pytest.approx(table["mean"].tolist())
    assert "| model | scans | mean_iou | total_percent |" in (tmp_path / "demo" / "summary.md").read_text()
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    stages = {run.data.tags["armseg.stage"] for run in runs}
    assert {"demo", "synth", "augment", "train", "predict", "register", "evaluate", "measure",
            "table"} <= stages
    assert all(run.info.status == "FINISHED" for run in runs)
    demo = next(run for run in runs if run.data.tags["armseg.stage"] == "demo")
    assert all(run.data.tags.get("mlflow.parentRunId") for run in runs if run is not demo
               and run.data.tags["armseg.stage"] in ("train", "predict", "table"))
