"""Tune: nested runs under one parent, pruning, the champion alias, resuming, and two workers
sharing a PostgreSQL study and an MLflow server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import mlflow
import optuna
import pytest

from armseg.errors import ArmsegError
from armseg.tune.run import TuneRequest, tune
from armseg.tune.space import build_space, read_space_text

TINY = {"epochs": 2, "base_filters": 4, "depth": 2, "batch_size": 4, "keep_percent": 100,
        "train_percent": 60, "val_percent": 20, "test_percent": 20, "precision": "float32",
        "patience": 0}
SPACE = {"learning_rate": {"low": 1e-3, "high": 5e-3, "log": True}, "dropout": [0.0, 0.1],
         "weight_decay": None, "base_filters": None, "depth": None, "batch_size": None,
         "loss": None, "include_augmented": None}


def request(tree: Path, storage: str, **changes) -> TuneRequest:
    values = dict(group="group_1_1", n_trials=2, storage=storage, study="s", search_space=SPACE,
                  fixed={**TINY, "data_root": str(tree)}, sampler_seed=0)
    return TuneRequest(**{**values, **changes})


def registered() -> dict[str, str]:
    """Version -> the run it was registered from."""
    return {v.version: v.run_id for v in mlflow.MlflowClient().search_model_versions("name = 'armseg-unet'")}


def children(parent_id: str) -> list[mlflow.entities.Run]:
    return mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")


def test_space_defaults_overrides_and_errors() -> None:
    dims, fixed = build_space(read_space_text('{depth: [3, 4], dropout: 0.2, loss: null}'),
                              known=("depth", "dropout", "loss", "learning_rate", "weight_decay",
                                     "base_filters", "batch_size", "include_augmented"),
                              held_fixed={"batch_size": 8})
    assert dims["depth"].choices == (3, 4) and fixed == {"dropout": 0.2}
    assert "loss" not in dims and "batch_size" not in dims and dims["learning_rate"].log
    with pytest.raises(ArmsegError, match="unknown hyperparameter.*nonsense"):
        build_space({"nonsense": [1]}, known=("depth",))
    with pytest.raises(ArmsegError, match="'learning_rate' needs low <= high"):
        build_space({"learning_rate": {"low": 1.0, "high": 0.1}}, known=("learning_rate",))
    with pytest.raises(ArmsegError, match="not valid YAML"):
        read_space_text("{depth: [3,")


def test_trials_nest_under_one_parent_resume_and_crown_the_best(tiny_tree: Path, tracking: str,
                                                                 tmp_path: Path, capsys) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = tune(request(tiny_tree, storage, n_trials=1))
    assert len(registered()) == 1  # the best (only) trial's version
    result = tune(request(tiny_tree, storage, n_trials=2))  # same study: runs only the missing trial
    after_result = registered()
    again = tune(request(tiny_tree, storage, n_trials=2))
    assert registered() == after_result  # crowning the same best trial again adds no version
    assert (first.trials_run_here, result.trials_run_here, again.trials_run_here) == (1, 1, 0)
    assert first.parent_run_id == result.parent_run_id == again.parent_run_id

    runs = children(result.parent_run_id)
    assert len(runs) == 2 and all(r.data.tags["armseg.stage"] == "train" for r in runs)
    assert all(r.info.status == "FINISHED" and "val_mean_iou" in r.data.metrics for r in runs)
    assert sorted(r.data.tags["armseg.trial_number"] for r in runs) == ["0", "1"]
    # One number per trial: Optuna's, in the run's name and tag and in the output.
    assert all(r.info.run_name == f"s-trial-{r.data.tags['armseg.trial_number']}" for r in runs)
    assert all(r.data.tags["armseg.study"] == "s" and r.outputs.model_outputs for r in runs)
    printed = capsys.readouterr().out
    assert "trial 0 of study s" in printed and "trial 1 of study s" in printed and "trial 2" not in printed
    # Every trial logged its model; a version exists only for a trial that was the best when crowned.
    assert len(after_result) == len(set(after_result.values())) <= 2
    assert set(after_result.values()) <= {r.info.run_id for r in runs}
    parent = mlflow.get_run(result.parent_run_id)
    assert parent.data.tags["armseg.stage"] == "tune" and parent.info.status == "FINISHED"
    champion = mlflow.MlflowClient().get_model_version_by_alias("armseg-unet", "champion")
    assert str(champion.version) == result.champion_version == parent.data.tags["armseg.champion_version"]
    study = optuna.load_study(study_name="s", storage=storage)
    best_run = mlflow.get_run(study.best_trial.user_attrs["mlflow_run_id"])
    assert champion.run_id == best_run.info.run_id
    assert parent.data.tags["armseg.best_trial"] == str(study.best_trial.number)
    assert best_run.info.run_name == f"s-trial-{study.best_trial.number}"
    assert {k: champion.tags[k] for k in ("armseg.made_by", "armseg.study", "armseg.group")} == {
        "armseg.made_by": "tune", "armseg.study": "s", "armseg.group": "group_1_1"}
    assert "best trial of tune study s" in champion.description
    assert best_run.info.run_id in champion.description
    assert best_run.data.metrics["val_mean_iou"] <= study.best_value + 1e-9
    assert best_run.data.params["dropout"] == str(study.best_trial.params["dropout"])
    assert best_run.data.params["epochs"] == "2"  # a parameter given to tune is held fixed


def test_pruned_trials_end_killed_and_crown_nobody(tiny_tree: Path, tracking: str, tmp_path: Path) -> None:
    always = optuna.pruners.ThresholdPruner(lower=2.0)  # IoU never reaches 2: prune at the first epoch
    result = tune(request(tiny_tree, f"sqlite:///{tmp_path / 'optuna.db'}", pruner=always, n_trials=1))
    runs = children(result.parent_run_id)
    assert len(runs) == 1
    assert all(r.info.status == "KILLED" and r.data.tags.get("armseg.pruned") == "true" for r in runs)
    assert all(len(mlflow.MlflowClient().get_metric_history(r.info.run_id, "val_mean_iou")) == 1
               for r in runs)
    assert result.champion_version is None


def test_bad_storage_is_one_sentence(tiny_tree: Path, tracking: str) -> None:
    with pytest.raises(ArmsegError, match="--storage nonsense://x: cannot open"):
        tune(request(tiny_tree, "nonsense://x"))


# --- scale-out: PostgreSQL-backed MLflow server and Optuna study, two workers -------------------------

PG = "postgresql://postgres@127.0.0.1:5432"


def postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fresh_databases():
    """Two new PostgreSQL databases (MLflow's and Optuna's: both keep an alembic_version table)."""
    import sqlalchemy

    if not postgres_reachable():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432 (CI and the python-svc machines have one)")
    names = [f"armseg_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("mlflow", "optuna")]
    engine = sqlalchemy.create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        for name in names:
            connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    yield [f"{PG}/{name}" for name in names]
    with engine.connect() as connection:
        for name in names:
            connection.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    engine.dispose()


@pytest.fixture
def mlflow_server(fresh_databases, tmp_path: Path):
    port = free_port()
    bin_dir = Path(sys.executable).parent
    server = subprocess.Popen(
        [str(bin_dir / "mlflow"), "server", "--backend-store-uri", fresh_databases[0],
         "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"))
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if server.poll() is not None:
                pytest.fail("mlflow server exited: " + (tmp_path / "server.log").read_text()[-2000:])
            time.sleep(0.5)
    yield uri, fresh_databases[1]
    server.terminate()
    server.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_share_a_postgres_study_and_an_mlflow_server(tiny_tree: Path, mlflow_server,
                                                                  tmp_path: Path) -> None:
    uri, optuna_url = mlflow_server
    n_trials = 3
    armseg = str(Path(sys.executable).parent / "armseg")
    command = [armseg, "tune", "--data-root", str(tiny_tree), "--group", "group_1_1",
               "--n-trials", str(n_trials), "--storage", optuna_url, "--study", "shared",
               "--search-space", '{learning_rate: {low: 0.001, high: 0.005}, dropout: [0.0, 0.1], '
               'weight_decay: null, base_filters: null, depth: null, batch_size: null, loss: null, '
               'include_augmented: null}', "--pruner", "none"]
    for name, value in {**TINY, "epochs": 1}.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "CUDA_VISIBLE_DEVICES": ""}
    env.pop("MLFLOW_RUN_ID", None)
    workers = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n".join(o[-3000:] for o in outputs)

    study = optuna.load_study(study_name="shared", storage=optuna_url)
    counted = [t for t in study.trials if "armseg.over_budget" not in t.user_attrs]
    assert len(counted) == n_trials
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in counted)
    assert sorted(t.number for t in counted) == list(range(n_trials))
    run_ids = {t.user_attrs["mlflow_run_id"] for t in counted}
    assert len(run_ids) == n_trials  # none lost, none duplicated
    mlflow.set_tracking_uri(uri)
    try:
        parent_id = study.user_attrs["mlflow_parent_run_id"]
        runs = children(parent_id)
        assert {r.info.run_id for r in runs} == run_ids
        assert mlflow.get_run(parent_id).info.status == "FINISHED"
        champion = mlflow.MlflowClient().get_model_version_by_alias("armseg-unet", "champion")
        assert champion.run_id == study.best_trial.user_attrs["mlflow_run_id"]
        # Both workers crown at the end: still one version, of the best trial, not one per worker.
        assert list(registered().values()) == [champion.run_id]
    finally:
        mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
