"""The model Keras fits: the U-Net behind the random transforms, both inside one compiled train step.

Batches arrive as (B, H, W, C + 1) arrays, the slice (C channels: with `context`, its neighbours
too) and its class map stacked as channels in their stored integer types (armseg.train.batches).
`SegmentationTrainer.call` moves both through the same random geometry on the device that trains
(GPU, or the CPU's threads), so the host only gathers bytes and the accelerator never waits for
augmentation. Its output carries the transformed labels as one more channel, which the overridden
`compute_loss`/`compute_metrics` (public Keras 3 hooks, the same on every backend) split off and
score the probabilities against. Validation and test batches pass untransformed. What is exported
and registered is `unet` alone (train/run.py), a plain functional U-Net with no trace of the
training wrapper.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict

import keras
from keras import ops

from armseg.train.augmentation import RandomTransforms, random_crop, transform_pair

# Keras's IoU asks JAX for an int64 confusion matrix; JAX (32-bit by default) counts in int32,
# which holds any batch's pixel counts. The warning says nothing a user can act on.
warnings.filterwarnings("ignore", message="Explicitly requested dtype int64", category=UserWarning)


@keras.saving.register_keras_serializable(package="armseg")
class ScanTransforms(keras.layers.Layer):
    """The random transforms as a layer: its own seed generator, so draws advance with each step
    on every backend (JAX threads the seed state through the step like any other variable)."""

    def __init__(self, ranges: dict | None = None, seed: int = 0, multiple: int = 1, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})
        self.ranges = RandomTransforms(**(ranges or {}))
        self.seed = int(seed)
        self.multiple = int(multiple)  # the U-Net's pad multiple: crops keep it
        self.generator = keras.random.SeedGenerator(self.seed)

    def build(self, images_shape=None, labels_shape=None):
        self.built = True  # the seed generator, its only state, exists from __init__

    def call(self, images, labels):
        images, labels = transform_pair(images, labels, self.ranges, self.generator)
        return random_crop(images, labels, self.ranges.crop, self.ranges.crop_depth, self.multiple,
                           self.generator)

    def get_config(self) -> dict:
        return {**super().get_config(), "ranges": asdict(self.ranges), "seed": self.seed,
                "multiple": self.multiple}


@keras.saving.register_keras_serializable(package="armseg")
class SegmentationTrainer(keras.Model):
    """Fits `unet` on stacked (image, labels) batches, transforming them in the train step."""

    def __init__(self, unet: keras.Model, transforms: ScanTransforms | None = None, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})
        self.unet = unet
        self.transforms = transforms

    def build(self, input_shape):
        """The U-Net is built already (functional); the transforms hold only their seed state."""
        if self.transforms is not None:
            self.transforms.build()
        self.built = True

    def call(self, pairs, training: bool = False):
        images = ops.cast(pairs[..., :-1], "float32")
        labels = ops.cast(pairs[..., -1:], "float32")
        if training and self.transforms is not None:
            images, labels = self.transforms(images, labels)
        probabilities = self.unet(images, training=training)
        return ops.concatenate([probabilities, ops.cast(labels, probabilities.dtype)], axis=-1)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        probabilities, labels = split_output(y_pred)
        return super().compute_loss(x, labels, probabilities, sample_weight, training=training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        probabilities, labels = split_output(y_pred)
        return super().compute_metrics(x, labels, probabilities, sample_weight)

    def get_config(self) -> dict:
        config = {"name": self.name, "unet": keras.saving.serialize_keras_object(self.unet)}
        if self.transforms is not None:
            config["transforms"] = keras.saving.serialize_keras_object(self.transforms)
        return config

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> SegmentationTrainer:
        config = dict(config)
        unet = keras.saving.deserialize_keras_object(config.pop("unet"), custom_objects=custom_objects)
        transforms = config.pop("transforms", None)
        if transforms is not None:
            transforms = keras.saving.deserialize_keras_object(transforms, custom_objects=custom_objects)
        return cls(unet, transforms, **config)


def split_output(y_pred):
    """(probabilities (B, H, W, C), labels (B, H, W) as int32) from the trainer's output."""
    return y_pred[..., :-1], ops.cast(ops.round(y_pred[..., -1]), "int32")


def training_model(unet: keras.Model, transforms: RandomTransforms | None, seed: int,
                   multiple: int = 1) -> SegmentationTrainer:
    """The trainer around `unet`; `transforms` None trains on the slices as they are."""
    if transforms is None:
        return SegmentationTrainer(unet, None, name="trainer")
    layer = ScanTransforms(asdict(transforms), seed, multiple, name="scan_transforms")
    return SegmentationTrainer(unet, layer, name="trainer")
