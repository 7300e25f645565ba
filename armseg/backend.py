"""Loading Keras (and the backend `KERAS_BACKEND` names) quietly, once, for commands that run a network.

armseg runs on Keras 3's `tensorflow` backend (the default) and on `jax`; `torch` works for
single-device training and prediction but is not tested. Nothing outside the TensorFlow backend
imports TensorFlow: the input path, the transforms, the losses and the model are Keras
operations. The backend is fixed per process (Keras reads `KERAS_BACKEND` once, at import).

TensorFlow's native libraries write start-up lines (oneDNN, CPU feature notes, an absl warning)
straight to file descriptor 2 while Keras is imported, before any Python logging setting can
reach them. They say nothing a user can act on and bury armseg's own one-line errors, so the
first import runs with stderr captured and every line that is not such noise is passed on.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

# Lines native start-up code writes that carry no information for an armseg user.
NATIVE_NOISE = (
    "All log messages before absl::InitializeLog()",
    "oneDNN custom operations are on",
    "cpu_feature_guard",
    "To enable the following instructions",
    "rebuild TensorFlow with the appropriate compiler flags",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation placer already registered",
    "TF-TRT Warning",
)


BACKENDS = ("tensorflow", "jax", "torch")
DEFAULT_BACKEND = "tensorflow"


def backend_name() -> str:
    """The Keras backend this process runs: Keras's own answer once it is loaded, else what
    `KERAS_BACKEND` asks for (tensorflow when unset)."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return os.environ.get("KERAS_BACKEND", "").strip().lower() or DEFAULT_BACKEND


def quiet_environment() -> None:
    """Log levels for TensorFlow's C++ side, set before it is first imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


@contextmanager
def filtered_stderr(noise: tuple[str, ...] = NATIVE_NOISE) -> Iterator[None]:
    """Capture file descriptor 2 for the duration, then replay every line that is not noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines():
                if line.strip() and not any(marker in line for marker in noise):
                    print(line, file=sys.stderr)


def load_keras():
    """Import Keras (and so its backend) once, without the native start-up lines."""
    if "keras" in sys.modules:
        return sys.modules["keras"]
    quiet_environment()
    with filtered_stderr():
        import keras
    return keras
