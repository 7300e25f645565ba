"""Every armseg step is one MLflow run that ends FINISHED, FAILED or KILLED, never RUNNING."""

from __future__ import annotations

import functools
import numbers
import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import RunStatus
from mlflow.environment_variables import (
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR,
    MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
    MLFLOW_HTTP_REQUEST_MAX_RETRIES,
    MLFLOW_HTTP_REQUEST_TIMEOUT,
)

from armseg import __version__
from armseg.errors import ArmsegError
from armseg.signals import interrupt_for, interrupts_deferred
from armseg.tracking.contract import COMMIT_TAG, DEFAULT_EXPERIMENT, ERROR_TAG, STAGE_TAG, VERSION_TAG

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
# MLflow refuses longer parameter values; long lists are cut with a marker rather than failing.
_PARAM_LIMIT = 6000
# Where a run's parameters are written canonically when `mlflow run` logged some differently.
CANONICAL_PARAMS_ARTIFACT = "canonical_params.json"


def configure_tracking(experiment: str | None = None) -> str:
    """Use MLFLOW_TRACKING_URI when set (server, `mlflow run`), else the embedded SQLite store.

    Runs go to `experiment`, else MLFLOW_EXPERIMENT_NAME, else `armseg`; under `mlflow run`
    the run it created already belongs to the experiment it chose.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    # MLflow draws a progress bar on stderr for every artifact download (each model load): noise
    # around armseg's own lines, and in front of its one-line errors. A user's setting wins.
    os.environ.setdefault(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name, "false")
    mlflow.set_tracking_uri(uri)
    if uri.startswith(("http://", "https://")):
        check_server(uri)
    if not os.environ.get("MLFLOW_RUN_ID"):
        use_experiment(experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT)
    return uri


# MLflow's own HTTP settings for the first request to a server: by default it retries for minutes
# (7 retries, growing back-off, 120 s timeout) before saying anything. A user's own values win.
SERVER_CHECK_SETTINGS = {MLFLOW_HTTP_REQUEST_MAX_RETRIES.name: "1", MLFLOW_HTTP_REQUEST_TIMEOUT.name: "5",
                         MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.name: "1"}


def check_server(uri: str) -> None:
    """Fail within seconds, in one line naming the URI, when the tracking server does not answer."""
    settings = {name: value for name, value in SERVER_CHECK_SETTINGS.items() if name not in os.environ}
    os.environ.update(settings)
    try:
        mlflow.MlflowClient().search_experiments(max_results=1)
    except Exception as error:  # connection refused, timeout, HTTP errors: MLflow wraps them all
        raise ArmsegError(f"the MLflow tracking server at {uri} does not answer ({_why_unanswered(error)}); "
                          "start it or point MLFLOW_TRACKING_URI elsewhere") from error
    finally:
        for name in settings:
            os.environ.pop(name, None)


def _why_unanswered(error: Exception) -> str:
    """`[Errno 111] Connection refused`, `Read timed out`: the cause inside MLflow's long message."""
    text = " ".join(str(error).split())
    found = re.search(r"\[Errno -?\d+\] [^'\")]+|Read timed out|timed out|HTTP \d{3}[^;]*", text)
    return found.group(0).strip(" .") if found else text[:200]


def use_experiment(name: str) -> str:
    """Make `name` the active experiment, creating it quietly the first time; returns its id."""
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None and found.lifecycle_stage != "active":
        raise ArmsegError(f"--experiment {name}: that experiment is deleted in {mlflow.get_tracking_uri()}; "
                          "restore it (mlflow experiments restore) or choose another name")
    experiment_id = found.experiment_id if found is not None else _create_experiment(client, name)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def _create_experiment(client: mlflow.MlflowClient, name: str) -> str:
    """Create it; several workers starting at once may race, and the loser uses the winner's."""
    from mlflow.exceptions import MlflowException

    try:
        return client.create_experiment(name)
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


@functools.cache
def provenance_tags() -> dict[str, str]:
    """armseg's version and, when it runs from a git checkout, the commit."""
    tags = {VERSION_TAG: __version__}
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / ".git").exists():
        try:
            commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True,
                                    text=True, timeout=5, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            commit = ""
        if commit:
            tags[COMMIT_TAG] = commit
    return tags


def canonical_value(value: Any) -> str:
    """One text per value, however it was typed: `2e-3`, `0.002` and `0.0020` are all `0.002`.

    Numbers use Python's shortest round-trip form (floats that are whole stay floats: `100.0`),
    lists are space-joined, None is 'None'. Strings are logged as given: a string that looks
    like a number is the stage's business to type before logging.
    """
    if isinstance(value, (list, tuple)):
        text = " ".join(canonical_value(v) for v in value)
    elif isinstance(value, bool) or value is None:
        text = str(value)
    elif isinstance(value, numbers.Integral):
        text = str(int(value))
    elif isinstance(value, numbers.Real):
        text = repr(float(value))
    else:
        text = str(value)
    return text if len(text) <= _PARAM_LIMIT else text[: _PARAM_LIMIT - 3] + "..."


