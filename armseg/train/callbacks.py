"""Training behaviour as Keras callbacks: metrics to MLflow, checkpoints that survive a crash.

Keras already does the work (ModelCheckpoint keeps the best weights, EarlyStopping stops,
MLflow's MlflowCallback logs epoch metrics); these classes only add what resuming needs:
each epoch, one artifact `checkpoints/resume.zip` holds the full last model (optimizer
included), the best weights so far and the early-stopping state, so `armseg train --resume
RUN_ID` picks up exactly where a crash or Ctrl-C left it. One file, replaced whole: the three
parts always belong to the same epoch. When the run ends, the best weights live in the
logged model and the checkpoint keeps only the last model and the state.
"""

from __future__ import annotations

import json
import math
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import mlflow
from mlflow.keras import MlflowCallback

from armseg.errors import ArmsegError
from armseg.tracking.contract import HEARTBEAT_TAG, MONITOR

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_FILE = "resume.zip"
CHECKPOINT_ARTIFACT = f"{CHECKPOINT_DIR}/{CHECKPOINT_FILE}"
LAST_MODEL = "last.keras"
BEST_WEIGHTS = "best.weights.h5"
STATE_FILE = "state.json"
EPOCH_WEIGHTS = "model.weights.h5"  # in checkpoints/epoch_<i>/, every ckpt_n_epochs epochs


def epoch_folder(epoch: int) -> str:
    """`checkpoints/epoch_<i>`: the artifact folder of epoch i's weights (epochs counted from 1)."""
    return f"{CHECKPOINT_DIR}/epoch_{epoch}"


@dataclass
class TrainingState:
    """What a resumed run needs besides the weights: where it stopped and the best so far."""

    epoch: int = -1  # the last finished epoch (0-based), -1 before the first
    best: float | None = None
    best_epoch: int = -1
    wait: int = 0
    metrics: dict[str, float] | None = None  # the last finished epoch's, logged after the checkpoint

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_file(cls, path: Path) -> TrainingState:
        return cls(**json.loads(path.read_text()))


class EpochMetrics(MlflowCallback):
    """MLflow's Keras callback, logging epoch metrics with step = the epoch counted from 1.

    Metrics are logged synchronously, right after the checkpoint that says "epoch done", which
    carries them too: a run killed between the two gets them from the checkpoint when resumed
    (`backfill_metrics`), and one killed before the checkpoint runs the epoch again. Either way a
    resumed run has every step exactly once. Its `on_test_end` is silenced: Keras already reports
    validation metrics as `val_*` in the epoch logs, and the stock hook would log them again
    (stepless, as `validation_*`), plus the final test evaluation under a validation name.
    """

    # Its batch hook does nothing at log_every_epoch; without this, Keras would read every step's
    # logs back before dispatching the next step, and a GPU would idle between steps.
    async_safe = True

    def __init__(self, resumed: bool = False):
        super().__init__(log_every_epoch=True)
        self.resumed = resumed

    def on_train_begin(self, logs=None):
        if not self.resumed:  # the optimizer config and summary were logged the first time
            super().on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None):
        if logs:
            mlflow.log_metrics({name: float(value) for name, value in logs.items()}, step=epoch + 1,
                               synchronous=True)

    def on_test_end(self, logs=None):
        return None


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Keras's TerminateOnNaN, checked once per epoch, and failing the run instead of ending it.

    TerminateOnNaN only stops `fit`, and the run would then finish and register a network of NaN
    weights. Raising here, before the metrics and checkpoint callbacks of the epoch, ends the run
    FAILED with nothing registered, and its last checkpoint stays the last sound epoch. Checked
    per epoch, not per batch: a batch hook would make Keras wait for every step's loss.
    """

    async_safe = True

    def on_epoch_end(self, epoch, logs=None):
        for name in ("loss", "val_loss"):
            value = (logs or {}).get(name)
            if value is not None and not math.isfinite(float(value)):
                raise ArmsegError(f"{name} became {float(value)} in epoch {epoch + 1}; training stopped and "
                                  "no model registered (too high a --learning-rate, or bad voxels?)")


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` to the epoch logs (placed before EpochMetrics, so it is logged)."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping on val_mean_iou whose patience count survives a resume.

    It watches from `start` on (half the planned epochs): while the learning rate is still high
    and the random transforms strong, validation swings by 0.1-0.3 from epoch to epoch, and a
    patience of a few epochs stopped one seed of the accuracy benchmark at 0.64 that trains to
    0.95 (README, *Accuracy on scans it never saw*).
    """

    def __init__(self, patience: int, state: TrainingState, start: int = 0):
        super().__init__(monitor=MONITOR, mode="max", patience=patience, verbose=1, start_from_epoch=start)
        self.state = state

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.state.best is not None:
            self.best, self.best_epoch, self.wait = self.state.best, self.state.best_epoch, self.state.wait


