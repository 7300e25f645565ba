"""Every number traceable (issue 12's "done when"): one store holding two data roots, a tune
study and two train runs of the same group, and from it the right run, the kept weights' score,
the registry's versions and a model anyone can apply.

The `traced` fixture is the store; a check that every table cell leads to its model version
belongs beside these tests (it reads the evaluate runs of `traced["roots"]`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from armseg.io.tree import data_root_key
from armseg.predict.models import resolve_model
from armseg.predict.run import predict_subjects
from armseg.train.config import TrainConfig
from armseg.train.run import train
from armseg.tune.run import TuneRequest, tune

TINY = dict(depth=2, base_filters=4, batch_size=8, keep_percent=100, precision="float32", patience=0,
            epochs=2)
SPACE = {"learning_rate": {"low": 1e-3, "high": 5e-3, "log": True}, "dropout": None, "weight_decay": None,
         "base_filters": None, "depth": None, "batch_size": None, "loss": None, "include_augmented": None}


@pytest.fixture(scope="module")
def traced(module_tracking: str, tiny_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Root A: a train run of group_1_1, then a tune study of it (2 trials); root B (a copy of the
    scans): a later train run of group_1_1. Group resolution must see through both."""
    folder = tmp_path_factory.mktemp("traced")
    root_a = Path(shutil.copytree(tiny_tree, folder / "a" / "data"))
    root_b = Path(shutil.copytree(tiny_tree, folder / "b" / "data"))
    on_a = train(TrainConfig(group="group_1_1", data_root=str(root_a), **TINY))
    study = tune(TuneRequest(group="group_1_1", n_trials=2, storage=f"sqlite:///{folder / 'optuna.db'}",
                             study="traced", search_space=SPACE, sampler_seed=0, pruner="none",
                             fixed={**TINY, "epochs": 1, "data_root": str(root_a)}))
    on_b = train(TrainConfig(group="group_1_1", data_root=str(root_b), **TINY))
    return {"roots": (root_a, root_b), "a": on_a, "b": on_b, "tune": study}


@pytest.mark.slow
def test_a_group_name_means_the_newest_standalone_train_run_of_its_data_root(traced: dict, capsys) -> None:
    root_a, root_b = traced["roots"]
    trials = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                filter_string="tags.`armseg.study` = 'traced'")
    assert len(trials) == 3  # the parent and two trials, all newer than the run on root A
    chosen = resolve_model("group_1_1", root_a)
    assert (chosen.run_id, chosen.version) == (traced["a"].run_id, traced["a"].model_version)
    assert f"group_1_1 = run {traced['a'].run_id} (armseg-unet version 1)" in capsys.readouterr().out
    assert resolve_model("group_1_1", root_b).run_id == traced["b"].run_id

    # Predicting by group name on root A writes its run's predictions, and the folder says so.
    written = predict_subjects(root_a, ["group_1_1"], ["SubC"])
    record = json.loads((written[0].parent / "armseg_model.json").read_text())
    assert (record["run_id"], record["version"]) == (traced["a"].run_id, traced["a"].model_version)
    predict_run = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                     filter_string="tags.`armseg.stage` = 'predict'")[0]
    assert predict_run.data.tags["armseg.data_root"] == data_root_key(root_a)
    listing = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=predict_run.info.run_id,
                                                             artifact_path="predictions.csv"))
    assert set(listing["model_run_id"]) == {traced["a"].run_id}


@pytest.mark.slow
def test_the_registry_holds_each_standalone_run_and_only_the_best_trial(traced: dict) -> None:
    found = mlflow.MlflowClient().search_model_versions("name = 'armseg-unet'")
    versions = {int(v.version): v for v in found}
    assert sorted(versions) == [1, 2, 3]  # train on A, the study's best trial, train on B
    assert (versions[1].run_id, versions[3].run_id) == (traced["a"].run_id, traced["b"].run_id)
    champion = mlflow.MlflowClient().get_model_version_by_alias("armseg-unet", "champion")
    assert str(champion.version) == "2" == traced["tune"].champion_version
    made = {number: (v.tags["armseg.made_by"], v.tags["armseg.data_root"]) for number, v in versions.items()}
    root_a, root_b = (data_root_key(root) for root in traced["roots"])
    assert made == {1: ("train", root_a), 2: ("tune", root_a), 3: ("train", root_b)}
    assert versions[2].tags["armseg.study"] == "traced"


@pytest.mark.slow
def test_best_val_mean_iou_is_the_kept_epochs_validation_score(traced: dict) -> None:
    for result in (traced["a"], traced["b"]):
        run = mlflow.get_run(result.run_id)
        history = mlflow.MlflowClient().get_metric_history(result.run_id, "val_mean_iou")
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2]  # epochs from 1
        last, top = max(history, key=lambda m: m.step), max(history, key=lambda m: (m.value, -m.step))
        kept = last if run.data.params["keep_weights"] == "last" else top
        assert run.data.metrics["best_val_mean_iou"] == kept.value == result.best_val_mean_iou
        assert run.data.metrics["best_epoch"] == kept.step


@pytest.mark.slow
def test_the_champion_turns_a_uint8_scan_into_labels_of_its_shape(traced: dict) -> None:
    model = mlflow.pyfunc.load_model("models:/armseg-unet@champion")
    scan = np.random.default_rng(7).integers(0, 256, size=(50, 66, 7), dtype=np.uint8)
    labels = model.predict(scan)
    assert labels.shape == (50, 66, 7) and set(np.unique(labels)) <= {0, 7, 52}
