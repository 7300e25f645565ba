"""Finding runs and telling where things came from: `--version`, `--experiment`, provenance tags,
canonical parameter values and the predictions folder's model record."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pytest

from armseg import __version__
from armseg.cli import COMMANDS, build_parser, main
from armseg.errors import ArmsegError
from armseg.predict.sidecar import SIDECAR, ModelRecord, read_sidecar, write_sidecar
from armseg.tracking.runs import canonical_value

ROOT = Path(__file__).resolve().parents[1]


def test_version_flag(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"armseg {__version__}"


def test_every_command_takes_experiment() -> None:
    (commands,) = [action for action in build_parser()._actions if action.dest == "command"]
    assert set(commands.choices) == set(COMMANDS)
    for name, parser in commands.choices.items():
        assert "--experiment" in parser._option_string_actions, name


def synth(tmp_path: Path, *flags: str) -> None:
    assert main(["synth", "--out", str(tmp_path / "data"), "--subjects", "2", "--size", "32", "32",
                 "--slices", "2", "--montage", str(tmp_path / "montage.png"), *flags]) == 0


def experiment_of_runs() -> list[str]:
    client = mlflow.MlflowClient()
    return [client.get_experiment(run.info.experiment_id).name
            for run in mlflow.search_runs(search_all_experiments=True, output_format="list")]


def test_experiment_flag_then_environment_then_armseg(tracking: str, tmp_path: Path, monkeypatch) -> None:
    synth(tmp_path / "1", "--experiment", "mine")
    assert experiment_of_runs() == ["mine"]
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    synth(tmp_path / "2")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")
    synth(tmp_path / "3")
    assert sorted(experiment_of_runs()) == ["armseg", "from-env", "mine"]


def test_every_run_carries_version_and_commit(tracking: str, tmp_path: Path) -> None:
    synth(tmp_path)
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.data.tags["armseg.version"] == __version__
    assert run.info.run_name == "synth-seed0"
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if commit.returncode == 0:
        assert run.data.tags["armseg.git_commit"] == commit.stdout.strip()


@pytest.mark.parametrize(("value", "text"), [
    (2e-3, "0.002"), (0.0020, "0.002"), (np.float64(2e-3), "0.002"), (1e-6, "1e-06"), (100.0, "100.0"),
    (8, "8"), (np.int64(8), "8"), (True, "True"), (None, "None"), ([48, 64], "48 64"), ("2e-3", "2e-3"),
])
def test_canonical_values(value: object, text: str) -> None:
    assert canonical_value(value) == text


def test_model_record_round_trip_and_damage(tmp_path: Path) -> None:
    record = ModelRecord(model_uri="models:/armseg-unet/3", run_id="ab" * 16, registered_model="armseg-unet",
                         version="3", armseg_version=__version__, written_at="2025-01-01T00:00:00+00:00",
                         folder="armseg-unet-v3")
    assert read_sidecar(tmp_path) is None
    write_sidecar(tmp_path, record)
    assert read_sidecar(tmp_path) == record == ModelRecord.from_json(record.to_json())
    assert json.loads((tmp_path / SIDECAR).read_text())["version"] == "3"
    assert [p.name for p in tmp_path.iterdir()] == [SIDECAR]  # written atomically: no temporary left
    (tmp_path / SIDECAR).write_text("[1, 2")
    with pytest.raises(ArmsegError, match="armseg_model.json: not a readable model record"):
        read_sidecar(tmp_path)
