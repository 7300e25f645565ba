"""ckpt_n_epochs logs checkpoints/epoch_<i>, and select-epoch registers one of them as a whole model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import nibabel as nib
import numpy as np
import pytest

from armseg.cli import main
from armseg.errors import ArmsegError
from armseg.evaluate.run import evaluate_subjects
from armseg.io.labels import OPENARM_ALL_LABEL_MAP, OPENARM_RAW_VALUES
from armseg.model.registry import REGISTERED_MODEL, load_unet
from armseg.predict.run import predict_subjects
from armseg.select_epoch.run import logged_epochs, select_epoch
from armseg.train.config import TrainConfig
from armseg.train.run import inference_model, train

TINY = dict(depth=2, base_filters=4, batch_size=8, keep_percent=100, precision="float32", patience=0)


@pytest.mark.slow
def test_every_nth_epoch_is_logged_and_a_chosen_one_becomes_a_version(tracking: str, tiny_tree: Path,
                                                                       tmp_path: Path) -> None:
    config = TrainConfig(group="group_1_2", data_root=str(tiny_tree), epochs=3, ckpt_n_epochs=1,
                         labels="openarm-all", **TINY)
    result = train(config)
    assert logged_epochs(result.run_id) == [1, 2, 3]

    selected = select_epoch(result.run_id, 2)
    version = mlflow.MlflowClient().get_model_version(REGISTERED_MODEL, selected.version)
    assert version.tags["armseg.epoch"] == "2" and version.tags["armseg.made_by"] == "select-epoch"
    assert version.tags["armseg.group"] == "group_1_2"
    assert version.tags["armseg.model_run_id"] == result.run_id
    assert selected.version != result.model_version and "Epoch 2" in version.description
    run = mlflow.get_run(selected.run_id)
    assert run.data.tags["armseg.stage"] == "select-epoch" and run.info.status == "FINISHED"
    assert "val_mean_iou" in run.data.metrics

    model, info = load_unet(selected.model_uri)  # a complete model, with train's inference metadata
    assert info.label_map == OPENARM_ALL_LABEL_MAP and info.group == "group_1_2" and info.pad_multiple == 8
    weights = mlflow.artifacts.download_artifacts(run_id=result.run_id, dst_path=str(tmp_path),
                                                  artifact_path="checkpoints/epoch_2/model.weights.h5")
    expected = inference_model(config, "float32")
    expected.load_weights(weights)
    batch = np.random.default_rng(0).uniform(0, 255, (2, 48, 64, 1)).astype(np.float32)
    np.testing.assert_allclose(model.predict(batch, verbose=0), expected.predict(batch, verbose=0), atol=1e-6)
    assert model.output_shape[-1] == 9

    # The nine-class version end to end: predict writes raw tissue values under OpenArm's file names,
    # and evaluate scores every structure of the model's map (read from the model its sidecar names).
    root = tmp_path / "data"
    shutil.copytree(tiny_tree / "SubC", root / "SubC")
    written = predict_subjects(root, [selected.model_uri], ["SubC"])
    assert sorted(p.name for p in written)[0] == "trial10_30_p5_pred_seg.nii"
    values = set().union(*(np.unique(nib.load(str(p)).dataobj).tolist() for p in written))
    assert values <= set(OPENARM_RAW_VALUES)
    (written[0].parent / "armseg_model.json").write_text(json.dumps({"model_uri": selected.model_uri}))
    results = evaluate_subjects(root, ["SubC"])
    sources = [mlflow.get_run(run_id).data.params["label_map_from"] for run_id in results["run_id"]]
    assert sources == ["model"] * 6
    assert {f"iou_{name}" for name in OPENARM_ALL_LABEL_MAP.foreground} <= set(results.columns)

    with pytest.raises(ArmsegError, match=r"--epoch 7: run .* logged no weights .*epochs logged: 1, 2, 3"):
        select_epoch(result.run_id, 7)
    failed = mlflow.search_runs(search_all_experiments=True, output_format="list", filter_string=(
        "tags.`armseg.stage` = 'select-epoch' and attributes.status = 'FAILED'"))
    assert len(failed) == 1


def test_cli_refuses_a_bad_epoch_before_any_run(tracking: str, capsys) -> None:
    assert main(["select-epoch", "--run", "0" * 32, "--epoch", "0"]) == 2
    assert "--epoch: 0 is not an epoch" in capsys.readouterr().err
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []
    assert main(["select-epoch", "--run", "0" * 32, "--epoch", "1"]) == 2
    assert "no such run" in capsys.readouterr().err
