"""Data-parallel training over several devices, with each backend's own machinery.

With more than one visible GPU the model is built, compiled and fitted under the backend's
data parallelism: TensorFlow's `MirroredStrategy`, or `keras.distribution.DataParallel` on JAX
(variables replicated, each batch sharded over the devices). `batch_size` stays the global
batch either way. One GPU or none keeps the backend's default placement. `ARMSEG_DEVICES` names
the devices explicitly (`/gpu:0,/gpu:2` or `gpu:0,gpu:2`; logical or virtual CPUs for testing);
`ARMSEG_DEVICES=default` turns data parallelism off. The PyTorch backend has no Keras data
parallelism: it trains on one device.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from armseg.backend import backend_name

DEVICES_ENV = "ARMSEG_DEVICES"


@dataclass(frozen=True)
class Placement:
    """Where training runs: the devices a batch is split across (one: no splitting)."""

    backend: str
    devices: tuple[str, ...]
    scope: Callable[[], AbstractContextManager]

    @property
    def replicas(self) -> int:
        return len(self.devices) if self.parallel else 1

    @property
    def parallel(self) -> bool:
        return len(self.devices) > 1

    def describe(self) -> str:
        """For the run's devices tag: `gpu:0 (NVIDIA H100 80GB HBM3), gpu:1 (...)` or `cpu:0`."""
        return ", ".join(self.devices) if self.devices else "cpu:0"


def chosen_devices() -> list[str] | None:
    """ARMSEG_DEVICES as a list ([] for `default`), or None when it is not set."""
    chosen = os.environ.get(DEVICES_ENV, "").strip()
    if chosen.lower() == "default":
        return []
    if chosen:
        return [device.strip() for device in chosen.split(",") if device.strip()]
    return None


def training_devices() -> list[str]:
    """The devices to split batches over: ARMSEG_DEVICES when set, else every visible GPU."""
    chosen = chosen_devices()
    if chosen is not None:
        return chosen
    backend = backend_name()
    if backend == "tensorflow":
        import tensorflow as tf

        return [device.name for device in tf.config.list_logical_devices("GPU")]
    if backend == "jax":
        import jax

        return [f"gpu:{device.id}" for device in jax.devices() if device.platform == "gpu"]
    return []


def training_placement() -> Placement:
    """The backend's data parallelism over two or more devices, its default placement otherwise."""
    backend = backend_name()
    devices = training_devices()
    if backend == "tensorflow":
        import tensorflow as tf

        parallel = len(devices) > 1
        strategy = tf.distribute.MirroredStrategy(devices) if parallel else tf.distribute.get_strategy()
        names = devices if len(devices) > 1 else _tensorflow_default()
        return Placement(backend, tuple(_jax_style(d) for d in names), strategy.scope)
    if backend == "jax":
        if len(devices) > 1:
            import keras

            names = tuple(_jax_style(d) for d in devices)
            distribution = keras.distribution.DataParallel(devices=list(names))
            return Placement(backend, _with_kinds(names), distribution.scope)
        return Placement(backend, _with_kinds(_jax_default()), nullcontext)
    return Placement(backend, _torch_default(), nullcontext)


def _jax_style(device: str) -> str:
    """`/job:localhost/replica:0/task:0/device:GPU:1`, `/gpu:1`, `GPU:1` -> `gpu:1`."""
    name = device.rsplit("device:", 1)[-1].strip("/").lower()
    return name if ":" in name else f"{name}:0"


def _tensorflow_default() -> list[str]:
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return [gpus[0].name] if gpus else ["cpu:0"]


def _jax_default() -> tuple[str, ...]:
    import jax

    device = jax.devices()[0]
    return (f"{device.platform}:{device.id}",)


def _with_kinds(names: tuple[str, ...]) -> tuple[str, ...]:
    """GPU names with their model, as JAX reports it (`gpu:0 (NVIDIA H100 80GB HBM3)`)."""
    import jax

    kinds = {f"{d.platform}:{d.id}": d.device_kind for d in jax.devices()}
    return tuple(f"{n} ({kinds[n]})" if n.startswith("gpu") and n in kinds else n for n in names)


def _torch_default() -> tuple[str, ...]:
    import torch

    if torch.cuda.is_available():
        return (f"gpu:0 ({torch.cuda.get_device_name(0)})",)
    return ("cpu:0",)
