"""The `predict` stage: every prediction-source scan of some subjects, with one or more models.

One `predict` run covers the whole request (OpenArm's predict_all_groups): each model is
resolved and loaded once, every scan goes through it in batches, and the run records the
files written (`predictions.csv`) and the seconds each scan took.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd

from armseg.errors import ArmsegError
from armseg.io.tree import Scan, prediction_path, prediction_sources, subjects_with_sources
from armseg.predict.models import ResolvedModel, resolve_model
from armseg.predict.volume import DEFAULT_BATCH_SIZE, predict_file
from armseg.tracking.contract import DATA_ROOT_TAG, MODELS_TAG
from armseg.tracking.runs import stage_run


@dataclass(frozen=True)
class Job:
    """One scan of one subject to be predicted by one model."""

    model: ResolvedModel
    subject: str
    scan: Scan
    out: Path


def predict_subjects(
    data_root: Path | str,
    models: list[str],
    subjects: list[str] | None = None,
    overwrite: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> list[Path]:
    """Predict every prediction-source scan of `subjects` with every model, as one `predict` run.

    Returns the prediction files of the request, written now or kept from before (unless
    `overwrite`); `predictions.csv` in the run says which.
    """
    if not models:
        raise ArmsegError("--model: give at least one model (registry URI, run or group name)")
    if batch_size < 1:
        raise ArmsegError(f"--batch-size: must be at least 1, got {batch_size}")
    params = {"model": models, "subjects": subjects or "all", "overwrite": overwrite,
              "batch_size": batch_size, "data_root": str(data_root)}
    with stage_run("predict", params=params, tags={DATA_ROOT_TAG: str(data_root)},
                   run_name=f"predict-{'-'.join(subjects) if subjects else 'all'}"):
        scans = _scans_by_subject(data_root, subjects)
        resolved = _resolve_all(models)
        mlflow.set_tag(MODELS_TAG, " ".join(model.folder for model in resolved))
        jobs = [Job(model, subject, scan, prediction_path(data_root, subject, model.folder, scan))
                for model in resolved for subject, subject_scans in scans.items() for scan in subject_scans]
        records = _run_jobs(jobs, overwrite, batch_size)
        _log_records(records)
    return [job.out for job in jobs]


def _scans_by_subject(data_root: Path | str, subjects: list[str] | None) -> dict[str, list[Scan]]:
    root = Path(data_root)
    if subjects:
        scans = {subject: prediction_sources(root, subject) for subject in dict.fromkeys(subjects)}
        for subject, found in scans.items():
            if not found:
                raise ArmsegError(f"{root / subject / 'prediction_sources'}: no trial folders to predict")
        return scans
    # By default, every subject that has something to predict.
    scans = {subject: prediction_sources(root, subject) for subject in subjects_with_sources(root)}
    scans = {subject: found for subject, found in scans.items() if found}
    if not scans:
        raise ArmsegError(f"{data_root}: no Sub<X>/prediction_sources/<trial folder> to predict")
    return scans


def _resolve_all(models: list[str]) -> list[ResolvedModel]:
    """Resolve every model before any work, so a typo in the last one costs no time."""
    resolved: dict[str, ResolvedModel] = {}
    for spec in models:
        model = resolve_model(spec)
        resolved.setdefault(model.folder, model)
    return list(resolved.values())


def _run_jobs(jobs: list[Job], overwrite: bool, batch_size: int) -> list[dict[str, object]]:
    from armseg.model.registry import load_unet  # TensorFlow loads only when there is work

    records: list[dict[str, object]] = []
    loaded: dict[str, tuple] = {}
    for step, job in enumerate(jobs):
        record = {"model": job.model.folder, "model_uri": job.model.uri, "subject": job.subject,
                  "trial": job.scan.trial, "source": str(job.scan.volume), "prediction": str(job.out)}
        if job.out.exists() and not overwrite:
            print(f"[armseg predict] kept {job.out} (existing; --overwrite to replace)")
            records.append({**record, "status": "kept", "seconds": float("nan")})
            continue
        if job.model.uri not in loaded:
            loaded = {job.model.uri: _load(load_unet, job.model)}  # one model in memory at a time
        model, info = loaded[job.model.uri]
        seconds = predict_file(model, info, job.scan.volume, job.out, batch_size,
                               description=f"{job.model.folder} {job.subject} {job.scan.trial}")
        mlflow.log_metric("seconds_per_scan", seconds, step=step)
        records.append({**record, "status": "written", "seconds": seconds})
    return records


def _load(load_unet, model: ResolvedModel) -> tuple:
    try:
        return load_unet(model.uri)
    except Exception as error:  # MLflow/Keras raise many kinds; the user needs the model named
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ArmsegError(f"--model {model.spec}: cannot load {model.uri} ({reason})") from error


def _log_records(records: list[dict[str, object]]) -> None:
    table = pd.DataFrame.from_records(records)
    written = table[table["status"] == "written"] if len(table) else table
    mlflow.log_metrics({"scans_written": float(len(written)), "scans_kept": float(len(table) - len(written))})
    if len(written):
        mlflow.log_metric("mean_seconds_per_scan", float(written["seconds"].mean()))
    buffer = io.StringIO()
    table.to_csv(buffer, index=False)
    mlflow.log_text(buffer.getvalue(), "predictions.csv")
