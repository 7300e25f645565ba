"""One training run: a group's slices in, a registered `armseg-unet` version out, all in MLflow.

`train()` is the plain function the CLI, the demo and `tune` call. It opens the run with
`stage_run("train")`, which nests under an active run (a tune parent, the demo) and closes
the run FINISHED, FAILED or KILLED whatever happens. Extra Keras callbacks (tune's pruning
callback) are appended as they are; an `optuna.TrialPruned` raised by one ends the run
KILLED (stopped on purpose), any other exception FAILED, and the exception propagates.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import mlflow
import numpy as np

from armseg.io.tree import data_root_key
from armseg.model.losses import make_loss
from armseg.model.precision import dtype_policy, resolve_precision
from armseg.model.registry import (
    InferenceInfo,
    log_unet,
    logged_model_id,
    register_run_model,
    versions_of_run,
)
from armseg.model.unet import build_unet, pad_multiple
from armseg.tracking.contract import (
    BACKEND_TAG,
    BEST_EPOCH_METRIC,
    BEST_METRIC,
    DATA_ROOT_TAG,
    DATASET_CONTEXTS,
    DEVICES_TAG,
    ERROR_TAG,
    GROUP_TAG,
    HEARTBEAT_TAG,
    MODEL_ARTIFACT,
    MONITOR,
    NONFINITE_METRIC,
    REPLICAS_TAG,
    RESUMED_AT_TAG,
    SKIPPED_EMPTY_METRIC,
    TEST_METRIC,
)
from armseg.tracking.datasets import log_scans, scans_dataset
from armseg.tracking.runs import stage_run
from armseg.train.augmentation import augment_batch
from armseg.train.batches import SliceBatches
from armseg.train.budget import FINAL_FRACTION, TimeBudget, cosine_by_time
from armseg.train.callbacks import (
    BEST_WEIGHTS,
    CHECKPOINT_ARTIFACT,
    CHECKPOINT_DIR,
    CHECKPOINT_FILE,
    LAST_MODEL,
    STATE_FILE,
    AveragedWeights,
    CheckpointArtifacts,
    EpochMetrics,
    EpochTimer,
    EpochWeights,
    HeartbeatTag,
    ResumableEarlyStopping,
    StopOnNonFiniteLoss,
    TrainingState,
    backfill_metrics,
    best_checkpoint,
    log_checkpoint,
    unpack_checkpoint,
)
from armseg.train.config import PARSERS, TrainConfig, typed
from armseg.train.distribute import training_placement
from armseg.train.figures import learning_curve_figure, overlay_figure, transforms_figure
from armseg.train.heartbeat import beat, resumable_run
from armseg.train.slices import GroupData, SliceSet, load_group
from armseg.train.split import SPLITS
from armseg.train.trainer import SegmentationTrainer, training_model

STAGE = "train"
OVERLAY_SLICES = 4


@dataclass(frozen=True)
class TrainResult:
    """Where the trained model is and how good it was."""

    run_id: str
    model_uri: str
    model_version: str | None
    best_val_mean_iou: float
    test_mean_iou: float | None


def train(config: TrainConfig, extra_callbacks: Sequence[keras.callbacks.Callback] = (),
          register: bool = True, tags: Mapping[str, str] | None = None,
          run_name: str | None = None) -> TrainResult:
    """Train on `config.group`, log everything to a new MLflow run and register the model.

    `tags` and `run_name` let a caller say what the run is part of (tune: the study and the
    trial); `register=False` logs the model in the run without adding a registry version.
    """
    return _train(config, extra_callbacks, register, resume_run=None, tags=tags, run_name=run_name)


def resume(run_id: str, extra_callbacks: Sequence[keras.callbacks.Callback] = (),
           register: bool = True) -> TrainResult:
    """Continue an interrupted train run from its last checkpoint, in the same MLflow run."""
    config, policy = config_of_run(run_id)
    return _train(config, extra_callbacks, register, resume_run=run_id, policy=policy)


def config_of_run(run_id: str) -> tuple[TrainConfig, str | None]:
    """The TrainConfig a train run logged as its parameters, and the precision it resolved to."""
    return logged_config(resumable_run(run_id).data.params)


def logged_config(params: dict[str, str]) -> tuple[TrainConfig, str | None]:
    """The TrainConfig of a train run's logged parameters, and the precision it resolved to."""
    values = {name: typed(name, params[name]) if params.get(name) not in (None, "None") else None
              for name in PARSERS if name in params}
    values = {k: v for k, v in values.items() if v is not None}
    if "keep_weights" not in params:  # logged before the choice existed: those runs kept the best
        values["keep_weights"] = "best"
    if "downsample" not in params:  # logged before the choice existed: the U-Net worked at full resolution
        values["downsample"] = 1
    return TrainConfig(**_crops_as_logged(_percents_to_100(values))), params.get("precision_used")


