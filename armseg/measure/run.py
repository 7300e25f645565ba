"""`armseg measure` as MLflow runs: the measures a study needs, from truth and from every model.

    measure                      (parent; Bland-Altman agreement of every model)
    ├── measure <source> <scan>  (one per (source, scan): measures, errors, profile.csv/png)
    └── deformation <source>     (measures against elbow angle and load: deformation.csv/png)

Each (source, scan) child carries evaluate's tags (`armseg.model` = the source, `ground_truth`
for the reference; `armseg.subject`, `armseg.trial`, `armseg.scan`), so `armseg table` pivots
measure metrics exactly like accuracy metrics, plus `armseg.elbow_angle` and `armseg.load` when
the trial's name carries them. Every measure is taken on the ground truth's grid and spacing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from armseg.errors import ArmsegError
from armseg.evaluate.pairs import model_folders
from armseg.io.atomic import write_bytes_atomic
from armseg.io.images import read_image
from armseg.io.labels import DEFAULT_LABEL_MAP, LabelMap
from armseg.io.tree import natural_key
from armseg.measure.agreement import agreement_table, structure_errors
from armseg.measure.conditions import load_order
from armseg.measure.figures import (
    AXIS_LABELS,
    bland_altman_figure,
    deformation_figure,
    png_bytes,
    profile_figure,
)
from armseg.measure.names import (
    AGREEMENT_CSV,
    AGREEMENT_MD,
    AGREEMENT_PNG,
    AGREEMENT_STATISTICS,
    BIAS,
    DEFORMATION_CSV,
    DEFORMATION_PNG,
    DEFORMATION_SOURCE_TAG,
    ELBOW_ANGLE_TAG,
    GROUND_TRUTH,
    KIND_AGREEMENT,
    KIND_DEFORMATION,
    KIND_SCAN,
    KIND_TAG,
    LOA_LOWER,
    LOA_UPPER,
    LOAD_TAG,
    MEASURES,
    MEASURES_CSV,
    MODEL_TAG,
    MODELS_METRIC,
    PAIRS,
    POSITION,
    PROFILE_AREA,
    PROFILE_CSV,
    PROFILE_PNG,
    PROFILE_THICKNESS,
    PROFILE_WIDTH,
    SCAN_TAG,
    SCANS_METRIC,
    SLICE,
    STAGE,
    STUDY_MEASURES,
    SUBJECT_TAG,
    SUBJECTS_METRIC,
    TRIAL_TAG,
    VOLUME,
    VOLUME_ERROR,
    agreement_metric,
    metric_name,
)
from armseg.measure.shapes import DEFAULT_AXES, ScanAxes, StructureMeasures, measure_structures
from armseg.measure.sources import LabelledScan, choose_structures, find_models, find_scans, prediction_of
from armseg.predict.models import predictions_folder_name
from armseg.tracking.runs import stage_run

Measured = dict[str, StructureMeasures]


@dataclass
class MeasureResult:
    """What one `armseg measure` produced: the tables and the files written under `out`."""

    measures: pd.DataFrame
    agreement: pd.DataFrame
    deformation: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)


def default_out(data_root: Path | str) -> Path:
    """`<data-root>/measures`: the summaries stay beside the data they were measured on."""
    return Path(data_root) / "measures"


def measure_subjects(
    data_root: Path | str,
    subjects: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    structures: Sequence[str] | None = None,
    label_map: LabelMap = DEFAULT_LABEL_MAP,
    deformation_source: str = GROUND_TRUTH,
    out: Path | str | None = None,
    axes: ScanAxes = DEFAULT_AXES,
) -> MeasureResult:
    """Measure the truth and every model on every labelled scan of `subjects`, as MLflow runs.

    `models` are predictions folder names or model URIs (default: every folder under
    predictions/); `structures` default to every foreground class of `label_map`. Files go to
    `out` (default `<data-root>/measures`).
    """
    out = Path(out) if out is not None else default_out(data_root)
    params = {"subjects": list(subjects or []) or "all", "models": list(models or []) or "all",
              "structures": list(structures or []) or "all", "label_map": label_map.to_json(),
              "deformation_source": deformation_source, "out": str(out), "depth_axis": axes.depth,
              "slice_axis": axes.along, "data_root": str(data_root)}
    run_name = "-".join(["measure", *(subjects or [])])  # named for what it did: measure-SubC
    with stage_run(STAGE, params=params, tags={KIND_TAG: KIND_AGREEMENT}, run_name=run_name):
        chosen = choose_structures(label_map, structures)
        scans = find_scans(data_root, subjects)
        scan_subjects = list(dict.fromkeys(s.subject for s in scans))
        folders = [predictions_folder_name(spec) for spec in models] if models else None
        model_names = find_models(data_root, scan_subjects, folders)
        if deformation_source not in (GROUND_TRUTH, *model_names):
            raise ArmsegError(f"--deformation-source {deformation_source}: not '{GROUND_TRUTH}' nor a "
                              f"measured model ({', '.join(model_names) or 'none'})")
        # A model that never predicted a subject is no gap worth a line per scan (as in evaluate).
        present = {subject: set(model_folders(data_root, subject)) for subject in scan_subjects}
        rows = list(chain.from_iterable(
            _measure_scan(data_root, labelled, [m for m in model_names if m in present[labelled.subject]],
                          chosen, label_map, axes) for labelled in scans))
        measures = pd.DataFrame.from_records(rows)
        agreement = agreement_table(measures, model_names, list(chosen), MEASURES, GROUND_TRUTH)
        files = _log_agreement(measures, agreement, model_names, list(chosen), out)
        deformation = deformation_table(measures, deformation_source, list(chosen))
        files.update(_log_deformation(deformation, deformation_source, list(chosen), out))
    return MeasureResult(measures, agreement, deformation, files)


def _measure_scan(data_root: Path | str, labelled: LabelledScan, models: Sequence[str],
                  structures: Mapping[str, int], label_map: LabelMap, axes: ScanAxes) -> list[dict]:
    """The truth's run, then each model's; the truth is read once for all of them."""
    image = read_image(labelled.truth)
    classes = label_map.encode(np.asarray(image.array), labelled.truth)
    truth = measure_structures(classes, structures, image.spacing, axes)
    rows = [_log_scan(GROUND_TRUTH, labelled, labelled.truth, truth, None)]
    for model in models:
        path = prediction_of(data_root, model, labelled)
        if path is None:
            print(f"[armseg measure] skipped {model} {labelled.key}: no prediction of {labelled.scan.trial}")
            continue
        prediction = read_image(path)
        if prediction.array.shape != classes.shape:
            raise ArmsegError(f"{path}: shape {prediction.array.shape} differs from its ground truth "
                              f"{labelled.truth} {classes.shape}")
        found = measure_structures(label_map.encode(np.asarray(prediction.array), path), structures,
                                   image.spacing, axes)
        rows.append(_log_scan(model, labelled, path, found, truth))
    return rows


def scan_tags(source: str, labelled: LabelledScan) -> dict[str, str]:
    """evaluate's four tags, the measure kind, and the trial's condition when its name has one."""
    tags = {MODEL_TAG: source, SUBJECT_TAG: labelled.subject, TRIAL_TAG: labelled.scan.trial_id,
            SCAN_TAG: labelled.key, KIND_TAG: KIND_SCAN}
    condition = labelled.condition
    if condition is not None:
        tags.update({ELBOW_ANGLE_TAG: condition.angle_text, LOAD_TAG: condition.load})
    return tags


def scan_metrics(measured: Measured, truth: Measured | None) -> dict[str, float]:
    """`<measure>_<structure>` for every structure, and a model's errors against the truth."""
    metrics = {metric_name(name, structure): value
               for structure, found in measured.items() for name, value in found.summary.items()}
    if truth is not None:
        for structure, found in measured.items():
            errors = structure_errors(truth[structure], found)
            metrics.update({metric_name(name, structure): value for name, value in errors.items()})
    return metrics


