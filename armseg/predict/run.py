"""The `predict` stage: every prediction-source scan of some subjects, with one or more models.

One `predict` run covers the whole request (OpenArm's predict_all_groups): each model is
resolved and loaded once, every scan goes through it in batches, and the run records the
files written (`predictions.csv`, naming the model that wrote each) and the seconds each
scan took. Each predictions folder records its model (`armseg_model.json`); a prediction that
another model wrote is never kept silently: that is an error unless `overwrite`.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import pandas as pd

from armseg import __version__
from armseg.errors import ArmsegError
from armseg.io.tree import Scan, data_root_key, prediction_path, prediction_sources, subjects_with_sources
from armseg.model.choices import (
    DEFAULT_FILL_HOLES,
    DEFAULT_LARGEST_COMPONENT,
    DEFAULT_SLICE_VOTE,
    DEFAULT_TTA,
)
from armseg.predict.models import ResolvedModel, resolve_model
from armseg.predict.sidecar import ModelRecord, now, read_sidecar, write_sidecar
from armseg.predict.volume import DEFAULT_BATCH_SIZE, predict_file
from armseg.tracking.contract import DATA_ROOT_TAG, MODELS_TAG, NONFINITE_METRIC
from armseg.tracking.runs import stage_run

PREDICTION_SUFFIX = "_pred_seg"


@dataclass(frozen=True)
class Refinements:
    """Optional inference refinements (armseg.model.pyfunc), logged as the predict run's params."""

    tta: bool = DEFAULT_TTA
    largest_component: bool = DEFAULT_LARGEST_COMPONENT
    fill_holes: bool = DEFAULT_FILL_HOLES
    slice_vote: int = DEFAULT_SLICE_VOTE


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
    nonfinite: str = "error",
    refine: Refinements = Refinements(),
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
              "batch_size": batch_size, "data_root": str(data_root), "nonfinite": nonfinite, **asdict(refine)}
    with stage_run("predict", params=params, tags={DATA_ROOT_TAG: data_root_key(data_root)},
                   run_name=f"predict-{'-'.join(subjects) if subjects else 'all'}"):
        scans = _scans_by_subject(data_root, subjects)
        resolved = _resolve_all(models, data_root)
        mlflow.set_tag(MODELS_TAG, " ".join(model.folder for model in resolved))
        jobs = [Job(model, subject, scan, prediction_path(data_root, subject, model.folder, scan))
                for model in resolved for subject, subject_scans in scans.items() for scan in subject_scans]
        writers = _check_writers(jobs, overwrite)
        records = _run_jobs(jobs, overwrite, batch_size, writers, refine, nonfinite)
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


def _resolve_all(models: list[str], data_root: Path | str) -> list[ResolvedModel]:
    """Resolve every model before any work, so a typo in the last one costs no time."""
    resolved: dict[str, ResolvedModel] = {}
    for spec in models:
        model = resolve_model(spec, data_root)
        if model.spec != model.folder:  # a group name says what it chose as it resolves
            print(f"[armseg predict] {model.spec} = {model.describe()}, predictions in {model.folder}/")
        resolved.setdefault(model.folder, model)
    return list(resolved.values())


def record_of(model: ResolvedModel) -> ModelRecord:
    """What `armseg_model.json` says about a folder this model writes into now."""
    return ModelRecord(model_uri=model.uri, run_id=model.run_id, registered_model=model.registered_model,
                       version=model.version, armseg_version=__version__, written_at=now(),
                       folder=model.folder)


def _existing_predictions(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and PREDICTION_SUFFIX in p.name
                  and not p.name.startswith("."))


def _check_writers(jobs: list[Job], overwrite: bool) -> dict[Path, ModelRecord | None]:
    """The recorded writer of every predictions folder the request touches, checked before any work.

    A folder holding predictions of another model (or of an unknown one: no record) is an
    error naming both, unless `overwrite`; then its predictions this request does not rewrite
    are removed, so the folder holds one model's predictions, as its record will say.
    """
    writers: dict[Path, ModelRecord | None] = {}
    for folder, model in {job.out.parent: job.model for job in jobs}.items():
        existing = _existing_predictions(folder)
        writer = read_sidecar(folder)
        writers[folder] = writer
        ours = record_of(model)
        if not existing or (writer is not None and writer.same_model(ours)):
            continue
        was = writer.describe() if writer is not None else "an unknown model (no armseg_model.json)"
        if not overwrite:
            raise ArmsegError(f"{folder}: its predictions were written by {was}, but {model.spec} now means "
                              f"{model.describe()}; give --overwrite to replace them")
        print(f"[armseg predict] {folder}: replacing the predictions of {was} with {model.describe()}")
        rewritten = {job.out for job in jobs if job.out.parent == folder}
        for stale in existing:
            if stale not in rewritten:
                stale.unlink()
                print(f"[armseg predict] removed {stale} (not rewritten by {model.spec})")
        writers[folder] = None
    return writers


def _run_jobs(jobs: list[Job], overwrite: bool, batch_size: int,
              writers: dict[Path, ModelRecord | None], refine: Refinements,
              nonfinite: str = "error") -> list[dict[str, object]]:
    from armseg.model.registry import load_unet  # TensorFlow loads only when there is work

    records: list[dict[str, object]] = []
    loaded: dict[str, tuple] = {}
    recorded: set[Path] = set()  # folders whose record this request has written
    for step, job in enumerate(jobs):
        record = {"model": job.model.folder, "subject": job.subject, "trial": job.scan.trial,
                  "source": str(job.scan.volume), "prediction": str(job.out)}
        writer = writers.get(job.out.parent)
        if job.out.exists() and not overwrite and writer is not None:
            print(f"[armseg predict] kept {job.out} (existing, by {writer.describe()}; "
                  "--overwrite to replace)")
            records.append({**record, **_written_by(writer), "status": "kept", "seconds": float("nan")})
            continue
        if job.model.uri not in loaded:
            loaded = {job.model.uri: _load(load_unet, job.model)}  # one model in memory at a time
        model, info = loaded[job.model.uri]
        if job.out.parent not in recorded:  # before the folder's first new file: no orphan on a crash
            writer = writers[job.out.parent] = record_of(job.model)
            write_sidecar(job.out.parent, writer)
            recorded.add(job.out.parent)
        seconds, replaced = predict_file(model, info, job.scan.volume, job.out, batch_size,
                                         description=f"{job.model.folder} {job.subject} {job.scan.trial}",
                                         tta=refine.tta, largest_component=refine.largest_component,
                                         fill_holes=refine.fill_holes, slice_vote=refine.slice_vote,
                                         nonfinite=nonfinite)
        mlflow.log_metric("seconds_per_scan", seconds, step=step)
        if nonfinite == "replace":
            mlflow.log_metric(NONFINITE_METRIC, float(replaced), step=step)
        records.append({**record, **_written_by(writer), "status": "written", "seconds": seconds})
    return records


def _written_by(writer: ModelRecord) -> dict[str, object]:
    """predictions.csv's columns naming the model that wrote a file."""
    return {"model_uri": writer.model_uri, "model_run_id": writer.run_id, "model_version": writer.version,
            "written_at": writer.written_at}


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
