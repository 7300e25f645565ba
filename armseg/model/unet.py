"""A U-Net whose depth and width are arguments, with its input normalisation built in.

Normalisation lives inside the model so a logged model is self-contained: `predict` feeds
raw intensities (float32, any scanner gain) and never needs to know how training scaled them.
`depth` counts the poolings: depth 5 from 64 base filters is OpenArm's 64 -> 2048, 6 levels.
"""

from __future__ import annotations

import keras
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
) -> keras.Model:
    """Fully convolutional: any (H, W) divisible by 2**depth, softmax out. `channels` grey channels
    in: the slice alone, or the slice between its neighbours along the arm (2.5D, `context`)."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    regularizer = regularizers.L2(weight_decay) if weight_decay > 0 else None
    inputs = keras.Input(shape=(None, None, channels), name="image", dtype="float32")
    x = _normalize(inputs, normalization, mean)
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
    # Float32 probabilities even under mixed precision: softmax and the loss need the range.
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
    return keras.Model(inputs, outputs, name=f"unet_d{depth}_f{base_filters}")


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


def pad_multiple(depth: int) -> int:
    """In-plane sizes must be multiples of this for the poolings to invert exactly."""
    return 2**depth
