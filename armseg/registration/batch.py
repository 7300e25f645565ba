"""The registration baseline as one more model: every scan of some subjects from one atlas scan.

Predictions go to `Sub<X>/predictions/registration-<atlas trial>/<trial folder>_pred_seg.nii`, the
folder layout of a model, so `evaluate` and `table` give the baseline its own row. One parent
`register` run covers the request; each registered scan is a nested `register` run. Each
folder it writes into records that parent run in `armseg_model.json` (no model URI).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import mlflow

from armseg import __version__
from armseg.errors import ArmsegError
from armseg.io.tree import (
    Scan,
    data_root_key,
    file_digest,
    find_labelled_trial,
    prediction_path,
    prediction_sources,
    scan_key,
    subjects_with_sources,
)
from armseg.predict.sidecar import ModelRecord, now, write_sidecar
from armseg.registration.pipeline import RegistrationSettings, register_pair
from armseg.registration.report import log_result
from armseg.tracking.contract import ATLAS_TAG, DATA_ROOT_TAG, MODEL_TAG, SCAN_TAG, SUBJECT_TAG, TRIAL_TAG
from armseg.tracking.runs import stage_run

MODEL_PREFIX = "registration-"


@dataclass(frozen=True)
class Job:
    """One scan of one subject to segment from the atlas."""

    subject: str
    scan: Scan
    out: Path


def baseline_folder_name(atlas: Scan) -> str:
    """`registration-<atlas trial>`: the baseline's name in predictions folders and the table."""
    return f"{MODEL_PREFIX}{atlas.trial}"


def register_subjects(
    data_root: Path | str,
    subjects: Sequence[str] | None,
    atlas: str | Path,
    settings: RegistrationSettings = RegistrationSettings(),  # noqa: B008 (frozen: safe to share)
    overwrite: bool = False,
) -> list[Path]:
    """Segment every prediction-source scan of `subjects` (all when empty) from `atlas`.

    `atlas` is a trial folder (a path, absolute or under `data_root`) or a trial folder name
    found under the training groups or the subjects' prediction_sources; it needs a `*seg*`.
    A scan with the atlas's very volume is skipped; existing predictions are kept unless
    `overwrite`. Returns the prediction files of the request (written now or kept).
    """
    settings = replace(settings, report_every=0)  # a line per stage, not per step
    params = {"data_root": str(data_root), "subjects": list(subjects or []) or "all", "atlas": str(atlas),
              "overwrite": overwrite, **settings.as_params()}
    names = "-".join(subjects) if subjects else "all"
    with stage_run("register", params, tags={DATA_ROOT_TAG: data_root_key(data_root)},
                   run_name=f"register-{names}") as parent:
        atlas_scan = find_labelled_trial(data_root, atlas)
        model = baseline_folder_name(atlas_scan)
        mlflow.set_tags({MODEL_TAG: model, ATLAS_TAG: str(atlas_scan.folder)})
        jobs = _plan(data_root, subjects, model)
        record = ModelRecord(model_uri=None, run_id=parent.info.run_id, registered_model=None, version=None,
                             armseg_version=__version__, written_at=now(), folder=model)
        paths, counts = _run_jobs(jobs, atlas_scan, model, overwrite, settings, record)
        mlflow.log_metrics({f"scans_{what}": float(n) for what, n in counts.items()})
        folders = sorted({str(path.parent) for path in paths})
        print(f"[armseg register] {counts['written']} written, {counts['kept']} kept, "
              f"{counts['skipped']} skipped (the atlas itself) in: {', '.join(folders) or 'nothing'}")
    return paths


def _plan(data_root: Path | str, subjects: Sequence[str] | None, model: str) -> list[Job]:
    """Every scan to segment, found before any work so a wrong subject costs no time."""
    if not subjects:
        subjects = subjects_with_sources(data_root)
        if not subjects:
            raise ArmsegError(f"{data_root}: no Sub<X>/prediction_sources folders to segment")
    jobs = []
    for subject in dict.fromkeys(subjects):
        scans = prediction_sources(data_root, subject)
        if not scans:
            folder = Path(data_root) / subject / "prediction_sources"
            raise ArmsegError(f"{folder}: no trial folders to segment")
        jobs += [Job(subject, scan, prediction_path(data_root, subject, model, scan)) for scan in scans]
    return jobs


def _run_jobs(jobs: list[Job], atlas: Scan, model: str, overwrite: bool, settings: RegistrationSettings,
              record: ModelRecord) -> tuple[list[Path], dict[str, int]]:
    """Register every job; each folder written into records this register run as its writer."""
    atlas_digest = file_digest(atlas.volume)
    recorded: set[Path] = set()
    paths: list[Path] = []
    counts = {"written": 0, "kept": 0, "skipped": 0}
    start = time.perf_counter()
    for number, job in enumerate(jobs, start=1):
        where = f"[armseg register] [{number}/{len(jobs)}] {job.subject} {job.scan.trial}"
        if file_digest(job.scan.volume) == atlas_digest:
            print(f"{where}: skipped, it is the atlas scan")
            counts["skipped"] += 1
            continue
        paths.append(job.out)
        if job.out.exists() and not overwrite:
            print(f"{where}: kept {job.out} (existing; --overwrite to replace)")
            counts["kept"] += 1
            continue
        print(f"{where}: registering {atlas.trial} onto it")
        if job.out.parent not in recorded:
            write_sidecar(job.out.parent, record)
            recorded.add(job.out.parent)
        _register_one(job, atlas, model, settings)
        counts["written"] += 1
        mlflow.log_metric("seconds_elapsed", time.perf_counter() - start, step=number)
    return paths, counts


def _register_one(job: Job, atlas: Scan, model: str, settings: RegistrationSettings) -> None:
    """One nested `register` run, tagged like an evaluate run so the two can be joined."""
    moving_seg = Path(str(atlas.segmentation))
    params = {"fixed": str(job.scan.volume), "moving": str(atlas.volume), "moving_seg": str(moving_seg),
              "out": str(job.out), **settings.as_params()}
    tags = {MODEL_TAG: model, SUBJECT_TAG: job.subject, TRIAL_TAG: job.scan.trial_id,
            SCAN_TAG: scan_key(job.scan.trial, job.subject)}
    with stage_run("register", params, tags=tags, run_name=f"register-{job.subject}-{job.scan.trial}",
                   nested=True, announce=False):
        result = register_pair(job.scan.volume, atlas.volume, moving_seg, job.out, settings, overwrite=True)
        log_result(result)
        print(f"[armseg register]   wrote {job.out} ({result.seconds:.1f} s)")