def _crops_as_logged(values: dict[str, object]) -> dict[str, object]:
    """Runs logged before `rand_crop_depth` cropped the depth by `rand_crop` too, and runs logged
    before `rand_crop` did not crop at all; resumed, they go on cropping as they started."""
    if "rand_crop_depth" in values:
        return values
    crop = values.get("rand_crop", 1.0)
    return {**values, "rand_crop": crop, "rand_crop_depth": crop}


def _percents_to_100(values: dict[str, object]) -> dict[str, object]:
    """Runs logged before armseg required train + val + test = 100 (`--test-percent 0` alone) kept
    their numbers; the split used them as proportions, so scaling them to 100 plans the same split
    and such a run can still be resumed or have an epoch selected."""
    names = ("train_percent", "val_percent", "test_percent")
    if not all(isinstance(values.get(name), float) for name in names):
        return values
    total = sum(values[name] for name in names)  # type: ignore[misc]
    if total <= 0 or abs(total - 100) <= 1e-6:
        return values
    return {**values, **{name: values[name] * 100 / total for name in names}}  # type: ignore[operator]


def _train(config: TrainConfig, extra_callbacks: Sequence[keras.callbacks.Callback], register: bool,
           resume_run: str | None, policy: str | None = None, tags: Mapping[str, str] | None = None,
           run_name: str | None = None) -> TrainResult:
    # A resumed run keeps the precision it started with, even on other hardware.
    policy = policy or resolve_precision(config.precision)
    keras.utils.set_random_seed(config.seed)
    params = {**config.params(), "precision_used": policy}
    tags = {GROUP_TAG: config.group, DATA_ROOT_TAG: data_root_key(config.data_root), **(tags or {})}
    with stage_run(STAGE, params=params, tags=tags, run_id=resume_run,
                   run_name=None if resume_run else (run_name or f"train-{config.group}"),
                   killed_on=_stopped_on_purpose()) as run, \
            tempfile.TemporaryDirectory(prefix="armseg-train-") as scratch:
        folder = Path(scratch)
        mlflow.set_tag(HEARTBEAT_TAG, beat())
        state = _restore(resume_run, folder) if resume_run else TrainingState()
        data = load_group(config, _pad(config))
        placement = training_placement()
        print(f"[armseg train] group {config.group} at {data.folder}: {data.split.summary()} "
              f"({data.split.mode}); {placement.backend} on {placement.describe()}, precision {policy}")
        mlflow.set_tags({BACKEND_TAG: placement.backend, DEVICES_TAG: placement.describe(),
                         REPLICAS_TAG: str(placement.replicas)})
        mlflow.log_text(data.split_json(), "split.json")
        datasets = _log_datasets(data, config)
        mlflow.log_metric(SKIPPED_EMPTY_METRIC, float(data.split.skipped_empty))
        if config.nonfinite == "replace":
            mlflow.log_metric(NONFINITE_METRIC, float(data.nonfinite_replaced))
        if config.transforms is not None and state.epoch < 0:
            _log_transform_examples(data.sets["train"], config)
        # Several devices: variables replicated, each batch split across them, from build to test.
        with placement.scope():
            model = _model(config, policy, data, folder if resume_run else None)
            if state.epoch + 1 < config.epochs:
                model.fit(training_batches(data, config, first_epoch=state.epoch + 1),
                          validation_data=SliceBatches(data.sets["val"], config.batch_size, False),
                          epochs=config.epochs, initial_epoch=state.epoch + 1,
                          callbacks=_callbacks(config, folder, state, extra_callbacks), verbose=2)
            if config.keep_weights == "best" and (folder / BEST_WEIGHTS).exists():
                model.load_weights(folder / BEST_WEIGHTS)
            best, best_epoch = _kept(run.info.run_id, config.keep_weights)
            test = _test(model, data, config.batch_size)
        unet = _inference_copy(model, config, policy)
        _log_learning_curve(run.info.run_id, config, best_epoch)
        _log_overlays(unet, data.sets["val"], config)
        # A run resumed after its work was done (interrupted while closing) logs and registers
        # nothing twice: each final step is skipped when the run already holds its result.
        done = mlflow.MlflowClient().get_run(run.info.run_id)
        model_id = logged_model_id(done) or log_unet(unet, inference_info(config)).model_id
        _log_best(best, best_epoch, test, model_id, datasets, done.data.metrics)
        # One copy of the network in the run (the logged model, best weights) plus the resume
        # checkpoint, from now on the last epoch's model and the state only.
        log_checkpoint(folder, (LAST_MODEL, STATE_FILE))
        mlflow.flush_async_logging()  # the version's description reads the run's metrics
        version = _registered(run.info.run_id) if register else None
        model_uri = (f"models:/{version.name}/{version.version}" if version is not None
                     else f"runs:/{run.info.run_id}/{MODEL_ARTIFACT}")
        test_score = test.get("mean_iou") if test else None
        print(f"[armseg train] kept the {config.keep_weights} epoch's weights: val_mean_iou {best:.4f} "
              f"(epoch {best_epoch})"
              + (f", test_mean_iou {test_score:.4f}" if test_score is not None else "")
              + f"; model {model_uri} (run {run.info.run_id})")
        return TrainResult(run_id=run.info.run_id, model_uri=model_uri,
                           model_version=str(version.version) if version is not None else None,
                           best_val_mean_iou=best, test_mean_iou=test_score)


