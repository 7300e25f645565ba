"""Optuna study plumbing shared by every worker: storage, the one parent run, the trial budget.

Several `armseg tune` processes (one machine or many) share a study through an Optuna RDB
storage. Exactly one of them creates the study (Optuna refuses a duplicate), and that one
creates the parent MLflow run and records its id in the study's user attributes; the others
wait for it. `n_trials` is the study's total: a trial is run only while fewer than that many
exist, and Optuna's atomic trial numbers settle the race between workers asking at once.
"""

from __future__ import annotations

import time
from typing import Any

import optuna
from optuna.storages import RDBStorage

from armseg.errors import ArmsegError

PARENT_RUN_ATTR = "mlflow_parent_run_id"
OVER_BUDGET_ATTR = "armseg.over_budget"
DEFAULT_STORAGE = "sqlite:///optuna.db"
PRUNERS = ("median", "hyperband", "none")


def open_storage(url: str, attempts: int = 5) -> RDBStorage:
    """Optuna's own RDB storage (SQLite, PostgreSQL, MySQL); errors name the URL.

    Workers started together on an empty database all try to create Optuna's tables; the
    losers of that race fail on duplicate types/tables and simply open the storage again.
    """
    from sqlalchemy.exc import DBAPIError

    for attempt in range(attempts):
        try:
            return RDBStorage(url)
        except DBAPIError as error:
            if attempt + 1 < attempts:
                time.sleep(1.0 + attempt)
                continue
            raise _storage_error(url, error) from error
        except Exception as error:  # a malformed URL, a missing driver: no point in trying again
            raise _storage_error(url, error) from error
    raise AssertionError("unreachable")


def _storage_error(url: str, error: Exception) -> ArmsegError:
    text = str(error).strip().splitlines()
    return ArmsegError(f"--storage {url}: cannot open the Optuna storage "
                       f"({text[0] if text else type(error).__name__})")


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ArmsegError(f"--pruner: '{name}' is not one of {', '.join(PRUNERS)}")


def create_or_load(storage: RDBStorage, name: str, pruner: optuna.pruners.BasePruner,
                   seed: int | None) -> tuple[optuna.Study, bool]:
    """(study, created_here): the creator is the worker that owns the parent run."""
    sampler = optuna.samplers.TPESampler(seed=seed)
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize",
                                    sampler=sampler, pruner=pruner)
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner)
        if study.direction != optuna.study.StudyDirection.MAXIMIZE:
            raise ArmsegError(f"--study {name}: exists but does not maximise val_mean_iou") from None
        return study, False


def wait_for_parent(study: optuna.Study, timeout_s: float = 120.0) -> str:
    """The parent run id the creating worker records; a resumed study already has it."""
    deadline = time.monotonic() + timeout_s
    while (run_id := study.user_attrs.get(PARENT_RUN_ATTR)) is None:
        if time.monotonic() > deadline:
            raise ArmsegError(f"--study {study.study_name}: no parent MLflow run was recorded by "
                              "the worker that created it; is it still starting?")
        time.sleep(1.0)
        study = optuna.load_study(storage=study._storage, study_name=study.study_name)
    return str(run_id)


def trials_so_far(study: optuna.Study) -> int:
    """Trials that count against the budget: every trial but those refused as over budget."""
    return sum(1 for t in study.get_trials(deepcopy=False) if OVER_BUDGET_ATTR not in t.user_attrs)


def ask_within_budget(study: optuna.Study, n_trials: int,
                      fixed_distributions: dict[str, Any] | None = None) -> optuna.trial.Trial | None:
    """A new trial, or None when the study already has `n_trials`.

    Two workers can both see n-1 trials and ask; the later trial number loses, is told
    FAIL with an `over_budget` mark before anything runs, and is not counted.
    """
    if trials_so_far(study) >= n_trials:
        return None
    trial = study.ask(fixed_distributions)
    budget_index = sum(
        1 for t in study.get_trials(deepcopy=False)
        if t.number < trial.number and OVER_BUDGET_ATTR not in t.user_attrs
    )
    if budget_index >= n_trials:
        trial.set_user_attr(OVER_BUDGET_ATTR, True)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return None
    return trial
