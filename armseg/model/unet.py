"""A U-Net whose depth and width are arguments, with its input normalisation built in.

Normalisation lives inside the model so a logged model is self-contained: `predict` feeds
raw intensities (float32, any scanner gain) and never needs to know how training scaled them.
`depth` counts the poolings: depth 5 from 64 base filters is OpenArm's 64 -> 2048, 6 levels.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, regularizers

from armseg.model.choices import NORMALIZATIONS


def build_unet(
    depth: int = 4,
    base_filters: int = 16,
    num_classes: int = 3,
    dropout: float = 0.0,
    weight_decay: float = 0.0,
    normalization: str = "slice",
    mean: float = 0.0,
    batch_norm: bool = True,
    channels: int = 1,
    downsample: int = 1,
) -> keras.Model:
    """Fully convolutional: any (H, W) divisible by `pad_multiple(depth, downsample)`, softmax out.
    `channels` grey channels in: the slice alone, or the slice between its neighbours along the arm
    (2.5D, `context`).

    With `downsample` f > 1 the U-Net works on the slice averaged over f x f pixels and its class
    scores are interpolated (bilinear) back to the slice's own pixels before the softmax: the
    convolutions see 1/f**2 of the pixels and each level sees f times as far, and the loss, the
    labels and every output stay at the scan's resolution, so nothing outside the network changes."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    regularizer = regularizers.L2(weight_decay) if weight_decay > 0 else None
    inputs = keras.Input(shape=(None, None, channels), name="image", dtype="float32")
    x = _normalize(inputs, normalization, mean)
    if downsample > 1:
        x = layers.AveragePooling2D(downsample, name="downsample")(x)
    skips = []
    for level in range(depth):
        x = _conv_block(x, base_filters * 2**level, regularizer, f"down{level}", batch_norm)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = _conv_block(x, base_filters * 2**depth, regularizer, "bottom", batch_norm)
    if dropout > 0:
        x = layers.Dropout(dropout, name="bottom_dropout")(x)
    for level in reversed(range(depth)):
        filters = base_filters * 2**level
        x = layers.Conv2DTranspose(filters, 2, strides=2, padding="same",
                                   kernel_regularizer=regularizer, name=f"up{level}")(x)
        x = layers.Concatenate(name=f"skip{level}")([x, skips[level]])
        x = _conv_block(x, filters, regularizer, f"dec{level}", batch_norm)
    logits = layers.Conv2D(num_classes, 1, name="logits")(x)
    if downsample > 1:
        logits = _bilinear_upsampling(num_classes, downsample)(logits)
    # Float32 probabilities even under mixed precision: softmax and the loss need the range.
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
    suffix = f"_s{downsample}" if downsample > 1 else ""
    return keras.Model(inputs, outputs, name=f"unet_d{depth}_f{base_filters}{suffix}")


def _bilinear_upsampling(channels: int, factor: int) -> layers.Conv2DTranspose:
    """A fixed transposed convolution that interpolates each channel bilinearly (pixel centres
    aligned, as `keras.ops.image.resize`), `factor` times each way.

    Not `UpSampling2D(interpolation="bilinear")`: under TensorFlow its graph fails once a second
    slice size arrives (a height known, a width not), and predict meets every scan's size. Inside,
    it equals the resize; on the outermost `factor` / 2 rows and columns the scores are scaled down
    alike for every class (the argmax stays), where the slice is padding or its very edge.
    """
    size = 2 * factor
    taps = 1.0 - np.abs(np.arange(size) - (size - 1) / 2) / factor
    kernel = np.zeros((size, size, channels, channels), dtype="float32")
    kernel[:, :, range(channels), range(channels)] = np.outer(taps, taps)[..., np.newaxis]
    return layers.Conv2DTranspose(channels, size, strides=factor, padding="same", use_bias=False,
                                  trainable=False, kernel_initializer=keras.initializers.Constant(kernel),
                                  dtype="float32", name="upsample")


def _normalize(inputs: keras.KerasTensor, normalization: str, mean: float) -> keras.KerasTensor:
    # float32 even under mixed precision: raw intensities (16-bit scanners) lose steps in bfloat16.
    if normalization == "slice":
        # Per-slice z-score: robust to gain/TGC differences between scanners and sessions.
        return layers.LayerNormalization(axis=(1, 2, 3), center=False, scale=False, epsilon=1e-3,
                                         dtype="float32", name="slice_standardize")(inputs)
    return layers.Rescaling(1.0 / 255.0, offset=-mean / 255.0, dtype="float32",
                            name="mean_subtract")(inputs)


def _conv_block(x: keras.KerasTensor, filters: int, regularizer: regularizers.Regularizer | None,
                name: str, batch_norm: bool = True) -> keras.KerasTensor:
    """Two 3x3 convolutions with ReLU; batch normalisation after each, or a bias in each instead."""
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm,
                          kernel_regularizer=regularizer, name=f"{name}_conv{i}")(x)
        if batch_norm:
            # momentum 0.9, not Keras's 0.99: a group of a few scans gives tens of steps per epoch, and
            # the moving statistics must settle within the first epochs or validation sees garbage.
            x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def pad_multiple(depth: int, downsample: int = 1) -> int:
    """In-plane sizes must be multiples of this for the poolings to invert exactly."""
    return downsample * 2**depth
