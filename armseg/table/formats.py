"""The accuracy table as files: CSV (numbers), Markdown, LaTeX, an HTML heat map and a PNG heat map.

Human formats show each row's `mean ± SD` and `n`, and metric names with their units (hd95 in
mm, armseg's percent_* in %). Colours come from cividis, readable with any colour vision, turned
round for metrics that are better small so that the same colour always means "good". Everything
is plain string building: a 50,000-cell table formats in a fraction of a second.
"""

from __future__ import annotations

import html
import io
import math
from pathlib import Path

import numpy as np

from armseg.table.pivot import MEAN_COLUMN, N_COLUMN, SD_COLUMN, AccuracyTable
from armseg.tracking.contract import lower_is_better, metric_unit

FORMATS = ("csv", "md", "tex", "html", "png")
RUNS_SUFFIX = "_runs"  # <stem>_runs.csv: the per-scan run behind every cell
PALETTE = "cividis"
_ANNOTATE_UP_TO = 150  # cells; beyond, numbers in the PNG would be unreadable (the files have them)
_MAX_TICKS = 25  # labels per axis of the PNG
_PRINT_SCANS_UP_TO = 20  # wider tables are printed as their summary columns only
_TABLE_STYLE = ("font-family: sans-serif; border-collapse: collapse; font-size: 13px")
_CELL_STYLE = "padding: 3px 8px; text-align: right; white-space: nowrap"


def output_paths(out: Path) -> dict[str, Path]:
    """`table.csv`, `table.md` or `table` all mean table.csv/.md/.tex/.html/.png + table_runs.csv."""
    known = (*FORMATS, "htm", "markdown", "latex")
    stem = out.with_suffix("") if out.suffix.lstrip(".").lower() in known else out
    paths = {kind: stem.with_name(f"{stem.name}.{kind}") for kind in FORMATS}
    paths["runs"] = stem.with_name(f"{stem.name}{RUNS_SUFFIX}.csv")
    return paths


def metric_header(metric: str) -> str:
    """`hd95_biceps (mm)`, `percent_biceps (%)`, `mean_iou`."""
    unit = metric_unit(metric)
    return f"{metric} ({unit})" if unit else metric


def number_text(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def mean_sd_text(mean: float, sd: float) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.3f}" if math.isnan(sd) else f"{mean:.3f} ± {sd:.3f}"


def caption(table: AccuracyTable) -> str:
    roots = f"; data root {table.data_roots[0]}" if len(table.data_roots) == 1 and table.data_roots[0] else ""
    return (f"{', '.join(metric_header(m) for m in table.metrics)} (rows: models, columns: scans{roots}; "
            "mean ± SD and n over each row's scans)")


def _metric_of_row(table: AccuracyTable, index: object) -> str:
    return index[1] if isinstance(index, tuple) else table.metrics[0]


def display_rows(table: AccuracyTable) -> tuple[list[str], list[list[str]]]:
    """(header, rows) as text: labels, one number per scan, `mean ± SD`, `n`."""
    several = len(table.metrics) > 1
    header = ["model", *(["metric"] if several else []), *table.scans, "mean ± SD", "n"]
    scans = table.frame[table.scans].to_numpy(dtype=float)
    rows = []
    for position, (index, summary) in enumerate(table.frame[[MEAN_COLUMN, SD_COLUMN, N_COLUMN]].iterrows()):
        labels = [index[0], metric_header(index[1])] if several else [str(index)]
        rows.append([*labels, *(number_text(float(v)) for v in scans[position]),
                     mean_sd_text(summary[MEAN_COLUMN], summary[SD_COLUMN]), str(int(summary[N_COLUMN]))])
    return header, rows


def to_csv(table: AccuracyTable) -> str:
    """Numbers at full precision; mean, sd and n as three columns."""
    return table.frame.to_csv()


def runs_csv(table: AccuracyTable) -> str:
    """The same grid holding the run id of every cell: where each number came from."""
    return table.run_ids.to_csv()


def to_text(table: AccuracyTable) -> str:
    """What `armseg table` prints: the whole table, or its summary columns when it has many scans."""
    header, rows = display_rows(table)
    labels = 2 if len(table.metrics) > 1 else 1
    if len(table.scans) > _PRINT_SCANS_UP_TO:
        header = header[:labels] + header[-2:]
        rows = [row[:labels] + row[-2:] for row in rows]
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(text.ljust(w) if i < labels else text.rjust(w) for i, (text, w) in
                       enumerate(zip(line, widths, strict=True))) for line in [header, *rows]]
    return caption(table) + "\n" + "\n".join(lines) + "\n"


