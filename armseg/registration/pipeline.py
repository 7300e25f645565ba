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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from armseg.errors import ArmsegError
from armseg.io.images import Image, image_suffix, read_image, write_like
from armseg.io.itk import from_itk, to_itk
from armseg.io.labels import LabelMap
from armseg.io.pairs import read_on_grid
from armseg.registration.settings import BSPLINE_BOUND, MIN_SAMPLES, OUTPUT_SUFFIXES, RegistrationSettings


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


def manual_transform(settings: RegistrationSettings) -> sitk.AffineTransform | None:
    """The user's initial affine x -> A x + t (fixed LPS mm -> moving LPS mm), or None when not given."""
    if settings.A is None and settings.t is None:
        return None
    matrix = np.eye(3) if settings.A is None else np.asarray(settings.A, dtype=float).reshape(3, 3)
    shift = np.zeros(3) if settings.t is None else np.asarray(settings.t, dtype=float)
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(tuple(float(v) for v in matrix.ravel()))
    transform.SetTranslation(tuple(float(v) for v in shift))
    return transform


def register_pair(
    fixed: Path | str,
    moving: Path | str,
    moving_seg: Path | str,
    out: Path | str,
    settings: RegistrationSettings = RegistrationSettings(),  # noqa: B008 (frozen: safe to share)
    overwrite: bool = False,
    progress: Callable[[str], None] | None = print,
) -> RegistrationResult:
    """Map `moving_seg` (on `moving`'s grid) onto `fixed`'s grid and write it to `out`.

    The labels keep their raw values (nearest neighbour); `out` gets the fixed scan's affine and
    header and is written atomically. Nothing is logged: `armseg.registration.report.log_result`
    does that.
    """
    out = Path(out)
    manual = manual_transform(settings)
    if image_suffix(out) not in OUTPUT_SUFFIXES:
        raise ArmsegError(f"{out}: the output must be a NIfTI file (.nii or .nii.gz)")
    if out.exists() and not overwrite:
        raise ArmsegError(f"{out}: exists; pass --overwrite to replace it")
    start = time.perf_counter()
    fixed_image, moving_image = read_image(fixed), read_image(moving)
    raw_labels = _read_labels(Path(moving_seg), moving_image, settings.label_map)
    fixed_itk = to_itk(fixed_image.array, fixed_image.affine)
    moving_itk = to_itk(moving_image.array, moving_image.affine)
    labels_itk = to_itk(raw_labels, moving_image.affine, raw_labels.dtype.type)
    transform, reports = register_images(fixed_itk, moving_itk, settings, manual, progress)
    initial_metric, final_metric = (evaluate_metric(fixed_itk, moving_itk, settings, how)
                                    for how in (manual, transform))
    mapped = from_itk(resample_labels(labels_itk, fixed_itk, transform))
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
    raw = np.asarray(read_on_grid(path, moving).array)
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
        return from_itk(sitk.Resample(image, reference, how, interpolator, 0, image.GetPixelID()))[:, :, 0]

    return Preview(fixed=from_itk(reference)[:, :, 0], moving_before=pull(moving, before, False),
                   moving_after=pull(moving, transform, False), labels_before=pull(labels, before, True),
                   labels_after=pull(labels, transform, True),
                   pixel_mm=(float(fixed.GetSpacing()[0]), float(fixed.GetSpacing()[1])))
