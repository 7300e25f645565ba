"""`armseg augment`: rotated and elastically deformed copies of a training group's scans.

Every original vol+seg pair of the group gets one copy per rotation angle and one per
(alpha, sigma) combination, each a new trial folder beside the original whose name marks it
as augmented (`trial1_0_fs_rot-10`, `trial1_0_fs_a5_s10_ed`), so `train` can tell copies
from originals and keep the copies out of validation and test. One `augment` run records
the parameters, the files written, a before/after picture and the seconds per scan.
"""

from __future__ import annotations

import argparse
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np

from armseg.augment.elastic import deform_pair, displacement_field
from armseg.augment.preview import Panel, middle_slice, panel, preview_figure
from armseg.augment.rotation import in_plane_axes, rotate_pair
from armseg.augment.write import elastic_folder_name, rotation_folder_name, write_pair_folder
from armseg.errors import ArmsegError
from armseg.io.images import Image, read_image
from armseg.io.tree import Scan, find_group, group_scans
from armseg.model.names import GROUP_TAG
from armseg.params import parse_bool, typed_list, typed_value
from armseg.tracking.runs import stage_run

DEFAULT_DEGREES = ("-10", "10")
DEFAULT_ALPHAS = ("4",)
DEFAULT_SIGMAS = ("10",)
PREVIEW_ARTIFACT = "augment_preview.png"


@dataclass(frozen=True)
class Recipe:
    """One augmented copy to make of every scan: a rotation or an (alpha, sigma) deformation."""

    kind: str  # "rotation" | "elastic"
    degrees: float = 0.0
    alpha: float = 0.0
    sigma: float = 0.0

    def folder_name(self, trial: str) -> str:
        if self.kind == "rotation":
            return rotation_folder_name(trial, self.degrees)
        return elastic_folder_name(trial, self.alpha, self.sigma)


