"""The accuracy table as text: what is printed, CSV (numbers), Markdown and LaTeX (the heat maps,
HTML and PNG, are in armseg.table.pictures).

Human formats show each row's `mean ± SD` and `n`, and metric names with their units (hd95 in
mm, armseg's percent_* in %). Plain string building: a 50,000-cell table formats in a fraction
of a second.
"""

from __future__ import annotations

import math
from pathlib import Path

from armseg.table.pictures import Grid, metric_header, number_text
from armseg.table.pivot import MEAN_COLUMN, N_COLUMN, SD_COLUMN, AccuracyTable

FORMATS = ("csv", "md", "tex", "html", "png")
RUNS_SUFFIX = "_runs"  # <stem>_runs.csv: the per-scan run behind every cell
_PRINT_SCANS_UP_TO = 20  # wider tables are printed as their summary columns only


def output_paths(out: Path) -> dict[str, Path]:
    """`table.csv`, `table.md` or `table` all mean table.csv/.md/.tex/.html/.png + table_runs.csv."""
    known = (*FORMATS, "htm", "markdown", "latex")
    stem = out.with_suffix("") if out.suffix.lstrip(".").lower() in known else out
    paths = {kind: stem.with_name(f"{stem.name}.{kind}") for kind in FORMATS}
    paths["runs"] = stem.with_name(f"{stem.name}{RUNS_SUFFIX}.csv")
    return paths


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


def grid(table: AccuracyTable) -> Grid:
    """The table as plain values for the heat maps."""
    header, rows = display_rows(table)
    return Grid(caption=caption(table), metrics=list(table.metrics), header=header, rows=rows,
                labels=2 if len(table.metrics) > 1 else 1,
                row_metrics=[_metric_of_row(table, index) for index in table.frame.index],
                models=list(dict.fromkeys(i[0] if isinstance(i, tuple) else i for i in table.frame.index)),
                scans=table.scans, values=table.frame[table.scans].to_numpy(dtype=float),
                run_ids=table.run_ids[table.scans].to_numpy(dtype=object))


def text_files(table: AccuracyTable) -> dict[str, str]:
    """Every file but the heat maps (`armseg.table.render` draws those)."""
    return {"csv": to_csv(table), "md": to_markdown(table), "tex": to_latex(table), "runs": runs_csv(table)}
