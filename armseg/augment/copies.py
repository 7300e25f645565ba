"""Making the augmented copies of a group's scans: which copies, and each one written as a folder."""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from armseg.augment.elastic import deform_pair, displacement_field
from armseg.augment.preview import Panel, middle_slice, panel
from armseg.augment.rotation import in_plane_axes, rotate_pair
from armseg.augment.write import elastic_folder_name, rotation_folder_name, write_pair_folder
from armseg.io.pairs import scan_pair
from armseg.io.tree import Scan


@dataclass(frozen=True)
class CopySpec:
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


def copy_specs(degrees: Sequence[float], alphas: Sequence[float], sigmas: Sequence[float]) -> list[CopySpec]:
    """Rotations, then every (alpha, sigma) pair; repeats that name the same folder count once."""
    plan = [CopySpec("rotation", degrees=float(d)) for d in degrees]
    plan += [CopySpec("elastic", alpha=float(a), sigma=float(s)) for a in alphas for s in sigmas]
    unique: dict[str, CopySpec] = {}
    for spec in plan:
        unique.setdefault(spec.folder_name(""), spec)
    return list(unique.values())


def augment_scans(scans: Sequence[Scan], plan: Sequence[CopySpec], seed: int, overwrite: bool,
                  slice_axis: int, slice_sigma: float) -> Outcome:
    """Make every planned copy of every scan; one progress line per copy."""
    outcome = Outcome()
    started = time.perf_counter()
    for number, scan in enumerate(scans, start=1):
        pending = []
        for spec in plan:
            target = scan.folder.parent / spec.folder_name(scan.trial)
            if overwrite or not target.exists():
                pending.append((spec, target))
            else:
                outcome.skipped.append(target)
                print(f"augment: [{number}/{len(scans)}] {target} exists, skipped (--overwrite replaces it)")
        if not pending:
            continue
        _augment_scan(scan, pending, seed, slice_axis, slice_sigma, outcome, f"[{number}/{len(scans)}]")
        outcome.scans += 1
    outcome.seconds = time.perf_counter() - started
    return outcome


def _augment_scan(scan: Scan, pending: Sequence[tuple[CopySpec, Path]], seed: int, slice_axis: int,
                  slice_sigma: float, outcome: Outcome, counter: str) -> None:
    volume_image, labels_image = scan_pair(scan)
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
    for spec, target in pending:
        start = time.perf_counter()
        new_volume, new_labels = _transform(spec, volume, labels, volume_image.spacing, seed, target.name,
                                            slice_axis, slice_sigma)
        outcome.seconds_by_kind[spec.kind].append(time.perf_counter() - start)
        outcome.files += write_pair_folder(target, new_volume, new_labels, volume_image, labels_image)
        outcome.written.append(target)
        print(f"augment: {counter} {target} ({time.perf_counter() - start:.2f} s)")
        if preview and spec.kind not in shown:
            shown.add(spec.kind)
            outcome.panels.append(panel(target.name, new_volume, new_labels, index, slice_axis))


def _transform(spec: CopySpec, volume: np.ndarray, labels: np.ndarray, spacing: tuple[float, float, float],
               seed: int, name: str, slice_axis: int, slice_sigma: float) -> tuple[np.ndarray, np.ndarray]:
    if spec.kind == "rotation":
        return rotate_pair(volume, labels, spec.degrees, slice_axis, spacing)
    # Each copy's field depends on the seed and its folder name only: the same copy is reproducible.
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    displacement = displacement_field(volume.shape, spec.alpha, spec.sigma, rng, slice_axis, slice_sigma)
    return deform_pair(volume, labels, displacement, slice_axis)
