"""A train run keeps the tracking contract (SPEC 4), registers its model, and resumes after a crash."""

from __future__ import annotations

import sqlite3
import zipfile
from pathlib import Path

import keras
import mlflow
import numpy as np
import optuna
import pytest

from armseg.cli import main
from armseg.model.registry import REGISTERED_MODEL, load_unet
from armseg.train.config import TrainConfig
from armseg.train.run import resume, train

EPOCH_METRICS = ("loss", "val_loss", "val_iou_humerus", "val_iou_biceps", "val_mean_iou")
TINY = dict(depth=2, base_filters=4, batch_size=8, keep_percent=100, precision="float32", patience=0)


def store(uri: str) -> sqlite3.Connection:
    return sqlite3.connect(uri.removeprefix("sqlite:///"))


def metric_steps(db: sqlite3.Connection, run_id: str, key: str) -> list[int]:
    rows = db.execute("SELECT step FROM metrics WHERE run_uuid = ? AND key = ? ORDER BY step",
                      (run_id, key)).fetchall()
    return [step for (step,) in rows]


def artifact_paths(run_id: str) -> set[str]:
    client, found, folders = mlflow.MlflowClient(), set(), [None]
    while folders:
        for item in client.list_artifacts(run_id, folders.pop()):
            (folders.append(item.path) if item.is_dir else found.add(item.path))
    return found


FINAL_ARTIFACTS = {"learning_curve.png", "overlays/val_overlays.png", "overlays/augmentation_examples.png",
                   "split.json", "model_summary.txt", "checkpoints/resume.zip"}


def checkpoint_names(run_id: str) -> list[str]:
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="checkpoints/resume.zip")
    with zipfile.ZipFile(path) as packed:
        return sorted(packed.namelist())


class Stop(keras.callbacks.Callback):
    """Raise `error` at the end of epoch `epoch`, after the checkpoint of that epoch is logged."""

    def __init__(self, epoch: int, error: BaseException):
        super().__init__()
        self.epoch, self.error = epoch, error

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise self.error


@pytest.mark.slow
def test_cli_train_with_an_ini_logs_the_contract_and_registers_the_model(
        tracking: str, tiny_tree: Path, tmp_path: Path) -> None:
    ini = tmp_path / "trainingconfig.ini"
    ini.write_text("[DEFAULT]\nepochs = 5\nbatch_size = 8\nmodels_dir = /models\nmax_to_keep = 3\n"
                   "train_percent = 70\nval_percent = 15\ntest_percent = 15\n"
                   "[group_1_2]\nepochs = 2\nkeep_percent = 100\ndepth = 4\n")
    code = main(["train", "--data-root", str(tiny_tree), "--group", "group_1_2", "--config", str(ini),
                 "--depth", "2", "--base-filters", "4", "--precision", "float32", "--patience", "0",
                 "--learning-rate", ""])
    assert code == 0
    (run,) = mlflow.search_runs(output_format="list")
    run_id = run.info.run_id

    db = store(tracking)
    params = dict(db.execute("SELECT key, value FROM params WHERE run_uuid = ?", (run_id,)))
    expected = {"group": "group_1_2", "epochs": "2", "depth": "2", "loss": "ce+dice", "keep_percent": "100.0",
                "batch_size": "8", "models_dir": "/models", "max_to_keep": "3", "learning_rate": "0.002",
                "precision_used": "float32"}
    assert {name: params.get(name) for name in expected} == expected  # section > DEFAULT, flags > ini
    assert set(TrainConfig(group="g").params()) <= set(params)
    for key in EPOCH_METRICS:
        assert metric_steps(db, run_id, key) == [1, 2], key  # epochs counted from 1, as Keras prints
    assert {"test_mean_iou", "test_iou_humerus", "test_iou_biceps"} <= {
        key for (key,) in db.execute("SELECT key FROM metrics WHERE run_uuid = ?", (run_id,))}
    tags = dict(db.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)))
    assert tags["armseg.stage"] == "train" and tags["armseg.group"] == "group_1_2"
    assert db.execute("SELECT status FROM runs WHERE run_uuid = ?", (run_id,)).fetchone() == ("FINISHED",)
    (version, source_run), = db.execute("SELECT version, run_id FROM model_versions WHERE name = ?",
                                        (REGISTERED_MODEL,))
    assert source_run == run_id
    version_tags = dict(db.execute("SELECT key, value FROM model_version_tags WHERE name = ? AND version = ?",
                                   (REGISTERED_MODEL, version)))
    assert version_tags == {"armseg.group": "group_1_2", "armseg.made_by": "train",
                            "armseg.data_root": str(tiny_tree.resolve())}
    assert tags["armseg.data_root"] == str(tiny_tree.resolve())
    described = mlflow.MlflowClient().get_model_version(REGISTERED_MODEL, version).description
    facts = ("group_1_2", str(tiny_tree.resolve()), "Best val_mean_iou", "of 2 run", run_id, '"biceps": [52]')
    for fact in facts:
        assert fact in described, fact

    # The kept weights (the last epoch's by default): best_val_mean_iou and best_epoch name them.
    history = mlflow.MlflowClient().get_metric_history(run_id, "val_mean_iou")
    last = max(history, key=lambda m: m.step)
    finished = mlflow.get_run(run_id)
    assert finished.data.metrics["best_val_mean_iou"] == last.value
    assert finished.data.metrics["best_epoch"] == last.step == 2

    # Lineage: the splits as MLflow dataset inputs named after the group.
    inputs = {i.tags[0].value if i.tags else None: i.dataset for i in finished.inputs.dataset_inputs}
    assert set(inputs) == {"training", "validation", "test"}
    assert {d.name for d in inputs.values()} == {"group_1_2"}
    assert len({d.digest for d in inputs.values()}) == 3
    assert str(tiny_tree.resolve()) in inputs["training"].source and "group_1_2" in inputs["training"].source

    # One copy of the network (the logged model) and one resume checkpoint: the last model and state.
    assert artifact_paths(run_id) == FINAL_ARTIFACTS
    assert checkpoint_names(run_id) == ["last.keras", "state.json"]
    model, info = load_unet(f"models:/{REGISTERED_MODEL}/{version}")
    assert (info.pad_multiple, info.group, info.slice_axis) == (8, "group_1_2", 2)  # 2 x 2**depth
    probabilities = model.predict(np.full((1, 48, 64, 1), 90, np.float32), verbose=0)
    assert probabilities.shape == (1, 48, 64, 3) and probabilities.dtype == np.float32
    signature = mlflow.models.get_model_info(f"models:/{REGISTERED_MODEL}/{version}").signature
    assert signature.outputs.to_dict()[0]["name"] == "labels" and signature.params.to_dict()[0]["name"] == \
        "slice_axis"


