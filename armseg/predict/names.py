"""How `--model` values are spelled and which predictions folder each form writes to (SPEC 2).

Import-free, so `armseg predict --help` needs no MLflow.
"""

from __future__ import annotations

FORMS = ("models:/<name>@<alias>", "models:/<name>/<version>", "runs:/<run id>/model", "a run id",
         "a training group name")


def run_folder(run_id: str) -> str:
    """`run-1a2b3c4d`: the predictions folder of a run's logged model."""
    return f"run-{run_id[:8]}"


def registry_folder(name: str, version: str | int) -> str:
    """`armseg-unet-v3`: the predictions folder of a registered version."""
    return f"{name}-v{version}"
