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
MEASURE_KIND_TAG = "armseg.measure_kind"
DEFORMATION_SOURCE_TAG = "armseg.deformation_source"
CELLS_TAG = "armseg.cells"
CELLS_RUN_TAG = "armseg.cells_run"
HEARTBEAT_TAG = "armseg.heartbeat"

# What each tag means, on which runs it appears. README lists exactly these.
TAGS: dict[str, str] = {
    STAGE_TAG: "every run: the command that made it",
    ERROR_TAG: "a FAILED or KILLED run: the one-line reason",
    VERSION_TAG: "every run: armseg's version",
    COMMIT_TAG: "every run started from a git checkout: the commit",
    GROUP_TAG: "train, tune, augment, group and select-epoch runs and model versions: the training group",
    DATA_ROOT_TAG: "train, predict, evaluate, measure, import and group runs and model versions: the data "
                   "root they read (absolute)",
    MODEL_TAG: "evaluate, measure and per-scan register runs: the predictions folder (model) name",
    SUBJECT_TAG: "evaluate, measure and per-scan register runs: the subject (SubB)",
    TRIAL_TAG: "evaluate, measure and per-scan register runs: the trial (trial6)",
    SCAN_TAG: "evaluate, measure and per-scan register runs: the table column (trial6B)",
    MODEL_RUN_TAG: "evaluate and select-epoch runs, and versions from select-epoch: the run that trained "
                   "the model",
    MODEL_VERSION_TAG: "evaluate runs: the model's registered version, if any",
    MODEL_URI_TAG: "evaluate runs: the model URI that wrote the predictions",
    MODELS_TAG: "predict runs: the predictions folders written",
    ATLAS_TAG: "register runs: the atlas scan's folder",
    STUDY_TAG: "tune runs, their trials and the version tune registers: the Optuna study",
    TRIAL_NUMBER_TAG: "tune trial runs: Optuna's trial number",
    PRUNED_TAG: "tune trial runs stopped by the pruner",
    BEST_TRIAL_TAG: "tune parent runs: the best trial's number",
    BEST_RUN_TAG: "tune parent runs: the best trial's run",
    CHAMPION_VERSION_TAG: "tune parent runs: the version `champion` points at",
    MADE_BY_TAG: "model versions: train, tune or select-epoch",
    EPOCH_TAG: "select-epoch runs and the model versions they register: the chosen epoch",
    REPLICAS_TAG: "train runs: devices the batch was split across",
    BACKEND_TAG: "train runs: the Keras backend",
    DEVICES_TAG: "train runs: the devices used",
    RESUMED_AT_TAG: "resumed train runs: the first epoch run again",
    ELBOW_ANGLE_TAG: "evaluate and measure runs of trials named trial<N>_<angle>_<load>: the angle",
    LOAD_TAG: "evaluate and measure runs of trials named trial<N>_<angle>_<load>: the load",
    MEASURE_KIND_TAG: "measure runs: scan (one source and scan), agreement (the parent) or deformation",
    DEFORMATION_SOURCE_TAG: "the measure deformation run: ground_truth or the model it measured",
    CELLS_TAG: "evaluate parent runs: `pending` while scoring, then the artifact (`cells.json`) that lists "
               "every (model, scan) cell of its children",
    CELLS_RUN_TAG: "evaluate per-scan runs: the parent run whose `cells.json` lists this run's cell",
    HEARTBEAT_TAG: "train runs: `<host> <pid> <UTC time>` of the process training it, renewed every epoch; "
                   "`--resume` refuses a run whose process is alive",
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
# MLflow dataset inputs (mlflow.log_input): train logs its splits, evaluate the scan it scored.
DATASET_CONTEXTS = {"train": "training", "val": "validation", "test": "test"}
EVALUATION_CONTEXT = "evaluation"
SKIPPED_EMPTY_METRIC = "skipped_empty_slices"  # unlabelled slices left out (skip_empty), logged once
NONFINITE_METRIC = "nonfinite_voxels_replaced"  # NaN/inf voxels set to 0 (--nonfinite replace), once
TRAIN_METRICS = (*EPOCH_METRICS, BEST_METRIC, BEST_EPOCH_METRIC, TEST_METRIC, SKIPPED_EMPTY_METRIC,
                 NONFINITE_METRIC)

# Evaluate: per (model, scan) run. First OpenArm's own table metrics, by its names and on its scale
# (fractions 0-1), computed on the raw label values exactly as generate_accuracy_table.py did.
OPENARM_METRICS = ("mean_iou", "total_percent", "humerus_iou", "bicep_iou", "humerus_percent",
                   "bicep_percent")
# Then armseg's, on the classes of the model's label map: the share (in %) of voxels whose class is
# right, and per structure of the map: IoU, Dice, recall (in %) and hd95 (mm).
CLASS_AGREEMENT_METRIC = "class_agreement_percent"
STRUCTURE_KINDS = ("iou", "dice", "percent", "hd95")  # percent = recall: share of the reference found
EVALUATE_METRIC_PATTERNS = tuple(f"{kind}_<structure>" for kind in STRUCTURE_KINDS)
# The structures of the default map (`--labels openarm`); `openarm-all` adds tissue_8, tissue_9, ...
STRUCTURES = ("humerus", "biceps")
EVALUATE_METRICS = (*OPENARM_METRICS, CLASS_AGREEMENT_METRIC,
                    *(f"{kind}_{name}" for kind in STRUCTURE_KINDS for name in STRUCTURES))
_STRUCTURE_NAME = "[A-Za-z0-9][A-Za-z0-9_.-]*"


def structure_metric(kind: str, structure: str) -> str:
    """`iou_humerus`, `hd95_tissue_8`: armseg's per-structure metric name."""
    return f"{kind}_{structure}"


def is_evaluate_metric(name: str) -> bool:
    """An evaluate metric name: a fixed one, or `<kind>_<structure>` for a structure of some map."""
    import re  # the standard library only: this module stays free of heavy imports

    if name in OPENARM_METRICS or name == CLASS_AGREEMENT_METRIC:
        return True
    return re.fullmatch(f"(?:{'|'.join(STRUCTURE_KINDS)})_{_STRUCTURE_NAME}", name) is not None


def metric_scale(name: str) -> tuple[float, float] | None:
    """The fixed range of a bounded metric: OpenArm's are fractions, armseg's *percent* are percent,
    IoU and Dice fractions; None for distances (unbounded)."""
    if name in OPENARM_METRICS or name.startswith(("iou_", "dice_")):
        return 0.0, 1.0
    if name == CLASS_AGREEMENT_METRIC or name.startswith("percent_"):
        return 0.0, 100.0
    return None


# Units and direction of a metric from its name, for any name (evaluate's, measure's, a label
# map's structures): `hd95_*` and `*_mm` in mm, `*_mm2_*` in mm², armseg's `percent_*` in %;
# OpenArm's `*_percent` are fractions like the IoUs. Errors and distances are better small.
_UNIT_WORDS = {"hd95": "mm", "mm": "mm", "mm2": "mm²"}
_LOWER_IS_BETTER_WORDS = ("hd95", "error", "rmse", "distance", "loss")


def metric_unit(name: str) -> str:
    """'mm', 'mm²', '%' or '' (a fraction, a count or unknown)."""
    words = name.lower().split("_")
    if words[0] == "percent" or name in (CLASS_AGREEMENT_METRIC, ) or name.startswith("volume_error_"):
        return "%"
    return next((_UNIT_WORDS[word] for word in words if word in _UNIT_WORDS), "")


def lower_is_better(name: str) -> bool:
    """Distances and errors (hd95_*, *_error_*, *_rmse_*) are better small; overlaps better large."""
    return any(word in _LOWER_IS_BETTER_WORDS for word in name.lower().split("_"))