@pytest.mark.slow
def test_a_pruned_run_ends_killed_and_resume_finishes_it_like_an_uninterrupted_one(
        tracking: str, tiny_tree: Path) -> None:
    config = TrainConfig(group="group_1_1", data_root=str(tiny_tree), epochs=3, train_percent=70,
                         test_percent=15, ema_momentum=0.9, **TINY)
    with pytest.raises(optuna.TrialPruned):
        train(config, extra_callbacks=[Stop(1, optuna.TrialPruned("pruned at epoch 2"))])
    run = mlflow.search_runs(output_format="list")[0]
    assert run.info.status == "KILLED" and "pruned" in run.data.tags["armseg.error"]
    assert mlflow.search_registered_models() == []

    result = resume(run.info.run_id)
    assert result.run_id == run.info.run_id and result.model_version == "1"
    history = mlflow.MlflowClient().get_metric_history(result.run_id, "val_mean_iou")
    last = max(history, key=lambda m: m.step)  # the kept weights: the last epoch's, after the resume
    assert result.best_val_mean_iou == pytest.approx(last.value) and 0 <= result.test_mean_iou <= 1
    db = store(tracking)
    for key in EPOCH_METRICS:
        assert metric_steps(db, result.run_id, key) == [1, 2, 3], key  # epoch 3 only, no repeats
    finished = mlflow.get_run(result.run_id)
    assert finished.info.status == "FINISHED" and "armseg.error" not in finished.data.tags
    assert finished.data.tags["armseg.resumed_at_epoch"] == "3"
    # The same artifacts as an uninterrupted run: no checkpoint left behind holding the best weights.
    assert artifact_paths(result.run_id) == FINAL_ARTIFACTS
    assert checkpoint_names(result.run_id) == ["last.keras", "state.json"]
    contexts = sorted(i.tags[0].value for i in finished.inputs.dataset_inputs)
    assert contexts == ["test", "training", "validation"]  # resuming logs no duplicate inputs


class Weights(keras.callbacks.Callback):
    """Records the model's weights (and the optimizer's averages) where it sits in the list."""

    def __init__(self):
        super().__init__()
        self.at_epoch_end: list[list[np.ndarray]] = []
        self.averages: list[list[np.ndarray]] = []
        self.first_step: list[np.ndarray] | None = None

    def on_train_batch_begin(self, batch, logs=None):
        if self.first_step is None:
            self.first_step = [w.copy() for w in self.model.get_weights()]

    def on_epoch_end(self, epoch, logs=None):
        self.at_epoch_end.append([w.copy() for w in self.model.get_weights()])
        self.averages.append([v.numpy() for v in self.model.optimizer._model_variables_moving_average])


def _averaging_model() -> keras.Model:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.1, use_ema=True, ema_momentum=0.5), loss="mse")
    return model


