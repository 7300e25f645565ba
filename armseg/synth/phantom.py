"""Phantom upper-arm ultrasound: anatomy along the arm, then B-mode image formation.

Why a physical model and not shapes on noise: a segmenter trained on it has to learn the cues
a real scan offers (hypoechoic muscle inside bright fascia, a bright curved cortical line with
a black acoustic shadow beneath it, Rayleigh speckle) and nothing easier.

Array axes: 0 = depth (row 0 touches the probe), 1 = lateral, 2 = along the arm (proximal to
distal). Geometry lives in millimetres: the field of view is 40 mm deep and as wide as the
in-plane aspect ratio says (clipped to 25-60 mm), slices are 1 mm apart, so any in-plane size
shows the same arm at its own resolution.

Raw labels, from OpenArm's set: 7 humerus (the whole bone cross-section, whose echo is only its
upper cortical surface), 52 biceps, 8 skin, 51 subcutaneous fat, 53 brachialis, 9 other muscle
(the coracobrachialis/deltoid wedges beside the biceps), 45 brachial artery, and 0 for what the
probe cannot see (the acoustic shadow below the bone). 68 is not used.

Image formation: complex scatterers (per-tissue amplitude, fascicle and fat-septum texture,
specular interfaces) are attenuated along depth and compensated by time-gain, convolved with a
Gaussian point-spread function (the IQ-demodulated form of a Gaussian-modulated cosine pulse,
wider laterally than axially), detected as the magnitude of the complex field and
log-compressed to uint8.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d

BACKGROUND, HUMERUS, OTHER_MUSCLE, SKIN, ARTERY, FAT, BICEPS, BRACHIALIS = 0, 7, 9, 8, 45, 51, 52, 53
MUSCLES = (BICEPS, BRACHIALIS, OTHER_MUSCLE)

DEPTH_MM = 40.0
SLICE_MM = 1.0
CHUNK_SLICES = 8  # slices rendered at once: bounds memory; fixed so random draws never depend on it

# Scatterer amplitude (speckle brightness) and round-trip attenuation (dB/mm) per raw label.
_ECHO = {BACKGROUND: 0.06, HUMERUS: 0.3, OTHER_MUSCLE: 0.055, SKIN: 0.2, ARTERY: 0.003,
         FAT: 0.016, BICEPS: 0.042, BRACHIALIS: 0.05}
_ATTENUATION_DB_MM = {BACKGROUND: 0.9, HUMERUS: 30.0, OTHER_MUSCLE: 0.9, SKIN: 1.0, ARTERY: 0.05,
                      FAT: 0.6, BICEPS: 0.9, BRACHIALIS: 0.9}
_TGC_DB_MM = 0.8  # time-gain compensation: the scanner undoes the average soft-tissue loss
_PSF_MM = (0.18, 0.38)  # Gaussian PSF sigma (axial, lateral): a ~7.5 MHz linear probe
_NOISE_FLOOR = 0.004  # electronic noise: the shadow is near-black, not exactly zero
_DYNAMIC_RANGE_DB = 52.0
_LOOKS = 2  # spatially compounded frames averaged, as modern scanners show muscle
_TOP_DB = 8.0  # echo level shown as white (bone surface saturates)


def _lut(values: dict[int, float]) -> np.ndarray:
    table = np.zeros(256, dtype=np.float32)
    for label, value in values.items():
        table[label] = value
    return table


_ECHO_LUT = _lut(_ECHO)
_ATTENUATION_LUT = _lut(_ATTENUATION_DB_MM)


@dataclass(frozen=True)
class SubjectAnatomy:
    """One person's arm, in mm at the biceps belly with the elbow straight and relaxed."""

    skin_mm: float
    fat_mm: float
    fascia_curve_mm: float  # how much deeper the fascia lies at the image edges (round arm)
    biceps_width_mm: float
    biceps_thickness_mm: float
    biceps_offset_mm: float  # lateral position of the biceps centre
    head_septum: float  # where the short/long head septum crosses, as a fraction of half-width
    septum_tilt: float  # its lateral lean over the biceps' depth, as a fraction of the depth
    brachialis_mm: float
    humerus_radius_mm: float
    humerus_offset_mm: float
    belly_mm: float  # where along the scan the biceps is largest (0 = scan centre, + distal)
    artery_side: float  # +1 or -1: medial side of the image (left or right arm)
    artery_radius_mm: float
    echo_gain_db: float  # per-subject tissue brightness


