"""Which floating-point policy the U-Net computes in (SPEC 5), on whichever backend runs.

bfloat16 halves memory traffic and, on CPUs with AMX or AVX-512 BF16 and on Ampere+ GPUs, runs
matrix work in hardware; elsewhere it is emulated and slower than float32. `auto` therefore
looks at the hardware. The model's last layer (softmax) stays float32 either way (unet.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import keras

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU feature flags Linux reports (empty where /proc/cpuinfo does not exist)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def gpu_supports_bf16() -> bool:
    """True when a GPU the backend sees is compute capability 8.0 (Ampere) or newer."""
    return any(capability >= (8, 0) for capability in gpu_capabilities())


def gpu_capabilities() -> list[tuple[int, int]]:
    """The compute capability of each GPU the running backend sees (none on a CPU-only machine)."""
    from armseg.backend import backend_name

    backend = backend_name()
    if backend == "jax":
        import jax

        gpus = [device for device in jax.devices() if device.platform == "gpu"]
        return [_capability(getattr(device, "compute_capability", "")) for device in gpus]
    if backend == "torch":
        import torch

        return [tuple(torch.cuda.get_device_capability(i)) for i in range(torch.cuda.device_count())]
    import tensorflow as tf

    return [_capability(tf.config.experimental.get_device_details(device).get("compute_capability"))
            for device in tf.config.list_physical_devices("GPU")]


def _capability(value: object) -> tuple[int, int]:
    """(8, 0) from TensorFlow's (8, 0) or JAX's "8.0"; (0, 0) when unknown."""
    if isinstance(value, (tuple, list)) and len(value) >= 2:
        return int(value[0]), int(value[1])
    try:
        major, minor = str(value).split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return 0, 0


def resolve_precision(precision: str, flags: set[str] | None = None) -> str:
    """`float32` or `mixed_bfloat16`; `auto` picks bf16 only where hardware runs it natively."""
    if precision != "auto":
        return precision
    flags = cpu_flags() if flags is None else flags
    if gpu_supports_bf16() or any(flag in flags for flag in BF16_CPU_FLAGS):
        return "mixed_bfloat16"
    return "float32"


@contextmanager
def dtype_policy(policy: str) -> Iterator[None]:
    """Build layers under `policy`, then put the global policy back (it is process-wide)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
