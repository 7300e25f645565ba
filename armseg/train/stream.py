"""Feeding a split's slices to Keras in batches (tf.data), with random transforms for training."""

from __future__ import annotations

from armseg.train.augmentation import RandomTransforms, augment_batch
from armseg.train.slices import SliceSet


def make_dataset(slices: SliceSet, batch_size: int, training: bool, seed: int = 0,
                 transforms: RandomTransforms | None = None):
    """(float32 (B, H, W, 1) raw intensities, uint8 (B, H, W) classes) batches.

    For training, reshuffled every pass, repeated without end (fit's steps_per_epoch sets the
    epoch) and transformed on the fly when `transforms` is given. The arrays stay in their stored
    types until batched.
    """
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((slices.images, slices.labels))
    if training:
        dataset = dataset.shuffle(len(slices), seed=seed, reshuffle_each_iteration=True).repeat()
    dataset = dataset.batch(batch_size)
    if training and transforms is not None:
        dataset = dataset.map(lambda images, labels: augment_batch(images, labels, transforms),
                              num_parallel_calls=tf.data.AUTOTUNE)
    else:
        dataset = dataset.map(_as_model_input, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _as_model_input(images, labels):
    import tensorflow as tf

    return tf.cast(images, tf.float32)[..., None], labels
