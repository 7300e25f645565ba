"""How a trained U-Net is stored in MLflow, in one place for `train`/`tune` (write) and `predict` (read).

The logged model is a Python-function model (armseg/model/pyfunc.py, logged as code) holding
the Keras network as its one artifact: anyone can apply it to a raw scan, and armseg's
`predict` takes the network back out of it. What inference needs (pad multiple, label map,
slice axis, group) travels in the model's config and in its MLflow metadata (`armseg` key),
so a model found by any URI form predicts correctly without looking up the run that made it.

Registering is a separate step: `train` registers its run's model at once, `tune` only its
best trial's. Each version carries tags for how it was made and a description a reader of the
registry can act on (group, data root, best validation IoU, epochs, label map, train run).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

from armseg.io.labels import DEFAULT_LABEL_MAP, LabelMap
from armseg.model.pyfunc import (
    DEFAULT_FILL_HOLES,
    DEFAULT_LARGEST_COMPONENT,
    DEFAULT_SLICE_VOTE,
    DEFAULT_TTA,
    NETWORK_ARTIFACT,
    SETTINGS_ARTIFACT,
    raw_value_table,
)
from armseg.tracking.contract import (
    BEST_EPOCH_METRIC,
    BEST_METRIC,
    DATA_ROOT_TAG,
    GROUP_TAG,
    MADE_BY_TAG,
    MODEL_ARTIFACT,
    MONITOR,
    REGISTERED_MODEL,
    STUDY_TAG,
)

PYFUNC_CODE = Path(__file__).with_name("pyfunc.py")
NETWORK_FILE = "unet.keras"
SETTINGS_FILE = "inference.json"

# The distributions that provide each Keras backend, the first one installed is pinned.
BACKEND_DISTRIBUTIONS = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "jax": ("jax",), "torch": ("torch",)}


@dataclass(frozen=True)
class InferenceInfo:
    """What inference needs to know about a logged U-Net besides its weights."""

    pad_multiple: int
    label_map: LabelMap = DEFAULT_LABEL_MAP
    slice_axis: int = 2
    group: str | None = None

    def to_config(self) -> dict[str, Any]:
        return {"pad_multiple": self.pad_multiple, "label_map": self.label_map.to_json(),
                "slice_axis": self.slice_axis, "group": self.group}

    def to_metadata(self) -> dict[str, Any]:
        return {"armseg": self.to_config()}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any] | None) -> InferenceInfo:
        info = (metadata or {}).get("armseg", {})
        label_json = info.get("label_map")
        return cls(pad_multiple=int(info.get("pad_multiple", 16)),
                   label_map=LabelMap.from_json(label_json) if label_json else DEFAULT_LABEL_MAP,
                   slice_axis=int(info.get("slice_axis", 2)), group=info.get("group"))


def scan_signature(info: InferenceInfo) -> ModelSignature:
    """Raw labels of the input's shape out; `slice_axis` and the refinements as params.

    No input schema: MLflow's tensor schema admits one dtype only and would refuse a uint8 or
    int16 scan; the input example shows the input and the model checks it (pyfunc.as_scan).
    """
    dtype = raw_value_table(info.label_map.to_json()).dtype
    return ModelSignature(
        outputs=Schema([TensorSpec(dtype, (-1, -1, -1), "labels")]),
        params=ParamSchema([ParamSpec("slice_axis", "long", info.slice_axis),
                            ParamSpec("tta", "boolean", DEFAULT_TTA),
                            ParamSpec("largest_component", "boolean", DEFAULT_LARGEST_COMPONENT),
                            ParamSpec("fill_holes", "boolean", DEFAULT_FILL_HOLES),
                            ParamSpec("slice_vote", "long", DEFAULT_SLICE_VOTE)]),
    )


def input_example() -> np.ndarray:
    """A small raw scan: uint8, rows x columns x slices, sizes no network multiple divides."""
    return np.random.default_rng(0).integers(0, 256, size=(10, 13, 2), dtype=np.uint8)


def pip_requirements() -> list[str]:
    """What loading the model needs, pinned to what is installed here: MLflow, Keras, NumPy, SciPy
    (the default refinements, the vote along the arm, the largest component and the hole filling,
    use it) and the backend that trained it (no armseg: the model's code travels with it; the
    `.keras` network itself loads on any backend).

    Given explicitly because MLflow's own inference re-imports the backend in a subprocess,
    which costs ~20 s per logged model on a small CPU.
    """
    from armseg.backend import backend_name

    pins = [_installed(("mlflow", "mlflow-skinny")), f"keras=={keras.__version__}",
            f"numpy=={np.__version__}", _installed(("scipy",)),
            _installed(BACKEND_DISTRIBUTIONS.get(backend_name(), ()))]
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


def log_unet(model: keras.Model, info: InferenceInfo) -> ModelInfo:
    """Log the network into the active run as the `model` pyfunc (one copy of its weights)."""
    with tempfile.TemporaryDirectory(prefix="armseg-model-") as scratch:
        network, settings = Path(scratch) / NETWORK_FILE, Path(scratch) / SETTINGS_FILE
        model.save(network)
        settings.write_text(json.dumps(info.to_config(), indent=2))
        return mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT, python_model=str(PYFUNC_CODE),
            artifacts={NETWORK_ARTIFACT: str(network), SETTINGS_ARTIFACT: str(settings)},
            signature=scan_signature(info), input_example=input_example(), metadata=info.to_metadata(),
            pip_requirements=pip_requirements(),
        )


def register_run_model(run_id: str, made_by: str, study: str | None = None) -> ModelVersion:
    """Register the model a run logged as a new version of `armseg-unet`, described and tagged."""
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    tags = {GROUP_TAG: run.data.tags.get(GROUP_TAG, run.data.params.get("group", "")), MADE_BY_TAG: made_by}
    if DATA_ROOT_TAG in run.data.tags:
        tags[DATA_ROOT_TAG] = run.data.tags[DATA_ROOT_TAG]
    if study:
        tags[STUDY_TAG] = study
    version = mlflow.register_model(logged_model_uri(run), REGISTERED_MODEL, tags=tags)
    client.update_model_version(REGISTERED_MODEL, version.version, description=describe(run, made_by, study))
    return client.get_model_version(REGISTERED_MODEL, version.version)


def logged_model_uri(run: Run) -> str:
    """`models:/<model id>` of the model a run logged as `model` (MLflow 3 keeps logged models
    beside the run's artifacts, not inside them)."""
    model_id = logged_model_id(run)
    return f"models:/{model_id}" if model_id else f"runs:/{run.info.run_id}/{MODEL_ARTIFACT}"


def logged_model_id(run: Run) -> str | None:
    """The id of the complete model a run logged as `model`, or None (none yet, or one whose
    logging was cut short)."""
    for output in (run.outputs.model_outputs if run.outputs else None) or ():
        model = mlflow.MlflowClient().get_logged_model(output.model_id)
        if model.name == MODEL_ARTIFACT and str(model.status).upper().endswith("READY"):
            return model.model_id
    return None


def _label_map_text(params: dict[str, str]) -> str:
    """The map a run trained with: its JSON `label_map`, else its preset (`labels`) spelled out."""
    given = params.get("label_map")
    if given not in (None, "", "None"):
        return given
    from armseg.io.labels import preset

    name = params.get("labels")
    try:
        return preset(name if name not in (None, "", "None") else "openarm").to_json()
    except Exception:  # an old run with a preset this version no longer knows: say its name
        return params.get("labels", "?")


def describe(run: Run, made_by: str, study: str | None = None) -> str:
    """The version's description: what a reader of the registry needs to judge and trace it."""
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    epochs_run = len(mlflow.MlflowClient().get_metric_history(run.info.run_id, MONITOR))
    best = metrics.get(BEST_METRIC)
    best_text = f"{best:.4f}" if best is not None else "not logged"
    best_epoch = int(metrics[BEST_EPOCH_METRIC]) if BEST_EPOCH_METRIC in metrics else "?"
    how = f"the best trial of tune study {study}" if made_by == "tune" and study else made_by
    return (f"U-Net for group {tags.get(GROUP_TAG, params.get('group', '?'))} on data root "
            f"{tags.get(DATA_ROOT_TAG, params.get('data_root', '?'))}, made by {how}. "
            f"Best val_mean_iou {best_text} at epoch {best_epoch} of {epochs_run} run "
            f"(the kept weights: the {params.get('keep_weights', 'best')} epoch's) "
            f"(epochs {params.get('epochs', '?')}). Label map {_label_map_text(params)}. "
            f"Train run {run.info.run_id}.")


def versions_of_run(run_id: str) -> list[ModelVersion]:
    """Registered versions of a run's model, oldest first."""
    where = f"name = '{REGISTERED_MODEL}' and run_id = '{run_id}'"
    found = mlflow.MlflowClient().search_model_versions(where)
    return sorted(found, key=lambda v: int(v.version))


def load_unet(model_uri: str) -> tuple[keras.Model, InferenceInfo]:
    """The Keras network and its inference metadata, from any MLflow model URI."""
    model_info = mlflow.models.get_model_info(model_uri)
    info = InferenceInfo.from_metadata(model_info.metadata)
    if "keras" in model_info.flavors:  # logged before the pyfunc wrapper existed
        return mlflow.keras.load_model(model_uri), info
    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().network, info
