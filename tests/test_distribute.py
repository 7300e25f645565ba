"""Several devices: training splits each batch over them, with each backend's data parallelism.

No GPUs here, so each test splits the CPU into two devices in a fresh process (this must happen
before the backend starts) and trains over those, exactly as over two GPUs: TensorFlow as two
logical CPU devices under MirroredStrategy, JAX as two host devices
(`--xla_force_host_platform_device_count=2`) under `keras.distribution.DataParallel`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest

TRAIN = textwrap.dedent("""
    from armseg.train.config import resolve_config
    from armseg.train.run import train
    train(resolve_config({"group": "group_1_1", "data_root": sys.argv[1], "epochs": 1, "depth": 2,
                          "base_filters": 4, "batch_size": 4, "keep_percent": 100,
                          "precision": "float32", "test_percent": 0, "val_percent": 25,
                          "train_percent": 75}))
""")
TWO_TF_DEVICES = textwrap.dedent("""
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
""")
SETUPS = {
    "tensorflow": (TWO_TF_DEVICES, {"ARMSEG_DEVICES": "/cpu:0,/cpu:1"}),
    "jax": ("import sys\n", {"ARMSEG_DEVICES": "cpu:0,cpu:1",
                             "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}),
}


@pytest.mark.slow
@pytest.mark.parametrize("backend", sorted(SETUPS))
def test_training_splits_batches_over_two_devices(backend: str, tiny_tree: Path, tracking: str,
                                                  tmp_path: Path) -> None:
    setup, variables = SETUPS[backend]
    env = {**os.environ, **variables, "KERAS_BACKEND": backend, "MLFLOW_TRACKING_URI": tracking}
    done = subprocess.run([sys.executable, "-c", setup + TRAIN, str(tiny_tree)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    [run] = mlflow.search_runs(output_format="list")
    tags = run.data.tags
    assert run.info.status == "FINISHED" and tags["armseg.replicas"] == "2"
    assert tags["armseg.backend"] == backend and tags["armseg.devices"] == "cpu:0, cpu:1"
    assert "val_mean_iou" in run.data.metrics
    assert mlflow.MlflowClient().get_model_version("armseg-unet", "1").run_id == run.info.run_id


def test_one_device_keeps_the_default_placement(monkeypatch: pytest.MonkeyPatch) -> None:
    from armseg.train.distribute import training_devices, training_placement

    monkeypatch.setenv("ARMSEG_DEVICES", "default")
    placement = training_placement()
    assert training_devices() == [] and placement.replicas == 1 and not placement.parallel
    with placement.scope():
        pass
    monkeypatch.setenv("ARMSEG_DEVICES", "/gpu:0, /gpu:2")
    assert training_devices() == ["/gpu:0", "/gpu:2"]
