"""Where each file of an OpenArm 2.0 download goes in the tree: a plan made from names and headers.

The download holds, per subject, `Sub<x>/volumes/*_volume.mha` and `Sub<x>/ground_segs/*`.
OpenArm's README asks for each volume to be converted to NIfTI, named `trial<n>_..._volume.nii`,
put into `all_nifti/` and into `prediction_sources/[under_512|over_512]/<trial folder>/` with its
ground truth. This module decides all of that without writing anything:
- a file's trial is the one `trial<N>` token of its name (`Sub1_trial6_30_fs_volume.mha` is
  trial 6); its trial folder is `trial<N>` plus the name's tokens between that token and the
  `vol`/`volume` token (`trial6_30_fs`); tokens before `trial<N>` are not part of it;
- ground truth is paired with the subject's volume of the same trial number;
- the size folder is `under_512` when the largest in-plane size (the axes other than the slice
  axis) is at most 512, else `over_512`, as OpenArm padded them to 512 or 1024.
A file that cannot be placed without guessing (no or two trial numbers, two volumes or two
ground truths for one trial, ground truth with no volume, a shape that differs from the volume's,
a file that is not an image) is listed with the reason, and nothing of it is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from armseg.errors import ArmsegError
from armseg.io.tree import SIZE_DIRS

VOLUMES = "volumes"
GROUND_SEGS = "ground_segs"
READABLE = (".mha", ".mhd", ".nii", ".nii.gz")
COMPANIONS = (".raw", ".zraw")  # the voxel files beside an .mhd header: part of it, not files to place
SIZE_LIMIT = 512
_TRIAL_TOKEN = re.compile(r"trial0*(\d+)", re.IGNORECASE)
_SEPARATORS = re.compile(r"[_\-\s]+")


@dataclass(frozen=True)
class Refusal:
    """A file left where it is, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Placement:
    """One scan to import: its volume, maybe its ground truth, and where they go."""

    subject: str
    trial: str  # the trial folder, e.g. trial6_30_fs
    volume: Path
    segmentation: Path | None
    shape: tuple[int, ...]
    size_dir: str

    def volume_targets(self, root: Path) -> list[Path]:
        name = f"{self.trial}_volume.nii"
        return [root / self.subject / "all_nifti" / name, self.folder(root) / name]

    def segmentation_target(self, root: Path) -> Path | None:
        return None if self.segmentation is None else self.folder(root) / f"{self.trial}_seg.nii"

    def folder(self, root: Path) -> Path:
        return root / self.subject / "prediction_sources" / self.size_dir / self.trial


@dataclass
class ImportPlan:
    """Every placement and every refusal of one download."""

    placements: list[Placement] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


@dataclass(frozen=True)
class _Named:
    """A file whose name was read: its trial number and trial folder name."""

    path: Path
    number: int
    trial: str


def image_suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in sorted(READABLE, key=len, reverse=True) if name.endswith(s)), None)


def read_name(path: Path, kind: str) -> _Named | str:
    """The trial number and folder of a file name, or why it has none. `kind` is 'vol' or 'seg'."""
    suffix = image_suffix(path) or ""
    tokens = [t for t in _SEPARATORS.split(path.name[: len(path.name) - len(suffix)]) if t]
    trials = [i for i, token in enumerate(tokens) if _TRIAL_TOKEN.fullmatch(token)]
    if not trials:
        return "no trial<N> in its name"
    if len(trials) > 1:
        return f"{len(trials)} trial<N> tokens in its name ({', '.join(tokens[i] for i in trials)})"
    at = trials[0]
    number = int(_TRIAL_TOKEN.fullmatch(tokens[at]).group(1))
    rest = tokens[at + 1:]
    end = next((i for i, token in enumerate(rest) if kind in token.lower()), len(rest))
    return _Named(path, number, "_".join([f"trial{number}", *rest[:end]]))


def image_shape(path: Path) -> tuple[int, ...]:
    """The voxel grid's shape from the header alone, in armseg's (x, y, z) axis order."""
    if image_suffix(path) in (".mha", ".mhd"):
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        return tuple(int(s) for s in reader.GetSize())
    import nibabel as nib

    return tuple(int(s) for s in nib.load(str(path)).shape)


def size_dir(shape: tuple[int, ...], slice_axis: int) -> str:
    """`under_512` when every in-plane size is at most 512 (OpenArm padded those to 512), else `over_512`."""
    in_plane = [size for axis, size in enumerate(shape[:3]) if axis != slice_axis]
    return SIZE_DIRS[0] if max(in_plane) <= SIZE_LIMIT else SIZE_DIRS[1]


