"""Keras backends: armseg trains and predicts under JAX, and a model from one backend predicts on the other.

The backend is fixed per process (Keras reads KERAS_BACKEND once), so the other backend runs as
`python -m armseg` in a subprocess, on the same private store: this process uses the backend the
suite runs under (TensorFlow by default), the subprocess the other one (JAX by default).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import mlflow
import nibabel as nib
import numpy as np
import pytest

from armseg.cli import main

HERE = keras.backend.backend()
OTHER = "jax" if HERE != "jax" else "tensorflow"
TINY = ["--depth", "2", "--base-filters", "4", "--batch-size", "8", "--epochs", "2", "--keep-percent", "100",
        "--precision", "float32", "--patience", "0", "--test-percent", "0",
        "--train-percent", "85"]


def armseg(backend: str, *arguments: str, cwd: Path) -> str:
    """`python -m armseg ...` under `backend`, on this test's store; its output when it succeeds."""
    env = {**os.environ, "KERAS_BACKEND": backend, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri(),
           "ARMSEG_DEVICES": "default"}
    done = subprocess.run([sys.executable, "-m", "armseg", *arguments], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, f"{backend} {arguments}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def predictions(root: Path) -> dict[str, np.ndarray]:
    return {str(path.relative_to(root)): np.asarray(nib.load(path).dataobj)
            for path in sorted(root.rglob("*_pred_seg.nii"))}


def train_run(group: str) -> mlflow.entities.Run:
    query = f"tags.`armseg.stage` = 'train' and tags.`armseg.group` = '{group}'"
    [run] = mlflow.search_runs(search_all_experiments=True, output_format="list", filter_string=query)
    return run


@pytest.mark.slow
def test_other_backend_trains_and_predicts_and_its_model_predicts_here(
        tracking: str, tiny_tree: Path, tmp_path: Path) -> None:
    armseg(OTHER, "train", "--data-root", str(tiny_tree), "--group", "group_1_1", *TINY, cwd=tmp_path)
    run = train_run("group_1_1")
    assert run.info.status == "FINISHED" and "val_mean_iou" in run.data.metrics
    assert run.data.tags["armseg.backend"] == OTHER and run.data.tags["armseg.replicas"] == "1"
    assert run.data.tags["armseg.devices"] == "cpu:0" and run.data.params["precision_used"] == "float32"

    there, here = (shutil.copytree(tiny_tree, tmp_path / name) for name in ("there", "here"))
    arguments = ["predict", "--model", "models:/armseg-unet/1", "--subjects", "SubC"]
    armseg(OTHER, *arguments, "--data-root", str(there), cwd=tmp_path)
    assert main([*arguments, "--data-root", str(here)]) == 0  # the same registered model, this backend
    theirs, ours = predictions(there), predictions(here)
    assert theirs and theirs.keys() == ours.keys()
    for name, classes in theirs.items():  # same weights, same float32 arithmetic up to rounding
        assert np.mean(classes == ours[name]) > 0.999, name


@pytest.mark.slow
def test_model_trained_here_predicts_on_the_other_backend(tracking: str, tiny_tree: Path,
                                                          tmp_path: Path) -> None:
    assert main(["train", "--data-root", str(tiny_tree), "--group", "group_1_2", *TINY]) == 0
    run = train_run("group_1_2")
    assert run.data.tags["armseg.backend"] == HERE
    root = shutil.copytree(tiny_tree, tmp_path / "data")
    output = armseg(OTHER, "predict", "--model", f"runs:/{run.info.run_id}/model", "--subjects", "SubB",
                    "--data-root", str(root), cwd=tmp_path)
    assert "predictions in" in output and predictions(root)
