"""The pictures of `armseg measure`, as matplotlib `Figure` objects (no pyplot state), logged
with `mlflow.log_figure` or saved to disk by the caller."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from armseg.measure.agreement import paired
from armseg.measure.conditions import load_order
from armseg.measure.names import (
    AREA_MAX,
    AREA_MEAN,
    BIAS,
    CENTROID_DEPTH,
    LENGTH,
    LOA_LOWER,
    LOA_UPPER,
    RATIO,
    THICKNESS,
    VOLUME,
    WIDTH,
    metric_name,
)
from armseg.measure.shapes import Profile

AXIS_LABELS = {VOLUME: "volume (mm³)", AREA_MAX: "peak area (mm²)", AREA_MEAN: "mean area (mm²)",
               THICKNESS: "thickness (mm)", WIDTH: "width (mm)", RATIO: "thickness / width",
               CENTROID_DEPTH: "centroid depth (mm)", LENGTH: "length (mm)"}
TRUTH_STYLE = {"color": "black", "linestyle": "--", "linewidth": 1.4, "zorder": 3}
_MARKERS = "osD^vP*Xh<>"
PANELS_PER_ROW = 4  # profile panels: many structures (--labels openarm-all) wrap into rows


def _colours(count: int) -> list:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    return [palette(i % 10) for i in range(count)]


def profile_figure(profiles: Mapping[str, Profile], source: str, title: str,
                   truth: Mapping[str, Profile] | None = None) -> Figure:
    """Cross-sectional area along the arm, one panel per structure; the ground truth's profile
    is drawn over the model's (dashed black) so where they part is where the model errs."""
    columns = min(PANELS_PER_ROW, max(1, len(profiles)))
    rows = -(-max(1, len(profiles)) // columns)
    figure = Figure(figsize=(1.0 + 3.6 * columns, 0.4 + 2.6 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis in axes[len(profiles):]:
        axis.set_axis_off()
    for axis, (structure, profile) in zip(axes, profiles.items(), strict=False):
        axis.fill_between(profile.position_mm, profile.area_mm2, alpha=0.25, color="tab:blue", linewidth=0)
        axis.plot(profile.position_mm, profile.area_mm2, color="tab:blue", label=source)
        if truth is not None and structure in truth:
            axis.plot(truth[structure].position_mm, truth[structure].area_mm2, label="ground truth",
                      **TRUTH_STYLE)
        axis.set_title(structure)
        axis.set_xlabel("position along the arm (mm)")
        axis.set_ylabel("area (mm²)")
        axis.set_ylim(bottom=0)
        axis.legend(fontsize=7, loc="lower center")
    figure.suptitle(title, fontsize=10)
    return figure


def bland_altman_figure(measures: pd.DataFrame, agreement: pd.DataFrame, models: Sequence[str],
                        structures: Sequence[str], measure_names: Sequence[str], truth_name: str) -> Figure:
    """Bland-Altman plots, a row per structure and a column per measure: each model's
    differences (model - truth) against the pair's mean, with its bias (solid) and 95 % limits
    of agreement (dashed) in the model's colour."""
    rows, columns = max(1, len(structures)), max(1, len(measure_names))
    figure = Figure(figsize=(1.0 + 3.4 * columns, 0.6 + 2.8 * rows), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    colours = dict(zip(models, _colours(len(models)), strict=True))
    pairs = {model: paired(measures, model, truth_name) for model in models}
    for row, structure in enumerate(structures):
        for column, measure in enumerate(measure_names):
            axis, name = grid[row][column], metric_name(measure, structure)
            axis.axhline(0.0, color="grey", linewidth=0.8)
            scale = [_bland_altman_points(axis, pairs[model], name, agreement, model, structure, measure,
                                          colours[model]) for model in models]
            _at_least(axis, max(scale, default=0.0))
            axis.set_title(f"{structure}: {AXIS_LABELS.get(measure, measure)}", fontsize=9)
            axis.set_xlabel("mean of model and truth")
            axis.set_ylabel("model − truth")
    if models:
        grid[0][0].legend(fontsize=7)
    figure.suptitle("Agreement with the ground truth (Bland–Altman, 95 % limits)", fontsize=10)
    return figure


def _at_least(axis, scale: float) -> None:
    """Show differences on at least +-1 % of the measure's size: perfect agreement then reads as a
    flat line at 0, not as noise magnified to fill the panel (with a 1e-17 offset label)."""
    axis.ticklabel_format(axis="y", useOffset=False)
    low, high = axis.get_ylim()
    floor = 0.01 * scale if scale > 0 else 1.0
    axis.set_ylim(min(low, -floor), max(high, floor))


def _bland_altman_points(axis, pairs: pd.DataFrame, name: str, agreement: pd.DataFrame, model: str,
                         structure: str, measure: str, colour) -> float:
    """Draw one model's points and lines; return the size of the measure (largest |mean|)."""
    if f"{name}_truth" not in pairs:
        return 0.0
    truth, found = pairs[f"{name}_truth"].to_numpy(float), pairs[f"{name}_model"].to_numpy(float)
    means = (truth + found) / 2
    axis.scatter(means, found - truth, s=14, color=colour, label=model)
    finite = np.abs(means[np.isfinite(means)])
    size = float(finite.max()) if finite.size else 0.0
    row = agreement[(agreement["model"] == model) & (agreement["structure"] == structure)
                    & (agreement["measure"] == measure)]
    if row.empty:
        return size
    axis.axhline(float(row[BIAS].iloc[0]), color=colour, linewidth=1.0)
    for limit in (LOA_LOWER, LOA_UPPER):
        value = float(row[limit].iloc[0])
        if np.isfinite(value):
            axis.axhline(value, color=colour, linewidth=0.8, linestyle="--")
    return size


def deformation_figure(table: pd.DataFrame, structures: Sequence[str], measure_names: Sequence[str],
                       source: str) -> Figure:
    """Measures against elbow angle, a row per structure and a column per measure: one line per
    (subject, load), colour = load, marker = subject."""
    rows, columns = max(1, len(structures)), max(1, len(measure_names))
    figure = Figure(figsize=(1.0 + 3.4 * columns, 0.6 + 2.8 * rows), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    known = table.dropna(subset=["elbow_angle"]) if "elbow_angle" in table else table.iloc[0:0]
    loads = sorted(known["load"].dropna().unique(), key=load_order) if not known.empty else []
    subjects = list(dict.fromkeys(known["subject"])) if not known.empty else []
    colours = dict(zip(loads, _colours(len(loads)), strict=True))
    for row, structure in enumerate(structures):
        for column, measure in enumerate(measure_names):
            axis, name = grid[row][column], metric_name(measure, structure)
            for (subject, load), points in known.groupby(["subject", "load"], sort=False):
                points = points.sort_values("elbow_angle")
                marker = _MARKERS[subjects.index(subject) % len(_MARKERS)]
                axis.plot(points["elbow_angle"], points[name], marker=marker, color=colours[load],
                          label=f"{subject} {load}")
            axis.set_title(f"{structure}: {AXIS_LABELS.get(measure, measure)}", fontsize=9)
            axis.set_xlabel("elbow angle (°)")
            if known.empty:
                axis.text(0.5, 0.5, "no trial name carries an elbow angle", ha="center", va="center",
                          transform=axis.transAxes, fontsize=8)
    if not known.empty:
        grid[0][-1].legend(fontsize=7)
    figure.suptitle(f"Deformation by elbow angle and load ({source})", fontsize=10)
    return figure


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG bytes, so files on disk can be written atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
