"""The accuracy table as files and pictures: CSV, Markdown, an HTML heat map and a PNG."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from armseg.measure.names import AREA_RMSE, SIGNED_ERRORS, measure_of
from armseg.table.query import MEAN_COLUMN
from armseg.tracking.contract import lower_is_better, metric_scale

FORMATS = ("csv", "md", "html")
_TABLE_STYLE = [{"selector": "", "props": "font-family: sans-serif; border-collapse: collapse;"},
                {"selector": "td, th", "props": "padding: 4px 10px; text-align: right;"}]


def output_paths(out: Path) -> dict[str, Path]:
    """`table.csv`, `table.md` or `table` all mean table.csv + table.md + table.html."""
    stem = out.with_suffix("") if out.suffix.lstrip(".").lower() in (*FORMATS, "htm", "markdown") else out
    return {kind: stem.with_name(f"{stem.name}.{kind}") for kind in FORMATS}


def number_text(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def to_markdown(table: pd.DataFrame, metric: str) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency for three lines of formatting)."""
    header = ["model", *map(str, table.columns)]
    lines = [f"**{metric}** (rows: models, columns: scans)", "",
             "| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * table.shape[1]) + "|"]
    for model, row in table.iterrows():
        lines.append("| " + " | ".join([str(model), *(number_text(v) for v in row)]) + " |")
    return "\n".join(lines) + "\n"


def _colour_map(metric: str) -> str:
    measure = measure_of(metric)
    if measure is not None:  # a measure is neither good nor bad; a signed error is best at 0
        return "RdYlGn_r" if measure == AREA_RMSE else "RdBu_r" if measure in SIGNED_ERRORS else "viridis"
    # Distances are better small, overlaps better large: the colours must say "good" the same way.
    return "RdYlGn_r" if lower_is_better(metric) else "RdYlGn"


def colour_range(table: pd.DataFrame, metric: str) -> tuple[float, float]:
    """Fixed scales for bounded metrics, so the same colour means the same score in every table
    (OpenArm's `*_percent` are fractions, armseg's `percent_*` percent)."""
    measure = measure_of(metric)
    scale = metric_scale(metric) if measure is None else None
    if scale is not None:
        return scale
    values = table.drop(columns=MEAN_COLUMN).to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    if measure in SIGNED_ERRORS:  # symmetric about 0, so white means "no error"
        reach = float(np.abs(finite).max()) if finite.size else 1.0
        return -(reach or 1.0), reach or 1.0
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)


def to_html(table: pd.DataFrame, metric: str) -> str:
    """The table as a heat map: pandas' Styler colours the scan cells (the mean column is bold)."""
    low, high = colour_range(table, metric)
    styled = (table.style.background_gradient(cmap=_colour_map(metric), axis=None, vmin=low, vmax=high)
              .format(number_text).set_caption(f"{metric} (rows: models, columns: scans)")
              .set_properties(subset=[MEAN_COLUMN], **{"font-weight": "bold"})
              .set_table_styles(_TABLE_STYLE))
    return f"<!doctype html>\n<meta charset='utf-8'>\n<title>armseg {metric}</title>\n{styled.to_html()}\n"


def heatmap_figure(table: pd.DataFrame, metric: str) -> Figure:
    """The same heat map as a picture, for the MLflow UI."""
    values = table.to_numpy(dtype=float)
    figure = Figure(figsize=(1.0 + 0.9 * values.shape[1], 1.0 + 0.5 * values.shape[0]), layout="constrained")
    axis = figure.subplots()
    low, high = colour_range(table, metric)
    image = axis.imshow(np.ma.masked_invalid(values), cmap=_colour_map(metric), vmin=low, vmax=high,
                        aspect="auto")
    for (row, column), value in np.ndenumerate(values):
        axis.text(column, row, number_text(float(value)), ha="center", va="center", fontsize=7)
    axis.set_xticks(range(values.shape[1]), [str(c) for c in table.columns], rotation=45, ha="right")
    axis.set_yticks(range(values.shape[0]), [str(i) for i in table.index])
    axis.set_title(metric)
    figure.colorbar(image, ax=axis, shrink=0.8)
    return figure