def _log_datasets(data: GroupData, config: TrainConfig) -> dict[str, object]:
    """The scans each split read, as MLflow dataset inputs named after the group (context training,
    validation, test); the digest covers the files and the slices taken from each."""
    datasets = {}
    for split in SPLITS:
        parts = data.split.parts[split]
        if not parts:
            continue
        files = [(path, f"{split} axis {config.slice_axis} slices {part.indices.tolist()}")
                 for part in parts for path in (part.scan.volume, part.scan.segmentation) if path]
        datasets[split] = scans_dataset(config.group, data.folder, files)
        log_scans(datasets[split], DATASET_CONTEXTS[split])
    return datasets


def _restore(run_id: str, folder: Path) -> TrainingState:
    """Fetch the last checkpoint of `run_id` into `folder`; none yet means start at epoch 0."""
    client = mlflow.MlflowClient()
    names = {Path(f.path).name for f in client.list_artifacts(run_id, CHECKPOINT_DIR)}
    if ERROR_TAG in client.get_run(run_id).data.tags:
        client.delete_tag(run_id, ERROR_TAG)  # the run is alive again; a new failure sets it anew
    packed = set()
    if CHECKPOINT_FILE in names:
        fetched = client.download_artifacts(run_id, CHECKPOINT_ARTIFACT, str(folder / "fetched"))
        packed = set(unpack_checkpoint(Path(fetched), folder))
    if STATE_FILE not in packed or LAST_MODEL not in packed:
        print(f"[armseg train] run {run_id} has no checkpoint yet; starting it from epoch 1")
        return TrainingState()
    state = TrainingState.from_file(folder / STATE_FILE)
    backfill_metrics(run_id, state)
    mlflow.set_tag(RESUMED_AT_TAG, str(state.epoch + 2))
    print(f"[armseg train] resuming run {run_id} after epoch {state.epoch + 1} "
          f"(best val_mean_iou so far {state.best})")
    return state


def _stopped_on_purpose() -> tuple[type[BaseException], ...]:
    """Exceptions that end the run KILLED: Optuna's pruning signal, when Optuna is in use (only
    `tune` raises it, and it imports Optuna first), so training alone never needs Optuna."""
    optuna = sys.modules.get("optuna")
    return (optuna.TrialPruned,) if optuna is not None else ()


def training_batches(data: GroupData, config: TrainConfig, first_epoch: int = 0) -> SliceBatches:
    """The endless, reshuffled stream of training batches, cut into epochs of the original slices."""
    return SliceBatches(data.sets["train"], config.batch_size, True, config.seed,
                        steps=data.steps_per_epoch(config.batch_size), first_epoch=first_epoch)


