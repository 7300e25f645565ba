"""Shared fixtures: a private MLflow store per test and a tiny phantom tree per session."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

TINY_SIZE = (48, 64)
TINY_SLICES = 12


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite tracking store + registry in tmp_path, and tmp_path as working dir."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    while mlflow.active_run():
        mlflow.end_run()
    yield uri
    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture(scope="session")
def tiny_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic OpenArm tree (3 subjects, tiny scans) shared read-only by tests."""
    from armseg.synth.tree import write_tree

    out = tmp_path_factory.mktemp("tree") / "data"
    write_tree(out, subjects=3, seed=0, size=TINY_SIZE, slices=TINY_SLICES)
    return out