def profile_csv(measured: Measured) -> str:
    """One row per slice: its position along the arm, then area, thickness, width per structure."""
    first = next(iter(measured.values()), None)
    if first is None:
        return ""
    columns: dict[str, np.ndarray] = {SLICE: np.arange(first.profile.area_mm2.size),
                                      POSITION: first.profile.position_mm}
    for structure, found in measured.items():
        columns[metric_name(PROFILE_AREA, structure)] = found.profile.area_mm2
        columns[metric_name(PROFILE_THICKNESS, structure)] = found.profile.thickness_mm
        columns[metric_name(PROFILE_WIDTH, structure)] = found.profile.width_mm
    return pd.DataFrame(columns).to_csv(index=False, float_format="%.6g")


def _log_scan(source: str, labelled: LabelledScan, labels: Path, measured: Measured,
              truth: Measured | None) -> dict[str, object]:
    """One child run: tags, metrics, the profile as CSV and as a plot (truth drawn over it)."""
    params = {"source": source, "subject": labelled.subject, "trial": labelled.scan.trial,
              "labels": str(labels), "reference": str(labelled.truth)}
    metrics = scan_metrics(measured, truth)
    with stage_run(STAGE, params=params, tags=scan_tags(source, labelled),
                   run_name=f"{source} {labelled.key}", announce=False) as run:
        mlflow.log_metrics(metrics)
        mlflow.log_text(profile_csv(measured), PROFILE_CSV)
        figure = profile_figure({s: m.profile for s, m in measured.items()}, source,
                                f"{source} on {labelled.key}",
                                truth={s: m.profile for s, m in truth.items()} if truth else None)
        mlflow.log_figure(figure, PROFILE_PNG)
    condition = labelled.condition
    print(f"[armseg measure] {source} {labelled.key}: " + _headline(metrics, measured)
          + f" (run {run.info.run_id})")
    return {"source": source, "subject": labelled.subject, "trial": labelled.scan.trial_id,
            "trial_name": labelled.scan.trial, "scan": labelled.key,
            "elbow_angle": condition.elbow_angle if condition else math.nan,
            "load": condition.load if condition else None, "run_id": run.info.run_id, **metrics}


