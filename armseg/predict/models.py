"""What `--model` means: a registry URI, a run, or a group's newest standalone train run.

Every form resolves to an MLflow model URI to load, the run that trained it, its registered
version (if any) and the name of the predictions folder it writes (SPEC 2), so `group_1_1`,
`armseg-unet-v3` and `run-1a2b3c4d` never collide and re-running with an alias writes where
the version it pointed at wrote before.

A group name means the newest FINISHED `train` run of that group on the same data root that
is not a tune trial: a trial or a model trained on other scans is reached only through the
`champion` alias or its explicit run or version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from armseg.errors import ArmsegError
from armseg.io.tree import data_root_key
from armseg.predict.names import FORMS, registry_folder, run_folder
from armseg.tracking.contract import (
    DATA_ROOT_TAG,
    GROUP_TAG,
    MODEL_ARTIFACT,
    REGISTERED_MODEL,
    STAGE_TAG,
    STUDY_TAG,
    TRIAL_NUMBER_TAG,
)

_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/]+)|@(?P<alias>[^/]+))$")
_RUN_URI = re.compile(r"^runs:/(?P<run_id>[^/]+)/(?P<path>.+)$")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class ResolvedModel:
    """A `--model` value made concrete: what to load, who trained it, where its predictions go."""

    spec: str
    uri: str
    folder: str
    run_id: str | None = None
    registered_model: str | None = None
    version: str | None = None

    def describe(self) -> str:
        """`run 1a2b... (armseg-unet version 3)`: how errors and messages name the model."""
        version = f" ({self.registered_model} version {self.version})" if self.version else ""
        return f"run {self.run_id}{version}"


def resolve_model(spec: str, data_root: Path | str | None = None) -> ResolvedModel:
    """Resolve any of the accepted forms; an unknown name, alias, version or run is one sentence.

    A group name is looked up among the train runs of `data_root` (default `data`).
    """
    spec = spec.strip()
    if spec.startswith("models:/"):
        return _resolve_registry(spec)
    if spec.startswith("runs:/"):
        match = _RUN_URI.match(spec)
        if match is None:
            raise ArmsegError(f"--model {spec}: expected runs:/<run id>/{MODEL_ARTIFACT}")
        run = _get_run(match["run_id"], spec)
        return _of_run(spec, spec, run_folder(run.info.run_id), run.info.run_id)
    if _RUN_ID.match(spec) and _run_exists(spec):
        return _of_run(spec, f"runs:/{spec}/{MODEL_ARTIFACT}", run_folder(spec), spec)
    return _resolve_group(spec, data_root_key(data_root if data_root is not None else "data"))


def _of_run(spec: str, uri: str, folder: str, run_id: str) -> ResolvedModel:
    """A run's model, with the newest registered version made from it, if any."""
    versions = mlflow.MlflowClient().search_model_versions(f"run_id = '{run_id}'")
    newest = max(versions, key=lambda v: int(v.version), default=None)
    return ResolvedModel(spec, uri, folder, run_id, newest.name if newest else None,
                         str(newest.version) if newest else None)


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
    run_id = client.get_model_version(name, version).run_id
    return ResolvedModel(spec, f"models:/{name}/{version}", registry_folder(name, version), run_id, name,
                         str(version))


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


def _resolve_group(name: str, root: str) -> ResolvedModel:
    """The newest FINISHED standalone train run of group `name` on data root `root` that logged a
    model; a crashed or pruned run, a tune trial and a run on other scans are passed over."""
    runs = [run for run in _finished_train_runs(f"tags.`{GROUP_TAG}` = '{_quote(name)}'")
            if not _is_trial(run) and run.outputs is not None and run.outputs.model_outputs]
    here = [run for run in runs if run.data.tags.get(DATA_ROOT_TAG) == root]
    if here:
        run = here[0]
        model = _of_run(name, f"runs:/{run.info.run_id}/{MODEL_ARTIFACT}", name, run.info.run_id)
        print(f"[armseg predict] {name} = {model.describe()}, the newest finished train run of "
              f"{name} on {root}")
        return model
    if runs:
        elsewhere = sorted({run.data.tags.get(DATA_ROOT_TAG, "an unknown data root") for run in runs})
        raise ArmsegError(f"--model {name}: no finished train run of {name} on data root {root} (it was "
                          f"trained on {', '.join(elsewhere)}); give --data-root, a run id or "
                          f"models:/{REGISTERED_MODEL}/<version>")
    known = ", ".join(trained_groups(root)) or "none"
    raise ArmsegError(f"--model {name}: not a model URI, run id or group with a finished train run on "
                      f"{root} (groups trained there: {known}; tune trials: models:/{REGISTERED_MODEL}@"
                      f"champion or their run id; other forms: {', '.join(FORMS[:3])})")


def _finished_train_runs(extra_filter: str | None = None) -> list[Run]:
    where = f"tags.`{STAGE_TAG}` = 'train' and attributes.status = 'FINISHED'"
    return mlflow.search_runs(search_all_experiments=True, output_format="list",
                              order_by=["attributes.start_time DESC"],
                              filter_string=where + (f" and {extra_filter}" if extra_filter else ""))


def _is_trial(run: Run) -> bool:
    return STUDY_TAG in run.data.tags or TRIAL_NUMBER_TAG in run.data.tags


def trained_groups(root: str | None = None) -> list[str]:
    """Groups with a finished standalone train run (on `root`, when given), for error messages."""
    runs = [run for run in _finished_train_runs() if not _is_trial(run)
            and (root is None or run.data.tags.get(DATA_ROOT_TAG) == root)]
    return sorted({run.data.tags[GROUP_TAG] for run in runs if GROUP_TAG in run.data.tags})


def _quote(value: str) -> str:
    return value.replace("'", "\\'")
