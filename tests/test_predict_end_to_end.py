"""From a trained group to the accuracy table through the CLI, on the synthetic tree."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from armseg.cli import main


@pytest.mark.slow
def test_group_to_table(tracking: str, tiny_tree: Path, tmp_path: Path) -> None:
    from armseg.io.tree import data_root_key
    from armseg.model.registry import InferenceInfo, log_unet, register_run_model
    from armseg.model.unet import build_unet

    root = shutil.copytree(tiny_tree, tmp_path / "data")  # the session tree stays read-only
    # Plumbing, not accuracy: an untrained U-Net, logged like `armseg train` logs one.
    with mlflow.start_run() as run:
        mlflow.set_tags({"armseg.stage": "train", "armseg.group": "group_1_1",
                         "armseg.data_root": data_root_key(root)})
        log_unet(build_unet(depth=2, base_filters=4), InferenceInfo(pad_multiple=4, group="group_1_1"))
    register_run_model(run.info.run_id, "train")

    # MLproject spelling: every value a string, lists space-separated.
    assert main(["predict", "--data-root", str(root), "--model", "group_1_1 models:/armseg-unet/1",
                 "--subjects", "SubC", "--overwrite", "false", "--batch-size", "8"]) == 0
    predictions = sorted(p.relative_to(root) for p in root.rglob("*_pred_seg.nii"))
    assert len(predictions) == 12 and all(p.parts[:2] == ("SubC", "predictions") for p in predictions)
    assert main(["evaluate", "--data-root", str(root), "--subjects", "SubC", "--models", "group_1_1",
                 "--metrics", "mean_iou dice_biceps"]) == 0
    assert main(["table", "--metric", "dice_biceps", "--out", str(tmp_path / "table.csv")]) == 0

    table = pd.read_csv(tmp_path / "table.csv", index_col="model")
    assert [row.split(" (")[0] for row in table.index] == ["group_1_1"]
    scans = ["trial1C", "trial6C", "trial7C", "trial10C", "trial11C", "trial16C"]
    assert list(table.columns) == [*scans, "mean", "sd", "n"]
    stages = [run.data.tags["armseg.stage"] for run in mlflow.search_runs(
        search_all_experiments=True, output_format="list", filter_string="attributes.status = 'FINISHED'")]
    assert sorted(set(stages)) == ["evaluate", "predict", "table", "train"]
    assert stages.count("evaluate") == 1 + 6
