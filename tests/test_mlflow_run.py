"""`mlflow run . -e <command>` logs into the run MLflow made: success, and a user mistake."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

ROOT = Path(__file__).resolve().parents[1]


def mlflow_run(tracking: str, entry_point: str, *params: str) -> subprocess.CompletedProcess:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("MLFLOW_RUN_ID", None)
    command = [str(bin_dir / "mlflow"), "run", str(ROOT), "-e", entry_point, "--env-manager", "local"]
    for param in params:
        command += ["-P", param]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_mlflow_run_logs_into_its_own_run_and_fails_it_on_a_mistake(tracking: str, tmp_path: Path) -> None:
    done = mlflow_run(tracking, "synth", f"out={tmp_path / 'data'}", "size=48 64", "slices=4", "subjects=2")
    assert done.returncode == 0, done.stderr[-3000:]
    failed = mlflow_run(tracking, "augment", f"data_root={tmp_path / 'data'}", "group=group_9")
    assert failed.returncode != 0
    assert "group 'group_9' not found" in failed.stderr and "groups there: group_1_1" in failed.stderr

    runs = {r.data.tags["armseg.stage"]: r for r in mlflow.search_runs(
        search_all_experiments=True, output_format="list")}
    assert len(runs) == 2  # one run each: the command logged into the run `mlflow run` created
    synth, augment = runs["synth"], runs["augment"]
    assert synth.info.status == "FINISHED" and synth.data.tags.get("mlflow.project.entryPoint") == "synth"
    assert synth.data.params["slices"] == "4" and synth.data.params["seed"] == "0"  # given, and resolved
    assert synth.data.metrics["scans"] == 12
    assert augment.info.status == "FAILED"
    assert "group 'group_9' not found" in augment.data.tags["armseg.error"]
    assert (tmp_path / "data" / "training_groups").is_dir()


@pytest.mark.slow
def test_an_unknown_p_key_fails_the_run_mlflow_opened_naming_it(tracking: str, tmp_path: Path) -> None:
    failed = mlflow_run(tracking, "synth", f"out={tmp_path / 'data'}", "slices=4", "slcies=4")
    assert failed.returncode != 0 and "unrecognized arguments: --slcies 4" in failed.stderr
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "FAILED"
    assert run.data.tags["armseg.stage"] == "synth"
    assert "--slcies" in run.data.tags["armseg.error"]
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
def test_p_spellings_are_one_parameter_in_one_canonical_form(tracking: str, tiny_tree: Path) -> None:
    done = mlflow_run(tracking, "train", f"data_root={tiny_tree}", "group=group_1_1", "epochs=1", "depth=2",
                      "base-filters=4", "learning_rate=2e-3", "keep_percent=100", "precision=float32",
                      "patience=0", "random_transforms=false")
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    params = run.data.params
    # MLflow logs each -P as written before armseg starts; armseg adds the canonical name...
    assert params["base-filters"] == "4" and params["base_filters"] == "4"
    # ...and, where MLflow already holds the name with another text, the canonical values go beside.
    assert params["learning_rate"] == "2e-3"
    canonical = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/canonical_params.json")
    assert canonical["learning_rate"] == "0.002" and canonical["base_filters"] == "4"
    assert canonical["keep_percent"] == "100.0" and canonical["epochs"] == "1"
