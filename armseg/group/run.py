"""The `group` stage: a training group assembled from named scans, as one MLflow run.

OpenArm users built `training_groups/<group_j>/<group_j_k>/` by copying trial folders by hand. Here
a group is named and its scans listed as `subject:trial`; each becomes a trial folder in the group
holding its volume and ground truth. By default the files are relative symbolic links to the
subject's `prediction_sources` scan: no disk is spent, a corrected ground truth is seen by every
group at once, and the links stay valid when the whole data root is moved or copied (`cp -a`,
`rsync -a`). `copy` makes the group independent of the subjects' folders instead (for a group to be
shipped on its own, or a file system without symbolic links). Hard links were not chosen: an
atomic rewrite of the source (how armseg writes) leaves a hard link holding the old data.
The group is built in a hidden folder and renamed into place, so it never exists half made.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import mlflow

from armseg.errors import ArmsegError
from armseg.io.images import image_suffix
from armseg.io.tree import Scan, list_groups, prediction_sources, trial_id
from armseg.tracking.contract import DATA_ROOT_TAG, GROUP_TAG
from armseg.tracking.runs import stage_run

STAGE = "group"


@dataclass(frozen=True)
class ScanSpec:
    """`SubA:trial1` as given: a subject and a trial number or trial folder name."""

    subject: str
    trial: str

    def __str__(self) -> str:
        return f"{self.subject}:{self.trial}"


@dataclass(frozen=True)
class Member:
    """A scan of the group: where it comes from and the trial folder it becomes."""

    spec: ScanSpec
    scan: Scan
    folder: str


def parse_scan(text: str) -> ScanSpec:
    """`SubA:trial1` -> ScanSpec; any other shape is refused before a run opens."""
    subject, colon, trial = text.partition(":")
    if not colon or not subject.strip() or not trial.strip() or "/" in text:
        raise ArmsegError(f"--scans {text}: expected subject:trial, e.g. SubA:trial1 or SubA:trial1_0_fs")
    trial_id(trial.strip())  # must start trial<N>
    return ScanSpec(subject.strip(), trial.strip())


def default_family(name: str) -> str:
    """`group_3_2` sits in `group_3`, as OpenArm laid groups out; a name without `_<k>` in itself."""
    head, _, tail = name.rpartition("_")
    return head if head and tail.isdigit() and name.count("_") >= 2 else name


def find_scan(data_root: Path, spec: ScanSpec) -> Scan | str:
    """The one labelled scan a spec names, or why there is none."""
    if not (data_root / spec.subject).is_dir():
        return f"no subject folder {data_root / spec.subject}"
    try:
        scans = prediction_sources(data_root, spec.subject)
    except ArmsegError as error:
        return str(error)
    exact = [s for s in scans if s.trial == spec.trial]
    by_number = re.fullmatch(r"trial\d+", spec.trial, re.IGNORECASE) is not None  # SubA:trial1
    matches = exact or ([s for s in scans if s.trial_id == trial_id(spec.trial)] if by_number else [])
    if not matches:
        known = ", ".join(s.trial for s in scans) or "none"
        return f"no trial folder {spec.trial} in {spec.subject}'s prediction_sources (there: {known})"
    if len(matches) > 1:
        names = ", ".join(s.trial for s in matches)
        return f"{spec.trial} is {len(matches)} scans ({names}); name the trial folder"
    if matches[0].segmentation is None:
        return f"{matches[0].folder} has no ground truth (*seg*) to train on"
    return matches[0]


def members_of(data_root: Path, specs: list[ScanSpec]) -> list[Member]:
    """Every named scan found, or one error naming every scan that is not; folder names made unique."""
    found, problems = [], []
    for spec in dict.fromkeys(specs):
        result = find_scan(data_root, spec)
        (problems.append(f"{spec} ({result})") if isinstance(result, str) else found.append((spec, result)))
    if problems:
        raise ArmsegError(f"--scans: cannot use {'; '.join(problems)}")
    members, used, sources = [], set(), {}
    for spec, scan in found:
        if scan.folder in sources:
            raise ArmsegError(f"--scans: {sources[scan.folder]} and {spec} are the same scan ({scan.folder})")
        sources[scan.folder] = spec
        # Two subjects' trial1_0_fs: the first keeps OpenArm's name, others carry their subject (as synth).
        folder = scan.trial if scan.trial not in used else f"{scan.trial}_{spec.subject}"
        used.add(folder)
        members.append(Member(spec, scan, folder))
    return members


def assemble_group(data_root: Path | str, name: str, specs: list[ScanSpec], family: str | None = None,
                   copy: bool = False) -> Path:
    """Create `training_groups/<family>/<name>/` from the named scans; returns the group folder."""
    root = Path(data_root)
    family = family or default_family(name)
    params = {"name": name, "scans": [str(s) for s in specs], "family": family, "copy": copy,
              "data_root": str(root)}
    with stage_run(STAGE, params=params, tags={GROUP_TAG: name, DATA_ROOT_TAG: str(root)},
                   run_name=f"group-{name}"):
        existing = list_groups(root).get(name)
        target = root / "training_groups" / family / name
        if existing or target.exists():
            where = ", ".join(str(p) for p in existing or [target])
            raise ArmsegError(f"--name {name}: a group of that name exists ({where}); choose another name")
        members = members_of(root, specs)
        _build(target, members, copy)
        listing = [{"scan": str(m.spec), "source": str(m.scan.folder), "folder": m.folder} for m in members]
        mlflow.log_text(json.dumps({"group": name, "folder": str(target), "copy": copy, "members": listing},
                                   indent=2), "group.json")
        mlflow.log_metric("scans", float(len(members)))
        how = "copies" if copy else "links"
        print(f"[armseg group] {name}: {len(members)} scans ({how}) in {target}: "
              + ", ".join(f"{m.spec} -> {m.folder}" for m in members))
    return target


def _build(target: Path, members: list[Member], copy: bool) -> None:
    """Fill a hidden sibling folder, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        for member in members:
            folder = scratch / member.folder
            folder.mkdir(parents=True)
            for kind, source in (("volume", member.scan.volume), ("seg", member.scan.segmentation)):
                _place(source, folder / f"{member.folder}_{kind}{image_suffix(source)}", target, copy)
        os.replace(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _place(source: Path, link: Path, target: Path, copy: bool) -> None:
    if copy:
        shutil.copy2(source, link)
        return
    # Relative to where the link will finally lie (the scratch folder is renamed to `target`).
    final_folder = target.parent.resolve() / target.name / link.parent.name
    try:
        os.symlink(os.path.relpath(source.resolve(), final_folder), link)
    except OSError as error:
        raise ArmsegError(f"{link}: cannot make a symbolic link here ({error.strerror}); "
                          "use --copy") from error
