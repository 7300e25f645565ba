"""Shared fixtures: a private MLflow store per test and a tiny phantom tree per session."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import mlflow
import nibabel as nib
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

TINY_SIZE = (48, 64)
TINY_SLICES = 12


@pytest.fixture(scope="session")
def template_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised SQLite store, made once: creating one costs seconds, copying it milliseconds."""
    folder = tmp_path_factory.mktemp("mlflow_template")
    previous = Path.cwd()
    os.chdir(folder)  # the Default experiment records its artifact folder from here
    try:
        mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
    finally:
        os.chdir(previous)
    return folder / "mlflow.db"


@contextmanager
def private_store(template: Path, folder: Path) -> Iterator[str]:
    """A copy of the template store in `folder`, made the store (and working dir) of this process."""
    database = folder / "mlflow.db"
    shutil.copy(template, database)
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                           (str(folder / "mlruns" / "0"),))
    connection.close()
    uri = f"sqlite:///{database}"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.delenv("MLFLOW_RUN_ID", raising=False)
        # `armseg` commands choose their experiment (mlflow.set_experiment): forget it between stores.
        patch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
        patch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
        patch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        while mlflow.active_run():
            mlflow.end_run()
        yield uri
        while mlflow.active_run():
            mlflow.end_run()


@pytest.fixture
def tracking(tmp_path: Path, template_store: Path) -> Iterator[str]:
    """A fresh SQLite tracking store + registry in tmp_path, and tmp_path as working dir."""
    with private_store(template_store, tmp_path) as uri:
        yield uri


@pytest.fixture(scope="module")
def module_tracking(tmp_path_factory: pytest.TempPathFactory, template_store: Path) -> Iterator[str]:
    """Like `tracking`, but one store shared by the tests of a module: for stores that are slow
    to fill (logged models to resolve, evaluate runs to pivot) and then only read or added to."""
    with private_store(template_store, tmp_path_factory.mktemp("module_store")) as uri:
        yield uri


@pytest.fixture(scope="session")
def tiny_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic OpenArm tree (3 subjects, tiny scans) shared read-only by tests."""
    from armseg.synth.tree import write_tree

    out = tmp_path_factory.mktemp("tree") / "data"
    write_tree(out, subjects=3, seed=0, size=TINY_SIZE, slices=TINY_SLICES)
    return out


class TinyTraining(NamedTuple):
    """A tiny model trained and used: its train run, its predictions of SubC and one SubC scan."""

    run: mlflow.entities.Run
    predictions: list[Path]
    scan: np.ndarray


@pytest.fixture
def train_and_predict(tracking: str, tiny_tree: Path, tmp_path: Path) -> Callable[..., TinyTraining]:
    """Train `group_1_1` of a copy of the tiny tree for one epoch with `flags` added (registered as
    armseg-unet version 1), then predict SubC with it: what a train option must survive end to end."""
    def train_then_predict(*flags: str) -> TinyTraining:
        from armseg.cli import main

        root = shutil.copytree(tiny_tree, tmp_path / "data")
        assert main(["train", "--data-root", str(root), "--group", "group_1_1", "--epochs", "1",
                     "--depth", "2", "--base-filters", "4", "--precision", "float32", *flags]) == 0
        (run,) = mlflow.search_runs(output_format="list")
        assert main(["predict", "--data-root", str(root), "--model", "group_1_1 models:/armseg-unet/1",
                     "--subjects", "SubC", "--batch-size", "4"]) == 0
        scan = np.asarray(nib.load(next(root.rglob("SubC/**/*_volume.nii"))).dataobj)
        return TinyTraining(run, sorted(root.rglob("*_pred_seg.nii")), scan)

    return train_then_predict