@dataclass
class Outcome:
    """What an augment pass did: folders written or skipped, files, time spent, the picture."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    scans: int = 0
    seconds: float = 0.0
    seconds_by_kind: dict[str, list[float]] = field(default_factory=lambda: {"rotation": [], "elastic": []})
    panels: list[Panel] = field(default_factory=list)
    panel_spacing: tuple[float, float] = (1.0, 1.0)
    panel_title: str = ""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group", required=True,
                        help="training group to augment, by folder name (e.g. group_1_2)")
    parser.add_argument("--degrees", nargs="*", default=list(DEFAULT_DEGREES), metavar="DEG",
                        help="rotation angles about the long axis, |deg| <= 180; none skips rotation "
                             f"(default: {' '.join(DEFAULT_DEGREES)})")
    parser.add_argument("--alphas", nargs="*", default=list(DEFAULT_ALPHAS), metavar="PX",
                        help="elastic RMS displacements in pixels, >= 0; none skips elastic "
                             f"(default: {' '.join(DEFAULT_ALPHAS)})")
    parser.add_argument("--sigmas", nargs="*", default=list(DEFAULT_SIGMAS), metavar="PX",
                        help="elastic smoothness (Gaussian sigma) in pixels, > 0; every alpha is combined "
                             f"with every sigma; none skips elastic (default: {' '.join(DEFAULT_SIGMAS)})")
    parser.add_argument("--seed", default="0",
                        help="seed of the elastic fields: the same seed writes identical files "
                             "(default: %(default)s)")
    parser.add_argument("--overwrite", nargs="?", const="true", default="false", metavar="BOOL",
                        help="replace existing augmented folders (default: skip and report them)")
    parser.add_argument("--slice-axis", default="2",
                        help="array axis along the arm (the rotation axis) (default: %(default)s)")
    parser.add_argument("--slice-sigma", default="0",
                        help="elastic smoothing along the arm in slices; 0 deforms each slice "
                             "independently (default: %(default)s)")


def run(args: argparse.Namespace) -> None:
    augment_group(
        args.data_root, args.group,
        degrees=typed_list(args.degrees, "degrees", float),
        alphas=typed_list(args.alphas, "alphas", float),
        sigmas=typed_list(args.sigmas, "sigmas", float),
        seed=typed_value(args.seed, "seed", int) or 0,
        overwrite=parse_bool(args.overwrite, "overwrite"),
        slice_axis=_slice_axis(args.slice_axis),
        slice_sigma=typed_value(args.slice_sigma, "slice_sigma", float) or 0.0,
    )


def _slice_axis(value: str | None) -> int:
    axis = typed_value(value, "slice_axis", int)
    return 2 if axis is None else axis


def augment_group(data_root: Path | str, group: str, degrees: Sequence[float], alphas: Sequence[float],
                  sigmas: Sequence[float], seed: int = 0, overwrite: bool = False, slice_axis: int = 2,
                  slice_sigma: float = 0.0) -> list[Path]:
    """Augment every original scan of `group` as one `augment` run; return the folders written.

    Existing copies are kept (and reported as skipped) unless `overwrite`.
    """
    params = {"data_root": str(data_root), "group": group, "degrees": list(degrees),
              "alphas": list(alphas), "sigmas": list(sigmas), "seed": seed, "overwrite": overwrite,
              "slice_axis": slice_axis, "slice_sigma": slice_sigma}
    with stage_run("augment", params, tags={GROUP_TAG: group}) as active:
        validate(degrees, alphas, sigmas, seed, slice_axis, slice_sigma)
        plan = recipes(degrees, alphas, sigmas)
        folder = find_group(data_root, group)
        scans = group_scans(folder, include_augmented=False)
        if not scans:
            raise ArmsegError(f"group '{group}' at {folder} holds no original scans to augment")
        outcome = augment_scans(scans, plan, seed, overwrite, slice_axis, slice_sigma)
        _log(outcome)
        _report(outcome, folder, active.info.run_id)
    return outcome.written


def recipes(degrees: Sequence[float], alphas: Sequence[float], sigmas: Sequence[float]) -> list[Recipe]:
    """Rotations, then every (alpha, sigma) pair; repeats that name the same folder count once."""
    plan = [Recipe("rotation", degrees=float(d)) for d in degrees]
    plan += [Recipe("elastic", alpha=float(a), sigma=float(s)) for a in alphas for s in sigmas]
    unique: dict[str, Recipe] = {}
    for recipe in plan:
        unique.setdefault(recipe.folder_name(""), recipe)
    return list(unique.values())


def validate(degrees: Sequence[float], alphas: Sequence[float], sigmas: Sequence[float], seed: int,
             slice_axis: int, slice_sigma: float) -> None:
    """User mistakes as one sentence naming the parameter."""
    _check("degrees", degrees, lambda d: abs(d) <= 180, "outside -180..180")
    _check("alphas", alphas, lambda a: a >= 0, "negative (alpha is a displacement in pixels, >= 0)")
    _check("sigmas", sigmas, lambda s: s > 0, "not positive (sigma is a smoothing width in pixels, > 0)")
    _check("slice_sigma", [slice_sigma], lambda s: s >= 0, "negative (0 deforms slices independently)")
    if slice_axis not in (0, 1, 2):
        raise ArmsegError(f"--slice-axis must be 0, 1 or 2 (an array axis of a 3D volume), got {slice_axis}")
    if seed < 0:
        raise ArmsegError(f"--seed must be a non-negative integer, got {seed}")
    if not degrees and not (alphas and sigmas):
        raise ArmsegError("nothing to do: --degrees is empty and --alphas/--sigmas give no (alpha, sigma) "
                          "pair; give angles, or both alphas and sigmas")


def _check(name: str, values: Sequence[float], ok: Callable[[float], bool], problem: str) -> None:
    flag = f"--{name.replace('_', '-')}"
    for value in values:
        if not math.isfinite(value):
            raise ArmsegError(f"{flag}: {value} is not a finite number")
        if not ok(value):
            raise ArmsegError(f"{flag}: {value:g} is {problem}")


def augment_scans(scans: Sequence[Scan], plan: Sequence[Recipe], seed: int, overwrite: bool,
                  slice_axis: int, slice_sigma: float) -> Outcome:
    """Make every recipe's copy of every scan; one progress line per copy."""
    outcome = Outcome()
    started = time.perf_counter()
    for number, scan in enumerate(scans, start=1):
        pending = []
        for recipe in plan:
            target = scan.folder.parent / recipe.folder_name(scan.trial)
            if overwrite or not target.exists():
                pending.append((recipe, target))
            else:
                outcome.skipped.append(target)
                print(f"augment: [{number}/{len(scans)}] {target} exists, skipped (--overwrite replaces it)")
        if not pending:
            continue
        _augment_scan(scan, pending, seed, slice_axis, slice_sigma, outcome, f"[{number}/{len(scans)}]")
        outcome.scans += 1
    outcome.seconds = time.perf_counter() - started
    return outcome


