"""Several devices: training mirrors the model over them (tf.distribute.MirroredStrategy).

No GPUs here, so the test splits the CPU into two logical devices in a fresh process (this must
happen before TensorFlow starts) and mirrors over those, exactly as over two GPUs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest

SCRIPT = textwrap.dedent("""
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from armseg.train.config import resolve_config
    from armseg.train.run import train
    train(resolve_config({"group": "group_1_1", "data_root": sys.argv[1], "epochs": 1, "depth": 2,
                          "base_filters": 4, "batch_size": 4, "keep_percent": 100,
                          "precision": "float32", "test_percent": 0, "val_percent": 25,
                          "train_percent": 75}))
""")


@pytest.mark.slow
def test_training_mirrors_over_two_devices(tiny_tree: Path, tracking: str, tmp_path: Path) -> None:
    env = {**os.environ, "ARMSEG_DEVICES": "/cpu:0,/cpu:1", "MLFLOW_TRACKING_URI": tracking}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_tree)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    [run] = mlflow.search_runs(output_format="list")
    assert run.info.status == "FINISHED" and run.data.tags["armseg.replicas"] == "2"
    assert "val_mean_iou" in run.data.metrics
    assert mlflow.MlflowClient().get_model_version("armseg-unet", "1").run_id == run.info.run_id


def test_one_device_keeps_the_default_strategy(monkeypatch: pytest.MonkeyPatch) -> None:
    from armseg.train.distribute import training_devices, training_strategy

    monkeypatch.setenv("ARMSEG_DEVICES", "default")
    assert training_devices() == [] and training_strategy().num_replicas_in_sync == 1
    monkeypatch.setenv("ARMSEG_DEVICES", "/gpu:0, /gpu:2")
    assert training_devices() == ["/gpu:0", "/gpu:2"]