def compiled_trainer(config: TrainConfig, policy: str, steps_per_epoch: int) -> SegmentationTrainer:
    """A fresh U-Net in its trainer (random transforms in the step), compiled as `train` compiles it."""
    with dtype_policy(policy):
        unet = _build(config)
    model = training_model(unet, config.transforms, config.seed, _pad(config))
    labels = config.label_mapping
    foreground = list(range(1, labels.num_classes))
    metrics = [keras.metrics.IoU(labels.num_classes, [index], sparse_y_pred=False, name=f"iou_{name}")
               for index, name in zip(foreground, labels.foreground, strict=True)]
    metrics.append(keras.metrics.IoU(labels.num_classes, foreground, sparse_y_pred=False, name="mean_iou"))
    steps = steps_per_epoch * config.epochs
    # Cosine decay over the planned epochs: large steps early, fine ones when early stopping looks.
    # Under a time budget the epochs are not known: armseg.train.budget anneals over the time instead.
    schedule = (config.learning_rate if config.time_budget else
                keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=steps,
                                                       alpha=FINAL_FRACTION))
    # Keras keeps the moving average in the optimizer; AveragedWeights swaps it in at each epoch's end.
    # Off, the momentum stays Keras's default, so the logged optimizer_ema_momentum is as it always was.
    optimizer = keras.optimizers.Adam(schedule, use_ema=config.ema_momentum > 0,
                                      ema_momentum=config.ema_momentum or 0.99)
    model.compile(optimizer=optimizer, loss=make_loss(config.loss, labels.num_classes),
                  metrics=metrics)
    return model


def _model(config: TrainConfig, policy: str, data: GroupData,
           resume_folder: Path | None) -> SegmentationTrainer:
    """The compiled trainer: fresh, or the interrupted run's last one with its optimizer state."""
    if resume_folder is not None and (resume_folder / LAST_MODEL).exists():
        return keras.saving.load_model(resume_folder / LAST_MODEL)
    return compiled_trainer(config, policy, data.steps_per_epoch(config.batch_size))


def _pad(config: TrainConfig) -> int:
    return pad_multiple(config.depth, config.downsample)


def _build(config: TrainConfig) -> keras.Model:
    return build_unet(depth=config.depth, base_filters=config.base_filters,
                      num_classes=config.label_mapping.num_classes, dropout=config.dropout,
                      weight_decay=config.weight_decay, normalization=config.normalization,
                      mean=config.mean, batch_norm=config.batch_norm, channels=2 * config.context + 1,
                      downsample=config.downsample)


def inference_model(config: TrainConfig, policy: str) -> keras.Model:
    """An uncompiled U-Net of the config, to take trained weights: no optimizer slots, no custom loss
    to import when the logged model is loaded."""
    with dtype_policy(policy):
        return _build(config)


def inference_info(config: TrainConfig) -> InferenceInfo:
    """What the logged model carries besides its weights (pad multiple, label map, slice axis, group)."""
    return InferenceInfo(pad_multiple=_pad(config), label_map=config.label_mapping,
                         slice_axis=config.slice_axis, group=config.group)


def _inference_copy(model: SegmentationTrainer, config: TrainConfig, policy: str) -> keras.Model:
    """The trained U-Net's weights in a plain, uncompiled U-Net: no training wrapper to import, and
    built outside any multi-device scope, so it loads on any backend and device."""
    copy = inference_model(config, policy)
    copy.set_weights(model.unet.get_weights())
    return copy