def sample_subject(rng: np.random.Generator) -> SubjectAnatomy:
    """A plausible adult arm; ranges follow typical B-mode measurements of the upper arm."""
    u = rng.uniform
    return SubjectAnatomy(
        skin_mm=u(1.2, 2.0), fat_mm=u(2.5, 6.5), fascia_curve_mm=u(0.5, 2.5),
        biceps_width_mm=u(30.0, 40.0), biceps_thickness_mm=u(10.0, 14.5),
        biceps_offset_mm=u(-4.0, 4.0), head_septum=u(-0.25, 0.25), septum_tilt=u(-0.7, 0.7),
        brachialis_mm=u(5.0, 8.5),
        humerus_radius_mm=u(8.5, 11.0), humerus_offset_mm=u(-5.0, 5.0), belly_mm=u(-15.0, 15.0),
        artery_side=float(rng.choice([-1.0, 1.0])), artery_radius_mm=u(1.8, 2.5),
        echo_gain_db=u(-2.0, 2.0),
    )


@dataclass(frozen=True)
class FieldOfView:
    """The probe's image grid in mm: pixel centres in depth and lateral, slices along the arm."""

    rows: int
    cols: int
    slices: int
    depth_mm: float
    width_mm: float

    @property
    def spacing(self) -> tuple[float, float, float]:
        return (self.depth_mm / self.rows, self.width_mm / self.cols, SLICE_MM)

    def depths(self) -> np.ndarray:
        return ((np.arange(self.rows) + 0.5) * self.spacing[0]).astype(np.float32)

    def laterals(self) -> np.ndarray:
        return ((np.arange(self.cols) + 0.5) * self.spacing[1] - self.width_mm / 2).astype(
            np.float32)

    def positions(self) -> np.ndarray:
        """Slice positions along the arm, mm from the scan centre (+ = distal)."""
        return ((np.arange(self.slices) - (self.slices - 1) / 2) * SLICE_MM).astype(np.float32)


def field_of_view(size: tuple[int, int], slices: int) -> FieldOfView:
    """A 40 mm deep window whose width follows the aspect ratio, so pixels stay near-square."""
    rows, cols = int(size[0]), int(size[1])
    if rows < 8 or cols < 8 or slices < 1:
        raise ValueError(f"scan size {rows}x{cols}x{slices} is too small to hold an arm")
    width = float(np.clip(DEPTH_MM * cols / rows, 25.0, 60.0))
    return FieldOfView(rows, cols, slices, DEPTH_MM, width)


@dataclass(frozen=True)
class ArmGeometry:
    """Per-slice shape parameters (each an array over slices), in mm of the field of view."""

    skin: np.ndarray
    fascia: np.ndarray  # fascia depth at the lateral centre
    fascia_curve: np.ndarray
    biceps_x: np.ndarray
    biceps_z: np.ndarray
    biceps_a: np.ndarray  # lateral semi-axis
    biceps_b: np.ndarray  # depth semi-axis
    septum_x: np.ndarray
    septum_tilt: np.ndarray
    humerus_x: np.ndarray
    humerus_z: np.ndarray
    humerus_a: np.ndarray
    humerus_b: np.ndarray
    brachialis_a: np.ndarray
    brachialis_b: np.ndarray
    artery_x: np.ndarray
    artery_z: np.ndarray
    artery_r: np.ndarray

    def take(self, part: slice) -> ArmGeometry:
        """The slices in `part`, shaped (1, 1, n) to broadcast against (rows, cols, n)."""
        return ArmGeometry(**{f.name: getattr(self, f.name)[part][None, None, :].astype(np.float32)
                              for f in fields(self)})


def _smooth_wobble(rng: np.random.Generator, n: int, amplitude: float, scale: float) -> np.ndarray:
    """A slow random drift along the arm (probe sway, pressure), about +-amplitude."""
    walk = gaussian_filter1d(rng.standard_normal(n + 64), scale, mode="reflect")[32:32 + n]
    # Normalise by the filter's theoretical std, not the sample's: short scans stay calm.
    return amplitude * walk * np.sqrt(2.0 * np.sqrt(np.pi) * scale)


