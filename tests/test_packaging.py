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


def _flags(command: str) -> list[str]:
    import argparse

    from armseg.cli import build_parser

    subparsers = next(a for a in build_parser(command)._actions if isinstance(a, argparse._SubParsersAction))
    return [a.dest for a in subparsers.choices[command]._actions if a.option_strings and a.dest != "help"]


def test_mlproject_has_every_command_and_lists_its_parameters() -> None:
    from armseg.cli import COMMANDS

    text = (ROOT / "MLproject").read_text()
    entry_points = yaml.safe_load(text)["entry_points"]
    assert set(COMMANDS) <= set(entry_points)
    listed = re.sub(r",\n#\s+", ", ", text)  # undo the wrapping of long lists
    train = _flags("train")
    for name in COMMANDS:
        assert entry_points[name]["command"] == f"python entry_points/{name}.py"
        assert (ROOT / "entry_points" / f"{name}.py").is_file()
        flags = _flags(name)
        if name == "tune":  # tune takes every train flag, listed once under train
            assert flags[:len(train)] == train
            expected = f"#   tune: train's parameters, and {', '.join(flags[len(train):])}"
        else:
            expected = f"#   {name}: {', '.join(flags)}"
        assert expected in listed, f"MLproject's parameter list of {name} is stale"


def test_python_dash_m_and_unknown_command() -> None:
    result = subprocess.run([sys.executable, "-m", "armseg", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "synth" in result.stdout
    result = subprocess.run([sys.executable, "-m", "armseg", "nonsense"], capture_output=True, text=True)
    assert result.returncode == 2
