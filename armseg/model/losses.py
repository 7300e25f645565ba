"""Losses on integer label maps: the labels stay uint8 class indices, never a one-hot.

Dice is computed from sparse labels by summing, per class, the predicted probability of each
pixel's true class (`segment_sum` over the label ids): the same numbers a one-hot product gives,
without a (pixels x classes) target tensor. It is a batch Dice (sums over the whole batch, as
nnU-Net's 2D default) over the foreground classes: a slice where a structure is absent does not
turn into a 0/0 that dominates the gradient.
"""

from __future__ import annotations

import keras
from keras import ops

from armseg.model.choices import LOSSES


@keras.saving.register_keras_serializable(package="armseg")
class SparseDice(keras.losses.Loss):
    """1 - mean foreground soft Dice; y_true (B, H, W[, 1]) class ids, y_pred (B, H, W, C) probabilities."""

    def __init__(self, num_classes: int, smooth: float = 1.0, name: str = "dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        probabilities = ops.reshape(ops.cast(y_pred, "float32"), (-1, self.num_classes))
        true_class_probability = ops.take_along_axis(probabilities, labels[:, None], axis=1)[:, 0]
        overlap = ops.segment_sum(true_class_probability, labels, num_segments=self.num_classes)
        truth = ops.segment_sum(ops.ones_like(true_class_probability), labels, num_segments=self.num_classes)
        predicted = ops.sum(probabilities, axis=0)
        dice = (2.0 * overlap + self.smooth) / (truth + predicted + self.smooth)
        return 1.0 - ops.mean(dice[1:])

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes, "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="armseg")
class SparseCEDice(keras.losses.Loss):
    """Cross-entropy (pixel-wise calibration) + Dice (overlap, robust to class imbalance)."""

    def __init__(self, num_classes: int, name: str = "ce_dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self._ce = keras.losses.SparseCategoricalCrossentropy()
        self._dice = SparseDice(num_classes)

    def call(self, y_true, y_pred):
        return self._ce(y_true, y_pred) + self._dice(y_true, y_pred)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes}


def make_loss(name: str, num_classes: int) -> keras.losses.Loss:
    """The loss called `name` in train's parameters: `ce`, `dice` or `ce+dice`."""
    if name == "ce":
        return keras.losses.SparseCategoricalCrossentropy(name="ce")
    if name == "dice":
        return SparseDice(num_classes)
    if name == "ce+dice":
        return SparseCEDice(num_classes)
    raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")
