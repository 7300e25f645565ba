"""`tune()`: an Optuna study over train's hyperparameters, each trial a nested train run.

Every worker runs the same loop: ask Optuna for a trial within the study's budget, train it
with Optuna's Keras pruning callback on `val_mean_iou`, tell Optuna the best validation score
(or PRUNED/FAIL), repeat. All trial runs nest under the one parent run the study records;
when a worker finds nothing left to run, it points the registry alias `champion` at the best
trial's model and records it on the parent.

Trials log their model in their own run but do not register it: a study of 40 trials adds
one registry version (its best trial's, made when the study ends), not 40. A trial's number
is Optuna's, in the run name (`<study>-trial-3`), its `armseg.trial_number` tag and the output.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import keras
import mlflow
import optuna
from optuna_integration.keras import KerasPruningCallback

from armseg.errors import ArmsegError
from armseg.model.registry import register_run_model, versions_of_run
from armseg.tracking.contract import (
    BEST_METRIC,
    BEST_RUN_TAG,
    BEST_TRIAL_TAG,
    CHAMPION_ALIAS,
    CHAMPION_VERSION_TAG,
    GROUP_TAG,
    MONITOR,
    PRUNED_TAG,
    REGISTERED_MODEL,
    STUDY_TAG,
    TRIAL_NUMBER_TAG,
)
from armseg.tracking.runs import stage_run
from armseg.train.config import HYPERPARAMETERS, resolve_config
from armseg.train.run import train
from armseg.tune.space import Dimension, build_space, suggest_all
from armseg.tune.study import (
    DEFAULT_STORAGE,
    PARENT_RUN_ATTR,
    ask_within_budget,
    create_or_load,
    make_pruner,
    open_storage,
    wait_for_parent,
)

STAGE = "tune"
RUN_ID_ATTR = "mlflow_run_id"


@dataclass(frozen=True)
class TuneRequest:
    """What one `armseg tune` worker was asked to do."""

    group: str
    n_trials: int = 10
    storage: str = DEFAULT_STORAGE
    study: str | None = None
    timeout: float | None = None
    search_space: Mapping[str, Any] | None = None
    fixed: Mapping[str, Any] | None = None  # train parameters given directly: held fixed
    config: str | None = None
    section: str | None = None
    pruner: str | optuna.pruners.BasePruner = "median"  # a name, or any Optuna pruner
    sampler_seed: int | None = None

    @property
    def study_name(self) -> str:
        return self.study or f"armseg-{self.group}"


@dataclass(frozen=True)
class TuneResult:
    study_name: str
    parent_run_id: str
    trials_run_here: int
    best_value: float | None
    best_params: dict[str, Any]
    champion_version: str | None


def tune(request: TuneRequest) -> TuneResult:
    """Run trials until the study holds `n_trials` (or `timeout` passes), then crown the best.

    Everything the user gave is typed and checked before the study or any run exists: the
    request, the search space and the base configuration every trial starts from.
    """
    _check(request)
    fixed = {k: v for k, v in (request.fixed or {}).items() if v is not None}
    dimensions, space_fixed = build_space(request.search_space or {}, HYPERPARAMETERS, held_fixed=fixed)
    resolve_config({**space_fixed, **fixed, "group": request.group}, request.config, request.section)
    storage = open_storage(request.storage)
    pruner = request.pruner
    if not isinstance(pruner, optuna.pruners.BasePruner):
        pruner = make_pruner(pruner)
    study, created = create_or_load(storage, request.study_name, pruner, request.sampler_seed)
    parent_id = None if created else wait_for_parent(study)
    params = {"group": request.group, "n_trials": request.n_trials, "storage": _safe_url(request.storage),
              "study": request.study_name, "timeout": request.timeout, "pruner": str(request.pruner),
              "search_space": {n: _describe(d) for n, d in dimensions.items()},
              **{f"fixed.{k}": v for k, v in {**space_fixed, **fixed}.items()}}
    with stage_run(STAGE, params=params if created else None, run_id=parent_id,
                   tags={GROUP_TAG: request.group, STUDY_TAG: request.study_name},
                   run_name=f"tune-{request.group}" if created else None) as parent:
        if created:
            study.set_user_attr(PARENT_RUN_ATTR, parent.info.run_id)
        ran = _run_trials(study, request, dimensions, {**space_fixed, **fixed})
        return _crown(study, parent.info.run_id, ran)


def _check(request: TuneRequest) -> None:
    if request.n_trials < 1:
        raise ArmsegError(f"--n-trials must be at least 1, got {request.n_trials}")
    if request.timeout is not None and request.timeout <= 0:
        raise ArmsegError(f"--timeout must be positive seconds, got {request.timeout}")


def _run_trials(study: optuna.Study, request: TuneRequest, dimensions: Mapping[str, Dimension],
                fixed: Mapping[str, Any]) -> int:
    started, ran = time.monotonic(), 0
    while request.timeout is None or time.monotonic() - started < request.timeout:
        trial = ask_within_budget(study, request.n_trials)
        if trial is None:
            break
        print(f"[armseg tune] trial {trial.number} of study {study.study_name} "
              f"(the study runs {request.n_trials} in all)")
        _run_one(study, trial, request, dimensions, fixed)
        ran += 1
    return ran


def _run_one(study: optuna.Study, trial: optuna.Trial, request: TuneRequest,
             dimensions: Mapping[str, Dimension], fixed: Mapping[str, Any]) -> None:
    """Train one trial and tell Optuna how it ended; user mistakes stop the whole search."""
    values = {**suggest_all(trial, dimensions), **fixed, "group": request.group}
    try:
        config = resolve_config(values, request.config, request.section)
        result = train(config, extra_callbacks=[RecordTrial(trial), KerasPruningCallback(trial, MONITOR)],
                       register=False, run_name=trial_run_name(study.study_name, trial.number),
                       tags={STUDY_TAG: study.study_name, TRIAL_NUMBER_TAG: str(trial.number)})
    except optuna.TrialPruned:
        if RUN_ID_ATTR in trial.user_attrs:
            mlflow.MlflowClient().set_tag(trial.user_attrs[RUN_ID_ATTR], PRUNED_TAG, "true")
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        print(f"[armseg tune] trial {trial.number} pruned")
        return
    except ArmsegError:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    except Exception as error:  # one diverging network must not end a night's search
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        print(f"[armseg tune] trial {trial.number} failed: {type(error).__name__}: {error}")
        return
    value = result.best_val_mean_iou
    study.tell(trial, value if math.isfinite(value) else 0.0)
    print(f"[armseg tune] trial {trial.number}: best val_mean_iou {value:.4f} ({result.model_uri})")


def trial_run_name(study: str, number: int) -> str:
    """`<study>-trial-<n>`, n being Optuna's trial number."""
    return f"{study}-trial-{number}"


