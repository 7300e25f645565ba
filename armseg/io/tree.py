"""The OpenArm folder tree, read as it is (SPEC section 2).

    <root>/training_groups/<group_j>/<group_j_k>/<trialN_...>/  *vol*  *seg*
    <root>/Sub<X>/all_nifti/trialN_*_volume.nii
    <root>/Sub<X>/prediction_sources/[under_512|over_512/]<trialN_...>/ *vol* [*seg*]
    <root>/Sub<X>/predictions/[under_512|over_512/]<model>/<trial folder>_pred_seg.nii
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from armseg.errors import ArmsegError

SIZE_DIRS = ("under_512", "over_512")
_TRIAL = re.compile(r"^trial(\d+)", re.IGNORECASE)
# Augmented copies: `<trial>_..._ed` (elastic) and `<trial>_rot` (rotation), OpenArm's names, and
# `<trial>_rot<degrees>` (`_rot10`, `_rot-10`) as `armseg augment` names rotations; it writes
# elastic copies as `<trial>_a<alpha>_s<sigma>_ed`, all of it the suffix.
_NUMBER = r"\d+(?:\.\d+)?"
_AUGMENTED = re.compile(rf"_(a{_NUMBER}_s{_NUMBER}_ed|ed|rot(?:[-+]?{_NUMBER})?)(?=_|$)", re.IGNORECASE)
PREDICTION_SUFFIX = "_pred_seg.nii"


@dataclass(frozen=True)
class Scan:
    """One trial folder: a volume, maybe its segmentation, and where it sits in the tree."""

    folder: Path
    volume: Path
    segmentation: Path | None
    size_dir: str | None = None

    @property
    def trial(self) -> str:
        """The folder name, e.g. `trial6_30_fs` or `trial6_30_fs_rot10`."""
        return self.folder.name

    @property
    def trial_id(self) -> str:
        """`trial<N>`, the prefix predictions and table columns use."""
        return trial_id(self.folder.name)

    @property
    def augmented(self) -> bool:
        return is_augmented(self.folder.name)

    @property
    def source_trial(self) -> str:
        """The original trial an augmented copy came from (itself when not augmented)."""
        return source_trial(self.folder.name)


def trial_id(name: str) -> str:
    match = _TRIAL.match(name)
    if match is None:
        raise ArmsegError(f"{name}: trial folders and files must start with 'trial<N>_'")
    return f"trial{int(match.group(1))}"


def is_augmented(name: str) -> bool:
    return _AUGMENTED.search(name) is not None


def source_trial(name: str) -> str:
    match = _AUGMENTED.search(name)
    return name if match is None else name[: match.start()]


def natural_key(text: str) -> tuple:
    """`group_1_10` after `group_1_2`, `trial10` after `trial9`."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text))


def subject_letter(subject: str) -> str:
    """`SubB` -> `B`, as OpenArm's table columns (`trial6B`) spell the subject."""
    return subject[3:] if subject.lower().startswith("sub") else subject


def scan_key(trial: str, subject: str) -> str:
    """The table column of a scan: trial number + subject letter, e.g. `trial6B`."""
    return f"{trial_id(trial)}{subject_letter(subject)}"


def data_root_key(root: Path | str) -> str:
    """A data root as runs are tagged with it (`armseg.data_root`) and compared: absolute and
    resolved, so `data`, `./data` and `/home/me/data` are one root."""
    return str(Path(root).expanduser().resolve())


