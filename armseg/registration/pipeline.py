"""Segment one scan by registering a segmented scan onto it (SimpleITK rigid -> affine -> B-spline).

Every transform here maps points of the *fixed* image (the scan to segment) to points of the
*moving* image (the segmented atlas), in ITK's physical LPS millimetres, as ITK transforms do:
that is the direction a resampler needs to pull the moving labels onto the fixed grid. The
stages share one multi-resolution Mattes mutual-information set-up; each starts where the
previous one ended (rigid from a centred initialiser, affine from the rigid result, B-spline on
top of the linear result), and the result is one composite transform
`manual(A, t) o linear o B-spline`.

Images cross into SimpleITK from armseg's `Image` (nibabel (x, y, z) arrays, RAS affine), so
the output array is, voxel for voxel, on the fixed scan's own grid whatever its orientation.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from armseg.errors import ArmsegError
from armseg.io.images import Image, image_suffix, read_image, write_like
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
_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class RegistrationSettings:
    """How to register: which stages, how hard, at which resolutions (defaults suit ultrasound).

    `iterations` is one cap for every stage or one per stage (per resolution level); empty means
    DEFAULT_ITERATIONS. `sampling` is the random fraction of fixed voxels the metric reads.
    `shrink_factors` default to AUTO_SHRINK, capped so the coarsest level of a small scan keeps
    MIN_COARSE_PIXELS across; `smoothing_sigmas` (voxels) default to half of each shrink factor.
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

    def __post_init__(self) -> None:
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
        """The settings as MLflow params (stages 'none' when empty, iterations per stage)."""
        params = asdict(self)
        params["stages"] = list(self.stages) or NO_STAGES
        params["iterations"] = [self.iterations_for(s) for s in self.stages] or NO_STAGES
        params["shrink_factors"] = list(self.shrink_factors) or "auto"
        params["smoothing_sigmas"] = list(self.smoothing_sigmas) or "auto"
        return params


def registration_params(stages: Sequence[str], A: Sequence[float] | None, t: Sequence[float] | None,
                        label_map: LabelMap, **settings: object) -> dict[str, object]:
    """Everything that decides a registration, as the params of its MLflow run."""
    full = RegistrationSettings(stages=tuple(stages), **settings)  # type: ignore[arg-type]
    return {**full.as_params(), "A": list(A) if A is not None else "None",
            "t": list(t) if t is not None else "None", "label_map": label_map.to_json()}


@dataclass
class StageReport:
    """What one stage did: its transform, the optimiser's last metric value and its cost."""

    name: str
    transform: sitk.Transform
    final_metric: float
    iterations: int
    seconds: float
    stop_condition: str
    metric_history: list[float] = field(default_factory=list)


@dataclass
class Preview:
    """The middle transverse slice of the fixed scan with the moving scan/labels mapped onto it,
    before (manual transform or identity) and after registration: for a picture."""

    fixed: np.ndarray
    moving_before: np.ndarray
    moving_after: np.ndarray
    labels_before: np.ndarray
    labels_after: np.ndarray
    pixel_mm: tuple[float, float]


@dataclass
class RegistrationResult:
    """A finished registration: where the labels went and how the transform was reached."""

    fixed: Path
    moving: Path
    moving_seg: Path
    out: Path
    settings: RegistrationSettings
    manual: sitk.Transform | None
    transform: sitk.CompositeTransform
    stages: list[StageReport]
    initial_metric: float
    final_metric: float
    seconds: float
    labels: tuple[int, ...]
    pyramid: tuple[tuple[int, ...], tuple[float, ...]]
    preview: Preview | None = None