class RecordTrial(keras.callbacks.Callback):
    """Links the trial to its train run as soon as the run exists (the run is tagged with the
    trial's number when it opens)."""

    def __init__(self, trial: optuna.Trial) -> None:
        super().__init__()
        self.trial = trial

    def on_train_begin(self, logs: dict | None = None) -> None:
        run = mlflow.active_run()
        if run is not None:
            self.trial.set_user_attr(RUN_ID_ATTR, run.info.run_id)


def _crown(study: optuna.Study, parent_id: str, ran: int) -> TuneResult:
    """Register the best completed trial's model (once) and point `champion` at that version."""
    completed = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    if not completed:
        print(f"[armseg tune] study {study.study_name}: no completed trial yet; no champion")
        return TuneResult(study.study_name, parent_id, ran, None, {}, None)
    best = max(completed, key=lambda t: t.value)
    run_id = str(best.user_attrs.get(RUN_ID_ATTR, ""))
    client = mlflow.MlflowClient()
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    if running:  # the best may still change: the worker that finishes last registers it, once
        numbers = ", ".join(str(t.number) for t in running)
        print(f"[armseg tune] trials {numbers} still run on other workers; the last one to finish registers "
              f"the champion (best so far: trial {best.number}, val_mean_iou {best.value:.4f})")
        return TuneResult(study.study_name, parent_id, ran, float(best.value), dict(best.params), None)
    version = _register_once(run_id, study.study_name) if run_id else None
    if version is not None:
        client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION_ALIAS, version)
        client.set_tag(parent_id, CHAMPION_VERSION_TAG, version)
    client.set_tag(parent_id, BEST_TRIAL_TAG, str(best.number))
    client.set_tag(parent_id, BEST_RUN_TAG, run_id)
    client.log_metric(parent_id, BEST_METRIC, float(best.value))
    client.log_metric(parent_id, "n_trials_complete", len(completed))
    print(f"[armseg tune] best trial {best.number}: val_mean_iou {best.value:.4f} "
          + (f"-> models:/{REGISTERED_MODEL}@{CHAMPION_ALIAS} (version {version})" if version else ""))
    return TuneResult(study.study_name, parent_id, ran, float(best.value), dict(best.params), version)


def _register_once(run_id: str, study_name: str) -> str:
    """The best trial's registered version, registering it if no worker has yet.

    Workers sharing a study may crown at the same moment and each register the same run; every
    worker then keeps the lowest version of that run and removes the one it added, so the
    registry ends with exactly one version per best trial.
    """
    existing = versions_of_run(run_id)
    if existing:
        return str(existing[0].version)
    mine = register_run_model(run_id, made_by=STAGE, study=study_name)
    kept = versions_of_run(run_id)[0]
    if str(kept.version) != str(mine.version):
        mlflow.MlflowClient().delete_model_version(REGISTERED_MODEL, str(mine.version))
    return str(kept.version)


def _describe(dimension: Dimension) -> str:
    if dimension.choices is not None:
        return "|".join(str(c) for c in dimension.choices)
    return f"{dimension.low}..{dimension.high}" + (" log" if dimension.log else "")


def _safe_url(url: str) -> str:
    """Never log a database password into the tracking store."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL: Optuna will say so when opening it
        return url
