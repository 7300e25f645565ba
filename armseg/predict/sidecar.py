"""Which model wrote a predictions folder: `armseg_model.json` beside the predictions.

Each model folder `Sub<X>/predictions/[size dir/]<model folder>/` that armseg writes into gets
a small JSON record of the model (URI, training run, registered version), armseg's version
and the time. `predict` reads it to never reuse silently a prediction another model wrote,
and `evaluate` to tag each score with the model version behind it. Folders without one
(OpenArm's own predictions) are still scored.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

from armseg.errors import ArmsegError
from armseg.io.atomic import write_bytes_atomic

SIDECAR = "armseg_model.json"


@dataclass(frozen=True)
class ModelRecord:
    """The model behind a predictions folder (`model_uri` is null for the registration baseline,
    whose `run_id` is the register run that wrote it)."""

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
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return cls(**{item.name: data.get(item.name) for item in fields(cls)})

    def same_model(self, other: ModelRecord) -> bool:
        """Written by the same trained weights: the same training run and model URI."""
        return (self.run_id, self.model_uri) == (other.run_id, other.model_uri)

    def describe(self) -> str:
        """`run 1a2b... (armseg-unet version 3), models:/armseg-unet/3`, for messages."""
        version = f" ({self.registered_model} version {self.version})" if self.version else ""
        uri = f", {self.model_uri}" if self.model_uri else ""
        return f"run {self.run_id}{version}{uri}"


def now() -> str:
    """The time a record is written, ISO 8601 in UTC."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_sidecar(folder: Path, record: ModelRecord) -> None:
    """Write `folder/armseg_model.json` atomically."""
    write_bytes_atomic(Path(folder) / SIDECAR, record.to_json().encode("utf-8"))


def read_sidecar(folder: Path) -> ModelRecord | None:
    """The record of `folder`, or None when it has none; a damaged one is an error naming it."""
    path = Path(folder) / SIDECAR
    if not path.is_file():
        return None
    try:
        return ModelRecord.from_json(path.read_text(encoding="utf-8"))
    except (ValueError, TypeError) as error:
        raise ArmsegError(f"{path}: not a readable model record ({error}); delete it or predict "
                          "again with --overwrite") from error
