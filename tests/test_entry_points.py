"""Every MLproject entry point, as MLflow builds its command, reaches the stage's own parser."""

from __future__ import annotations

import importlib
import os
import runpy
import shlex
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.projects import _project_spec

from armseg.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
# One parameter set per entry point, spelled as users write -P (both spellings of a flag appear).
PARAMETERS = {
    "synth": {"out": "/tmp/x", "subjects": "SubA SubB", "size": "48 64", "slices": 4},
    "augment": {"group": "g", "degrees": "-10 10", "data_root": "/d", "slice-axis": 2},
    "train": {"group": "group_1_1", "base_filters": 8, "learning_rate": "1e-3", "label_map": '{"a": [0]}',
              "rand-zoom": "0.2", "labels": "openarm-all", "skip_empty": "false", "ckpt_n_epochs": 2,
              "batch_norm": "false"},
    "tune": {"group": "g", "n_trials": 3, "epochs": 2, "search_space": "{depth: [2, 3]}"},
    "predict": {"model": "group_1_1 models:/armseg-unet@champion", "subjects": "SubC", "experiment": "e",
                "tta": "true", "largest-component": "false", "fill_holes": "true"},
    "evaluate": {"subjects": "SubC", "metrics": "mean_iou humerus_iou", "labels": "openarm-all"},
    "register": {"subjects": "SubC", "atlas": "trial1_0_fs", "A": "1 0 0 0 1 0 0 0 1", "t": "0 0 1"},
    "measure": {"subjects": "SubC", "deformation_source": "ground_truth", "depth-axis": 0},
    "table": {"metric": "mean_iou", "out": "t.csv"},
    "demo": {"out": "d", "quick": "true"},
    "import": {"source": "/downloads/openarm", "subjects": "Sub1 Sub2", "dry_run": "true"},
    "group": {"name": "group_3_2", "scans": "SubA:trial1 SubB:trial11", "copy": "false"},
    "select-epoch": {"run": "0123456789abcdef0123456789abcdef", "epoch": 3},
}


def test_every_command_has_a_case() -> None:
    assert set(PARAMETERS) == set(COMMANDS)


@pytest.mark.parametrize("entry_point", sorted(PARAMETERS))
def test_entry_point_command_parses_into_the_stage(entry_point: str, monkeypatch: pytest.MonkeyPatch) -> None:
    project = _project_spec.load_project(str(ROOT))
    command = shlex.split(project.get_entry_point(entry_point).compute_command(PARAMETERS[entry_point], None))
    assert command[:2] == ["python", f"entry_points/{entry_point}.py"]
    module = importlib.import_module(COMMANDS[entry_point][0])
    seen = {}
    monkeypatch.setattr(module, "run", lambda args: seen.setdefault("args", args))
    monkeypatch.setattr(module, "prepare", lambda args: None, raising=False)  # no helper process
    monkeypatch.setattr(module, "check", lambda args: None, raising=False)  # parsing only, not values
    monkeypatch.setattr("armseg.cli.load_keras", lambda: None)
    monkeypatch.setattr("armseg.tracking.runs.configure_tracking", lambda experiment=None: "")
    monkeypatch.setattr(sys, "argv", command[1:])
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(ROOT / command[1]), run_name="__main__")
    assert done.value.code == 0
    args = vars(seen["args"])
    for key, value in PARAMETERS[entry_point].items():
        dest = key.replace("-", "_")
        given = args[dest]
        given = " ".join(given) if isinstance(given, list) else given
        assert given == str(value), (key, given)


def test_an_unknown_parameter_is_one_line_and_exit_2(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["entry_points/train.py", "--group", "g", "--base-filtres", "8"])
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(ROOT / "entry_points" / "train.py"), run_name="__main__")
    assert done.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error == "armseg train: error: unrecognized arguments: --base-filtres 8"


def test_mlproject_names_the_scripts() -> None:
    entry_points = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
    for name, spec in entry_points.items():
        script = spec["command"].split()[1]
        assert (ROOT / script).is_file(), name
    assert os.path.isdir(ROOT / "entry_points")
