"""How a trained U-Net is stored in MLflow, in one place for `train` (writes) and `predict` (reads).

The logged model carries what inference needs in its MLflow metadata (`armseg` key): the pad
multiple, the label map, the slice axis and the group, so a model found by any URI form
predicts correctly without looking up the run that made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import mlflow
import numpy as np
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from armseg.io.labels import DEFAULT_LABEL_MAP, LabelMap
from armseg.tracking.contract import GROUP_TAG, MODEL_ARTIFACT, REGISTERED_MODEL

# The distributions that provide each Keras backend, the first one installed is pinned.
BACKEND_DISTRIBUTIONS = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "jax": ("jax",), "torch": ("torch",)}


@dataclass(frozen=True)
class InferenceInfo:
    """What inference needs to know about a logged U-Net besides its weights."""

    pad_multiple: int
    label_map: LabelMap = DEFAULT_LABEL_MAP
    slice_axis: int = 2
    group: str | None = None

    def to_metadata(self) -> dict[str, Any]:
        return {"armseg": {"pad_multiple": self.pad_multiple, "label_map": self.label_map.to_json(),
                           "slice_axis": self.slice_axis, "group": self.group}}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any] | None) -> InferenceInfo:
        info = (metadata or {}).get("armseg", {})
        label_json = info.get("label_map")
        return cls(pad_multiple=int(info.get("pad_multiple", 16)),
                   label_map=LabelMap.from_json(label_json) if label_json else DEFAULT_LABEL_MAP,
                   slice_axis=int(info.get("slice_axis", 2)), group=info.get("group"))


def unet_signature(num_classes: int) -> ModelSignature:
    """Batches of single-channel slices of any size in, per-pixel class probabilities out."""
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1, 1), "image")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1, num_classes), "probabilities")]),
    )


def pip_requirements() -> list[str]:
    """What loading the model needs, pinned to what is installed here: MLflow, Keras, NumPy and
    the backend that trained it (the `.keras` file itself loads on any backend).

    Given explicitly because MLflow's own inference re-imports the backend in a subprocess,
    which costs ~20 s per logged model on a small CPU.
    """
    from armseg.backend import backend_name

    pins = [_installed(("mlflow", "mlflow-skinny")), f"keras=={keras.__version__}",
            f"numpy=={np.__version__}", _installed(BACKEND_DISTRIBUTIONS.get(backend_name(), ()))]
    return [pin for pin in pins if pin]


def _installed(distributions: tuple[str, ...]) -> str | None:
    """`name==version` of the first of `distributions` that is installed."""
    from importlib.metadata import PackageNotFoundError, version

    for distribution in distributions:
        try:
            return f"{distribution}=={version(distribution)}"
        except PackageNotFoundError:
            continue
    return None


def log_unet(model: keras.Model, info: InferenceInfo, register: bool = True) -> ModelVersion | None:
    """Log the model into the active run and, unless told not to, register a version of it."""
    logged = mlflow.keras.log_model(
        model, name=MODEL_ARTIFACT, signature=unet_signature(int(model.output_shape[-1])),
        metadata=info.to_metadata(), pip_requirements=pip_requirements(),
        registered_model_name=REGISTERED_MODEL if register else None,
    )
    if not register or logged.registered_model_version is None:
        return None
    client = mlflow.MlflowClient()
    version = str(logged.registered_model_version)
    if info.group:
        client.set_model_version_tag(REGISTERED_MODEL, version, GROUP_TAG, info.group)
    return client.get_model_version(REGISTERED_MODEL, version)


def load_unet(model_uri: str) -> tuple[keras.Model, InferenceInfo]:
    """The Keras model and its inference metadata, from any MLflow model URI."""
    metadata = mlflow.models.get_model_info(model_uri).metadata
    return mlflow.keras.load_model(model_uri), InferenceInfo.from_metadata(metadata)
