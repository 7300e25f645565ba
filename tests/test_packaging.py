"""The package is what SPEC 1 promises: same dependencies everywhere, a CLI, `python -m armseg`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_conda_env_lists_the_same_dependencies_as_pyproject() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())["dependencies"]
    pip_list = next(item["pip"] for item in conda if isinstance(item, dict))
    assert sorted(pyproject) == sorted(p for p in pip_list if p != "-e .")


def test_mlproject_has_every_command_and_lists_its_parameters() -> None:
    import argparse

    from armseg.cli import COMMANDS, build_parser

    text = (ROOT / "MLproject").read_text()
    entry_points = yaml.safe_load(text)["entry_points"]
    assert set(COMMANDS) <= set(entry_points)
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    listed = re.sub(r",\n#\s+", ", ", text)  # undo the wrapping of long lists
    for name in COMMANDS:
        assert entry_points[name]["command"] == f"armseg {name}"
        flags = [a.dest for a in subparsers.choices[name]._actions if a.option_strings and a.dest != "help"]
        assert f"#   {name}: {', '.join(flags)}" in listed, f"MLproject's parameter list of {name} is stale"


def test_mlflow_parameters_reach_the_cli_as_flags() -> None:
    """MLflow's own command builder, then armseg's parser: `-P key=value` means `--key value`."""
    import shlex

    from mlflow.projects import _project_spec

    from armseg.cli import build_parser, mlflow_spelling

    project = _project_spec.load_project(str(ROOT))
    command = project.get_entry_point("train").compute_command(
        {"group": "group_1_1", "base_filters": 8, "learning_rate": "1e-3", "label_map": '{"a": [0]}'}, None)
    args = build_parser("train").parse_args(mlflow_spelling(shlex.split(command)[1:]))
    assert (args.group, args.base_filters, args.learning_rate, args.label_map) == (
        "group_1_1", "8", "1e-3", '{"a": [0]}')
    command = project.get_entry_point("augment").compute_command(
        {"group": "g", "degrees": "-10 10", "data_root": "/d"}, None)
    args = build_parser("augment").parse_args(mlflow_spelling(shlex.split(command)[1:]))
    assert (args.degrees, args.data_root) == (["-10 10"], "/d")


def test_python_dash_m_and_unknown_command() -> None:
    result = subprocess.run([sys.executable, "-m", "armseg", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "synth" in result.stdout
    result = subprocess.run([sys.executable, "-m", "armseg", "nonsense"], capture_output=True, text=True)
    assert result.returncode == 2