def test_the_averaged_weights_are_what_later_callbacks_see_and_a_resume_trains_on_the_raw_ones(
        tmp_path: Path) -> None:
    """The epoch's checkpoints hold the average with the raw weights in the optimizer; a resumed
    run must swap them back before its first step, or it would train on from the average."""
    from armseg.train.callbacks import AveragedWeights

    keras.utils.set_random_seed(0)
    x, y = np.random.rand(32, 3), np.random.rand(32, 1)
    model, raw, averaged = _averaging_model(), Weights(), Weights()
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=8, epochs=3, verbose=0,
                  callbacks=[raw, AveragedWeights(), averaged, Stop(1, KeyboardInterrupt())])
    for before, after in zip(raw.at_epoch_end, averaged.at_epoch_end, strict=True):
        assert not np.allclose(before[0], after[0])  # the swap happened
    # After the swap the model holds what the optimizer averaged, and the optimizer the raw weights.
    np.testing.assert_allclose(averaged.at_epoch_end[-1][0], raw.averages[-1][0])
    np.testing.assert_allclose(averaged.averages[-1][0], raw.at_epoch_end[-1][0])
    model.save(tmp_path / "last.keras")  # as CheckpointArtifacts saves it, after the swap

    resumed, first = keras.saving.load_model(tmp_path / "last.keras"), Weights()
    resumed.fit(x, y, batch_size=8, epochs=3, initial_epoch=2, verbose=0,
                callbacks=[AveragedWeights(resumed=True), first])
    np.testing.assert_allclose(first.first_step[0], raw.at_epoch_end[-1][0])


def test_cli_errors_are_one_line_and_fail_the_run(tracking: str, tiny_tree: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    code = main(["train", "--data-root", str(tiny_tree), "--group", "group_9_9", "--epochs", "1"])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1 and "group 'group_9_9' not found" in error[0]
    run = mlflow.search_runs(output_format="list")[0]
    assert run.info.status == "FAILED" and "group_9_9" in run.data.tags["armseg.error"]
    assert main(["train", "--resume", run.info.run_id, "--epochs", "3"]) == 2
    assert "--epochs" in capsys.readouterr().err
    assert main(["train", "--resume", "0123456789abcdef"]) == 2
    assert main(["train", "--group", "g", "--batch-size", "lots"]) == 2
    assert "--batch-size" in capsys.readouterr().err


def test_a_time_budget_stops_before_an_epoch_that_would_overrun_and_anneals_by_time(
        tracking: str, tiny_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock that moves 40 s per epoch against a 90 s budget: the second epoch ends at 80 s (a
    third would end at 120 s), and the learning rate falls with the time used, not the steps."""
    import armseg.train.budget as budget

    now = [0.0]
    monkeypatch.setattr(budget, "clock", lambda: now[0])

    class FortySeconds(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            now[0] += 40.0

    config = TrainConfig(group="group_1_1", data_root=str(tiny_tree), epochs=5, time_budget=1.5,
                         batch_norm=False, **TINY)
    result = train(config, extra_callbacks=[FortySeconds()], register=False)
    db = store(tracking)
    assert metric_steps(db, result.run_id, "val_mean_iou") == [1, 2]
    rates = [value for (value,) in db.execute(
        "SELECT value FROM metrics WHERE run_uuid = ? AND key = 'learning_rate' ORDER BY step",
        (result.run_id,))]
    # Epoch 1 starts at 0 s (full rate), epoch 2 at 40 s of 90 (cos(0.44 pi) of the way down).
    assert rates[0] == pytest.approx(config.learning_rate) and rates[1] < 0.7 * rates[0]
    assert mlflow.get_run(result.run_id).data.params["time_budget"] == "1.5"


def test_without_batch_norm_the_u_net_has_biases_and_no_normalisation_layers() -> None:
    from armseg.model.unet import build_unet

    plain = build_unet(depth=2, base_filters=4, batch_norm=False)
    normed = build_unet(depth=2, base_filters=4)
    assert not [layer for layer in plain.layers if "batch_normalization" in type(layer).__name__.lower()
                or layer.name.endswith(("_bn1", "_bn2"))]
    assert all(layer.use_bias for layer in plain.layers if layer.name.endswith(("_conv1", "_conv2")))
    assert any(layer.name.endswith("_bn1") for layer in normed.layers)
    assert plain.count_params() < normed.count_params()


def test_the_kept_epoch_is_the_last_or_the_first_that_reached_the_best(tracking: str) -> None:
    from armseg.train.run import _kept

    with mlflow.start_run() as run:
        for step, value in ((1, 0.5), (2, 0.9), (3, 0.9), (4, 0.8)):
            mlflow.log_metric("val_mean_iou", value, step=step)
    assert _kept(run.info.run_id, "last") == (0.8, 4)
    assert _kept(run.info.run_id, "best") == (0.9, 2)
