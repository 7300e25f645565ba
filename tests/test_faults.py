"""Faults and bad input, as a hostile user meets them: every case through the real CLI (issue 14).

Each case runs `python -m armseg` in a subprocess and checks the exit status, the one line on
stderr (no traceback, no TensorFlow or absl lines before it), the runs left in the store and
their status, the metric history and the files left behind. The signal cases send real
signals to a real training process. Where a signal must land at one exact moment (between an
epoch's checkpoint and its metrics, while a run is being closed), `sitecustomize.py` in a
folder put on the subprocess's PYTHONPATH holds the process at that moment until the test
has sent its signal; armseg itself has no test hooks.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import nibabel as nib
import numpy as np
import pytest

TRAIN_FLAGS = ["--depth", "2", "--base-filters", "4", "--precision", "float32", "--keep-percent", "100",
               "--random-transforms", "false", "--patience", "0", "--batch-size", "8",
               "--train-percent", "70", "--test-percent", "15"]  # a test split: test_* logged exactly once
EPOCH_METRICS = ("loss", "val_loss", "val_mean_iou", "val_iou_humerus", "val_iou_biceps", "epoch_seconds")

# Holds a process at one moment, chosen by environment variables, until the gate file exists.
SITECUSTOMIZE = textwrap.dedent('''
    import os, sys, time
    import mlflow

    def _hold(marker):
        print(marker, flush=True)
        gate = os.environ["ARMSEG_FAULT_GATE"]
        for _ in range(1200):
            if os.path.exists(gate):
                return
            time.sleep(0.05)

    _log_metrics = mlflow.log_metrics
    _flush = mlflow.flush_async_logging

    def log_metrics(metrics, *args, **kwargs):
        step = os.environ.get("ARMSEG_FAULT_HOLD_AT_STEP")
        if step and kwargs.get("step") == int(step) and "loss" in metrics:
            _hold("FAULT: held before the metrics of step " + step)
        return _log_metrics(metrics, *args, **kwargs)

    def flush_async_logging(*args, **kwargs):
        if os.environ.get("ARMSEG_FAULT_HOLD_AT_CLOSE") and sys._getframe(1).f_code.co_name == "_close":
            _hold("FAULT: held while the run closes")
        return _flush(*args, **kwargs)

    mlflow.log_metrics = log_metrics
    mlflow.flush_async_logging = flush_async_logging
''')


# ---------------------------------------------------------------- helpers

def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment (its tracking store) without the test's own TensorFlow quieting, so
    the CLI is seen silencing TensorFlow by itself."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra or {})}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    env.pop("MLFLOW_RUN_ID", None)
    return env


def _default_sigint() -> None:
    # A background job of a non-interactive shell starts with SIGINT ignored; a user's CLI does not.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def armseg(*args: str, env: dict[str, str] | None = None,
           timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "armseg", *args], env=child_env(env), capture_output=True,
                          text=True, timeout=timeout, preexec_fn=_default_sigint)


class Running:
    """A CLI process in the background whose output is collected line by line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None):
        self.process = subprocess.Popen([sys.executable, "-m", "armseg", *args], env=child_env(env),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        preexec_fn=_default_sigint)
        self.lines: list[str] = []
        self.errors: list[str] = []
        outputs = ((self.process.stdout, self.lines), (self.process.stderr, self.errors))
        self._readers = [threading.Thread(target=self._read, args=output, daemon=True) for output in outputs]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 240) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((line for line in self.lines if text in line), None)
            if found is not None:
                return found
            if self.process.poll() is not None and not any(r.is_alive() for r in self._readers[:1]):
                break
            time.sleep(0.05)
        self.process.kill()
        output = "\n".join(self.lines + self.errors)[-4000:]
        raise AssertionError(f"never printed {text!r}; output:\n{output}")

    def run_id(self) -> str:
        return self.wait_for("MLflow run ").split("MLflow run ")[1].split()[0]

    def finish(self, timeout: float = 240) -> int:
        code = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        return code


