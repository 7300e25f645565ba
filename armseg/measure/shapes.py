"""What a label map says about each structure's shape, in millimetres (pure NumPy, no MLflow).

Every measure comes from a few whole-array reductions per structure (per-slice and per-row
counts, row and column occupancy); no Python loop visits a slice or a pixel, so a 256x256x100
scan is measured in well under a second (`benchmarks/bench_measure.py`).

Axes: a scan has a depth axis (away from the probe; synth and OpenArm's scans: array axis 0,
row 0 at the skin), a slice axis along the arm (axis 2) and a width axis (the remaining one,
lateral). Definitions, for one structure of one scan:

- `volume_mm3`: voxel count x voxel volume (the product of the three spacings);
- the area profile: per slice, the structure's pixel count x pixel area (depth x width
  spacing), in mm^2; a slice without the structure has area 0 there;
- `area_max_mm2`: the profile's maximum (the largest cross-section); `area_mean_mm2`: its mean
  over the slices where the structure is present (so a longer scan does not dilute it);
- `thickness_mm`: the extent in depth of the largest cross-section (first to last row it
  touches, inclusive, x depth spacing), the first such slice on ties; `width_mm`: the same
  cross-section's lateral extent; `thickness_width_ratio`: their ratio (a rounder muscle -> 1);
- `centroid_depth_mm`: the depth of the structure's 3-D centroid below the image's top edge
  (row i's centre lies at (i + 0.5) x depth spacing);
- `length_mm`: from the first to the last slice holding the structure, inclusive, x slice
  spacing (the scan's own length when the structure runs through the whole scan).

A structure absent from the scan gets NaN for every summary measure: nothing was measured,
and a 0 would read as a measurement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from armseg.errors import ArmsegError
from armseg.measure.names import (
    AREA_MAX,
    AREA_MEAN,
    CENTROID_DEPTH,
    LENGTH,
    MEASURES,
    RATIO,
    THICKNESS,
    VOLUME,
    WIDTH,
)

DEFAULT_DEPTH_AXIS = 0
DEFAULT_SLICE_AXIS = 2


@dataclass(frozen=True)
class ScanAxes:
    """Which array axis is depth and which runs along the arm; the third is width (lateral)."""

    depth: int = DEFAULT_DEPTH_AXIS
    along: int = DEFAULT_SLICE_AXIS

    def __post_init__(self) -> None:
        for name, axis in (("--depth-axis", self.depth), ("--slice-axis", self.along)):
            if axis not in (0, 1, 2):
                raise ArmsegError(f"{name} must be 0, 1 or 2 (an axis of a 3-D scan), got {axis}")
        if self.depth == self.along:
            raise ArmsegError(f"--depth-axis and --slice-axis must differ, both are {self.depth}")

    @property
    def width(self) -> int:
        return 3 - self.depth - self.along

    @property
    def order(self) -> tuple[int, int, int]:
        """Array axes in (depth, width, along) order."""
        return (self.depth, self.width, self.along)

    def orient(self, array: np.ndarray) -> np.ndarray:
        """A (depth, width, along) view of `array` (no copy)."""
        return np.transpose(array, self.order)

    def spacing(self, spacing: Sequence[float]) -> tuple[float, float, float]:
        """(depth, width, along) spacing in mm from the per-array-axis spacing."""
        return (float(spacing[self.depth]), float(spacing[self.width]), float(spacing[self.along]))


DEFAULT_AXES = ScanAxes()


@dataclass(frozen=True)
class Profile:
    """Per-slice cross-section along the arm: area (0 where absent), thickness and width (NaN)."""

    position_mm: np.ndarray
    area_mm2: np.ndarray
    thickness_mm: np.ndarray
    width_mm: np.ndarray


@dataclass(frozen=True)
class StructureMeasures:
    """One structure of one scan: its voxel count, summary measures and profile along the arm."""

    voxels: int
    summary: dict[str, float]
    profile: Profile

    @property
    def present(self) -> bool:
        return self.voxels > 0


def extents(occupied: np.ndarray) -> np.ndarray:
    """Per column of a (n, slices) occupancy: last - first occupied index + 1, 0 where empty."""
    n = occupied.shape[0]
    first = occupied.argmax(axis=0)
    last = n - 1 - occupied[::-1].argmax(axis=0)
    return np.where(occupied.any(axis=0), last - first + 1, 0)


def measure_mask(mask: np.ndarray, spacing: Sequence[float],
                 axes: ScanAxes = DEFAULT_AXES) -> StructureMeasures:
    """Every measure of one structure from its boolean mask and the per-array-axis spacing (mm)."""
    if mask.ndim != 3:
        raise ValueError(f"expected a 3-D mask, got shape {mask.shape}")
    oriented = axes.orient(np.asarray(mask, dtype=bool))
    dz, dx, ds = axes.spacing(spacing)
    # Two passes over the voxels: counts per (row, slice), occupancy per (column, slice).
    row_counts = oriented.sum(axis=1, dtype=np.int64)
    column_occupied = oriented.any(axis=0)
    slice_counts = row_counts.sum(axis=0)
    voxels = int(slice_counts.sum())
    present = slice_counts > 0
    area = slice_counts * (dz * dx)
    thickness = np.where(present, extents(row_counts > 0) * dz, np.nan)
    width = np.where(present, extents(column_occupied) * dx, np.nan)
    profile = Profile(position_mm=np.arange(slice_counts.size) * ds, area_mm2=area.astype(float),
                      thickness_mm=thickness, width_mm=width)
    if voxels == 0:
        return StructureMeasures(0, dict.fromkeys(MEASURES, float("nan")), profile)
    peak = int(area.argmax())
    held = np.flatnonzero(present)
    depth_counts = row_counts.sum(axis=1)
    centroid_row = float(depth_counts @ (np.arange(depth_counts.size) + 0.5)) / voxels
    summary = {
        VOLUME: voxels * dz * dx * ds,
        AREA_MAX: float(area[peak]),
        AREA_MEAN: float(area[held].mean()),
        THICKNESS: float(thickness[peak]),
        WIDTH: float(width[peak]),
        RATIO: float(thickness[peak] / width[peak]),
        CENTROID_DEPTH: centroid_row * dz,
        LENGTH: float((held[-1] - held[0] + 1) * ds),
    }
    return StructureMeasures(voxels, summary, profile)


def measure_structures(classes: np.ndarray, structures: Mapping[str, int], spacing: Sequence[float],
                       axes: ScanAxes = DEFAULT_AXES) -> dict[str, StructureMeasures]:
    """Measure each named structure (name -> class index) of a class-index label map."""
    return {name: measure_mask(classes == index, spacing, axes) for name, index in structures.items()}