def sitk_image(array: np.ndarray, affine: np.ndarray, pixel_type: type = np.float32) -> sitk.Image:
    """A SimpleITK image of an armseg array ((x, y, z) order) placed by its RAS affine.

    ITK's index axes are the array axes, spacing the affine's column lengths, and direction and
    origin the affine's, flipped from RAS to LPS.
    """
    matrix = np.asarray(affine, dtype=float)[:3, :3]
    spacing = np.sqrt((matrix ** 2).sum(axis=0))
    if np.any(spacing <= 0) or abs(np.linalg.det(matrix)) < 1e-12:
        raise ArmsegError("image affine is singular; cannot place the scan in space")
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array, dtype=pixel_type).T))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(v) for v in (_LPS_FROM_RAS @ matrix / spacing).ravel()))
    image.SetOrigin(tuple(float(v) for v in _LPS_FROM_RAS @ np.asarray(affine, dtype=float)[:3, 3]))
    return image


def as_array(image: sitk.Image) -> np.ndarray:
    """Back to armseg's (x, y, z) order."""
    return sitk.GetArrayFromImage(image).T


def manual_transform(A: Sequence[float] | None, t: Sequence[float] | None) -> sitk.AffineTransform | None:
    """The user's initial affine x -> A x + t (fixed LPS mm -> moving LPS mm), or None when not given."""
    if A is None and t is None:
        return None
    matrix = np.eye(3) if A is None else np.asarray(A, dtype=float)
    shift = np.zeros(3) if t is None else np.asarray(t, dtype=float)
    if matrix.size != 9:
        raise ArmsegError(f"--A: give 9 numbers (a 3x3 matrix, row by row), got {matrix.size}")
    if shift.size != 3:
        raise ArmsegError(f"--t: give 3 numbers (a translation in mm), got {shift.size}")
    matrix = matrix.reshape(3, 3)
    if not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix)) < 1e-9:
        raise ArmsegError("--A: the matrix must be finite and invertible")
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(tuple(float(v) for v in matrix.ravel()))
    transform.SetTranslation(tuple(float(v) for v in shift))
    return transform


def register_pair(
    fixed: Path | str,
    moving: Path | str,
    moving_seg: Path | str,
    out: Path | str,
    stages: Sequence[str] = STAGES,
    A: Sequence[float] | None = None,
    t: Sequence[float] | None = None,
    overwrite: bool = False,
    label_map: LabelMap = DEFAULT_LABEL_MAP,
    progress: Callable[[str], None] | None = print,
    **options: object,
) -> RegistrationResult:
    """Map `moving_seg` (on `moving`'s grid) onto `fixed`'s grid and write it to `out`.

    `options` are the other RegistrationSettings fields (iterations, sampling, ...). The labels
    keep their raw values (nearest neighbour); `out` gets the fixed scan's affine and header and
    is written atomically. Nothing is logged: `armseg.registration.report.log_result` does that.
    """
    out = Path(out)
    settings = RegistrationSettings(stages=tuple(stages), **options)  # type: ignore[arg-type]
    manual = manual_transform(A, t)
    if image_suffix(out) not in OUTPUT_SUFFIXES:
        raise ArmsegError(f"{out}: the output must be a NIfTI file (.nii or .nii.gz)")
    if out.exists() and not overwrite:
        raise ArmsegError(f"{out}: exists; pass --overwrite to replace it")
    start = time.perf_counter()
    fixed_image, moving_image = read_image(fixed), read_image(moving)
    raw_labels = _read_labels(Path(moving_seg), moving_image, label_map)
    fixed_itk = sitk_image(fixed_image.array, fixed_image.affine)
    moving_itk = sitk_image(moving_image.array, moving_image.affine)
    labels_itk = sitk_image(raw_labels, moving_image.affine, raw_labels.dtype.type)
    transform, reports = register_images(fixed_itk, moving_itk, settings, manual, progress)
    initial_metric, final_metric = (evaluate_metric(fixed_itk, moving_itk, settings, how)
                                    for how in (manual, transform))
    mapped = as_array(resample_labels(labels_itk, fixed_itk, transform))
    write_like(out, mapped, reference=fixed_image)
    preview = make_preview(fixed_itk, moving_itk, labels_itk, manual, transform)
    values = tuple(int(v) for v in np.unique(mapped))
    return RegistrationResult(
        fixed=Path(fixed), moving=Path(moving), moving_seg=Path(moving_seg), out=out, settings=settings,
        manual=manual, transform=transform, stages=reports, initial_metric=initial_metric,
        final_metric=final_metric,
        seconds=time.perf_counter() - start, labels=values, pyramid=settings.pyramid(fixed_itk.GetSize()),
        preview=preview,
    )


