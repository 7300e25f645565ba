"""Random scanner- and probe-like transforms of training batches, drawn per slice, on the fly.

These are the training-time transforms (MONAI's `Rand*` kind), not the `armseg augment` stage,
which writes augmented copies to disk. Their ranges are named parameters of `train`
(`rand_*`), logged with every run and searchable by `tune`:

- geometry: lateral flip (left/right arm), zoom (depth setting), tilt, shift; labels follow
  with nearest-neighbour sampling. Vertical flips are left out: the probe is always on top.
- intensity: gain, gamma (the log-compression curve), a depth ramp (time-gain compensation);
- texture: multiplicative speckle-like noise and, for some batches, a lower resolution
  (a blurrier probe).
"""

from __future__ import annotations

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
    lowres_prob: float = 0.25  # chance a batch is down- and up-sampled (factor U(0.5, 0.85))

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


def augment_batch(images, labels, ranges: RandomTransforms = RandomTransforms()):  # noqa: B008 (frozen)
    """(uint/float (B, H, W) images, uint8 (B, H, W) labels) -> float32 (B, H, W, 1), uint8 (B, H, W)."""
    import tensorflow as tf

    images = tf.cast(images, tf.float32)[..., None]
    batch = tf.shape(images)[0]
    size = tf.shape(images)[1:3]
    transforms = _random_transforms(batch, tf.cast(size, tf.float32), ranges)
    images = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=size, fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT")
    labels = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(labels, tf.float32)[..., None], transforms=transforms, output_shape=size,
        fill_value=0.0, interpolation="NEAREST", fill_mode="CONSTANT")
    images = _jitter_intensity(images, batch, size, ranges)
    return images, tf.cast(tf.round(labels[..., 0]), tf.uint8)


def _random_transforms(batch, size, ranges: RandomTransforms):
    """Per-slice output->input maps for ImageProjectiveTransformV3 (flip, zoom, tilt, shift)."""
    import tensorflow as tf

    def uniform(half_width: float):
        return tf.random.uniform([batch], -half_width, half_width)

    height, width = size[0], size[1]
    flip = tf.where(tf.random.uniform([batch]) < ranges.flip_prob, -1.0, 1.0)
    zoom = tf.exp(uniform(ranges.zoom))
    angle = uniform(ranges.rotate_deg) * (math.pi / 180.0)
    shift_x = uniform(ranges.shift) * width
    shift_y = uniform(ranges.shift) * height
    # input = centre + R(angle) @ diag(flip, 1) @ (output - centre - shift) / zoom
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    a0, a1 = cos * flip, -sin
    b0, b1 = sin * flip, cos
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    ox, oy = -cx - shift_x, -cy - shift_y
    a2 = cx + a0 * ox + a1 * oy
    b2 = cy + b0 * ox + b1 * oy
    zeros = tf.zeros([batch])
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def _jitter_intensity(images, batch, size, ranges: RandomTransforms):
    """Gain, gamma, depth ramp and speckle on the slice's own scale (any bit depth)."""
    import tensorflow as tf

    peak = tf.maximum(tf.reduce_max(images, axis=[1, 2, 3], keepdims=True), 1e-6)
    unit = images / peak

    def per_slice(low: float, high: float):
        return tf.random.uniform([batch, 1, 1, 1], low, high)

    unit = tf.pow(unit, tf.exp(per_slice(-ranges.gamma, ranges.gamma)))
    depth = tf.linspace(-0.5, 0.5, size[0])[None, :, None, None]
    unit *= tf.exp(per_slice(-ranges.tgc, ranges.tgc) * depth) * tf.exp(per_slice(-ranges.gain, ranges.gain))
    speckle = tf.where(per_slice(0.0, 1.0) < ranges.speckle_prob, per_slice(0.0, ranges.speckle), 0.0)
    unit *= tf.maximum(1.0 + speckle * tf.random.normal(tf.shape(unit)), 0.0)
    unit = tf.cond(tf.random.uniform([]) < ranges.lowres_prob, lambda: _lower_resolution(unit, size),
                   lambda: unit)
    return unit * peak


def _lower_resolution(images, size):
    """Down- and up-sample a batch: the blur of a lower-frequency probe."""
    import tensorflow as tf

    factor = tf.random.uniform([], 0.5, 0.85)
    small = tf.cast(tf.round(tf.cast(size, tf.float32) * factor), tf.int32)
    return tf.image.resize(tf.image.resize(images, small, antialias=True), size)