def is_plain_name(name: str) -> bool:
    """A name that is one folder name: it can never lead out of the folder it is looked up in."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def plain_name(name: str, what: str) -> str:
    """`name`, refused unless it is one folder name: names from users, runs' tags or the tree are
    joined under the data root, and `../x` or `/x` would lead a write out of it."""
    if not is_plain_name(name):
        raise ArmsegError(f"{what} {name!r}: not a folder name (no '/', '\\' or '..'); armseg keeps "
                          "what it writes under the data root")
    return name


def list_groups(root: Path | str) -> dict[str, list[Path]]:
    """Every training group under `<root>/training_groups`, by folder name.

    A group is any folder that directly holds trial folders, at whatever depth; the same
    name at two places is kept as a list so `find_group` can call it ambiguous.
    """
    base = Path(root) / "training_groups"
    groups: dict[str, list[Path]] = {}
    if not base.is_dir():
        return groups
    for folder in sorted(p for p in base.rglob("*") if p.is_dir()):
        if any(child.is_dir() and _TRIAL.match(child.name) for child in folder.iterdir()):
            groups.setdefault(folder.name, []).append(folder)
    return groups


def find_group(root: Path | str, name: str) -> Path:
    """The folder of group `name`; unknown or ambiguous names list what is there."""
    groups = list_groups(root)
    found = groups.get(name, [])
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        places = ", ".join(str(p) for p in found)
        raise ArmsegError(f"group '{name}' is ambiguous under {root}/training_groups: {places}")
    known = ", ".join(sorted(groups)) or "none"
    raise ArmsegError(f"group '{name}' not found under {root}/training_groups (groups there: {known})")


def read_trial_folder(folder: Path, size_dir: str | None = None) -> Scan:
    """Pair the one `*vol*` and the optional one `*seg*` image in a trial folder."""
    from armseg.io.images import image_suffix  # here: the table sorts names without loading nibabel

    volumes, segmentations = [], []
    for path in sorted(folder.iterdir()):
        name = path.name.lower()
        if path.name.startswith(".") or not path.is_file() or image_suffix(path) is None:
            continue
        if "seg" in name:
            segmentations.append(path)
        elif "vol" in name:
            volumes.append(path)
    if len(volumes) != 1:
        what = "no volume (*vol*)" if not volumes else f"{len(volumes)} volumes (*vol*)"
        raise ArmsegError(f"{folder}: found {what}; a trial folder holds exactly one")
    if len(segmentations) > 1:
        raise ArmsegError(f"{folder}: found {len(segmentations)} segmentations (*seg*); expected one")
    return Scan(folder=folder, volume=volumes[0],
                segmentation=segmentations[0] if segmentations else None, size_dir=size_dir)


def trial_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and _TRIAL.match(p.name))


def group_scans(group_folder: Path, include_augmented: bool = True) -> list[Scan]:
    """The labelled scans of a training group; a scan without its segmentation is an error."""
    scans = [read_trial_folder(folder) for folder in trial_folders(group_folder)]
    for scan in scans:
        if scan.segmentation is None:
            raise ArmsegError(f"{scan.folder}: has a volume but no segmentation (*seg*)")
    return [s for s in scans if include_augmented or not s.augmented]


def list_subjects(root: Path | str) -> list[str]:
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.lower().startswith("sub"))


def subjects_with_sources(root: Path | str) -> list[str]:
    """Subjects that have a `prediction_sources` folder: what predict, register and evaluate cover
    when no subject is named."""
    root = Path(root)
    return [s for s in list_subjects(root) if (root / s / "prediction_sources").is_dir()]


def subject_folder(root: Path | str, subject: str) -> Path:
    folder = Path(root) / plain_name(subject, "subject")
    if not folder.is_dir():
        known = ", ".join(list_subjects(root)) or "none"
        raise ArmsegError(f"subject '{subject}' not found under {root} (subjects there: {known})")
    return folder


def prediction_sources(root: Path | str, subject: str) -> list[Scan]:
    """The scans of a subject to predict, honouring `under_512`/`over_512` when present."""
    base = subject_folder(root, subject) / "prediction_sources"
    if not base.is_dir():
        raise ArmsegError(f"{base}: missing; put the scans to predict in trial folders there")
    scans = [read_trial_folder(folder) for folder in trial_folders(base)]
    for size_dir in SIZE_DIRS:
        if (base / size_dir).is_dir():
            scans += [read_trial_folder(f, size_dir) for f in trial_folders(base / size_dir)]
    return sorted(scans, key=lambda s: (s.size_dir or "", s.trial))


def predictions_folder(root: Path | str, subject: str, model_folder: str,
                       size_dir: str | None = None) -> Path:
    base = Path(root) / plain_name(subject, "subject") / "predictions"
    return (base / size_dir if size_dir else base) / plain_name(model_folder, "model folder")


def prediction_path(root: Path | str, subject: str, model_folder: str, scan: Scan) -> Path:
    """Where a model's prediction of `scan` is written: `<model>/<trial folder>_pred_seg.nii`, the
    name OpenArm's `predict_all_segs` gave it (`trial1_0_fs_pred_seg.nii`)."""
    folder = predictions_folder(root, subject, model_folder, scan.size_dir)
    return folder / f"{scan.trial}{PREDICTION_SUFFIX}"