def one_line_error(stderr: str, command: str, *fragments: str) -> str:
    """The whole of stderr is one line `armseg <command>: error: ...` holding every fragment."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert len(lines) == 1, stderr[-3000:]
    assert lines[0].startswith(f"armseg {command}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def all_runs() -> dict[str, mlflow.entities.Run]:
    found = mlflow.search_runs(search_all_experiments=True, output_format="list")
    return {run.info.run_id: run for run in found}


def steps(run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in mlflow.MlflowClient().get_metric_history(run_id, key))


def versions(run_id: str) -> list[str]:
    return [v.version for v in mlflow.MlflowClient().search_model_versions(f"run_id = '{run_id}'")]


def save(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))


# ---------------------------------------------------------------- the data

@pytest.fixture(scope="module")
def tree(tiny_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny tree plus faulty data: group `group_nan` (a scan with a NaN and an infinite voxel),
    SubD (a scan with a NaN voxel to predict) and SubE (a 2-D and an (x, y, z, 1) scan)."""
    root = shutil.copytree(tiny_tree, tmp_path_factory.mktemp("faults") / "data")
    source = root / "training_groups" / "group_1" / "group_1_1"
    faulty = shutil.copytree(source, root / "training_groups" / "faulty" / "group_nan")
    volume = sorted(faulty.glob("trial1_*/*vol*"))[0]
    image = nib.load(str(volume))
    voxels = np.asarray(image.dataobj).astype(np.float32)
    voxels[3, 4, 5], voxels[5, 6, 7] = np.nan, np.inf
    save(volume, voxels, image.affine)
    one_nan = voxels.copy()
    one_nan[5, 6, 7] = 1.0
    save(root / "SubD" / "prediction_sources" / "trial1_nan" / "trial1_nan_volume.nii", one_nan, image.affine)
    plain = np.asarray(image.dataobj)
    save(root / "SubE" / "prediction_sources" / "trial2_flat" / "trial2_flat_volume.nii", plain[:, :, 3],
         image.affine)
    save(root / "SubE" / "prediction_sources" / "trial3_4d" / "trial3_4d_volume.nii", plain[..., None],
         image.affine)
    return root


@pytest.fixture(scope="module")
def replaced_run(module_tracking: str, tree: Path) -> str:
    """`group_nan` trained with `--nonfinite replace`: the model the predict cases use."""
    done = armseg("train", "--data-root", str(tree), "--group", "group_nan", "--epochs", "1", "--nonfinite",
                  "replace", *TRAIN_FLAGS)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = [r for r in all_runs().values() if r.data.tags.get("armseg.group") == "group_nan"
              and r.info.status == "FINISHED"]
    return run.info.run_id


# ---------------------------------------------------------------- parameters: one line, no run

PARAMETER_MISTAKES = {
    "learning rate nan": (["train", "--group", "group_1_1", "--learning-rate", "nan"],
                          "--learning-rate: 'nan' is not a finite number"),
    "weight decay inf": (["train", "--group", "group_1_1", "--weight-decay", "inf"],
                         "--weight-decay: 'inf' is not a finite number"),
    "epochs inf": (["train", "--group", "group_1_1", "--epochs", "inf"],
                   "--epochs: 'inf' is not a whole number"),
    "percents off 100": (["train", "--group", "group_1_1", "--test-percent", "10"],
                         "--train-percent, --val-percent, --test-percent: 85 + 15 + 10 = 110, not 100"),
    "group leaving the root": (["train", "--group", "../../outside", "--training-data-dir", "{group_1_1}"],
                               "--group: '../../outside' is not a folder name"),
    "unknown nonfinite": (["train", "--group", "group_1_1", "--nonfinite", "ignore"],
                          "--nonfinite: 'ignore' is not one of error, replace"),
    "predict batch nan": (["predict", "--model", "group_1_1", "--batch-size", "nan"],
                          "--batch-size: 'nan' is not a whole number"),
    "predict even slice vote": (["predict", "--model", "group_1_1", "--slice-vote", "4"],
                                "--slice-vote: must be an odd number of slices from 1 (off) to 255, got 4"),
    "ema momentum 1": (["train", "--group", "group_1_1", "--ema-momentum", "1"],
                       "--ema-momentum: 1.0 must be in [0, 1) (0 = no weight averaging)"),
    "predict subject leaving the root": (["predict", "--model", "group_1_1", "--subjects", "../SubC"],
                                         "--subjects '../SubC': not a folder name"),
    "evaluate subject leaving the root": (["evaluate", "--subjects", "SubC", "../../SubC"],
                                          "--subjects '../../SubC': not a folder name"),
    "augment degrees nan": (["augment", "--group", "group_1_1", "--degrees", "nan"],
                            "--degrees: 'nan' is not a finite number"),
    "register sampling inf": (["register", "--subjects", "SubC", "--sampling", "inf"],
                              "--sampling: 'inf' is not a finite number"),
}


