"""How a registration is set up: stages, iterations, pyramid, metric, manual start, label map.

Kept apart from the SimpleITK pipeline so the command's parser (and `--help`) never loads
SimpleITK, and so the settings are built and checked once, at the edge, then passed down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from armseg.errors import ArmsegError
from armseg.io.labels import DEFAULT_LABEL_MAP, LabelMap

STAGES = ("rigid", "affine", "bspline")
NO_STAGES = "none"
INIT_MODES = ("geometry", "moments")
DEFAULT_ITERATIONS = {"rigid": 100, "affine": 100, "bspline": 20}
OUTPUT_SUFFIXES = (".nii", ".nii.gz")
MIN_SAMPLES = 10_000
AUTO_SHRINK = (8, 4, 2)
MIN_COARSE_PIXELS = 16
BSPLINE_BOUND = 0.4  # control points move < 0.4 x their spacing: the B-spline cannot fold


@dataclass(frozen=True)
class RegistrationSettings:
    """How to register: which stages, how hard, at which resolutions (defaults suit ultrasound).

    `iterations` is one cap for every stage or one per stage (per resolution level); empty means
    DEFAULT_ITERATIONS. `sampling` is the random fraction of fixed voxels the metric reads.
    `shrink_factors` default to AUTO_SHRINK, capped so the coarsest level of a small scan keeps
    MIN_COARSE_PIXELS across; `smoothing_sigmas` (voxels) default to half of each shrink factor.
    `A` (9 numbers, row by row) and `t` (3, mm) are the user's initial affine, fixed LPS point ->
    moving LPS point; `label_map` says which raw values the atlas segmentation may hold.
    Everything is checked here, once, when the settings are made.
    """

    stages: tuple[str, ...] = STAGES
    iterations: tuple[int, ...] = ()
    sampling: float = 0.05
    shrink_factors: tuple[int, ...] = ()
    smoothing_sigmas: tuple[float, ...] = ()
    bins: int = 32
    bspline_grid_mm: float = 20.0
    init: str = "geometry"
    seed: int = 0
    report_every: int = 20
    A: tuple[float, ...] | None = None
    t: tuple[float, ...] | None = None
    label_map: LabelMap = DEFAULT_LABEL_MAP

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        for name in ("iterations", "shrink_factors", "smoothing_sigmas"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("A", "t"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        self._check()
        _check_manual(self.A, self.t)

    def _check(self) -> None:
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            raise ArmsegError(f"--stages: '{unknown[0]}' is not one of {', '.join(STAGES)} "
                              f"(or '{NO_STAGES}')")
        if list(self.stages) != sorted(set(self.stages), key=STAGES.index):
            raise ArmsegError(f"--stages: give each stage once, in the order {' '.join(STAGES)}")
        if len(self.iterations) not in (0, 1, len(self.stages)):
            raise ArmsegError(f"--iterations: give one number or one per stage ({len(self.stages)}), "
                              f"got {len(self.iterations)}")
        if any(n < 1 for n in self.iterations):
            raise ArmsegError("--iterations: every cap must be at least 1")
        if not 0.0 < self.sampling <= 1.0:
            raise ArmsegError(f"--sampling: must be a fraction in (0, 1], got {self.sampling}")
        if any(f < 1 for f in self.shrink_factors):
            raise ArmsegError("--shrink-factors: give one integer >= 1 per resolution level")
        sigmas = self.smoothing_sigmas
        if sigmas and not self.shrink_factors:
            raise ArmsegError("--smoothing-sigmas: give --shrink-factors too (one sigma per factor)")
        if sigmas and (len(sigmas) != len(self.shrink_factors) or any(s < 0 for s in sigmas)):
            raise ArmsegError(f"--smoothing-sigmas: give one sigma >= 0 per shrink factor "
                              f"({len(self.shrink_factors)})")
        if self.bins < 4:
            raise ArmsegError(f"--bins: must be at least 4, got {self.bins}")
        if self.bspline_grid_mm <= 0:
            raise ArmsegError(f"--bspline-grid-mm: must be positive, got {self.bspline_grid_mm}")
        if self.seed < 0:
            raise ArmsegError(f"--seed: must be 0 or more, got {self.seed}")
        if self.init not in INIT_MODES:
            raise ArmsegError(f"--init: '{self.init}' is not one of {', '.join(INIT_MODES)}")

    def iterations_for(self, stage: str) -> int:
        if not self.iterations:
            return DEFAULT_ITERATIONS[stage]
        if len(self.iterations) == 1:
            return self.iterations[0]
        return self.iterations[self.stages.index(stage)]

    def pyramid(self, size: Sequence[int]) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """(shrink factors, smoothing sigmas) for an image of `size` voxels, defaults filled in."""
        factors = self.shrink_factors
        if not factors:
            cap = max(1, sorted(size)[len(size) // 2] // MIN_COARSE_PIXELS)  # the smaller in-plane size
            factors = tuple(sorted({min(f, cap) for f in AUTO_SHRINK}, reverse=True))
        if self.smoothing_sigmas:
            return factors, tuple(float(s) for s in self.smoothing_sigmas)
        return factors, tuple(f / 2.0 if f > 1 else 0.0 for f in factors)

    def as_params(self) -> dict[str, object]:
        """Everything that decides a registration, as the params of its MLflow run."""
        params = {item.name: getattr(self, item.name) for item in fields(self)}
        params["stages"] = list(self.stages) or NO_STAGES
        params["iterations"] = [self.iterations_for(s) for s in self.stages] or NO_STAGES
        params["shrink_factors"] = list(self.shrink_factors) or "auto"
        params["smoothing_sigmas"] = list(self.smoothing_sigmas) or "auto"
        params["A"] = list(self.A) if self.A is not None else "None"
        params["t"] = list(self.t) if self.t is not None else "None"
        params["label_map"] = self.label_map.to_json()
        return params


def _check_manual(A: Sequence[float] | None, t: Sequence[float] | None) -> None:
    if A is not None:
        if len(A) != 9:
            raise ArmsegError(f"--A: give 9 numbers (a 3x3 matrix, row by row), got {len(A)}")
        matrix = np.asarray(A, dtype=float).reshape(3, 3)
        if not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix)) < 1e-9:
            raise ArmsegError("--A: the matrix must be finite and invertible")
    if t is not None and (len(t) != 3 or not np.all(np.isfinite(t))):
        raise ArmsegError(f"--t: give 3 finite numbers (a translation in mm), got {len(t)}")
