"""The tracking contract: every name that queries, scripts and the table rely on, in one place.

Stages, tag keys, the registered model and its alias, and the metric names armseg logs.
README's "Tracking contract" section says the same thing (tests/test_contract.py compares
them). The module imports nothing, so `--help` and the commands that never run a network
can use it without paying for MLflow or Keras.
"""

from __future__ import annotations

DEFAULT_EXPERIMENT = "armseg"
REGISTERED_MODEL = "armseg-unet"
MODEL_ARTIFACT = "model"
CHAMPION_ALIAS = "champion"

# Commands that open runs; `armseg.stage` holds one of these.
STAGES = ("synth", "augment", "train", "tune", "predict", "evaluate", "measure", "register", "table",
          "demo", "import", "group", "select-epoch")

STAGE_TAG = "armseg.stage"
ERROR_TAG = "armseg.error"
VERSION_TAG = "armseg.version"
COMMIT_TAG = "armseg.git_commit"
GROUP_TAG = "armseg.group"
DATA_ROOT_TAG = "armseg.data_root"
MODEL_TAG = "armseg.model"
SUBJECT_TAG = "armseg.subject"
TRIAL_TAG = "armseg.trial"
SCAN_TAG = "armseg.scan"
MODEL_RUN_TAG = "armseg.model_run_id"
MODEL_VERSION_TAG = "armseg.model_version"
MODEL_URI_TAG = "armseg.model_uri"
MODELS_TAG = "armseg.models"
ATLAS_TAG = "armseg.atlas"
STUDY_TAG = "armseg.study"
TRIAL_NUMBER_TAG = "armseg.trial_number"
PRUNED_TAG = "armseg.pruned"
BEST_TRIAL_TAG = "armseg.best_trial"
BEST_RUN_TAG = "armseg.best_run_id"
CHAMPION_VERSION_TAG = "armseg.champion_version"
MADE_BY_TAG = "armseg.made_by"
EPOCH_TAG = "armseg.epoch"
REPLICAS_TAG = "armseg.replicas"
BACKEND_TAG = "armseg.backend"
DEVICES_TAG = "armseg.devices"
RESUMED_AT_TAG = "armseg.resumed_at_epoch"
ELBOW_ANGLE_TAG = "armseg.elbow_angle"
LOAD_TAG = "armseg.load"
CELLS_TAG = "armseg.cells"
CELLS_RUN_TAG = "armseg.cells_run"

# What each tag means, on which runs it appears. README lists exactly these.
TAGS: dict[str, str] = {
    STAGE_TAG: "every run: the command that made it",
    ERROR_TAG: "a FAILED or KILLED run: the one-line reason",
    VERSION_TAG: "every run: armseg's version",
    COMMIT_TAG: "every run started from a git checkout: the commit",
    GROUP_TAG: "train and tune runs, augment runs and model versions: the training group",
    DATA_ROOT_TAG: "train, predict, evaluate and measure runs: the data root they read",
    MODEL_TAG: "evaluate, measure and per-scan register runs: the predictions folder (model) name",
    SUBJECT_TAG: "evaluate, measure and per-scan register runs: the subject (SubB)",
    TRIAL_TAG: "evaluate, measure and per-scan register runs: the trial (trial6)",
    SCAN_TAG: "evaluate, measure and per-scan register runs: the table column (trial6B)",
    MODEL_RUN_TAG: "evaluate runs: the run that trained the model",
    MODEL_VERSION_TAG: "evaluate runs: the model's registered version, if any",
    MODEL_URI_TAG: "evaluate runs: the model URI that wrote the predictions",
    MODELS_TAG: "predict runs: the predictions folders written",
    ATLAS_TAG: "register runs: the atlas scan's folder",
    STUDY_TAG: "tune runs and their trials: the Optuna study",
    TRIAL_NUMBER_TAG: "tune trial runs: Optuna's trial number",
    PRUNED_TAG: "tune trial runs stopped by the pruner",
    BEST_TRIAL_TAG: "tune parent runs: the best trial's number",
    BEST_RUN_TAG: "tune parent runs: the best trial's run",
    CHAMPION_VERSION_TAG: "tune parent runs: the version `champion` points at",
    MADE_BY_TAG: "model versions: train, tune or select-epoch",
    EPOCH_TAG: "model versions registered from a chosen epoch: that epoch",
    REPLICAS_TAG: "train runs: devices the batch was split across",
    BACKEND_TAG: "train runs: the Keras backend",
    DEVICES_TAG: "train runs: the devices used",
    RESUMED_AT_TAG: "resumed train runs: the first epoch run again",
    ELBOW_ANGLE_TAG: "evaluate and measure runs of trials named trial<N>_<angle>_<load>: the angle",
    LOAD_TAG: "evaluate and measure runs of trials named trial<N>_<angle>_<load>: the load",
    CELLS_TAG: "evaluate parent runs: `pending` while scoring, then the artifact (`cells.json`) that lists "
               "every (model, scan) cell of its children",
    CELLS_RUN_TAG: "evaluate per-scan runs: the parent run whose `cells.json` lists this run's cell",
}

# The accuracy table: per-(model, scan) runs of these stages are its cells. A parent that scored
# many of them also logs them all in one artifact (CELLS_ARTIFACT, named by its CELLS_TAG), so the
# table reads one file per parent instead of one run per cell.
TABLE_STAGES = ("evaluate", "measure")
CELLS_ARTIFACT = "cells.json"
CELLS_PENDING = "pending"

# Train: per epoch (step = epoch, the first is 1), then once at the end.
EPOCH_METRICS = ("loss", "val_loss", "val_mean_iou", "epoch_seconds")
EPOCH_METRIC_PATTERNS = ("val_iou_<structure>",)
MONITOR = "val_mean_iou"
BEST_METRIC = "best_val_mean_iou"
BEST_EPOCH_METRIC = "best_epoch"
TEST_METRIC = "test_mean_iou"
TRAIN_METRICS = (*EPOCH_METRICS, BEST_METRIC, BEST_EPOCH_METRIC, TEST_METRIC)

# Evaluate: per (model, scan) run. Structures are the default label map's foreground classes.
STRUCTURES = ("humerus", "biceps")
OVERLAP_KINDS = ("iou", "dice", "percent")  # percent = recall: share of the reference voxels found
EVALUATE_METRICS = ("mean_iou", "total_percent",
                    *(f"{kind}_{name}" for kind in (*OVERLAP_KINDS, "hd95") for name in STRUCTURES))


# Units and direction of a metric from its name, for any name (evaluate's, measure's, a label
# map's structures): `hd95_*` and `*_mm` in mm, `*_mm2_*` in mm², armseg's `percent_*` in %;
# OpenArm's `*_percent` are fractions like the IoUs. Errors and distances are better small.
_UNIT_WORDS = {"hd95": "mm", "mm": "mm", "mm2": "mm²"}
_LOWER_IS_BETTER_WORDS = ("hd95", "error", "rmse", "distance", "loss")


def metric_unit(name: str) -> str:
    """'mm', 'mm²', '%' or '' (a fraction, a count or unknown)."""
    words = name.lower().split("_")
    if words[0] == "percent":
        return "%"
    return next((_UNIT_WORDS[word] for word in words if word in _UNIT_WORDS), "")


def lower_is_better(name: str) -> bool:
    return any(word in _LOWER_IS_BETTER_WORDS for word in name.lower().split("_"))
