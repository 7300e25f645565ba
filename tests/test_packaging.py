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


def test_gpu_extras_exist_and_the_readme_names_them() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(r.startswith("tensorflow[and-cuda]") for r in extras["gpu-tf"])
    assert any(r.startswith("jax[cuda") for r in extras["gpu-jax"])
    assert any(r.startswith("jax") for r in extras["dev"])  # CI tests the JAX backend on its CPU wheel
    readme = (ROOT / "README.md").read_text()
    assert "[gpu-tf]" in readme and "[gpu-jax]" in readme


def test_gpu_check_wheels_need_no_tensorflow_and_fit_armseg_ranges() -> None:
    """benchmarks/gpu_wheels.txt: what a GPU machine without a network gets besides its own Python."""
    from packaging.requirements import Requirement

    wanted = {Requirement(r).name.lower(): Requirement(r).specifier
              for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    wanted["mlflow-skinny"] = wanted["mlflow"]  # the client half of MLflow: same releases, same range
    text = (ROOT / "benchmarks" / "gpu_wheels.txt").read_text()
    lines = [line.split("#")[0].strip() for line in text.splitlines()]
    pins = dict(line.split("==") for line in lines if line)
    assert not {"tensorflow", "tensorflow-cpu", "simpleitk"} & {name.lower() for name in pins}
    assert {"keras", "mlflow-skinny", "nibabel", "sqlalchemy", "alembic"} <= set(pins)
    for name, version in pins.items():
        if name.lower() in wanted:
            assert version in wanted[name.lower()], f"{name}=={version} outside {wanted[name.lower()]}"


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
