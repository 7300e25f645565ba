"""Which label map a predictions folder was made with: the map its scores are computed on.

A model's map (background, humerus, biceps; or every tissue) decides which structures it has,
so it decides armseg's per-structure metrics. In order of authority:
1. the map the user gave (`--labels` / `--label-map`), for every folder;
2. the folder's sidecar (`armseg_model.json`, written by `predict`): its `label_map`, else the
   metadata of the model at its `model_uri`;
3. otherwise (OpenArm's own predictions, the registration baseline, a copied folder) the smallest
   preset that writes every raw value found in the folder's predictions: `openarm` when they hold
   only 0, 7 and 52, `openarm-all` when they hold other OpenArm tissues too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from armseg.errors import ArmsegError
from armseg.io.images import read_image
from armseg.io.labels import LabelMap, integer_labels, preset_name, smallest_preset_holding

SIDECAR = "armseg_model.json"


@dataclass(frozen=True)
class FolderMap:
    """A predictions folder's label map and where that knowledge came from."""

    label_map: LabelMap
    source: str  # "given", "sidecar", "model" or "inferred"

    def describe(self) -> str:
        name = preset_name(self.label_map)
        return f"{name or 'custom'} ({self.source})"


def sidecar_map(folder: Path) -> FolderMap | None:
    """The map the sidecar records, directly or through the model it names; None if it says nothing."""
    path = folder / SIDECAR
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ArmsegError(f"{path}: not readable as JSON ({error})") from error
    if not isinstance(record, dict):
        raise ArmsegError(f"{path}: expected a JSON object")
    recorded = record.get("label_map")
    if recorded:
        text = recorded if isinstance(recorded, str) else json.dumps(recorded)
        return FolderMap(LabelMap.from_json(text), "sidecar")
    uri = record.get("model_uri")
    return _model_map(uri, path) if uri else None


def _model_map(uri: str, sidecar: Path) -> FolderMap | None:
    """The label map in a logged model's metadata; None (with a note) when the store lacks it."""
    import mlflow

    try:
        metadata = mlflow.models.get_model_info(uri).metadata
    except Exception as error:  # MLflow raises many kinds for a model this store does not hold
        print(f"[armseg evaluate] {sidecar}: model {uri} not found in {mlflow.get_tracking_uri()} "
              f"({type(error).__name__}); reading the map from the predictions' values")
        return None
    # The `armseg` metadata InferenceInfo writes, read here without importing Keras.
    text = (metadata or {}).get("armseg", {}).get("label_map")
    return FolderMap(LabelMap.from_json(text), "model") if text else None


def inferred_map(folder: Path, predictions: Iterable[Path]) -> FolderMap:
    """The smallest preset writing every raw value of the folder's predictions."""
    values: set[int] = set()
    for path in predictions:
        raw = np.asarray(read_image(path).array)
        values |= {int(v) for v in np.unique(integer_labels(np.rint(raw) if raw.dtype.kind == "f" else raw,
                                                            path))}
    found = smallest_preset_holding(values)
    if found is None:
        raise ArmsegError(f"{folder}: its predictions hold raw values {sorted(values)}, which neither "
                          "preset writes; say which map made them with --labels or --label-map")
    return FolderMap(found, "inferred")


class FolderMaps:
    """The map of each predictions folder, looked up once per folder."""

    def __init__(self, given: LabelMap | None = None):
        self.given = given
        self._known: dict[Path, FolderMap] = {}

    def of(self, folder: Path, predictions: Iterable[Path]) -> FolderMap:
        if self.given is not None:
            return FolderMap(self.given, "given")
        if folder not in self._known:
            self._known[folder] = sidecar_map(folder) or inferred_map(folder, predictions)
        return self._known[folder]