def subject_folders(source: Path, subjects: list[str] | None) -> list[Path]:
    """The downloaded subject folders under `source` (or `source` itself, if it is one)."""
    if not source.is_dir():
        raise ArmsegError(f"--source {source}: no such folder (the downloaded Sub<x> folders)")
    if (source / VOLUMES).is_dir():
        found = [source]
    else:
        found = sorted(p for p in source.iterdir() if p.is_dir() and p.name.lower().startswith("sub"))
    if not found:
        raise ArmsegError(f"--source {source}: no Sub<x> folders (each with {VOLUMES}/ and {GROUND_SEGS}/)")
    if subjects:
        names = {p.name: p for p in found}
        unknown = [s for s in subjects if s not in names]
        if unknown:
            raise ArmsegError(f"--subjects {' '.join(unknown)}: not in {source} (subjects there: "
                              f"{', '.join(names)})")
        found = [names[s] for s in dict.fromkeys(subjects)]
    return found


def plan_subject(folder: Path, slice_axis: int) -> ImportPlan:
    """The placements and refusals of one downloaded subject folder."""
    plan = ImportPlan()
    if not (folder / VOLUMES).is_dir():
        plan.refused.append(Refusal(folder, f"no {VOLUMES}/ folder"))
        return plan
    volume_files = _files(folder / VOLUMES, "vol", plan)
    volumes = _by_trial(volume_files, plan, "volumes")
    segmentations = _by_trial(_files(folder / GROUND_SEGS, "seg", plan), plan, "ground truths")
    for number, named in segmentations.items():
        if number not in volumes:
            held = sum(1 for v in volume_files if v.number == number)
            why = (f"its trial {number} has {held} volumes, none placed" if held
                   else f"no volume of trial {number} in {folder / VOLUMES}")
            plan.refused.append(Refusal(named.path, why))
    for number, named in sorted(volumes.items()):
        try:
            shape = image_shape(named.path)
        except Exception as error:  # SimpleITK/nibabel raise many kinds; the file is named
            plan.refused.append(Refusal(named.path, f"cannot be read ({_first_line(error)})"))
            continue
        if len(shape) < 2 or any(size != 1 for size in shape[3:]):
            plan.refused.append(Refusal(named.path, f"not a volume (shape {shape})"))
            continue
        segmentation = segmentations.get(number)
        if segmentation is not None:
            seg_shape = _shape_or_refusal(segmentation.path, plan)
            if seg_shape is not None and seg_shape[:3] != shape[:3]:
                plan.refused.append(Refusal(segmentation.path, f"shape {seg_shape} differs from its volume "
                                                               f"{named.path.name} {shape}"))
            if seg_shape is None or seg_shape[:3] != shape[:3]:
                segmentation = None
        padded = (*shape, 1, 1)[:3]
        plan.placements.append(Placement(folder.name, named.trial, named.path,
                                         segmentation.path if segmentation else None, padded,
                                         size_dir(padded, slice_axis)))
    return plan


def plan_import(source: Path, subjects: list[str] | None = None, slice_axis: int = 2) -> ImportPlan:
    """The whole plan: every subject folder's placements and refusals."""
    plan = ImportPlan()
    for folder in subject_folders(source, subjects):
        part = plan_subject(folder, slice_axis)
        plan.placements += part.placements
        plan.refused += part.refused
    return plan


def _files(folder: Path, kind: str, plan: ImportPlan) -> list[_Named]:
    named = []
    if not folder.is_dir():
        return named
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.is_dir() or path.suffix.lower() in COMPANIONS:
            continue
        if image_suffix(path) is None:
            plan.refused.append(Refusal(path, f"not an image armseg reads ({', '.join(READABLE)})"))
            continue
        result = read_name(path, kind)
        if isinstance(result, str):
            plan.refused.append(Refusal(path, result))
        else:
            named.append(result)
    return named


def _by_trial(files: list[_Named], plan: ImportPlan, what: str) -> dict[int, _Named]:
    """One file per trial number; a number held by two files places neither of them."""
    found: dict[int, list[_Named]] = {}
    for named in files:
        found.setdefault(named.number, []).append(named)
    chosen = {}
    for number, same in found.items():
        if len(same) == 1:
            chosen[number] = same[0]
            continue
        names = ", ".join(n.path.name for n in same)
        for named in same:
            plan.refused.append(Refusal(named.path, f"{len(same)} {what} of trial {number} ({names}); "
                                                    "keep one, armseg will not choose"))
    return chosen


def _shape_or_refusal(path: Path, plan: ImportPlan) -> tuple[int, ...] | None:
    try:
        return image_shape(path)
    except Exception as error:  # as above: any reader failure is a refusal naming the file
        plan.refused.append(Refusal(path, f"cannot be read ({_first_line(error)})"))
        return None


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
