"""Every name `armseg measure` writes into the tracking store or onto disk, in one place.

Queries, `armseg table` and the README rely on these strings; the tags shared with `evaluate`
are imported from where they already live, so a measure run and an evaluate run of the same
(model, scan) carry the very same keys.
"""

from __future__ import annotations

import re

# Re-exported from the contract: the keys a measure run shares with every stage and with evaluate.
from armseg.tracking.contract import DEFORMATION_SOURCE_TAG as DEFORMATION_SOURCE_TAG
from armseg.tracking.contract import ELBOW_ANGLE_TAG as ELBOW_ANGLE_TAG
from armseg.tracking.contract import LOAD_TAG as LOAD_TAG
from armseg.tracking.contract import MEASURE_KIND_TAG
from armseg.tracking.contract import MODEL_TAG as MODEL_TAG
from armseg.tracking.contract import SCAN_TAG as SCAN_TAG
from armseg.tracking.contract import STAGE_TAG as STAGE_TAG
from armseg.tracking.contract import SUBJECT_TAG as SUBJECT_TAG
from armseg.tracking.contract import TRIAL_TAG as TRIAL_TAG

STAGE = "measure"
GROUND_TRUTH = "ground_truth"  # the `armseg.model` of the reference's own runs

KIND_TAG = MEASURE_KIND_TAG
# Values of KIND_TAG: which kind of measure run this is.
KIND_SCAN = "scan"  # one (source, scan): the measures and, for a model, its errors
KIND_AGREEMENT = "agreement"  # the parent: Bland-Altman summary of every model
KIND_DEFORMATION = "deformation"  # per subject, measures against elbow angle and load

# Summary measures of one structure in one scan; the metric is `<measure>_<structure>`.
VOLUME = "volume_mm3"
AREA_MAX = "area_max_mm2"
AREA_MEAN = "area_mean_mm2"
THICKNESS = "thickness_mm"
WIDTH = "width_mm"
RATIO = "thickness_width_ratio"
CENTROID_DEPTH = "centroid_depth_mm"
LENGTH = "length_mm"
MEASURES = (VOLUME, AREA_MAX, AREA_MEAN, THICKNESS, WIDTH, RATIO, CENTROID_DEPTH, LENGTH)

# A model's errors against the ground truth, per structure and scan.
VOLUME_ERROR = "volume_error"  # percent, signed
AREA_RMSE = "area_rmse_mm2"
THICKNESS_ERROR = "thickness_error_mm"  # signed
ERRORS = (VOLUME_ERROR, AREA_RMSE, THICKNESS_ERROR)
SIGNED_ERRORS = (VOLUME_ERROR, THICKNESS_ERROR)  # best at 0, either sign is wrong

# What the study relates to force: drawn in the Bland-Altman and deformation plots.
STUDY_MEASURES = (VOLUME, AREA_MAX, THICKNESS)

# Bland-Altman statistics on the parent run: `<model>/<statistic>_<measure>_<structure>`.
BIAS, SD, LOA_LOWER, LOA_UPPER, PAIRS = "bias", "sd", "loa_lower", "loa_upper", "n"
AGREEMENT_STATISTICS = (BIAS, LOA_LOWER, LOA_UPPER, PAIRS)

# Counts on the parent (scans, models) and deformation (subjects, scans) runs.
SCANS_METRIC, MODELS_METRIC, SUBJECTS_METRIC = "scans", "models", "subjects"

# Columns of a scan's area profile (one row per slice).
SLICE, POSITION = "slice", "position_mm"
PROFILE_AREA, PROFILE_THICKNESS, PROFILE_WIDTH = "area_mm2", "thickness_mm", "width_mm"

# Artifacts (in runs) and files (in --out).
PROFILE_CSV, PROFILE_PNG = "profile.csv", "profile.png"
MEASURES_CSV = "measures.csv"
AGREEMENT_CSV, AGREEMENT_MD, AGREEMENT_PNG = "agreement.csv", "agreement.md", "agreement.png"
DEFORMATION_CSV, DEFORMATION_PNG = "deformation.csv", "deformation.png"

_STRUCTURE = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_METRIC = re.compile(rf"^({'|'.join(map(re.escape, (*MEASURES, *ERRORS)))})_({_STRUCTURE})$")


def metric_name(measure: str, structure: str) -> str:
    """`volume_mm3` of `biceps` is logged as `volume_mm3_biceps`."""
    return f"{measure}_{structure}"


def agreement_metric(model: str, statistic: str, measure: str, structure: str) -> str:
    """`group_1_1/bias_volume_mm3_biceps`: the MLflow UI groups a model's statistics together."""
    return f"{model}/{statistic}_{metric_name(measure, structure)}"


def measure_of(name: str) -> str | None:
    """The measure or error a per-scan metric name holds (`volume_error_biceps` -> `volume_error`)."""
    match = _METRIC.match(name)
    return match.group(1) if match else None


def is_measure_metric(name: str) -> bool:
    """Whether `name` is a per-scan measure or error metric, e.g. `volume_error_biceps`."""
    return measure_of(name) is not None


def measure_metric_patterns() -> list[str]:
    """The metric names as a user reads them in an error message: `volume_mm3_<structure>`, ..."""
    return [f"{measure}_<structure>" for measure in (*MEASURES, *ERRORS)]