@pytest.mark.parametrize("case", sorted(PARAMETER_MISTAKES))
def test_a_parameter_wrong_in_itself_is_one_line_and_creates_no_run(case: str, module_tracking: str,
                                                                      tree: Path) -> None:
    args, message = PARAMETER_MISTAKES[case]
    group_folder = str(tree / "training_groups" / "group_1" / "group_1_1")
    args = [arg.replace("{group_1_1}", group_folder) for arg in args]
    before = set(all_runs())
    done = armseg(*args, "--data-root", str(tree))
    assert done.returncode == 2
    one_line_error(done.stderr, args[0], message)
    assert set(all_runs()) == before


@pytest.mark.parametrize("entry, why", [
    ("learning_rate = nan", "learning_rate = 'nan': 'nan' is not a finite number"),
    ("epochs = 0", "epochs = 0: 0 must be at least 1"),
    ("test_percent = 5", "test_percent = 5.0: 85 + 15 + 5 = 105, not 100"),
])
def test_a_bad_ini_value_names_the_file_and_its_section(entry: str, why: str, module_tracking: str,
                                                         tree: Path, tmp_path: Path) -> None:
    ini = tmp_path / "trainingconfig.ini"
    ini.write_text(f"[DEFAULT]\nbatch_size = 8\n[group_1_1]\n{entry}\n")
    before = set(all_runs())
    done = armseg("train", "--data-root", str(tree), "--group", "group_1_1", "--config", str(ini))
    assert done.returncode == 2
    line = one_line_error(done.stderr, "train", f"{ini}: [group_1_1] {why}")
    assert "--" not in line.split("error: ", 1)[1]  # no flag the user never typed
    assert set(all_runs()) == before


# ---------------------------------------------------------------- a tracking server that does not answer

