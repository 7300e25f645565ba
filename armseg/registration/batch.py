"""The registration baseline as one more model: every scan of some subjects from one atlas scan.

Predictions go to `Sub<X>/predictions/registration-<atlas trial>/<trialN>_pred_seg.nii`, the
folder layout of a model, so `evaluate` and `table` give the baseline its own row. One parent
`register` run covers the request; each registered scan is a nested `register` run.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mlflow

from armseg.errors import ArmsegError
from armseg.io.labels import DEFAULT_LABEL_MAP, LabelMap
from armseg.io.tree import (
    Scan,
    list_groups,
    list_subjects,
    prediction_path,
    prediction_sources,
    read_trial_folder,
    scan_key,
    trial_folders,
)
from armseg.registration.pipeline import STAGES, RegistrationResult, register_pair, registration_params
from armseg.registration.report import log_result
from armseg.tracking.runs import stage_run

MODEL_PREFIX = "registration-"


@dataclass(frozen=True)
class Job:
    """One scan of one subject to segment from the atlas."""

    subject: str
    scan: Scan
    out: Path


@dataclass(frozen=True)
class Recipe:
    """How every scan of the request is registered: one set of stages, manual transform, settings."""

    stages: Sequence[str]
    A: Sequence[float] | None
    t: Sequence[float] | None
    label_map: LabelMap
    options: dict[str, object]

    def params(self) -> dict[str, object]:
        return registration_params(self.stages, self.A, self.t, self.label_map, **self.options)

    def register(self, fixed: Path, moving: Path, moving_seg: Path, out: Path) -> RegistrationResult:
        return register_pair(fixed, moving, moving_seg, out, stages=self.stages, A=self.A, t=self.t,
                             overwrite=True, label_map=self.label_map, **self.options)


def model_folder(atlas: Scan) -> str:
    """`registration-<atlas trial>`: the baseline's name in predictions folders and the table."""
    return f"{MODEL_PREFIX}{atlas.trial}"


def register_subjects(
    data_root: Path | str,
    subjects: Sequence[str] | None,
    atlas: str | Path,
    overwrite: bool = False,
    stages: Sequence[str] = STAGES,
    A: Sequence[float] | None = None,
    t: Sequence[float] | None = None,
    label_map: LabelMap = DEFAULT_LABEL_MAP,
    **options: object,
) -> list[Path]:
    """Segment every prediction-source scan of `subjects` (all when empty) from `atlas`.

    `atlas` is a trial folder (a path, absolute or under `data_root`) or a trial folder name
    found under the training groups or the subjects' prediction_sources; it needs a `*seg*`.
    A scan with the atlas's very volume is skipped; existing predictions are kept unless
    `overwrite`. Returns the prediction files of the request (written now or kept).
    """
    recipe = Recipe(stages, A, t, label_map, {"report_every": 0, **options})  # a line per stage, not per step
    params = {"data_root": str(data_root), "subjects": list(subjects or []) or "all", "atlas": str(atlas),
              "overwrite": overwrite, **recipe.params()}
    with stage_run("register", params):
        atlas_scan = find_atlas(data_root, atlas)
        model = model_folder(atlas_scan)
        mlflow.set_tags({"armseg.model": model, "armseg.atlas": str(atlas_scan.folder)})
        jobs = _plan(data_root, subjects, model)
        paths, counts = _run_jobs(jobs, atlas_scan, model, overwrite, recipe)
        mlflow.log_metrics({f"scans_{what}": float(n) for what, n in counts.items()})
        folders = sorted({str(path.parent) for path in paths})
        print(f"[armseg register] {counts['written']} written, {counts['kept']} kept, "
              f"{counts['skipped']} skipped (the atlas itself) in: {', '.join(folders) or 'nothing'}")
    return paths


def _plan(data_root: Path | str, subjects: Sequence[str] | None, model: str) -> list[Job]:
    """Every scan to segment, found before any work so a wrong subject costs no time."""
    if not subjects:
        subjects = [s for s in list_subjects(data_root)
                    if (Path(data_root) / s / "prediction_sources").is_dir()]
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