def _read_labels(path: Path, moving: Image, label_map: LabelMap) -> np.ndarray:
    """Raw labels as the smallest unsigned integers that hold them, on the moving volume's grid."""
    segmentation = read_image(path)
    if segmentation.array.shape != moving.array.shape:
        raise ArmsegError(f"{path}: shape {segmentation.array.shape} differs from its volume "
                          f"{moving.path.name} {moving.array.shape}")
    raw = np.asarray(segmentation.array)
    label_map.encode(raw, path)  # refuses unknown or non-integer values, naming the file
    raw = np.rint(raw) if not np.issubdtype(raw.dtype, np.integer) else raw
    return raw.astype(np.uint8 if raw.max(initial=0) <= 255 else np.uint16)


def register_images(
    fixed: sitk.Image,
    moving: sitk.Image,
    settings: RegistrationSettings,
    manual: sitk.Transform | None = None,
    progress: Callable[[str], None] | None = print,
) -> tuple[sitk.CompositeTransform, list[StageReport]]:
    """(fixed -> moving composite transform, one report per stage)."""
    fixed = sitk.Cast(fixed, sitk.sitkFloat32)
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    reports: list[StageReport] = []
    linear: sitk.Transform | None = None
    chain: list[sitk.Transform] = [manual] if manual is not None else []
    for stage in settings.stages:
        if stage == "bspline":
            base = _composite(chain + ([linear] if linear is not None else []))
            transform = _bspline_start(fixed, settings.bspline_grid_mm)
        else:
            base = _composite(chain)
            transform = _linear_start(stage, linear, fixed, moving, manual, settings.init)
        report = _run_stage(stage, fixed, moving, transform, base, settings, progress)
        reports.append(report)
        if stage == "bspline":
            chain += ([linear] if linear is not None else []) + [report.transform]
            linear = None
        else:
            linear = report.transform
    if linear is not None:
        chain.append(linear)
    return _composite(chain), reports


def _composite(transforms: list[sitk.Transform]) -> sitk.CompositeTransform:
    """ITK composites apply their last transform first: [manual, linear, bspline] = m(l(b(x)))."""
    if not transforms:
        return sitk.CompositeTransform([sitk.Transform(3, sitk.sitkIdentity)])
    return sitk.CompositeTransform(list(transforms))


def _linear_start(stage: str, previous: sitk.Transform | None, fixed: sitk.Image, moving: sitk.Image,
                  manual: sitk.Transform | None, init: str) -> sitk.Transform:
    """Rigid from a centred initialiser; affine from the rigid result (or its own initialiser)."""
    transform = sitk.Euler3DTransform() if stage == "rigid" else sitk.AffineTransform(3)
    if previous is not None:
        transform.SetCenter(previous.GetCenter())
        transform.SetMatrix(previous.GetMatrix())
        transform.SetTranslation(previous.GetTranslation())
        return transform
    # With a manual affine, centre against the moving image as the manual transform places it.
    target = moving if manual is None else sitk.Resample(moving, fixed, manual, sitk.sitkLinear, 0.0)
    mode = (sitk.CenteredTransformInitializerFilter.MOMENTS if init == "moments"
            else sitk.CenteredTransformInitializerFilter.GEOMETRY)
    try:
        return sitk.CenteredTransformInitializer(fixed, target, transform, mode)
    except RuntimeError as error:
        raise ArmsegError(f"--init {init}: cannot centre the images ({_itk_reason(error)})") from error


def _bspline_start(fixed: sitk.Image, grid_mm: float) -> sitk.BSplineTransform:
    """A B-spline over the fixed image with control points about `grid_mm` apart (coarse: smooth)."""
    extent = (np.asarray(fixed.GetSize()) - 1) * np.asarray(fixed.GetSpacing())
    mesh = [max(1, int(round(e / grid_mm))) for e in extent]
    return sitk.BSplineTransformInitializer(fixed, mesh, 3)