def short_prediction_path(root: Path | str, subject: str, model_folder: str, scan: Scan) -> Path:
    """The name armseg wrote before it followed OpenArm: `<model>/<trialN>_pred_seg.nii`."""
    folder = predictions_folder(root, subject, model_folder, scan.size_dir)
    return folder / f"{scan.trial_id}{PREDICTION_SUFFIX}"


def find_prediction(root: Path | str, subject: str, model_folder: str, scan: Scan,
                    siblings: list[Scan] | None = None) -> Path | None:
    """The existing prediction of `scan` by a model: OpenArm's name first, then `<trialN>_pred_seg.nii`.

    The short name says only the trial number, so it is read only when no other scan in
    `siblings` (the subject's scans) sits in the same size folder with the same number.
    """
    full = prediction_path(root, subject, model_folder, scan)
    if full.is_file():
        return full
    short = short_prediction_path(root, subject, model_folder, scan)
    shared = [s for s in siblings or [] if s.folder != scan.folder and s.size_dir == scan.size_dir
              and s.trial_id == scan.trial_id]
    return short if short.is_file() and not shared else None


def all_nifti_volumes(root: Path | str, subject: str) -> list[Path]:
    from armseg.io.images import image_suffix

    folder = subject_folder(root, subject) / "all_nifti"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if image_suffix(p) and _TRIAL.match(p.name))


def file_digest(path: Path) -> str:
    """Content hash: a byte copy of a scan elsewhere in the tree is still that scan."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha1").hexdigest()


def find_labelled_trial(root: Path | str, trial: str | Path, flag: str = "--atlas") -> Scan:
    """A segmented scan given as a trial folder path or a trial folder name in the tree.

    Names are looked up in the training groups first (where segmented scans live), then in every
    subject's prediction_sources; identical copies of one scan count once.
    """
    text = str(trial).strip()
    if not text:
        raise ArmsegError(f"{flag}: give a segmented trial folder (a path or a trial folder name)")
    for folder in (Path(text), Path(root) / text):
        if folder.is_dir():
            return _labelled(read_trial_folder(folder), flag)
    if "/" in text or "\\" in text:
        raise ArmsegError(f"{flag} {text}: no such trial folder (as given or under {root})")
    for candidates in (_group_trials(root, text), _source_trials(root, text)):
        distinct = _distinct(candidates)
        if len(distinct) == 1:
            return _labelled(distinct[0], flag)
        if len(distinct) > 1:
            places = ", ".join(str(scan.folder) for scan in distinct)
            raise ArmsegError(f"{flag} {text}: ambiguous, several different scans have that name "
                              f"({places}); give the folder's path")
    raise ArmsegError(f"{flag} {text}: no trial folder of that name under {root}/training_groups "
                      f"or {root}/Sub*/prediction_sources")


def _group_trials(root: Path | str, name: str) -> list[Scan]:
    return [read_trial_folder(folder) for places in list_groups(root).values() for group in places
            for folder in trial_folders(group) if folder.name == name]


def _source_trials(root: Path | str, name: str) -> list[Scan]:
    return [scan for subject in subjects_with_sources(root)
            for scan in prediction_sources(root, subject) if scan.trial == name]


def _distinct(scans: list[Scan]) -> list[Scan]:
    """One scan per distinct volume content (groups hold byte copies of subjects' scans)."""
    seen: dict[str, Scan] = {}
    for scan in scans:
        seen.setdefault(file_digest(scan.volume), scan)
    return list(seen.values())


def _labelled(scan: Scan, flag: str) -> Scan:
    if scan.segmentation is None:
        raise ArmsegError(f"{flag} {scan.folder}: has no segmentation (*seg*); it must be segmented")
    return scan