def _headline(metrics: Mapping[str, float], measured: Measured) -> str:
    parts = []
    for structure in measured:
        volume = metrics[metric_name(VOLUME, structure)]
        text = f"{structure} {volume / 1000:.2f} cm³" if np.isfinite(volume) else f"{structure} absent"
        error = metrics.get(metric_name(VOLUME_ERROR, structure))
        if error is not None and np.isfinite(error):
            text += f" ({error:+.1f} %)"
        parts.append(text)
    return ", ".join(parts)


def _csv(table: pd.DataFrame, index: bool = False) -> str:
    return table.to_csv(index=index, float_format="%.6g")


def _write(out: Path, name: str, data: bytes) -> Path:
    path = out / name
    write_bytes_atomic(path, data)
    return path


def agreement_metrics(agreement: pd.DataFrame) -> dict[str, float]:
    """`<model>/<bias|loa_lower|loa_upper|n>_<measure>_<structure>` for the parent run."""
    metrics = {}
    for record in agreement.to_dict("records"):
        for statistic in AGREEMENT_STATISTICS:
            key = agreement_metric(record["model"], statistic, record["measure"], record["structure"])
            metrics[key] = float(record[statistic])
    return metrics


def agreement_markdown(measures: pd.DataFrame, agreement: pd.DataFrame, models: Sequence[str],
                       structures: Sequence[str]) -> str:
    """The README-sized table: per model and structure, volume error and the study measures'
    bias [95 % limits of agreement]."""
    header = ["model", "structure", "n", "volume error % (mean ± SD)",
              *(f"{AXIS_LABELS[m]}: bias [LoA]" for m in STUDY_MEASURES)]
    lines = ["**Agreement with the ground truth** (model − truth over the scans; bias "
             "[95 % limits of agreement])", "", "| " + " | ".join(header) + " |",
             "|" + "|".join(["---", "---"] + ["---:"] * (len(header) - 2)) + "|"]
    for model in models:
        rows = measures[measures["source"] == model]
        for structure in structures:
            errors = rows.get(metric_name(VOLUME_ERROR, structure), pd.Series(dtype=float)).dropna()
            volume_error = (f"{errors.mean():+.1f} ± {errors.std(ddof=1):.1f}" if len(errors) > 1
                            else (f"{errors.mean():+.1f}" if len(errors) else "-"))
            cells = [model, structure]
            picked = agreement[(agreement["model"] == model) & (agreement["structure"] == structure)]
            count = picked[PAIRS].max() if not picked.empty else 0
            cells += [str(int(count)), volume_error]
            for measure in STUDY_MEASURES:
                row = picked[picked["measure"] == measure]
                cells.append(_limits_text(row.iloc[0]) if not row.empty else "-")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _short(value: float, sign: str = "") -> str:
    """Three significant digits, but never 1.49e+03 for a volume: whole numbers from 100 up."""
    return f"{value:{sign}.0f}" if abs(value) >= 100 else f"{value:{sign}.3g}"


