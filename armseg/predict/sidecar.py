"""The predictions sidecar: `armseg_model.json` in a model's predictions folder says which model wrote it.

predict writes it beside the predictions; evaluate reads it to tag every score with the model's
run, registered version and URI, so a table cell leads to one model version. A folder without
one (OpenArm's own predictions, older armseg) is still scored, just without those tags.
Import-free apart from the standard library: evaluate and table read it without MLflow.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from armseg.errors import ArmsegError

SIDECAR_NAME = "armseg_model.json"


@dataclass(frozen=True)
class ModelRecord:
    """Who wrote a predictions folder: the model URI and run, its registered name and version."""

    model_uri: str | None
    run_id: str | None
    registered_model: str | None
    version: str | None
    armseg_version: str
    written_at: str
    folder: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelRecord:
        """Unknown keys are ignored (a newer armseg may add some); missing ones are None/''."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        values = {field.name: data.get(field.name) for field in fields(cls)}
        for name in ("armseg_version", "written_at", "folder"):
            values[name] = str(values[name] or "")
        for name in ("model_uri", "run_id", "registered_model", "version"):
            values[name] = None if values[name] in (None, "") else str(values[name])
        return cls(**values)


def read_sidecar(folder: Path) -> ModelRecord | None:
    """The record of a predictions folder, None when it has none; a broken file names itself."""
    path = Path(folder) / SIDECAR_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return ModelRecord.from_json(text)
    except (ValueError, TypeError) as error:
        raise ArmsegError(f"{path}: not a predictions sidecar ({error}); delete it or predict "
                          "again") from error