def arm_geometry(fov: FieldOfView, subject: SubjectAnatomy, elbow_angle_deg: float, load: float,
                 rng: np.random.Generator) -> ArmGeometry:
    """Cross-section shapes slice by slice: the biceps belly swells then tapers along the arm,
    flexion and load shorten it (belly moves proximally, thicker and rounder), the brachialis
    grows distally and the humerus sits under both."""
    flex = float(np.clip(elbow_angle_deg, 0.0, 120.0)) / 90.0
    load = float(np.clip(load, 0.0, 1.0))
    p = fov.positions().astype(np.float64)
    n = p.size
    sway = _smooth_wobble(rng, n, rng.uniform(0.5, 1.5), 12.0)
    press = 1.0 + _smooth_wobble(rng, n, 0.06, 15.0)
    belly_at = subject.belly_mm - 15.0 * flex - 6.0 * load + rng.uniform(-3.0, 3.0)
    belly = np.exp(-0.5 * ((p - belly_at) / 45.0) ** 2)

    skin = np.full(n, subject.skin_mm)
    phase = 3.0 * subject.belly_mm  # any subject-specific phase: fat thickness varies slowly
    fat = subject.fat_mm * (1.0 + 0.15 * np.sin(2 * np.pi * p / 90.0 + phase)) * press
    fascia = skin + fat
    thick = subject.biceps_thickness_mm * (0.55 + 0.45 * belly) * (1 + 0.35 * flex + 0.15 * load)
    half_width = subject.biceps_width_mm / 2 * (0.75 + 0.25 * belly) * (1 - 0.08 * flex - 0.04 * load)
    brach = subject.brachialis_mm * (0.75 + 0.25 * np.clip((p + 60.0) / 120.0, 0, 1)) * (1 + 0.1 * flex)
    # Keep the bone surface inside the window: when the arm is too deep for it the brachialis
    # gives way first (down to 3 mm), then the biceps.
    room = 0.84 * fov.depth_mm - fascia - subject.fascia_curve_mm * 0.2
    brach = np.clip(room - thick, 3.0, brach)
    thick = np.minimum(thick, room - brach)

    biceps_x = subject.biceps_offset_mm + sway
    overlap = 0.25 * thick  # the ellipse rises above the fascia, which flattens its top
    biceps_b = (thick + overlap) / 2
    fascia_at_biceps = fascia + subject.fascia_curve_mm * (biceps_x / (fov.width_mm / 2)) ** 2
    biceps_z = fascia_at_biceps + thick - biceps_b

    radius = subject.humerus_radius_mm * (1.0 - 0.04 * p / 50.0)
    humerus_b = 0.92 * radius
    humerus_z = fascia_at_biceps + thick + brach + humerus_b
    artery_x = biceps_x + subject.artery_side * half_width * 0.82
    artery_r = subject.artery_radius_mm * (1 + _smooth_wobble(rng, n, 0.06, 10.0))
    artery_z = biceps_z + 0.55 * biceps_b + artery_r
    return ArmGeometry(
        skin=skin, fascia=fascia, fascia_curve=np.full(n, subject.fascia_curve_mm),
        biceps_x=biceps_x, biceps_z=biceps_z, biceps_a=half_width, biceps_b=biceps_b,
        septum_x=biceps_x + subject.head_septum * half_width,
        septum_tilt=np.full(n, subject.septum_tilt),
        humerus_x=subject.humerus_offset_mm + sway, humerus_z=humerus_z, humerus_a=radius,
        humerus_b=humerus_b, brachialis_a=radius + 0.45 * half_width + 3.0,
        brachialis_b=humerus_b + brach + 0.5 * thick,
        artery_x=artery_x, artery_z=artery_z, artery_r=artery_r,
    )


@dataclass
class _Grid:
    """Pixel-centre coordinates of one chunk, broadcastable to (rows, cols, n)."""

    z: np.ndarray  # (rows, 1, 1)
    x: np.ndarray  # (1, cols, 1)


@dataclass
class _Outline:
    """One elliptical cross-section on the grid: inside mask, signed distance in mm (+ outside)
    and |vertical component of the normal| (how squarely the beam hits the boundary)."""

    inside: np.ndarray
    distance: np.ndarray
    facing: np.ndarray


def _ellipse(grid: _Grid, cx: np.ndarray, cz: np.ndarray, a: np.ndarray, b: np.ndarray) -> _Outline:
    """The implicit function over its gradient: exact at the boundary, the only place the
    distance is used (to draw thin interface echoes)."""
    u, v = (grid.x - cx) / a, (grid.z - cz) / b
    level = u * u + v * v - 1.0
    gx, gz = 2 * u / a, 2 * v / b
    norm = np.sqrt(gx * gx + gz * gz) + 1e-6
    return _Outline(level < 0, level / norm, np.abs(gz) / norm)


