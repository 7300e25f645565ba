"""Data-parallel training over several GPUs with TensorFlow's own MirroredStrategy.

With more than one visible GPU the model is built and compiled under a MirroredStrategy, and
Keras splits each batch across the replicas (`batch_size` stays the global batch). One GPU or
none keeps TensorFlow's default strategy. `ARMSEG_DEVICES` names the devices explicitly
(`/gpu:0,/gpu:2`, or logical CPUs for testing); `ARMSEG_DEVICES=default` turns mirroring off.
"""

from __future__ import annotations

import os

import tensorflow as tf

DEVICES_ENV = "ARMSEG_DEVICES"


def training_devices() -> list[str]:
    """The devices to mirror over: ARMSEG_DEVICES when set, else every visible GPU."""
    chosen = os.environ.get(DEVICES_ENV, "").strip()
    if chosen.lower() == "default":
        return []
    if chosen:
        return [device.strip() for device in chosen.split(",") if device.strip()]
    return [device.name for device in tf.config.list_logical_devices("GPU")]


def training_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy over two or more devices, TensorFlow's default strategy otherwise."""
    devices = training_devices()
    if len(devices) > 1:
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()