def _control_point_spacing(transform: sitk.Transform) -> float:
    """The smallest distance between B-spline control points, mm (domain size / mesh size)."""
    bspline = sitk.BSplineTransform(transform)
    mesh = np.asarray(bspline.GetTransformDomainMeshSize(), dtype=float)
    return float(np.min(np.asarray(bspline.GetTransformDomainPhysicalDimensions()) / mesh))


def _method(settings: RegistrationSettings, fixed: sitk.Image) -> sitk.ImageRegistrationMethod:
    """The metric, sampling, interpolator and pyramid every stage shares."""
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.bins)
    method.SetMetricSamplingStrategy(method.RANDOM)
    factors, sigmas = settings.pyramid(fixed.GetSize())
    fractions = sampling_per_level(settings.sampling, factors, fixed.GetSize())
    # SimpleITK reads seed 0 as "the wall clock"; shift by one so every armseg seed repeats exactly.
    method.SetMetricSamplingPercentagePerLevel(fractions, settings.seed + 1)
    # Gradients at the sampled points only: a whole-image gradient filter per level costs more than
    # every iteration of a sparsely sampled metric together (3x slower on a 256x256x100 scan).
    method.SetMetricUseFixedImageGradientFilter(False)
    method.SetMetricUseMovingImageGradientFilter(False)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetShrinkFactorsPerLevel(list(factors))
    method.SetSmoothingSigmasPerLevel(list(sigmas))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    return method


