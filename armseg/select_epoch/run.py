"""The `select-epoch` stage: a train run's epoch-i weights, logged and registered as a whole model.

`train --ckpt-n-epochs n` logs the weights every n epochs as `checkpoints/epoch_<i>/` (OpenArm's
per-epoch checkpoints). The model train registers holds the best epoch's weights; when another
epoch is wanted (an earlier one that generalised better on other scans, say), this rebuilds the
run's network from its logged parameters, loads that epoch's weights, and logs and registers it
exactly as train logs its model: same signature and inference metadata, so predict treats it like
any other version. The version is tagged with the epoch, the group and the train run.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from armseg.errors import ArmsegError
from armseg.model.precision import resolve_precision
from armseg.model.registry import log_unet, register_run_model
from armseg.tracking.contract import (
    EPOCH_TAG,
    GROUP_TAG,
    MADE_BY_TAG,
    MODEL_RUN_TAG,
    MONITOR,
    REGISTERED_MODEL,
    STAGE_TAG,
)
from armseg.tracking.runs import stage_run
from armseg.train.callbacks import CHECKPOINT_DIR, EPOCH_WEIGHTS, epoch_folder
from armseg.train.run import inference_info, inference_model, logged_config

STAGE = "select-epoch"


@dataclass(frozen=True)
class SelectedEpoch:
    """The version registered from the chosen epoch."""

    run_id: str
    model_uri: str
    version: str


def logged_epochs(run_id: str) -> list[int]:
    """The epochs whose weights a train run logged (`checkpoints/epoch_<i>`), in order."""
    folders = mlflow.MlflowClient().list_artifacts(run_id, CHECKPOINT_DIR)
    epochs = [Path(f.path).name.removeprefix("epoch_") for f in folders if f.is_dir]
    return sorted(int(e) for e in epochs if e.isdigit())


def select_epoch(run_id: str, epoch: int) -> SelectedEpoch:
    """Register epoch `epoch` of train run `run_id` as a new version of `armseg-unet`."""
    tags = {MODEL_RUN_TAG: run_id, EPOCH_TAG: str(epoch)}
    with stage_run(STAGE, params={"run": run_id, "epoch": epoch}, tags=tags,
                   run_name=f"select-epoch-{run_id[:8]}-e{epoch}") as run, \
            tempfile.TemporaryDirectory(prefix="armseg-select-") as scratch:
        train_run = _train_run(run_id)
        config, policy = logged_config(train_run.data.params)
        mlflow.set_tag(GROUP_TAG, config.group)
        available = logged_epochs(run_id)
        if epoch not in available:
            listed = ", ".join(map(str, available)) or "none (train with --ckpt-n-epochs N to log them)"
            raise ArmsegError(f"--epoch {epoch}: run {run_id} logged no weights for that epoch "
                              f"(epochs logged: {listed})")
        weights = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=f"{epoch_folder(epoch)}/{EPOCH_WEIGHTS}", dst_path=scratch)
        model = inference_model(config, policy or resolve_precision(config.precision))
        model.load_weights(weights)
        _log_epoch_scores(run_id, epoch)
        log_unet(model, inference_info(config))
        version = register_run_model(run.info.run_id, made_by=STAGE)
        _describe(version.version, run_id, epoch, config.group)
        model_uri = f"models:/{REGISTERED_MODEL}/{version.version}"
        print(f"[armseg select-epoch] epoch {epoch} of {config.group} (run {run_id}) is {model_uri} "
              f"(run {run.info.run_id})")
        return SelectedEpoch(run_id=run.info.run_id, model_uri=model_uri, version=str(version.version))


def _train_run(run_id: str):
    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except MlflowException as error:
        raise ArmsegError(f"--run {run_id}: no such run in {mlflow.get_tracking_uri()}") from error
    if run.data.tags.get(STAGE_TAG) != "train":
        raise ArmsegError(f"--run {run_id}: not a train run ({STAGE_TAG}={run.data.tags.get(STAGE_TAG)!r})")
    return run


def _log_epoch_scores(run_id: str, epoch: int) -> None:
    """The chosen epoch's validation scores, as the train run logged them, for comparing versions."""
    client = mlflow.MlflowClient()
    for name in (MONITOR, "val_loss"):
        value = next((m.value for m in client.get_metric_history(run_id, name) if m.step == epoch), None)
        if value is not None:
            mlflow.log_metric(name, value)


def _describe(version: str, run_id: str, epoch: int, group: str) -> None:
    client = mlflow.MlflowClient()
    for key, value in {MADE_BY_TAG: STAGE, EPOCH_TAG: str(epoch), MODEL_RUN_TAG: run_id}.items():
        client.set_model_version_tag(REGISTERED_MODEL, version, key, value)
    client.update_model_version(REGISTERED_MODEL, version,
                                description=f"Epoch {epoch} of train run {run_id} (group {group}), "
                                            "registered by `armseg select-epoch`.")