class AveragedWeights(keras.callbacks.SwapEMAWeights):
    """Keras's SwapEMAWeights, swapping at each epoch's end, and knowing the swap survives a resume.

    From the end of an epoch to the start of the next the model holds the moving average, so the
    validation, the best checkpoint, the epoch weights and `last.keras` all see the averaged
    network, and the raw weights wait in the optimizer's average slots. A resumed run loads that
    `last.keras`: without `resumed` it would train on from the average and average the raw weights.
    Must come first among the callbacks, so every later one sees the average.
    """

    async_safe = True  # no batch hooks

    def __init__(self, resumed: bool = False):
        super().__init__(swap_on_epoch=True)
        self._ema_weights_in_model = resumed


def best_checkpoint(folder: Path, state: TrainingState) -> keras.callbacks.ModelCheckpoint:
    """Keras's ModelCheckpoint keeping the best epoch's weights (by val_mean_iou)."""
    checkpoint = keras.callbacks.ModelCheckpoint(
        str(folder / BEST_WEIGHTS), monitor=MONITOR, mode="max", save_best_only=True,
        save_weights_only=True, initial_value_threshold=state.best)
    checkpoint.async_safe = True  # saves per epoch only: its batch hook must not stall the steps
    return checkpoint


class EpochWeights(keras.callbacks.Callback):
    """OpenArm's `ckpt_n_epochs`: every n epochs, the weights as `checkpoints/epoch_<i>/model.weights.h5`,
    so a chosen epoch can become a model later (`armseg select-epoch`), not only the best one."""

    def __init__(self, folder: Path, every: int):
        super().__init__()
        self.folder = folder
        self.every = every

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        path = self.folder / EPOCH_WEIGHTS
        getattr(self.model, "unet", self.model).save_weights(path)  # the U-Net, not its trainer
        mlflow.log_artifact(str(path), epoch_folder(epoch + 1))
        path.unlink()


class CheckpointArtifacts(keras.callbacks.Callback):
    """Each epoch: the full model (optimizer included), the best weights and the state, logged as
    the one artifact `checkpoints/resume.zip`.

    Placed after ModelCheckpoint (and EarlyStopping), so this epoch's best is already decided.
    The local files are overwritten in place; the artifact store keeps the latest.
    """

    def __init__(self, folder: Path, state: TrainingState):
        super().__init__()
        self.folder = folder
        self.state = state

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(MONITOR)
        improved = value is not None and (self.state.best is None or value > self.state.best)
        if improved:
            self.state.best, self.state.best_epoch, self.state.wait = float(value), epoch, 0
        else:
            self.state.wait += 1
        self.state.epoch = epoch
        self.state.metrics = {name: float(value) for name, value in (logs or {}).items()}
        self.model.save(self.folder / LAST_MODEL)
        (self.folder / STATE_FILE).write_text(self.state.to_json())
        log_checkpoint(self.folder, (LAST_MODEL, BEST_WEIGHTS, STATE_FILE))


class HeartbeatTag(keras.callbacks.Callback):
    """Renews the run's `armseg.heartbeat` after every epoch (armseg/train/heartbeat.py)."""

    async_safe = True

    def on_epoch_end(self, epoch, logs=None):
        from armseg.train.heartbeat import beat

        mlflow.set_tag(HEARTBEAT_TAG, beat())


def backfill_metrics(run_id: str, state: TrainingState) -> None:
    """Log the checkpointed epoch's metrics that never reached the store (killed in between)."""
    if not state.metrics:
        return
    client, step = mlflow.MlflowClient(), state.epoch + 1
    missing = {name: value for name, value in state.metrics.items()
               if not any(m.step == step for m in client.get_metric_history(run_id, name))}
    if missing:
        mlflow.log_metrics(missing, step=step, synchronous=True)


def log_checkpoint(folder: Path, names: tuple[str, ...]) -> None:
    """Pack the files of `names` that exist in `folder` into `resume.zip` and log it."""
    archive = folder / CHECKPOINT_FILE
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as packed:
        for name in names:
            if (folder / name).exists():
                packed.write(folder / name, name)
    mlflow.log_artifact(str(archive), CHECKPOINT_DIR)


def unpack_checkpoint(archive: Path, folder: Path) -> list[str]:
    """Extract a `resume.zip` into `folder`; returns the names it held."""
    with zipfile.ZipFile(archive) as packed:
        names = [name for name in packed.namelist() if name in (LAST_MODEL, BEST_WEIGHTS, STATE_FILE)]
        for name in names:
            packed.extract(name, folder)
    return names