def to_markdown(table: AccuracyTable) -> str:
    """A GitHub-flavoured Markdown table."""
    header, rows = display_rows(table)
    labels = 2 if len(table.metrics) > 1 else 1
    lines = [f"**{caption(table)}**", "", "| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * labels + ["---:"] * (len(header) - labels)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "±": r"$\pm$", "²": r"$^2$"}


def latex_text(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(char, char) for char in text)


def to_latex(table: AccuracyTable) -> str:
    """A booktabs `tabular` for a paper (needs \\usepackage{booktabs})."""
    header, rows = display_rows(table)
    labels = 2 if len(table.metrics) > 1 else 1
    lines = [f"% armseg table: {latex_text(caption(table))}",
             r"\begin{tabular}{" + "l" * labels + "r" * (len(header) - labels) + "}", r"\toprule",
             " & ".join(latex_text(text) for text in header[:-1]) + r" & $n$ \\", r"\midrule"]
    lines += [" & ".join(latex_text(text) for text in row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


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


def to_html(table: AccuracyTable) -> str:
    """The table as a heat map; hovering a cell shows the per-scan run it came from."""
    header, rows = display_rows(table)
    labels = 2 if len(table.metrics) > 1 else 1
    values = table.frame[table.scans].to_numpy(dtype=float)
    run_ids = table.run_ids[table.scans].to_numpy(dtype=object)
    metrics = [_metric_of_row(table, index) for index in table.frame.index]
    scales = {m: colour_range(values[[r == m for r in metrics]], m) for m in table.metrics}
    title = html.escape(", ".join(table.metrics))
    parts = [f"<!doctype html>\n<meta charset='utf-8'>\n<title>armseg {title}</title>\n",
             f"<table style='{_TABLE_STYLE}'>\n<caption>{html.escape(caption(table))}</caption>\n<tr>",
             *(f"<th style='{_CELL_STYLE}'>{html.escape(text)}</th>" for text in header), "</tr>\n"]
    for position, row in enumerate(rows):
        colours = cell_colours(values[position], metrics[position], *scales[metrics[position]])
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


def _models(table: AccuracyTable) -> list[str]:
    return list(dict.fromkeys(i[0] if isinstance(i, tuple) else i for i in table.frame.index))


def heatmap_png(table: AccuracyTable) -> bytes:
    """One heat-map panel per metric (rows: models, columns: scans), as PNG bytes.

    Margins are sized from the labels instead of by a layout engine, and at most _MAX_TICKS
    labels go on an axis: text is what costs time in matplotlib (a 500 x 100 table draws in
    a fifth of a second).
    """
    from matplotlib.figure import Figure

    scans, models = table.scans, _models(table)
    annotate = len(scans) * len(models) <= _ANNOTATE_UP_TO
    left = 0.06 * max(len(name) for name in models) + 0.3  # inches, for 7-point labels
    bottom = 0.06 * max(len(name) for name in scans) + 0.2
    axis_width = min(14.0, max(3.0, (0.5 if annotate else 0.12) * len(scans)))
    axis_height = min(10.0, max(0.8, 0.22 * len(models)))
    title = 0.35
    width, panel = left + axis_width + 1.3, axis_height + bottom + title
    height = panel * len(table.metrics)
    figure = Figure(figsize=(width, height))
    figure.subplots_adjust(left=left / width, right=(left + axis_width) / width, top=1 - title / height,
                           bottom=bottom / height, hspace=(bottom + title) / axis_height)
    axes = figure.subplots(len(table.metrics), 1, squeeze=False)[:, 0]
    for axis, metric in zip(axes, table.metrics, strict=True):
        rows = [i for i, index in enumerate(table.frame.index) if _metric_of_row(table, index) == metric]
        values = table.frame[scans].to_numpy(dtype=float)[rows]
        low, high = colour_range(values, metric)
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


def text_files(table: AccuracyTable) -> dict[str, str]:
    """Every file but the heat maps (`armseg.table.render` draws those)."""
    return {"csv": to_csv(table), "md": to_markdown(table), "tex": to_latex(table), "runs": runs_csv(table)}