def _limits_text(row: pd.Series) -> str:
    if not np.isfinite(row[BIAS]):
        return "-"
    if not np.isfinite(row[LOA_LOWER]):
        return _short(row[BIAS], "+")
    return f"{_short(row[BIAS], '+')} [{_short(row[LOA_LOWER])}, {_short(row[LOA_UPPER])}]"


def _log_agreement(measures: pd.DataFrame, agreement: pd.DataFrame, models: Sequence[str],
                   structures: Sequence[str], out: Path) -> dict[str, Path]:
    """On the parent run and under `out`: every measure, the agreement table and its plot."""
    texts = {MEASURES_CSV: _csv(measures), AGREEMENT_CSV: _csv(agreement),
             AGREEMENT_MD: agreement_markdown(measures, agreement, models, structures)}
    files = {name: _write(out, name, text.encode("utf-8")) for name, text in texts.items()}
    for name, text in texts.items():
        mlflow.log_text(text, name)
    if models:
        mlflow.log_metrics(agreement_metrics(agreement))
        figure = bland_altman_figure(measures, agreement, models, structures, STUDY_MEASURES, GROUND_TRUTH)
        files[AGREEMENT_PNG] = _write(out, AGREEMENT_PNG, png_bytes(figure))
        mlflow.log_figure(figure, AGREEMENT_PNG)
        print(texts[AGREEMENT_MD])
    mlflow.log_metrics({SCANS_METRIC: float(measures["scan"].nunique()), MODELS_METRIC: float(len(models))})
    return files


def deformation_table(measures: pd.DataFrame, source: str, structures: Sequence[str]) -> pd.DataFrame:
    """The study measures of `source` per subject and condition, ordered by angle then load."""
    columns = [metric_name(m, s) for s in structures for m in STUDY_MEASURES]
    rows = measures[measures["source"] == source]
    table = rows[["subject", "trial", "trial_name", "scan", "elbow_angle", "load", *columns]].copy()
    order = sorted(range(len(table)), key=lambda i: (
        natural_key(table["subject"].iloc[i]), _angle_key(table["elbow_angle"].iloc[i]),
        load_order(table["load"].iloc[i] or ""), natural_key(table["trial"].iloc[i])))
    return table.iloc[order].reset_index(drop=True)


def _angle_key(angle: float) -> tuple[int, float]:
    return (1, 0.0) if not np.isfinite(angle) else (0, float(angle))


def _log_deformation(table: pd.DataFrame, source: str, structures: Sequence[str],
                     out: Path) -> dict[str, Path]:
    """Its own run: the per-subject table against angle and load, as CSV and plot."""
    tags = {KIND_TAG: KIND_DEFORMATION, DEFORMATION_SOURCE_TAG: source}
    params = {"source": source, "structures": list(structures), "out": str(out)}
    with stage_run(STAGE, params=params, tags=tags, run_name=f"deformation {source}", announce=False) as run:
        text = _csv(table)
        figure = deformation_figure(table, structures, STUDY_MEASURES, source)
        files = {DEFORMATION_CSV: _write(out, DEFORMATION_CSV, text.encode("utf-8")),
                 DEFORMATION_PNG: _write(out, DEFORMATION_PNG, png_bytes(figure))}
        mlflow.log_text(text, DEFORMATION_CSV)
        mlflow.log_figure(figure, DEFORMATION_PNG)
        mlflow.log_metrics({SUBJECTS_METRIC: float(table["subject"].nunique()),
                            SCANS_METRIC: float(len(table))})
    print(f"[armseg measure] deformation ({source}): {files[DEFORMATION_CSV]}, {files[DEFORMATION_PNG]} "
          f"(run {run.info.run_id})")
    return files

