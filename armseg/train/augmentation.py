"""Random scanner- and probe-like transforms of training batches, drawn per slice, on the fly.

These are the training-time transforms (MONAI's `Rand*` kind), not the `armseg augment` stage,
which writes augmented copies to disk. Their ranges are named parameters of `train`
(`rand_*`), logged with every run and searchable by `tune`:

- geometry: lateral flip (left/right arm), zoom (depth setting), tilt, shift; labels follow
  with nearest-neighbour sampling. Vertical flips are left out: the probe is always on top.
- intensity: gain, gamma (the log-compression curve), a depth ramp (time-gain compensation);
- texture: multiplicative speckle-like noise and, for some batches, a lower resolution
  (a blurrier probe).

They are written with `keras.ops` and `keras.random` only, so they run on whichever backend
`KERAS_BACKEND` names and on the device that trains: `armseg.train.trainer` applies them inside
the compiled train step, to the image and its labels together.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class RandomTransforms:
    """The ranges each transform draws from; a range of 0 (or probability 0) turns it off."""

    flip_prob: float = 0.5  # chance of a lateral flip
    zoom: float = 0.1  # zoom factor exp(U(-zoom, zoom)), about +-10 %
    rotate_deg: float = 6.0  # in-plane tilt, degrees, U(-r, r)
    shift: float = 0.06  # translation, fraction of the slice size, U(-s, s)
    gain: float = 0.3  # intensity factor exp(U(-g, g))
    gamma: float = 0.3  # exponent exp(U(-g, g)) on intensities scaled to [0, 1]
    tgc: float = 0.6  # depth ramp: factor exp(U(-t, t) x depth), depth in [-0.5, 0.5]
    speckle_prob: float = 0.5  # chance a slice gets multiplicative noise
    speckle: float = 0.25  # its standard deviation, U(0, speckle)
    lowres_prob: float = 0.25  # chance a batch is down- and up-sampled (a factor of LOWRES_FACTORS)

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
        if self.rotate_deg > 180:
            raise ArmsegError(f"--rand-rotate-deg: {self.rotate_deg} is more than half a turn")


def augment_batch(images, labels, ranges: RandomTransforms = RandomTransforms(),  # noqa: B008 (frozen)
                  seed=0):
    """(uint/float (B, H, W) images, uint8 (B, H, W) labels) -> float32 (B, H, W, 1), uint8 (B, H, W).

    `seed` is an int or a `keras.random.SeedGenerator` (a layer's own, inside a train step).
    """
    import keras
    from keras import ops

    generator = keras.random.SeedGenerator(seed) if isinstance(seed, int) else seed
    images = ops.cast(images, "float32")[..., None]
    labels = ops.cast(labels, "float32")[..., None]
    images, labels = transform_pair(images, labels, ranges, generator)
    return images, ops.cast(labels[..., 0], "uint8")


def transform_pair(images, labels, ranges: RandomTransforms, seed):
    """The same random geometry for float32 (B, H, W, 1) images and class maps (labels by nearest
    neighbour, so they stay class ids), then the intensity and texture jitter of the images."""
    from keras import ops

    shape = ops.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    matrix = _random_transforms(batch, height, width, ranges, seed)
    images = ops.image.affine_transform(images, matrix, interpolation="bilinear", fill_mode="constant",
                                        fill_value=0.0)
    labels = ops.image.affine_transform(labels, matrix, interpolation="nearest", fill_mode="constant",
                                        fill_value=0.0)
    return _jitter_intensity(images, batch, height, width, ranges, seed), labels


def _random_transforms(batch, height, width, ranges: RandomTransforms, seed):
    """Per-slice output->input maps in `keras.ops.image.affine_transform`'s 8-number form
    (flip, zoom, tilt, shift)."""
    import keras
    from keras import ops

    def uniform(half_width: float):
        return keras.random.uniform((batch,), -half_width, half_width, seed=seed)

    height, width = ops.cast(height, "float32"), ops.cast(width, "float32")
    flip = ops.where(keras.random.uniform((batch,), seed=seed) < ranges.flip_prob, -1.0, 1.0)
    zoom = ops.exp(uniform(ranges.zoom))
    angle = uniform(ranges.rotate_deg) * (math.pi / 180.0)
    shift_x = uniform(ranges.shift) * width
    shift_y = uniform(ranges.shift) * height
    # input = centre + R(angle) @ diag(flip, 1) @ (output - centre - shift) / zoom
    cos, sin = ops.cos(angle) / zoom, ops.sin(angle) / zoom
    a0, a1 = cos * flip, -sin
    b0, b1 = sin * flip, cos
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    ox, oy = -cx - shift_x, -cy - shift_y
    a2 = cx + a0 * ox + a1 * oy
    b2 = cy + b0 * ox + b1 * oy
    zeros = ops.zeros_like(a0)
    return ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def _jitter_intensity(images, batch, height, width, ranges: RandomTransforms, seed):
    """Gain, gamma, depth ramp and speckle on the slice's own scale (any bit depth)."""
    import keras
    from keras import ops

    peak = ops.maximum(ops.max(images, axis=(1, 2, 3), keepdims=True), 1e-6)
    unit = images / peak

    def per_slice(low: float, high: float):
        return keras.random.uniform((batch, 1, 1, 1), low, high, seed=seed)

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
