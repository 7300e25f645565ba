"""What `--model` means: a registry URI, a run, or a group's newest finished train run.

Every form resolves to an MLflow model URI to load and to the name of the predictions
folder it writes (SPEC 2), so `group_1_1`, `armseg-unet-v3` and `run-1a2b3c4d` never collide
and re-running with an alias writes where the version it pointed at wrote before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import mlflow
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from armseg.errors import ArmsegError
from armseg.predict.names import FORMS, registry_folder, run_folder
from armseg.tracking.contract import GROUP_TAG, MODEL_ARTIFACT, STAGE_TAG

_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/]+)|@(?P<alias>[^/]+))$")
_RUN_URI = re.compile(r"^runs:/(?P<run_id>[^/]+)/(?P<path>.+)$")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class ResolvedModel:
    """A `--model` value made concrete: what to load, and the folder its predictions go to."""

    spec: str
    uri: str
    folder: str


def resolve_model(spec: str) -> ResolvedModel:
    """Resolve any of the accepted forms; an unknown name, alias, version or run is one sentence."""
    spec = spec.strip()
    if spec.startswith("models:/"):
        return _resolve_registry(spec)
    if spec.startswith("runs:/"):
        match = _RUN_URI.match(spec)
        if match is None:
            raise ArmsegError(f"--model {spec}: expected runs:/<run id>/{MODEL_ARTIFACT}")
        run = _get_run(match["run_id"], spec)
        return ResolvedModel(spec, spec, run_folder(run.info.run_id))
    if _RUN_ID.match(spec) and _run_exists(spec):
        return ResolvedModel(spec, f"runs:/{spec}/{MODEL_ARTIFACT}", run_folder(spec))
    return _resolve_group(spec)


def predictions_folder_name(spec: str) -> str:
    """The predictions folder name a `--model`/`--models` value stands for (no model is loaded).

    Registry and run URIs are resolved in the tracking store; anything else is taken as a
    folder name already (a group, `armseg-unet-v3`, `registration-trial1`).
    """
    if spec.startswith(("models:/", "runs:/")):
        return resolve_model(spec).folder
    return spec


def _resolve_registry(spec: str) -> ResolvedModel:
    match = _REGISTRY_URI.match(spec)
    if match is None:
        raise ArmsegError(f"--model {spec}: expected models:/<name>@<alias> or models:/<name>/<version>")
    client = mlflow.MlflowClient()
    name = match["name"]
    registered = _get_registered_model(client, name, spec)
    if match["alias"] is not None:
        alias = match["alias"]
        version = registered.aliases.get(alias)
        if version is None:
            known = ", ".join(sorted(registered.aliases)) or "none"
            raise ArmsegError(f"--model {spec}: model '{name}' has no alias '{alias}' (aliases: {known})")
    else:
        version = _registry_version(client, name, match["version"], spec)
    return ResolvedModel(spec, f"models:/{name}/{version}", registry_folder(name, version))


def _get_registered_model(client: mlflow.MlflowClient, name: str, spec: str):
    try:
        return client.get_registered_model(name)
    except MlflowException as error:
        known = ", ".join(sorted(m.name for m in client.search_registered_models())) or "none"
        raise ArmsegError(f"--model {spec}: no registered model '{name}' in the tracking store "
                          f"(registered models: {known})") from error


def _registry_version(client: mlflow.MlflowClient, name: str, version: str, spec: str) -> str:
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    if version.lower() == "latest" and versions:
        return str(versions[-1])
    if version.isdigit() and int(version) in versions:
        return str(int(version))
    known = ", ".join(str(v) for v in versions) or "none"
    raise ArmsegError(f"--model {spec}: model '{name}' has no version {version} (versions: {known})")


def _get_run(run_id: str, spec: str) -> Run:
    try:
        return mlflow.MlflowClient().get_run(run_id)
    except MlflowException as error:
        raise ArmsegError(f"--model {spec}: no run {run_id} in the tracking store "
                          f"{mlflow.get_tracking_uri()}") from error


def _run_exists(run_id: str) -> bool:
    try:
        mlflow.MlflowClient().get_run(run_id)
    except MlflowException:
        return False
    return True


def _resolve_group(name: str) -> ResolvedModel:
    """The group's newest FINISHED train run that logged a model (a crashed or pruned run is skipped)."""
    runs = mlflow.search_runs(
        search_all_experiments=True, output_format="list", order_by=["attributes.start_time DESC"],
        filter_string=(f"tags.`{STAGE_TAG}` = 'train' and tags.`{GROUP_TAG}` = '{_quote(name)}' "
                       "and attributes.status = 'FINISHED'"),
    )
    for run in runs:
        if run.outputs is not None and run.outputs.model_outputs:
            return ResolvedModel(name, f"runs:/{run.info.run_id}/{MODEL_ARTIFACT}", name)
    known = ", ".join(trained_groups()) or "none"
    raise ArmsegError(f"--model {name}: not a model URI, run id or group with a finished train run "
                      f"(groups trained: {known}; other forms: {', '.join(FORMS[:3])})")


def trained_groups() -> list[str]:
    """Groups that have at least one finished train run, for error messages."""
    runs = mlflow.search_runs(
        search_all_experiments=True, output_format="list",
        filter_string=f"tags.`{STAGE_TAG}` = 'train' and attributes.status = 'FINISHED'",
    )
    return sorted({run.data.tags[GROUP_TAG] for run in runs if GROUP_TAG in run.data.tags})


def _quote(value: str) -> str:
    return value.replace("'", "\\'")
