"""How far a model's measures are from the ground truth's: per scan, then across scans.

Per structure and scan (NaN where the comparison has nothing to compare):
- `volume_error`: 100 x (model voxels - truth voxels) / truth voxels, signed percent (both on
  the same grid, so spacing cancels); -100 when the model misses a present structure, NaN when
  the truth has none;
- `area_rmse_mm2`: root mean square difference of the two area profiles over the slices where
  either holds the structure (slices where neither does would only dilute it); NaN when both
  lack it everywhere;
- `thickness_error_mm`: model thickness - truth thickness, signed; NaN when either lacks it.

Across scans, Bland-Altman agreement of each measure: the differences d = model - truth over
the scans where both are finite, bias = mean(d), SD with n - 1, and the 95 % limits of
agreement bias +- 1.96 SD (NaN limits with fewer than two pairs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from armseg.measure.names import (
    AREA_RMSE,
    BIAS,
    LOA_LOWER,
    LOA_UPPER,
    PAIRS,
    SD,
    THICKNESS,
    THICKNESS_ERROR,
    VOLUME_ERROR,
    metric_name,
)
from armseg.measure.shapes import StructureMeasures

LIMITS_Z = 1.96  # 95 % of normally distributed differences lie within bias +- 1.96 SD
AGREEMENT_COLUMNS = ["model", "structure", "measure", PAIRS, BIAS, SD, LOA_LOWER, LOA_UPPER]


def structure_errors(truth: StructureMeasures, model: StructureMeasures) -> dict[str, float]:
    """The three per-scan errors of one structure (see the module docstring)."""
    nan = float("nan")
    volume_error = 100.0 * (model.voxels - truth.voxels) / truth.voxels if truth.present else nan
    either = (truth.profile.area_mm2 > 0) | (model.profile.area_mm2 > 0)
    difference = model.profile.area_mm2[either] - truth.profile.area_mm2[either]
    rmse = float(np.sqrt(np.mean(difference**2))) if difference.size else nan
    thickness_error = model.summary[THICKNESS] - truth.summary[THICKNESS]
    return {VOLUME_ERROR: float(volume_error), AREA_RMSE: rmse, THICKNESS_ERROR: float(thickness_error)}


@dataclass(frozen=True)
class LimitsOfAgreement:
    """Bland-Altman summary of paired differences (model - truth)."""

    n: int
    bias: float
    sd: float
    lower: float
    upper: float


def bland_altman(truth: Sequence[float] | np.ndarray,
                 model: Sequence[float] | np.ndarray) -> LimitsOfAgreement:
    """Bias and 95 % limits of agreement over the pairs where both values are finite."""
    truth, model = np.asarray(truth, dtype=float), np.asarray(model, dtype=float)
    keep = np.isfinite(truth) & np.isfinite(model)
    differences = model[keep] - truth[keep]
    n = int(differences.size)
    bias = float(differences.mean()) if n else float("nan")
    sd = float(differences.std(ddof=1)) if n >= 2 else float("nan")
    return LimitsOfAgreement(n, bias, sd, bias - LIMITS_Z * sd, bias + LIMITS_Z * sd)


def paired(measures: pd.DataFrame, model: str, truth_name: str) -> pd.DataFrame:
    """A model's rows beside the truth's rows of the same scans (columns suffixed _model/_truth)."""
    keys = ["subject", "trial_name"]
    truth = measures[measures["source"] == truth_name]
    rows = measures[measures["source"] == model]
    return rows.merge(truth, on=keys, suffixes=("_model", "_truth"), how="inner")


def agreement_table(measures: pd.DataFrame, models: Sequence[str], structures: Sequence[str],
                    measure_names: Sequence[str], truth_name: str) -> pd.DataFrame:
    """One row per (model, structure, measure): n, bias, SD and the limits of agreement."""
    records = []
    for model in models:
        pairs = paired(measures, model, truth_name)
        for structure in structures:
            for measure in measure_names:
                column = metric_name(measure, structure)
                if f"{column}_truth" in pairs:
                    limits = bland_altman(pairs[f"{column}_truth"], pairs[f"{column}_model"])
                else:
                    limits = bland_altman([], [])
                records.append({"model": model, "structure": structure, "measure": measure,
                                PAIRS: limits.n, BIAS: limits.bias, SD: limits.sd,
                                LOA_LOWER: limits.lower, LOA_UPPER: limits.upper})
    return pd.DataFrame.from_records(records, columns=AGREEMENT_COLUMNS)