@dataclass
class _CrossSection:
    """The shapes of one chunk of slices, computed once for labels and echoes alike."""

    below_fascia: np.ndarray  # signed depth below the deep fascia (mm)
    biceps: _Outline
    brachialis: _Outline
    artery: _Outline
    humerus: _Outline


def cross_section(g: ArmGeometry, grid: _Grid, half_width: float) -> _CrossSection:
    fascia = g.fascia + g.fascia_curve * (grid.x / half_width) ** 2
    return _CrossSection(
        below_fascia=grid.z - fascia,
        biceps=_ellipse(grid, g.biceps_x, g.biceps_z, g.biceps_a, g.biceps_b),
        brachialis=_ellipse(grid, g.humerus_x, g.humerus_z, g.brachialis_a, g.brachialis_b),
        artery=_ellipse(grid, g.artery_x, g.artery_z, g.artery_r, g.artery_r),
        humerus=_ellipse(grid, g.humerus_x, g.humerus_z, g.humerus_a, g.humerus_b),
    )


def label_chunk(g: ArmGeometry, grid: _Grid, shapes: _CrossSection) -> np.ndarray:
    """Exact raw labels: later tissues win where shapes overlap (bone over everything)."""
    muscle_layer = shapes.below_fascia >= 0
    labels = np.where(muscle_layer, np.uint8(OTHER_MUSCLE), np.uint8(FAT))
    labels[np.broadcast_to(grid.z < g.skin, labels.shape)] = SKIN
    labels[shapes.brachialis.inside & muscle_layer] = BRACHIALIS
    labels[shapes.biceps.inside & muscle_layer] = BICEPS
    labels[shapes.artery.inside & muscle_layer] = ARTERY
    # Below the bone nothing comes back: the shadow is labelled background, the bone itself 7.
    shadow = (np.abs(grid.x - g.humerus_x) < g.humerus_a) & (grid.z > g.humerus_z)
    labels[shadow] = BACKGROUND
    labels[shapes.humerus.inside] = HUMERUS
    return labels


class _Texture:
    """A random tissue-structure field: smooth in-plane, correlated along the arm (AR(1))."""

    def __init__(self, rng: np.random.Generator, sigma_px: tuple[float, float], rho: float):
        self.rng, self.sigma, self.rho = rng, sigma_px, rho
        self.state: np.ndarray | None = None

    def take(self, rows: int, cols: int, n: int) -> np.ndarray:
        noise = self.rng.standard_normal((rows, cols, n), dtype=np.float32)
        field = gaussian_filter(noise, (*self.sigma, 0.0), mode="reflect", truncate=3.0)
        # Unit variance from the kernel itself: no dependence on what this chunk happened to draw.
        field *= np.float32(1.0 / np.sqrt(_kernel_energy(self.sigma[0], 3.0)
                                          * _kernel_energy(self.sigma[1], 3.0)))
        keep, fresh = self.rho, np.float32(np.sqrt(1 - self.rho ** 2))
        for k in range(n):
            if self.state is not None:
                field[..., k] = keep * self.state + fresh * field[..., k]
            self.state = field[..., k]
        return field


def _line(distance: np.ndarray, width_mm: float) -> np.ndarray:
    return np.exp(-((distance / width_mm) ** 2))


def _septa(field: np.ndarray, width: float, breaks: np.ndarray | None = None) -> np.ndarray:
    """Thin bright lines along the zero level set of a smooth field, optionally broken up."""
    lines = np.exp(-((field / width) ** 2))
    if breaks is not None:
        lines *= np.clip(breaks + 0.4, 0.0, 1.0)
    return lines


@dataclass
class _Echoes:
    """Scatterer amplitude (incoherent, speckle) and specular amplitude (coherent) maps."""

    diffuse: np.ndarray
    specular: np.ndarray