@pytest.fixture
def silent_server() -> Iterator[str]:
    """A port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


@pytest.mark.parametrize("server", ["refused", "silent"])
def test_a_tracking_server_that_does_not_answer_is_one_line_within_seconds(
        server: str, silent_server: str, tree: Path) -> None:
    uri = "http://127.0.0.1:9" if server == "refused" else silent_server
    started = time.monotonic()
    done = armseg("predict", "--data-root", str(tree), "--model", "group_1_1", "--subjects", "SubC",
                  env={"MLFLOW_TRACKING_URI": uri}, timeout=120)
    assert time.monotonic() - started < 25
    assert done.returncode == 2
    one_line_error(done.stderr, "predict", f"the MLflow tracking server at {uri} does not answer")


# ---------------------------------------------------------------- never register a broken model

@pytest.mark.slow
def test_nonfinite_training_voxels_fail_the_run_naming_the_file_and_count(module_tracking: str,
                                                                           tree: Path) -> None:
    before = set(all_runs())
    done = armseg("train", "--data-root", str(tree), "--group", "group_nan", "--epochs", "1", *TRAIN_FLAGS)
    assert done.returncode == 2
    volume = sorted((tree / "training_groups" / "faulty" / "group_nan").glob("trial1_*/*vol*"))[0]
    one_line_error(done.stderr, "train", f"{volume.relative_to(tree.parent)}",
                   "2 voxel(s) are NaN or infinite", "--nonfinite replace")
    (new,) = set(all_runs()) - before
    run = all_runs()[new]
    assert run.info.status == "FAILED" and "2 voxel(s)" in run.data.tags["armseg.error"]
    assert versions(new) == []


@pytest.mark.slow
def test_nonfinite_voxels_replaced_on_request_are_counted(replaced_run: str) -> None:
    run = all_runs()[replaced_run]
    assert run.data.params["nonfinite"] == "replace"
    assert run.data.metrics["nonfinite_voxels_replaced"] == 2
    assert len(versions(replaced_run)) == 1


@pytest.mark.slow
def test_a_loss_that_becomes_nan_fails_the_run_and_registers_nothing(module_tracking: str,
                                                                      tree: Path) -> None:
    before = set(all_runs())
    done = armseg("train", "--data-root", str(tree), "--group", "group_1_1", "--epochs", "1",
                  "--learning-rate", "1e30", *TRAIN_FLAGS)
    assert done.returncode == 2, done.stderr[-3000:]
    one_line_error(done.stderr, "train", "loss became", "no model registered")
    (new,) = set(all_runs()) - before
    run = all_runs()[new]
    assert run.info.status == "FAILED" and "loss became" in run.data.tags["armseg.error"]
    assert versions(new) == [] and "test_mean_iou" not in run.data.metrics
    assert not run.outputs.model_outputs  # no model logged either


@pytest.mark.slow
def test_a_nonfinite_scan_to_predict_is_an_error(replaced_run: str, tree: Path) -> None:
    before = set(all_runs())
    done = armseg("predict", "--data-root", str(tree), "--model", replaced_run, "--subjects", "SubD")
    assert done.returncode == 2
    one_line_error(done.stderr, "predict",
                   "SubD/prediction_sources/trial1_nan/trial1_nan_volume.nii: 1 voxel(s)")
    (new,) = set(all_runs()) - before
    assert all_runs()[new].info.status == "FAILED"
    assert not list((tree / "SubD").rglob("*_pred_seg.nii"))


@pytest.mark.slow
def test_2d_and_4d_sources_get_predictions_of_their_shape_and_nonfinite_voxels_replaced_on_request(
        replaced_run: str, tree: Path) -> None:
    before = set(all_runs())
    done = armseg("predict", "--data-root", str(tree), "--model", replaced_run, "--subjects", "SubD", "SubE",
                  "--nonfinite", "replace")
    assert done.returncode == 0, done.stderr[-3000:]
    for subject in ("SubD", "SubE"):
        for source in (tree / subject / "prediction_sources").glob("trial*/*vol*"):
            (prediction,) = (tree / subject / "predictions").rglob(f"{source.parent.name}_pred_seg.nii")
            assert nib.load(str(prediction)).shape == nib.load(str(source)).shape
    (new,) = set(all_runs()) - before
    replaced = mlflow.MlflowClient().get_metric_history(new, "nonfinite_voxels_replaced")
    assert sorted(m.value for m in replaced) == [0, 0, 1]  # per scan: SubD's one NaN, SubE's none


# ---------------------------------------------------------------- outputs that cannot be written

def _mount_tmpfs(folder: Path, options: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small or read-only file system")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {done.stderr.decode().strip()}")


def _read_only(folder: Path) -> None:
    if os.geteuid() != 0:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o555)
    else:
        _mount_tmpfs(folder, "ro,size=64k")


@pytest.mark.parametrize("fault", ["a file where a folder is expected", "a read-only folder",
                                   "no space left"])
def test_a_write_error_is_one_line_naming_the_output_and_leaves_no_file(fault: str, module_tracking: str,
                                                                         tmp_path: Path) -> None:
    place = tmp_path / "place"
    try:
        if fault == "a file where a folder is expected":
            place.write_text("not a folder")
        elif fault == "a read-only folder":
            _read_only(place)
        else:
            _mount_tmpfs(place, "size=16k")
        done = armseg("synth", "--out", str(place / "data"), "--subjects", "2", "--size", "48", "64",
                      "--slices", "4")
        assert done.returncode == 2
        line = one_line_error(done.stderr, "synth", str(place / "data"))
        assert ".part" not in line and ".tmp" not in line
        if place.is_dir():  # no temporary file left, and what was written before is whole
            files = [p for p in place.rglob("*") if p.is_file()]
            assert [p for p in files if p.name.startswith(".")] == []
            for volume in (p for p in files if p.suffix == ".nii"):
                assert np.asarray(nib.load(str(volume)).dataobj).size > 0
    finally:
        if place.is_dir() and os.path.ismount(place):
            subprocess.run(["umount", str(place)], check=False)
        elif place.is_dir():
            place.chmod(0o755)
    (run,) = [r for r in all_runs().values() if r.data.params.get("out") == str(place / "data")]
    assert run.info.status == "FAILED"


@pytest.mark.slow
def test_a_prediction_that_cannot_be_written_is_one_line_naming_it(replaced_run: str, tree: Path) -> None:
    blocked = tree / "SubE" / "predictions"
    shutil.rmtree(blocked, ignore_errors=True)
    blocked.write_text("a file where the predictions folder goes")
    try:
        done = armseg("predict", "--data-root", str(tree), "--model", replaced_run, "--subjects", "SubE")
    finally:
        blocked.unlink()
    assert done.returncode == 2
    one_line_error(done.stderr, "predict", str(blocked))


# ---------------------------------------------------------------- the run lifecycle under signals

@pytest.mark.slow
def test_sigterm_ends_the_run_killed_and_a_live_run_cannot_be_resumed(module_tracking: str, tree: Path,
                                                                       tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    training = Running("train", "--data-root", str(tree), "--group", "group_1_1", "--epochs", "200",
                       *TRAIN_FLAGS, env={"TMPDIR": str(scratch)})
    run_id = training.run_id()
    training.wait_for("Epoch 2/200")
    assert list(scratch.glob("armseg-train-*"))

    # A second process may not train the same run while the first is alive.
    refused = armseg("train", "--data-root", str(tree), "--resume", run_id)
    assert refused.returncode == 2
    one_line_error(refused.stderr, "train", f"run {run_id} is being trained now by process "
                                            f"{training.process.pid}")
    assert training.process.poll() is None

    training.process.send_signal(signal.SIGTERM)
    assert training.finish() == 128 + signal.SIGTERM
    assert training.errors[-1] == "armseg train: error: terminated by SIGTERM"
    assert not any("Traceback" in line for line in training.errors)
    run = all_runs()[run_id]
    assert run.info.status == "KILLED" and run.data.tags["armseg.error"] == "terminated by SIGTERM"
    assert list(scratch.glob("armseg-*")) == []
    assert versions(run_id) == []


@pytest.mark.slow
def test_sigkill_between_checkpoint_and_metrics_then_resume_has_every_step_once(
        module_tracking: str, tree: Path, tmp_path: Path) -> None:
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    hold = {"PYTHONPATH": str(tmp_path / "hook"), "ARMSEG_FAULT_HOLD_AT_STEP": "2",
            "ARMSEG_FAULT_GATE": str(tmp_path / "gate")}
    training = Running("train", "--data-root", str(tree), "--group", "group_1_1", "--epochs", "3",
                       *TRAIN_FLAGS, env=hold)
    run_id = training.run_id()
    training.wait_for("FAULT: held before the metrics of step 2")  # epoch 2's checkpoint is logged
    training.process.send_signal(signal.SIGKILL)
    assert training.finish() == -signal.SIGKILL
    assert all_runs()[run_id].info.status == "RUNNING"  # nothing can close a run on SIGKILL
    assert steps(run_id, "loss") == [1]

    resumed = armseg("train", "--data-root", str(tree), "--resume", run_id)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming run" in resumed.stdout and "after epoch 2" in resumed.stdout
    run = all_runs()[run_id]
    assert run.info.status == "FINISHED"
    for key in EPOCH_METRICS:
        assert steps(run_id, key) == [1, 2, 3], key
    assert len(steps(run_id, "test_mean_iou")) == 1
    assert len(versions(run_id)) == 1


@pytest.mark.slow
def test_ctrl_c_while_the_run_closes_ends_it_killed_and_resume_registers_no_second_version(
        module_tracking: str, tree: Path, tmp_path: Path) -> None:
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    gate = tmp_path / "gate"
    hold = {"PYTHONPATH": str(tmp_path / "hook"), "ARMSEG_FAULT_HOLD_AT_CLOSE": "1",
            "ARMSEG_FAULT_GATE": str(gate)}
    training = Running("train", "--data-root", str(tree), "--group", "group_1_1", "--epochs", "1",
                       *TRAIN_FLAGS, env=hold)
    run_id = training.run_id()
    training.wait_for("FAULT: held while the run closes")  # the model is logged and registered by now
    training.process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    gate.touch()
    assert training.finish() == 130
    assert training.errors[-1] == "armseg train: error: interrupted"
    run = all_runs()[run_id]
    assert run.info.status == "KILLED"
    assert len(versions(run_id)) == 1 and len(steps(run_id, "test_mean_iou")) == 1

    resumed = armseg("train", "--data-root", str(tree), "--resume", run_id)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run = all_runs()[run_id]
    assert run.info.status == "FINISHED"
    assert len(versions(run_id)) == 1
    assert len(steps(run_id, "test_mean_iou")) == 1 and len(steps(run_id, "best_val_mean_iou")) == 1
    for key in EPOCH_METRICS:
        assert steps(run_id, key) == [1], key
    assert len(run.outputs.model_outputs) == 1