def log_params_flat(params: Mapping[str, Any]) -> None:
    """Log parameters under their canonical names, each value in its canonical text.

    `mlflow run` logs the `-P` values it was given verbatim (shell-quoted, `base-filters` or
    `base_filters`, `2e-3`) before armseg starts, and MLflow never lets a logged value change.
    armseg then still logs every parameter under its own (underscore) name; where MLflow
    already holds that name with another text for the value, the canonical texts of all the
    run's parameters go to the artifact `canonical_params.json` instead.
    """
    run = mlflow.active_run()
    logged = mlflow.MlflowClient().get_run(run.info.run_id).data.params if run else {}
    canonical = {key: canonical_value(value) for key, value in params.items()}
    fresh = {key: text for key, text in canonical.items() if key not in logged}
    if fresh:
        mlflow.log_params(fresh)
    if any(logged[key] != text for key, text in canonical.items() if key in logged):
        mlflow.log_dict(canonical, CANONICAL_PARAMS_ARTIFACT)


@contextmanager
def stage_run(
    stage: str,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    run_name: str | None = None,
    nested: bool | None = None,
    announce: bool = True,
    run_id: str | None = None,
    killed_on: tuple[type[BaseException], ...] = (),
) -> Iterator[mlflow.ActiveRun]:
    """Open a run tagged `armseg.stage`, log params, and always close it with a true status.

    Inside another active run (the demo, a tune parent) the run nests; started by
    `mlflow run`, MLflow resumes the run it created (MLFLOW_RUN_ID). A user mistake or crash
    ends it FAILED with the sentence as the `armseg.error` tag; Ctrl-C ends it KILLED, and so do
    the `killed_on` exceptions (a run stopped on purpose, e.g. a pruned Optuna trial). `run_id`
    reopens an existing run (resuming it).
    """
    if nested is None:
        nested = mlflow.active_run() is not None
    run = mlflow.start_run(run_id=run_id, run_name=run_name, nested=nested)
    try:
        mlflow.set_tags({STAGE_TAG: stage, **provenance_tags(), **(tags or {})})
        log_params_flat(params or {})
        if announce:
            print(f"[armseg {stage}] MLflow run {run.info.run_id} "
                  f"(experiment {run.info.experiment_id}) at {mlflow.get_tracking_uri()}")
        yield run
    except KeyboardInterrupt as error:
        _close(run, RunStatus.KILLED, str(error) or "interrupted")
        raise
    except killed_on as error:
        _close(run, RunStatus.KILLED, _one_line(error))
        raise
    except BaseException as error:
        _close(run, RunStatus.FAILED, _one_line(error))
        raise
    else:
        _close(run, RunStatus.FINISHED)


def _close(run: mlflow.ActiveRun, status: int, message: str | None = None) -> None:
    """Write the run's final status with interrupts held back, so none can leave it RUNNING.

    Metrics logged asynchronously are flushed first. An interrupt that arrives before a run that
    was about to finish has its status is raised afterwards and makes the run KILLED; one that
    arrives while a failing or killed run closes is dropped (an exception is already on its way).
    """
    with interrupts_deferred() as pending:
        try:
            mlflow.flush_async_logging()
        except Exception:  # the store may be what failed; the status must still be written
            pass
        interrupted = bool(pending) and status == RunStatus.FINISHED
        if interrupted:
            status, message = RunStatus.KILLED, str(interrupt_for(pending[0])) or "interrupted"
        if message is None:
            mlflow.end_run(RunStatus.to_string(status))
        else:
            _end(run, status, message)
    if interrupted:
        raise interrupt_for(pending[0])


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    message = text[0] if text else type(error).__name__
    return message if isinstance(error, ArmsegError) else f"{type(error).__name__}: {message}"


def _end(run: mlflow.ActiveRun, status: int, message: str) -> None:
    """End `run` (and anything still open inside it) with `status`, recording why."""
    client = mlflow.MlflowClient()
    while (active := mlflow.active_run()) is not None and active.info.run_id != run.info.run_id:
        mlflow.end_run(RunStatus.to_string(status))
    try:
        client.set_tag(run.info.run_id, ERROR_TAG, message[:5000])
    finally:
        mlflow.end_run(RunStatus.to_string(status))


def mark_env_run_failed(message: str, stage: str | None = None) -> None:
    """Under `mlflow run`, an error before any run opened must still fail the run it made."""
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return
    client = mlflow.MlflowClient()
    try:
        run = client.get_run(run_id)
    except Exception:  # the store may be what failed; the one-line error is already printed
        return
    if run.info.status == RunStatus.to_string(RunStatus.RUNNING):
        if stage and STAGE_TAG not in run.data.tags:
            client.set_tag(run_id, STAGE_TAG, stage)
        client.set_tag(run_id, ERROR_TAG, message[:5000])
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