def echo_chunk(labels: np.ndarray, g: ArmGeometry, grid: _Grid, shapes: _CrossSection,
               textures: dict[str, np.ndarray], line_mm: float, gain: float) -> _Echoes:
    """Per-tissue brightness and texture plus the interface echoes that outline each tissue."""
    diffuse = _ECHO_LUT[labels] * np.float32(gain)
    muscle = np.isin(labels, MUSCLES)
    fibres = _septa(textures["muscle"], 0.12, textures["breaks"])
    diffuse *= np.where(muscle, 0.6 + 5.0 * fibres, np.float32(1.0))
    fat_rows = textures["fat"].shape[0]
    fat_septa = _septa(textures["fat"], 0.07)
    diffuse[:fat_rows] += np.where(labels[:fat_rows] == FAT, 0.1 * gain * fat_septa, 0.0)

    def w(mm: float) -> float:
        return max(mm, line_mm)  # a line never thinner than the pixel grid can show

    depth = shapes.below_fascia
    in_muscle_layer = (depth > 0) & (labels != ARTERY)  # no muscle echo inside the lumen
    specular = 0.08 * _line(grid.z - g.skin, w(0.15)) + 0.2 * _line(depth, w(0.2))
    diffuse += 0.3 * gain * _line(depth, w(0.25))

    biceps = shapes.biceps
    sheath = _line(biceps.distance, w(0.2)) * (0.3 + 0.7 * biceps.facing ** 2) * in_muscle_layer
    diffuse += 0.35 * gain * sheath
    specular += 0.12 * sheath
    lean = g.septum_tilt * (grid.z - g.biceps_z)  # the septum between the two heads
    diffuse += 0.07 * gain * _line(grid.x - g.septum_x - lean, w(0.2)) * (labels == BICEPS)

    brachialis = shapes.brachialis
    edge = _line(brachialis.distance, w(0.2)) * brachialis.facing * (labels != BICEPS)
    diffuse += 0.15 * gain * edge * in_muscle_layer

    artery = shapes.artery
    wall = _line(artery.distance, w(0.25)) * (depth > 0)
    diffuse += 0.25 * gain * wall * (0.4 + 0.6 * artery.facing)
    specular += 0.08 * wall * artery.facing

    # Bone reflects where the beam meets it squarely: the upper cortex, fading down its sides.
    bone = shapes.humerus
    cortex = _line(bone.distance, w(0.25)) * (grid.z < g.humerus_z) * (0.002 + bone.facing ** 4)
    diffuse += 1.0 * gain * cortex
    specular += 2.5 * cortex
    return _Echoes(diffuse.astype(np.float32), specular.astype(np.float32))


def depth_gain(labels: np.ndarray, dz_mm: float) -> np.ndarray:
    """Echo amplitude left after the tissue above attenuates it, with time-gain compensation."""
    alpha = _ATTENUATION_LUT[labels]
    lost = np.cumsum(alpha, axis=0, dtype=np.float32) - 0.5 * alpha  # midpoint of each pixel
    depth = (np.arange(labels.shape[0], dtype=np.float32) + 0.5)[:, None, None]
    return np.power(np.float32(10.0), (_TGC_DB_MM * depth - lost) * np.float32(dz_mm / 20.0))


def _kernel_energy(sigma_px: float, truncate: float = 4.0) -> float:
    """Sum of squared weights of the normalised Gaussian that `gaussian_filter` applies."""
    if sigma_px <= 0:
        return 1.0
    radius = int(truncate * sigma_px + 0.5)
    weights = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_px) ** 2)
    weights /= weights.sum()
    return float((weights ** 2).sum())


def envelope(echoes: _Echoes, gain: np.ndarray, psf_px: tuple[float, float],
             rng: np.random.Generator, looks: int = 1) -> np.ndarray:
    """Magnitude of the PSF-filtered complex echo field: Rayleigh speckle where diffuse.

    White complex scatterers are rescaled by the PSF's energy so speckle brightness does not
    depend on pixel size; specular echoes add with one phase, so interfaces stay continuous.
    `looks` > 1 averages independent speckle patterns, as a scanner's spatial compounding does.
    """
    shape = echoes.diffuse.shape
    scale = np.float32(1.0 / np.sqrt(2.0 * _kernel_energy(psf_px[0]) * _kernel_energy(psf_px[1])))
    # Electronic noise enters unattenuated and is band-limited by the same receive filter.
    amplitude = (echoes.diffuse * gain + np.float32(_NOISE_FLOOR)) * scale
    specular = echoes.specular * gain
    sigma = (psf_px[0], psf_px[1], 0.0)
    total = np.zeros(shape, dtype=np.float32)
    for _ in range(looks):
        real = amplitude * rng.standard_normal(shape, dtype=np.float32) + specular
        real = gaussian_filter(real, sigma, mode="nearest")
        imag = gaussian_filter(amplitude * rng.standard_normal(shape, dtype=np.float32), sigma,
                               mode="nearest")
        total += np.sqrt(real * real + imag * imag)
    return total / np.float32(looks)