def sampling_per_level(sampling: float, factors: Sequence[int], size: Sequence[int]) -> list[float]:
    """`sampling` at each level, raised so a coarse level still reads MIN_SAMPLES voxels: a
    mutual-information histogram from a few hundred samples steers the optimiser anywhere."""
    fractions = []
    for factor in factors:
        voxels = float(np.prod([-(-n // factor) for n in size]))
        fractions.append(min(1.0, max(sampling, MIN_SAMPLES / voxels)))
    return fractions


def evaluate_metric(fixed: sitk.Image, moving: sitk.Image, settings: RegistrationSettings,
                    transform: sitk.Transform | None) -> float:
    """The metric of `transform` (None: identity) under one fixed set-up, so that the value before
    registration and after it compare (the stages' own values come from different levels)."""
    method = _method(settings, fixed)
    method.SetInitialTransform(transform if transform is not None else sitk.Transform(3, sitk.sitkIdentity))
    fixed, moving = sitk.Cast(fixed, sitk.sitkFloat32), sitk.Cast(moving, sitk.sitkFloat32)
    try:
        return float(method.MetricEvaluate(fixed, moving))
    except RuntimeError:  # no overlap: nothing to measure
        return float("nan")


def _run_stage(stage: str, fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform,
               base: sitk.Transform, settings: RegistrationSettings,
               progress: Callable[[str], None] | None) -> StageReport:
    method = _method(settings, fixed)
    iterations = settings.iterations_for(stage)
    if stage == "bspline":
        # L-BFGS-B needs no parameter scales, which for hundreds of control points cost more than it.
        bound = BSPLINE_BOUND * _control_point_spacing(transform)
        method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=iterations,
                                    maximumNumberOfCorrections=5,
                                    maximumNumberOfFunctionEvaluations=3 * iterations,
                                    lowerBound=-bound, upperBound=bound)
    else:
        # Regular-step descent halves its step at each turn of direction, so one bad gradient from
        # a random sample cannot throw it far; with physical-shift scales a step of 1 is about 1 mm.
        method.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-3,
                                                        numberOfIterations=iterations,
                                                        relaxationFactor=0.5, gradientMagnitudeTolerance=1e-6)
        method.SetOptimizerScalesFromPhysicalShift()
    method.SetMovingInitialTransform(base)
    method.SetInitialTransform(transform, inPlace=True)
    history: list[float] = []
    _observe(method, stage, history, settings.pyramid(fixed.GetSize())[0], settings.report_every, progress)
    start = time.perf_counter()
    try:
        method.Execute(fixed, moving)
    except RuntimeError as error:
        raise ArmsegError(f"--stages {stage}: registration failed ({_itk_reason(error)}); do the scans "
                          "overlap? try --init moments or a manual --A/--t") from error
    seconds = time.perf_counter() - start
    report = StageReport(name=stage, transform=transform, final_metric=float(method.GetMetricValue()),
                         iterations=len(history), seconds=seconds,
                         stop_condition=method.GetOptimizerStopConditionDescription(),
                         metric_history=history)
    if progress is not None:
        progress(f"[armseg register] {stage}: metric {report.final_metric:.4f} after "
                 f"{report.iterations} iterations, {seconds:.1f} s")
    return report


def _observe(method: sitk.ImageRegistrationMethod, stage: str, history: list[float],
             shrink_factors: Sequence[int], every: int, progress: Callable[[str], None] | None) -> None:
    """Record the metric once per optimiser iteration; print every `every` iterations and each level
    (never when `every` is 0: a batch prints one line per stage instead).

    L-BFGS-B reports every function evaluation of its line search as an iteration event; only
    the last one of an iteration number counts (it is where the iteration ended).
    """
    levels = len(shrink_factors)
    last: list[tuple[int, int]] = []

    def on_iteration() -> None:
        key = (method.GetCurrentLevel(), method.GetOptimizerIteration())
        value = float(method.GetMetricValue())
        if last and last[0] == key:
            history[-1] = value
            return
        last[:] = [key]
        history.append(value)
        if progress is not None and every > 0 and key[1] % every == 0:
            progress(f"[armseg register] {stage} level {key[0] + 1}/{levels} iteration {key[1]}: "
                     f"metric {value:.4f}")

    def on_level() -> None:
        if progress is not None and every > 0:
            progress(f"[armseg register] {stage} level {method.GetCurrentLevel() + 1}/{levels} "
                     f"(shrink {shrink_factors[method.GetCurrentLevel()]})")

    method.AddCommand(sitk.sitkIterationEvent, on_iteration)
    method.AddCommand(sitk.sitkMultiResolutionIterationEvent, on_level)


def _itk_reason(error: RuntimeError) -> str:
    """ITK's exception text is a paragraph; the sentence after `ITK ERROR: Class(0x...):` says why."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = lines[-1] if lines else type(error).__name__
    return re.sub(r"^ITK ERROR: \w+\(0x[0-9a-f]+\): ", "", reason).split(". ")[0].rstrip(".")


def resample_labels(labels: sitk.Image, reference: sitk.Image, transform: sitk.Transform) -> sitk.Image:
    """Labels pulled onto `reference`'s grid by nearest neighbour: raw values, never blends."""
    return sitk.Resample(labels, reference, transform, sitk.sitkNearestNeighbor, 0, labels.GetPixelID())


def make_preview(fixed: sitk.Image, moving: sitk.Image, labels: sitk.Image, manual: sitk.Transform | None,
                 transform: sitk.Transform) -> Preview:
    """Resample only the fixed scan's middle transverse slice (cheap, whatever the scan size)."""
    middle = fixed.GetSize()[2] // 2
    reference = fixed[:, :, middle:middle + 1]
    before = manual if manual is not None else sitk.Transform(3, sitk.sitkIdentity)

    def pull(image: sitk.Image, how: sitk.Transform, nearest: bool) -> np.ndarray:
        interpolator = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
        return as_array(sitk.Resample(image, reference, how, interpolator, 0, image.GetPixelID()))[:, :, 0]

    return Preview(fixed=as_array(reference)[:, :, 0], moving_before=pull(moving, before, False),
                   moving_after=pull(moving, transform, False), labels_before=pull(labels, before, True),
                   labels_after=pull(labels, transform, True),
                   pixel_mm=(float(fixed.GetSpacing()[0]), float(fixed.GetSpacing()[1])))