def _callbacks(config: TrainConfig, folder: Path, state: TrainingState,
               extra: Sequence[keras.callbacks.Callback]) -> list[keras.callbacks.Callback]:
    """Order matters: a NaN loss stops the epoch before anything is saved; the best checkpoint and
    early stopping decide before the state is saved."""
    callbacks: list[keras.callbacks.Callback] = [StopOnNonFiniteLoss(), EpochTimer()]
    if config.ema_momentum:
        callbacks.insert(0, AveragedWeights(resumed=state.epoch >= 0))
    if config.time_budget:
        budget = TimeBudget(config.time_budget * 60)
        callbacks += [budget, cosine_by_time(budget, config.learning_rate)]
    if config.keep_weights == "best":  # the last epoch's weights are the model itself at the end
        callbacks.append(best_checkpoint(folder, state))
    if config.patience > 0:
        callbacks.append(ResumableEarlyStopping(config.patience, state, start=config.epochs // 2))
    if config.ckpt_n_epochs:
        callbacks.append(EpochWeights(folder, config.ckpt_n_epochs))
    # The checkpoint (which carries the epoch's metrics) first, then the metrics: see EpochMetrics.
    callbacks.append(CheckpointArtifacts(folder, state))
    # A run resumed after at least one epoch already logged the optimizer config and summary.
    callbacks += [EpochMetrics(resumed=state.epoch >= 0), HeartbeatTag()]
    return callbacks + list(extra)


def _test(model: keras.Model, data: GroupData, batch_size: int) -> dict[str, float] | None:
    """Score the best weights on the test split (mean_iou, iou_<structure>, loss), or None."""
    if len(data.sets["test"]) == 0:
        print("[armseg train] no test split (test_percent 0): test metrics not logged")
        return None
    scores = model.evaluate(SliceBatches(data.sets["test"], batch_size, False), return_dict=True, verbose=0)
    return {name: float(value) for name, value in scores.items()}


def _kept(run_id: str, keep_weights: str) -> tuple[float, int]:
    """The kept weights' val_mean_iou and epoch (logged as best_val_mean_iou and best_epoch), from
    the run's history, so a resumed run counts the epochs before its interruption too: the last
    epoch, or the first epoch that reached the best."""
    history = mlflow.MlflowClient().get_metric_history(run_id, MONITOR)
    if not history:
        return float("nan"), 0
    if keep_weights == "last":
        kept = max(history, key=lambda m: m.step)
    else:
        kept = max(history, key=lambda m: (m.value, -m.step))
    return float(kept.value), int(kept.step)


def _registered(run_id: str):
    """The run's registered version: the one an interrupted close already made, else a new one."""
    existing = versions_of_run(run_id)
    return existing[-1] if existing else register_run_model(run_id, made_by=STAGE)


def _log_best(best: float, best_epoch: int, test: dict[str, float] | None, model_id: str,
              datasets: Mapping[str, object], logged: Mapping[str, float]) -> None:
    """`best_val_mean_iou`, `best_epoch` and the `test_*` scores, each linked to the logged model
    and to the split it was measured on (the model's page lists them with their datasets);
    those in `logged` (the run's metrics already) are not logged again."""
    if BEST_METRIC not in logged:
        mlflow.log_metrics({BEST_METRIC: best, BEST_EPOCH_METRIC: float(best_epoch)}, model_id=model_id,
                           dataset=datasets.get("val"))
    if test and TEST_METRIC not in logged:
        mlflow.log_metrics({f"test_{name}": value for name, value in test.items()}, model_id=model_id,
                           dataset=datasets.get("test"))


def _history(run_id: str, names: Sequence[str]) -> dict[str, list[tuple[int, float]]]:
    client = mlflow.MlflowClient()
    return {name: [(m.step, m.value) for m in client.get_metric_history(run_id, name)] for name in names}


def _log_learning_curve(run_id: str, config: TrainConfig, best_epoch: int) -> None:
    """loss/val_loss and IoUs per epoch, from the run's own history (resumed epochs included)."""
    structures = config.label_mapping.foreground
    names = ("loss", "val_loss", *(f"val_iou_{name}" for name in structures), MONITOR)
    figure = learning_curve_figure(_history(run_id, names), structures, best_epoch or None)
    mlflow.log_figure(figure, "learning_curve.png")


def _spread(count: int, picks: int = OVERLAY_SLICES) -> np.ndarray:
    return np.unique(np.linspace(0, count - 1, picks).round().astype(int))


def _log_overlays(model: keras.Model, val: SliceSet, config: TrainConfig) -> None:
    """Prediction (filled) over ground truth (outline) on a few validation slices."""
    picks = _spread(len(val))
    predicted = np.argmax(model.predict(val.with_channels(picks).astype(np.float32), verbose=0), axis=-1)
    figure = overlay_figure(val.middle(picks).astype(np.float32), val.labels[picks], predicted, picks,
                            config.label_mapping.foreground, config.group)
    mlflow.log_figure(figure, "overlays/val_overlays.png")


def _log_transform_examples(train_set: SliceSet, config: TrainConfig) -> None:
    """Training slices as the network sees them after the random transforms."""
    picks = _spread(len(train_set))
    images, labels = augment_batch(train_set.images[picks], train_set.labels[picks], config.transforms,
                                   seed=config.seed)
    figure = transforms_figure(train_set.middle(picks), np.asarray(images)[..., train_set.channels // 2],
                               np.asarray(labels), picks, config.label_mapping.num_classes)
    mlflow.log_figure(figure, "overlays/augmentation_examples.png")