def _augment_scan(scan: Scan, pending: Sequence[tuple[Recipe, Path]], seed: int, slice_axis: int,
                  slice_sigma: float, outcome: Outcome, counter: str) -> None:
    volume_image, labels_image = read_pair(scan)
    # In memory and C-ordered: nibabel hands out Fortran-ordered memmaps, which interpolate ~2x slower.
    volume, labels = np.ascontiguousarray(volume_image.array), np.ascontiguousarray(labels_image.array)
    preview = not outcome.panels
    if preview:
        index = middle_slice(labels, slice_axis)
        outcome.panels.append(panel(f"{scan.trial} (original)", volume, labels, index, slice_axis))
        a, b = in_plane_axes(slice_axis)
        outcome.panel_spacing = (volume_image.spacing[a], volume_image.spacing[b])
        outcome.panel_title = f"{scan.folder.parent.name}: slice {index} along axis {slice_axis}"
    shown = set()
    for recipe, target in pending:
        start = time.perf_counter()
        if recipe.kind == "rotation":
            new_volume, new_labels = rotate_pair(volume, labels, recipe.degrees, slice_axis,
                                                 volume_image.spacing)
        else:
            rng = np.random.default_rng([seed, zlib.crc32(target.name.encode())])
            displacement = displacement_field(volume.shape, recipe.alpha, recipe.sigma, rng, slice_axis,
                                              slice_sigma)
            new_volume, new_labels = deform_pair(volume, labels, displacement, slice_axis)
        outcome.seconds_by_kind[recipe.kind].append(time.perf_counter() - start)
        outcome.files += write_pair_folder(target, new_volume, new_labels, volume_image, labels_image)
        outcome.written.append(target)
        print(f"augment: {counter} {target} ({time.perf_counter() - start:.2f} s)")
        if preview and recipe.kind not in shown:
            shown.add(recipe.kind)
            outcome.panels.append(panel(target.name, new_volume, new_labels, index, slice_axis))


def read_pair(scan: Scan) -> tuple[Image, Image]:
    """The volume and its raw segmentation; they must share a grid and labels must be integers."""
    volume = read_image(scan.volume)
    labels = read_image(scan.segmentation)
    if volume.array.shape != labels.array.shape:
        raise ArmsegError(f"{scan.segmentation}: shape {labels.array.shape} differs from its volume "
                          f"{scan.volume.name} {volume.array.shape}")
    raw = np.asarray(labels.array)
    if not np.issubdtype(raw.dtype, np.integer) and not np.array_equal(np.rint(raw), raw):
        raise ArmsegError(f"{scan.segmentation}: segmentation holds non-integer values; is it a volume?")
    return volume, labels


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else 0.0


def _log(outcome: Outcome) -> None:
    """Metrics, the list of files written (and skipped), and the before/after picture."""
    mlflow.log_metrics({
        "seconds_per_scan": outcome.seconds / outcome.scans if outcome.scans else 0.0,
        "seconds_per_rotation": _mean(outcome.seconds_by_kind["rotation"]),
        "seconds_per_elastic": _mean(outcome.seconds_by_kind["elastic"]),
        "scans": outcome.scans,
        "folders_written": len(outcome.written),
        "folders_skipped": len(outcome.skipped),
    })
    mlflow.log_text("".join(f"{path}\n" for path in outcome.files), "written.txt")
    if outcome.skipped:
        mlflow.log_text("".join(f"{path}\n" for path in outcome.skipped), "skipped.txt")
    if outcome.panels:
        figure = preview_figure(outcome.panels, outcome.panel_spacing, outcome.panel_title)
        mlflow.log_figure(figure, PREVIEW_ARTIFACT)


def _report(outcome: Outcome, folder: Path, run_id: str) -> None:
    per_scan = outcome.seconds / outcome.scans if outcome.scans else 0.0
    print(f"[armseg augment] wrote {len(outcome.written)} folders ({len(outcome.files)} files) beside "
          f"the originals in {folder}; {per_scan:.2f} s per scan")
    if outcome.skipped:
        print(f"[armseg augment] skipped {len(outcome.skipped)} existing folders (--overwrite replaces "
              f"them); listed in skipped.txt")
    print(f"[armseg augment] file list written.txt and picture {PREVIEW_ARTIFACT} are artifacts of "
          f"MLflow run {run_id} at {mlflow.get_tracking_uri()}")
