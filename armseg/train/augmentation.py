"""Random scanner- and probe-like transforms of training batches, drawn per slice, on the fly.

These are the training-time transforms (MONAI's `Rand*` kind), not the `armseg augment` stage,
which writes augmented copies to disk. Their ranges are named parameters of `train`
(`rand_*`), logged with every run and searchable by `tune`:

- geometry: lateral flip (left/right arm), zoom (depth setting), stretch (one axis against the
  other: a flatter or rounder muscle, as subjects differ), tilt, shift, and a smooth elastic
  warp (layers thicker here and thinner there: another subject's fat, muscle and bone
  proportions); labels follow with nearest-neighbour sampling. Vertical flips are left out: the
  probe is always on top.
- intensity: gain, a display offset (the scanner's gain knob on a log-compressed image: a level
  added to every pixel, the darkest crushed to black), gamma (the log-compression curve), a
  depth ramp (time-gain compensation);
- texture: multiplicative speckle-like noise and, for some batches, a lower resolution
  (a blurrier probe);
- a random crop of each batch (`crop`, the fraction of the width kept; `crop_depth`, of the
  depth): nnU-Net's patches. A step costs what its pixels cost, so the same minutes buy more
  steps; the network, fully convolutional, still predicts whole slices. By default the window
  keeps the whole depth: a window that starts inside the fat shows the fat as the first tissue
  under the probe, which real slices never do, and one that stops short never shows the bone's
  depth (both cost accuracy on an independent phantom; README, *Accuracy on scans it never saw*).

They are written with `keras.ops` and `keras.random` only, so they run on whichever backend
`KERAS_BACKEND` names and on the device that trains: `armseg.train.trainer` applies them inside
the compiled train step, to the image and its labels together.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields

# The crop's fractions and the side of the slice each one keeps.
CROP_SIDES = {"crop": "width", "crop_depth": "depth"}


@dataclass(frozen=True)
class RandomTransforms:
    """The ranges each transform draws from; a range of 0 (or probability 0) turns it off."""

    flip_prob: float = 0.5  # chance of a lateral flip
    zoom: float = 0.3  # zoom factor exp(U(-zoom, zoom)), about -26 % to +35 %
    stretch: float = 0.3  # aspect factor exp(U(-s, s)): lateral x it, depth / it
    elastic: float = 0.04  # smooth warp: control-point shifts N(0, e), fraction of the slice size
    rotate_deg: float = 6.0  # in-plane tilt, degrees, U(-r, r)
    shift: float = 0.06  # translation, fraction of the slice size, U(-s, s)
    gain: float = 0.5  # intensity factor exp(U(-g, g))
    offset: float = 0.3  # level U(-o, o) x the slice's peak added, clipped to [0, peak]
    gamma: float = 0.5  # exponent exp(U(-g, g)) on intensities scaled to [0, 1]
    tgc: float = 0.6  # depth ramp: factor exp(U(-t, t) x depth), depth in [-0.5, 0.5]
    speckle_prob: float = 0.5  # chance a slice gets multiplicative noise
    speckle: float = 0.25  # its standard deviation, U(0, speckle)
    lowres_prob: float = 0.25  # chance a batch is down- and up-sampled (a factor of LOWRES_FACTORS)
    crop: float = 0.56  # fraction of the width a batch is cropped to (1 = whole width)
    crop_depth: float = 1.0  # fraction of the depth (rows from the probe down) it is cropped to

    PREFIX = "rand_"

    @classmethod
    def parameter_names(cls) -> tuple[str, ...]:
        """`rand_flip_prob`, `rand_zoom`, ...: the train parameters that set the ranges."""
        return tuple(cls.PREFIX + item.name for item in fields(cls))

    @classmethod
    def from_params(cls, params: object) -> RandomTransforms:
        """From any object with `rand_*` attributes (a TrainConfig)."""
        return cls(**{item.name: float(getattr(params, cls.PREFIX + item.name)) for item in fields(cls)})

    def check(self) -> None:
        """Probabilities in [0, 1], ranges >= 0, named as the user wrote them."""
        from armseg.errors import ArmsegError

        for item in fields(self):
            value = getattr(self, item.name)
            flag = f"--{(self.PREFIX + item.name).replace('_', '-')}"
            if not math.isfinite(value) or value < 0:
                raise ArmsegError(f"{flag}: {value} must be a finite number >= 0")
            if item.name.endswith("prob") and value > 1:
                raise ArmsegError(f"{flag}: {value} is a probability, at most 1")
            side = CROP_SIDES.get(item.name)
            if side and not 0.1 <= value <= 1:
                raise ArmsegError(f"{flag}: {value} is the fraction of the {side} kept, from 0.1 to 1")
        if self.rotate_deg > 180:
            raise ArmsegError(f"--rand-rotate-deg: {self.rotate_deg} is more than half a turn")


def augment_batch(images, labels, ranges: RandomTransforms = RandomTransforms(),  # noqa: B008 (frozen)
                  seed=0):
    """(uint/float (B, H, W) or (B, H, W, C) images, uint8 (B, H, W) labels) -> float32
    (B, H, W, 1) or (B, H, W, C), uint8 (B, H, W).

    `seed` is an int or a `keras.random.SeedGenerator` (a layer's own, inside a train step).
    """
    import keras
    from keras import ops

    generator = keras.random.SeedGenerator(seed) if isinstance(seed, int) else seed
    images = ops.cast(images, "float32")
    images = images[..., None] if len(images.shape) == 3 else images
    labels = ops.cast(labels, "float32")[..., None]
    images, labels = transform_pair(images, labels, ranges, generator)
    return images, ops.cast(labels[..., 0], "uint8")


def transform_pair(images, labels, ranges: RandomTransforms, seed):
    """The same random geometry for float32 (B, H, W, C) images and class maps (labels by nearest
    neighbour, so they stay class ids), then the intensity and texture jitter of the images."""
    from keras import ops

    shape = ops.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    matrix = _random_transforms(batch, height, width, ranges, seed)
    images = ops.image.affine_transform(images, matrix, interpolation="bilinear", fill_mode="constant",
                                        fill_value=0.0)
    labels = ops.image.affine_transform(labels, matrix, interpolation="nearest", fill_mode="constant",
                                        fill_value=0.0)
    if ranges.elastic > 0:
        images, labels = _elastic_warp(images, labels, ranges.elastic, seed)
    return _jitter_intensity(images, batch, height, width, ranges, seed), labels


def _random_transforms(batch, height, width, ranges: RandomTransforms, seed):
    """Per-slice output->input maps in `keras.ops.image.affine_transform`'s 8-number form
    (flip, zoom, stretch, tilt, shift)."""
    import keras
    from keras import ops

    def uniform(half_width: float):
        return keras.random.uniform((batch,), -half_width, half_width, seed=seed)

    height, width = ops.cast(height, "float32"), ops.cast(width, "float32")
    flip = ops.where(keras.random.uniform((batch,), seed=seed) < ranges.flip_prob, -1.0, 1.0)
    zoom = ops.exp(uniform(ranges.zoom))
    stretch = ops.exp(uniform(ranges.stretch))
    zoom_x, zoom_y = zoom * stretch, zoom / stretch
    angle = uniform(ranges.rotate_deg) * (math.pi / 180.0)
    shift_x = uniform(ranges.shift) * width
    shift_y = uniform(ranges.shift) * height
    # input = centre + R(angle) @ diag(flip / zoom_x, 1 / zoom_y) @ (output - centre - shift)
    cos, sin = ops.cos(angle), ops.sin(angle)
    a0, a1 = cos * flip / zoom_x, -sin / zoom_y
    b0, b1 = sin * flip / zoom_x, cos / zoom_y
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    ox, oy = -cx - shift_x, -cy - shift_y
    a2 = cx + a0 * ox + a1 * oy
    b2 = cy + b0 * ox + b1 * oy
    zeros = ops.zeros_like(a0)
    return ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def random_crop(images, labels, width_fraction: float, depth_fraction: float, multiple: int, seed):
    """One random window of the batch, `width_fraction` of the slice's width and `depth_fraction`
    of its depth, each rounded down to `multiple` (the U-Net's pad multiple, so every level still
    halves evenly); whole slices when the slice size is not known as the step is traced, or when
    the window would be the whole slice."""
    import keras
    from keras import ops

    height, width = images.shape[1], images.shape[2]
    if height is None or width is None:
        return images, labels
    rows = max(multiple, int(height * depth_fraction) // multiple * multiple)
    cols = max(multiple, int(width * width_fraction) // multiple * multiple)
    if rows >= height and cols >= width:
        return images, labels
    rows, cols = min(rows, height), min(cols, width)
    top = keras.random.randint((), 0, height - rows + 1, seed=seed)
    left = keras.random.randint((), 0, width - cols + 1, seed=seed)
    batch = ops.shape(images)[0]
    return (ops.slice(images, (0, top, left, 0), (batch, rows, cols, images.shape[3])),
            ops.slice(labels, (0, top, left, 0), (batch, rows, cols, labels.shape[3])))


# The warp's control points: a coarse grid, so the field bends whole layers rather than pixels.
ELASTIC_GRID = 4


def _elastic_warp(images, labels, magnitude: float, seed):
    """A smooth random displacement (a bicubic field through ELASTIC_GRID² control points), the same
    for the image (bilinear) and its labels (nearest).

    Sampled with gathers along each slice's flattened pixels: `keras.ops.image.map_coordinates`
    needs the batch size when the step is traced, which Keras leaves open.
    """
    import keras
    from keras import ops

    shape = ops.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    coarse = keras.random.normal((batch, ELASTIC_GRID, ELASTIC_GRID, 2), stddev=magnitude, seed=seed)
    field = ops.image.resize(coarse, (height, width), interpolation="bicubic")
    high_row, high_col = ops.cast(height - 1, "float32"), ops.cast(width - 1, "float32")
    rows = ops.clip(ops.reshape(ops.arange(height, dtype="float32"), (1, -1, 1)) + field[..., 0] * high_row,
                    0.0, high_row)
    cols = ops.clip(ops.reshape(ops.arange(width, dtype="float32"), (1, 1, -1)) + field[..., 1] * high_col,
                    0.0, high_col)

    def gather(source, at_rows, at_cols):
        index = ops.reshape(ops.cast(at_rows, "int32") * width + ops.cast(at_cols, "int32"), (batch, -1))
        planes = [ops.take_along_axis(ops.reshape(source[..., c], (batch, -1)), index, axis=1)
                  for c in range(source.shape[-1])]  # each channel (a neighbouring slice) alike
        return ops.reshape(ops.stack(planes, axis=-1), ops.shape(source))

    row0, col0 = ops.floor(rows), ops.floor(cols)
    row1, col1 = ops.minimum(row0 + 1.0, high_row), ops.minimum(col0 + 1.0, high_col)
    dr, dc = (rows - row0)[..., None], (cols - col0)[..., None]
    warped = ((1 - dr) * ((1 - dc) * gather(images, row0, col0) + dc * gather(images, row0, col1))
              + dr * ((1 - dc) * gather(images, row1, col0) + dc * gather(images, row1, col1)))
    return warped, gather(labels, ops.round(rows), ops.round(cols))


def _jitter_intensity(images, batch, height, width, ranges: RandomTransforms, seed):
    """Offset, gamma, depth ramp, gain and speckle on the slice's own scale (any bit depth)."""
    import keras
    from keras import ops

    peak = ops.maximum(ops.max(images, axis=(1, 2, 3), keepdims=True), 1e-6)
    unit = images / peak

    def per_slice(low: float, high: float):
        return keras.random.uniform((batch, 1, 1, 1), low, high, seed=seed)

    if ranges.offset > 0:  # padding (exactly 0) stays black, as it is when predicting
        level = ops.clip(unit + per_slice(-ranges.offset, ranges.offset), 0.0, 1.0)
        unit = ops.where(unit > 0, level, 0.0)
    unit = ops.power(unit, ops.exp(per_slice(-ranges.gamma, ranges.gamma)))
    depth = ops.reshape(ops.linspace(-0.5, 0.5, height), (1, -1, 1, 1))
    unit = unit * (ops.exp(per_slice(-ranges.tgc, ranges.tgc) * depth)
                   * ops.exp(per_slice(-ranges.gain, ranges.gain)))
    speckle = ops.where(per_slice(0.0, 1.0) < ranges.speckle_prob, per_slice(0.0, ranges.speckle), 0.0)
    unit = unit * ops.maximum(1.0 + speckle * keras.random.normal(ops.shape(unit), seed=seed), 0.0)
    return _lower_resolution(unit, height, width, ranges.lowres_prob, seed) * peak


# The blur of a lower-frequency probe: a batch is sampled down by one of these factors and back up.
# A few fixed factors rather than a continuous one, so every shape is known when the step compiles.
LOWRES_FACTORS = (0.5, 0.6, 0.7, 0.85)


def _lower_resolution(images, height, width, probability: float, seed):
    """With `probability`, the batch down- and up-sampled by a random one of LOWRES_FACTORS."""
    import keras
    from keras import ops

    if probability <= 0:
        return images
    chosen = keras.random.randint((), 0, len(LOWRES_FACTORS), seed=seed)
    branch = ops.where(keras.random.uniform((), seed=seed) < probability, chosen + 1, 0)
    branches = [lambda x: x] + [functools.partial(_down_up, size=(height, width), factor=factor)
                                for factor in LOWRES_FACTORS]
    return ops.switch(branch, branches, images)


def _down_up(images, size: tuple, factor: float):
    from keras import ops

    small = tuple(max(1, round(int(side) * factor)) for side in size)
    return ops.image.resize(ops.image.resize(images, small, antialias=True), tuple(int(s) for s in size))