def _run_jobs(jobs: list[Job], atlas: Scan, model: str, overwrite: bool,
              recipe: Recipe) -> tuple[list[Path], dict[str, int]]:
    atlas_digest = _digest(atlas.volume)
    paths: list[Path] = []
    counts = {"written": 0, "kept": 0, "skipped": 0}
    start = time.perf_counter()
    for number, job in enumerate(jobs, start=1):
        where = f"[armseg register] [{number}/{len(jobs)}] {job.subject} {job.scan.trial}"
        if _digest(job.scan.volume) == atlas_digest:
            print(f"{where}: skipped, it is the atlas scan")
            counts["skipped"] += 1
            continue
        paths.append(job.out)
        if job.out.exists() and not overwrite:
            print(f"{where}: kept {job.out} (existing; --overwrite to replace)")
            counts["kept"] += 1
            continue
        print(f"{where}: registering {atlas.trial} onto it")
        _register_one(job, atlas, model, recipe)
        counts["written"] += 1
        mlflow.log_metric("seconds_elapsed", time.perf_counter() - start, step=number)
    return paths, counts


def _register_one(job: Job, atlas: Scan, model: str, recipe: Recipe) -> None:
    """One nested `register` run, tagged like an evaluate run so the two can be joined."""
    moving_seg = Path(str(_with_segmentation(atlas).segmentation))
    params = {"fixed": str(job.scan.volume), "moving": str(atlas.volume), "moving_seg": str(moving_seg),
              "out": str(job.out), **recipe.params()}
    tags = {"armseg.model": model, "armseg.subject": job.subject, "armseg.trial": job.scan.trial_id,
            "armseg.scan": scan_key(job.scan.trial, job.subject)}
    with stage_run("register", params, tags=tags, run_name=f"{model} {tags['armseg.scan']}", nested=True,
                   announce=False):
        result = recipe.register(job.scan.volume, atlas.volume, moving_seg, job.out)
        log_result(result)
        print(f"[armseg register]   wrote {job.out} ({result.seconds:.1f} s)")


def find_atlas(data_root: Path | str, atlas: str | Path) -> Scan:
    """The segmented atlas scan: a trial folder path, or a trial folder name in the tree.

    Names are looked up in the training groups first (where segmented scans live), then in every
    subject's prediction_sources; identical copies of one scan count once.
    """
    text = str(atlas).strip()
    if not text:
        raise ArmsegError("--atlas: give a segmented trial folder (a path or a trial folder name)")
    for folder in (Path(text), Path(data_root) / text):
        if folder.is_dir():
            return _with_segmentation(read_trial_folder(folder))
    if "/" in text or "\\" in text:
        raise ArmsegError(f"--atlas {text}: no such trial folder (as given or under {data_root})")
    for candidates in (_group_trials(data_root, text), _source_trials(data_root, text)):
        distinct = _distinct(candidates)
        if len(distinct) == 1:
            return _with_segmentation(distinct[0])
        if len(distinct) > 1:
            places = ", ".join(str(scan.folder) for scan in distinct)
            raise ArmsegError(f"--atlas {text}: ambiguous, several different scans have that name "
                              f"({places}); give the folder's path")
    raise ArmsegError(f"--atlas {text}: no trial folder of that name under {data_root}/training_groups "
                      f"or {data_root}/Sub*/prediction_sources")


def _group_trials(data_root: Path | str, name: str) -> list[Scan]:
    return [read_trial_folder(folder) for places in list_groups(data_root).values() for group in places
            for folder in trial_folders(group) if folder.name == name]


def _source_trials(data_root: Path | str, name: str) -> list[Scan]:
    return [scan for subject in list_subjects(data_root)
            if (Path(data_root) / subject / "prediction_sources").is_dir()
            for scan in prediction_sources(data_root, subject) if scan.trial == name]


def _distinct(scans: list[Scan]) -> list[Scan]:
    """One scan per distinct volume content (groups hold byte copies of subjects' scans)."""
    seen: dict[str, Scan] = {}
    for scan in scans:
        seen.setdefault(_digest(scan.volume), scan)
    return list(seen.values())


def _with_segmentation(scan: Scan) -> Scan:
    if scan.segmentation is None:
        raise ArmsegError(f"--atlas {scan.folder}: has no segmentation (*seg*); an atlas must be segmented")
    return scan


def _digest(path: Path) -> str:
    """Content hash: a byte copy of the atlas elsewhere in the tree is still the atlas."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha1").hexdigest()