def log_compress(envelope_: np.ndarray, gain_db: float = 0.0) -> np.ndarray:
    """B-mode grey levels: decibels over a fixed dynamic range, as a scanner displays them."""
    db = 20.0 * np.log10(envelope_ + 1e-6) + gain_db
    grey = (db - (_TOP_DB - _DYNAMIC_RANGE_DB)) * (255.0 / _DYNAMIC_RANGE_DB)
    return np.clip(grey, 0, 255).astype(np.uint8)


@dataclass
class _Renderer:
    """Everything a chunk of slices needs, so `synth_scan` stays a loop."""

    fov: FieldOfView
    geometry: ArmGeometry
    rng: np.random.Generator
    gain: float
    fat_rows: int
    textures: dict[str, _Texture]

    def render(self, part: slice, keep_envelope: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(labels, B-mode uint8) of the slices in `part`; the linear envelope if asked."""
        fov, g = self.fov, self.geometry.take(part)
        n = g.skin.shape[-1]
        grid = _Grid(z=fov.depths()[:, None, None], x=fov.laterals()[None, :, None])
        half = fov.width_mm / 2
        shapes = cross_section(g, grid, half)
        labels = label_chunk(g, grid, shapes)
        fields_ = {
            "muscle": self.textures["muscle"].take(fov.rows, fov.cols, n),
            "breaks": self.textures["breaks"].take(fov.rows, fov.cols, n),
            "fat": self.textures["fat"].take(self.fat_rows, fov.cols, n),
        }
        dz, dx, _ = fov.spacing
        echoes = echo_chunk(labels, g, grid, shapes, fields_, 0.6 * dz, self.gain)
        psf_px = (_PSF_MM[0] / dz, _PSF_MM[1] / dx)
        env = envelope(echoes, depth_gain(labels, dz), psf_px, self.rng, looks=_LOOKS)
        return labels, env if keep_envelope else log_compress(env)


def _renderer(fov: FieldOfView, subject: SubjectAnatomy, elbow_angle_deg: float, load: float,
              rng: np.random.Generator) -> _Renderer:
    geometry = arm_geometry(fov, subject, elbow_angle_deg, load, rng)
    dz, dx, _ = fov.spacing
    deepest_fat = float(np.max(geometry.fascia + geometry.fascia_curve)) + 1.0
    fat_rows = int(min(fov.rows, np.ceil(deepest_fat / dz)))
    along = float(np.exp(-SLICE_MM / 3.0))  # fascicles stay put over ~3 mm of arm
    textures = {
        "muscle": _Texture(rng, (0.45 / dz, 1.3 / dx), along),
        "breaks": _Texture(rng, (0.8 / dz, 1.6 / dx), along),
        "fat": _Texture(rng, (0.7 / dz, 3.5 / dx), float(np.exp(-SLICE_MM / 5.0))),
    }
    gain = float(10 ** (subject.echo_gain_db / 20))
    return _Renderer(fov, geometry, rng, gain, fat_rows, textures)


def synth_scan(size: tuple[int, int], slices: int, subject: SubjectAnatomy, elbow_angle_deg: float,
               load: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One phantom scan: (B-mode volume, raw labels), both uint8 of shape (rows, cols, slices).

    `load` is the contraction level in [0, 1]; the same rng state gives the same scan.
    """
    fov = field_of_view(size, slices)
    renderer = _renderer(fov, subject, elbow_angle_deg, load, rng)
    volume = np.empty((fov.rows, fov.cols, slices), dtype=np.uint8)
    labels = np.empty_like(volume)
    for start in range(0, slices, CHUNK_SLICES):
        part = slice(start, min(slices, start + CHUNK_SLICES))
        labels[..., part], volume[..., part] = renderer.render(part)
    return volume, labels


def synth_envelope(size: tuple[int, int], slices: int, subject: SubjectAnatomy,
                   elbow_angle_deg: float, load: float, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Like `synth_scan` but the linear envelope before log compression (for checking speckle)."""
    fov = field_of_view(size, slices)
    renderer = _renderer(fov, subject, elbow_angle_deg, load, rng)
    parts = [renderer.render(slice(s, min(slices, s + CHUNK_SLICES)), keep_envelope=True)
             for s in range(0, slices, CHUNK_SLICES)]
    return (np.concatenate([p[1] for p in parts], axis=2),
            np.concatenate([p[0] for p in parts], axis=2))
