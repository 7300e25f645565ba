"""The accuracy table's heat maps: a PNG (one panel per metric) and an HTML table coloured the same way.

They take a `Grid`, the table as plain values (text, numpy arrays), so the helper process that
draws them (armseg.table.render) loads numpy and matplotlib and nothing else. Colours come from
cividis, readable with any colour vision, turned round for metrics that are better small, so
bright always means good.
"""

from __future__ import annotations

import html
import io
import math
from dataclasses import dataclass

import numpy as np

from armseg.tracking.contract import lower_is_better, metric_unit

PALETTE = "cividis"
_ANNOTATE_UP_TO = 150  # cells; beyond, numbers in the PNG would be unreadable (the files have them)
_MAX_TICKS = 25  # labels per axis of the PNG
_TABLE_STYLE = "font-family: sans-serif; border-collapse: collapse; font-size: 13px"
_CELL_STYLE = "padding: 3px 8px; text-align: right; white-space: nowrap"


@dataclass(frozen=True)
class Grid:
    """The table as the pictures need it: display text, and the numbers and runs behind the cells."""

    caption: str
    metrics: list[str]
    header: list[str]  # label columns, one per scan, `mean ± SD`, `n`
    rows: list[list[str]]  # the same, as text
    labels: int  # leading label columns (model, and metric when there are several)
    row_metrics: list[str]  # the metric of each row
    models: list[str]
    scans: list[str]
    values: np.ndarray  # rows x scans
    run_ids: np.ndarray  # rows x scans, "" where there is no run


def metric_header(metric: str) -> str:
    """`hd95_biceps (mm)`, `percent_biceps (%)`, `mean_iou`."""
    unit = metric_unit(metric)
    return f"{metric} ({unit})" if unit else metric


def number_text(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def colour_range(values: np.ndarray, metric: str) -> tuple[float, float]:
    """Fixed scales where the metric has one, so the same colour means the same score in every table."""
    if metric_unit(metric) == "%":
        return 0.0, 100.0
    finite = values[np.isfinite(values)]
    if not finite.size:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    return (0.0, 1.0) if low >= 0.0 and high <= 1.0 else (low, high)


def _colour_map(metric: str):
    from matplotlib import colormaps

    palette = colormaps[PALETTE]
    return palette.reversed() if lower_is_better(metric) else palette


def cell_colours(values: np.ndarray, metric: str, low: float, high: float) -> list[str | None]:
    """CSS colours of values on the scale low..high (None where there is no number)."""
    scaled = np.clip((values - low) / (high - low if high > low else 1.0), 0.0, 1.0)
    rgba = _colour_map(metric)(np.nan_to_num(scaled))
    return [None if not np.isfinite(v) else "#{:02x}{:02x}{:02x}".format(*(int(255 * c) for c in colour[:3]))
            for v, colour in zip(values, rgba, strict=True)]


def _text_colour(background: str) -> str:
    red, green, blue = (int(background[i:i + 2], 16) for i in (1, 3, 5))
    return "#000" if 0.299 * red + 0.587 * green + 0.114 * blue > 140 else "#fff"


def scales(grid: Grid) -> dict[str, tuple[float, float]]:
    """One colour scale per metric, over all its rows."""
    metrics = np.array(grid.row_metrics, dtype=object)
    return {m: colour_range(grid.values[metrics == m], m) for m in grid.metrics}


def to_html(grid: Grid) -> str:
    """The table as a heat map; hovering a cell shows the per-scan run it came from."""
    labels, values, run_ids, metrics = grid.labels, grid.values, grid.run_ids, grid.row_metrics
    scale = scales(grid)
    title = html.escape(", ".join(grid.metrics))
    parts = [f"<!doctype html>\n<meta charset='utf-8'>\n<title>armseg {title}</title>\n",
             f"<table style='{_TABLE_STYLE}'>\n<caption>{html.escape(grid.caption)}</caption>\n<tr>",
             *(f"<th style='{_CELL_STYLE}'>{html.escape(text)}</th>" for text in grid.header), "</tr>\n"]
    for position, row in enumerate(grid.rows):
        colours = cell_colours(values[position], metrics[position], *scale[metrics[position]])
        parts.append("<tr>")
        parts += [f"<th style='{_CELL_STYLE}; text-align: left'>{html.escape(text)}</th>"
                  for text in row[:labels]]
        for text, colour, run_id in zip(row[labels:-2], colours, run_ids[position], strict=True):
            style = _CELL_STYLE + (f"; background: {colour}; color: {_text_colour(colour)}" if colour else "")
            hover = f" title='run {run_id}'" if run_id else ""
            parts.append(f"<td style='{style}'{hover}>{html.escape(text)}</td>")
        parts.append(f"<td style='{_CELL_STYLE}; font-weight: bold'>{html.escape(row[-2])}</td>"
                     f"<td style='{_CELL_STYLE}'>{row[-1]}</td></tr>\n")
    parts.append("</table>\n")
    return "".join(parts)


def heatmap_png(grid: Grid) -> bytes:
    """One heat-map panel per metric (rows: models, columns: scans), as PNG bytes.

    Margins are sized from the labels instead of by a layout engine, and at most _MAX_TICKS
    labels go on an axis: text is what costs time in matplotlib (a 500 x 100 table draws in
    a fifth of a second).
    """
    from matplotlib.figure import Figure

    scans, models = grid.scans, grid.models
    annotate = len(scans) * len(models) <= _ANNOTATE_UP_TO
    left = 0.06 * max(len(name) for name in models) + 0.3  # inches, for 7-point labels
    bottom = 0.06 * max(len(name) for name in scans) + 0.2
    axis_width = min(14.0, max(3.0, (0.5 if annotate else 0.12) * len(scans)))
    axis_height = min(10.0, max(0.8, 0.22 * len(models)))
    title = 0.35
    width, panel = left + axis_width + 1.3, axis_height + bottom + title
    height = panel * len(grid.metrics)
    figure = Figure(figsize=(width, height))
    figure.subplots_adjust(left=left / width, right=(left + axis_width) / width, top=1 - title / height,
                           bottom=bottom / height, hspace=(bottom + title) / axis_height)
    axes = figure.subplots(len(grid.metrics), 1, squeeze=False)[:, 0]
    scale = scales(grid)
    for axis, metric in zip(axes, grid.metrics, strict=True):
        values = grid.values[np.array(grid.row_metrics, dtype=object) == metric]
        low, high = scale[metric]
        image = axis.imshow(np.ma.masked_invalid(values), cmap=_colour_map(metric), vmin=low, vmax=high,
                            aspect="auto", interpolation="nearest")
        if annotate:
            colours = cell_colours(values.ravel(), metric, low, high)
            for (row, column), value in np.ndenumerate(values):
                colour = colours[row * values.shape[1] + column]
                axis.text(column, row, number_text(float(value)), ha="center", va="center", fontsize=7,
                          color=_text_colour(colour) if colour else "#000")
        _ticks(axis.set_xticks, scans, rotation=90)
        _ticks(axis.set_yticks, models)
        axis.set_title(metric_header(metric), fontsize=9)
        figure.colorbar(image, ax=axis, fraction=0.04, pad=0.02).ax.tick_params(labelsize=7)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _ticks(set_ticks, names: list[str], rotation: int = 0) -> None:
    """Every name when they fit, else an evenly spaced subset (the files name every row and column)."""
    step = max(1, math.ceil(len(names) / _MAX_TICKS))
    kept = range(0, len(names), step)
    set_ticks(list(kept), [names[i] for i in kept], fontsize=7, rotation=rotation)
