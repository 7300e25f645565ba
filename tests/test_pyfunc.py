"""The registered model anyone can apply: a raw scan in, raw labels of its shape out, through
`mlflow.pyfunc`, `mlflow models predict` and `mlflow models serve` alike."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest

from armseg.io.labels import DEFAULT_LABEL_MAP, LabelMap
from armseg.model.registry import InferenceInfo, log_unet, register_run_model
from armseg.predict.volume import predict_classes

CHAMPION = "models:/armseg-unet@champion"
BIN = Path(sys.executable).parent


def logged_unet(info: InferenceInfo, num_classes: int = 3) -> str:
    """An (untrained) U-Net logged and registered as `train` does; returns its version."""
    from armseg.model.unet import build_unet

    with mlflow.start_run() as run:
        mlflow.set_tags({"armseg.stage": "train", "armseg.group": "group_1_1"})
        log_unet(build_unet(depth=2, base_filters=4, num_classes=num_classes), info)
    return str(register_run_model(run.info.run_id, "train").version)


@pytest.fixture(scope="module")
def champion(module_tracking: str) -> str:
    version = logged_unet(InferenceInfo(pad_multiple=4, group="group_1_1"))
    mlflow.MlflowClient().set_registered_model_alias("armseg-unet", "champion", version)
    return version


@pytest.fixture(scope="module")
def model(champion: str) -> mlflow.pyfunc.PyFuncModel:
    return mlflow.pyfunc.load_model(CHAMPION)


def scan(dtype=np.uint8, shape=(50, 66, 7)) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 200, size=shape).astype(dtype)


def test_a_raw_scan_of_any_dtype_and_size_comes_back_as_raw_labels_of_its_shape(model) -> None:
    raw = scan()
    labels = model.predict(raw)
    assert labels.shape == raw.shape and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 7, 52}
    for dtype in (np.int16, np.float32, np.float64):  # the same intensities, another dtype: same labels
        np.testing.assert_array_equal(model.predict(raw.astype(dtype)), labels)
    # What `armseg predict` writes for the same scan.
    network = model.unwrap_python_model().network
    expected = DEFAULT_LABEL_MAP.decode(predict_classes(network, raw, InferenceInfo(pad_multiple=4)))
    np.testing.assert_array_equal(labels, expected)


def test_a_batch_of_slices_a_single_slice_and_a_list(model) -> None:
    raw = scan()
    per_slice = {"largest_component": False, "slice_vote": 1}  # these look at neighbouring slices
    volume_labels = model.predict(raw, params=per_slice)
    batch = np.moveaxis(raw, 2, 0)  # 7 slices of 50 x 66
    np.testing.assert_array_equal(model.predict(batch, params={"slice_axis": 0, **per_slice}),
                                  np.moveaxis(volume_labels, 2, 0))
    np.testing.assert_array_equal(model.predict(raw[:, :, 3]), volume_labels[:, :, 3])
    np.testing.assert_array_equal(model.predict(batch, params={"slice_axis": 0}),
                                  np.moveaxis(model.predict(raw), 2, 0))
    assert model.predict(raw[:5, :6, :2].tolist()).shape == (5, 6, 2)


def test_signature_and_input_example_say_what_goes_in_and_out(model) -> None:
    signature = model.metadata.signature
    assert signature.inputs is None  # MLflow's tensor schema would admit one dtype only
    (output,) = signature.outputs.to_dict()
    assert (output["name"], output["tensor-spec"]["dtype"], tuple(output["tensor-spec"]["shape"])) == (
        "labels", "uint8", (-1, -1, -1))
    assert signature.params.to_dict()[0]["name"] == "slice_axis"  # tta and largest_component follow
    example = model.input_example
    assert example.ndim == 3 and model.predict(example.astype(np.uint8)).shape == example.shape


def test_refinements_are_params_of_the_served_model_and_match_armseg_predict(model) -> None:
    from armseg.model import choices, pyfunc

    names = ("DEFAULT_TTA", "DEFAULT_LARGEST_COMPONENT", "DEFAULT_FILL_HOLES", "DEFAULT_SLICE_VOTE")
    assert [getattr(pyfunc, name) for name in names] == [getattr(choices, name) for name in names]
    names = [param["name"] for param in model.metadata.signature.params.to_dict()]
    assert names == ["slice_axis", "tta", "largest_component", "fill_holes", "slice_vote"]
    raw = scan()
    network = model.unwrap_python_model().network
    for params in ({"tta": True}, {"largest_component": True}, {"fill_holes": False},
                   {"slice_vote": 3}, {"tta": True, "largest_component": True, "fill_holes": True,
                                       "slice_vote": 5}):
        classes = predict_classes(network, raw, InferenceInfo(pad_multiple=4), **params)
        expected = DEFAULT_LABEL_MAP.decode(classes)
        np.testing.assert_array_equal(model.predict(raw, params=params), expected)


def test_tta_averages_a_slice_with_its_mirror_image() -> None:
    """A network that only sees the left half: alone it is lopsided, with its mirror it is symmetric."""
    from armseg.model.pyfunc import classify_slices

    class LeftEye:
        def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
            width = batch.shape[2]
            probabilities = np.zeros((*batch.shape[:3], 2), dtype=np.float32)
            probabilities[..., 0] = 1.0
            probabilities[:, :, : width // 4, 1] = 3.0  # "structure" near the left edge only
            return probabilities

    stack = np.zeros((2, 8, 16), dtype=np.uint8)
    plain = classify_slices(LeftEye(), stack, pad_multiple=4)
    mirrored = classify_slices(LeftEye(), stack, pad_multiple=4, tta=True)
    assert plain[:, :, :4].all() and not plain[:, :, 12:].any()
    np.testing.assert_array_equal(mirrored, mirrored[:, :, ::-1])
    assert mirrored[:, :, :4].all() and mirrored[:, :, 12:].all()


def test_fill_holes_closes_background_a_structure_encloses_in_its_slice() -> None:
    from armseg.model.pyfunc import fill_enclosed_background

    classes = np.zeros((3, 10, 12), dtype=np.uint8)  # slices first, as classify_volume holds them
    classes[:, 1:8, 1:9] = 2      # a biceps section in every slice
    classes[0, 3:5, 3:6] = 0      # slice 0: a hole of background -> biceps
    classes[1, 3:6, 3:6] = 0      # slice 1: a hole holding a patch of humerus too -> left alone
    classes[1, 4, 4] = 1
    classes[2, 0:5, 4:6] = 0      # slice 2: a bay open to the slice's edge -> not a hole
    classes[:, 8:10, 10:12] = 1   # a humerus with no hole
    filled = fill_enclosed_background(classes)
    np.testing.assert_array_equal(filled[0, 3:5, 3:6], 2)
    np.testing.assert_array_equal(filled[1], classes[1])
    np.testing.assert_array_equal(filled[2], classes[2])
    assert (filled != classes).sum() == 6


def test_fill_holes_never_reaches_across_slices() -> None:
    """A tube along the arm is hollow in 3-D but not in any slice: nothing to fill."""
    from armseg.model.pyfunc import fill_enclosed_background

    classes = np.zeros((5, 8, 8), dtype=np.uint8)
    classes[:, 2:6, 2] = classes[:, 2:6, 5] = 1      # two walls, open at top and bottom in-plane
    classes[0, 2:6, 2:6] = classes[4, 2:6, 2:6] = 1  # capped at both ends along the arm
    np.testing.assert_array_equal(fill_enclosed_background(classes), classes)


def test_slice_vote_closes_a_bay_one_slice_alone_shows_and_a_tie_keeps_the_voxel_s_class() -> None:
    from armseg.model.pyfunc import vote_along_slices

    classes = np.zeros((6, 6, 8), dtype=np.uint8)  # slices first, as classify_volume holds them
    classes[:, 1:5, 1:6] = 2         # a biceps section in every slice
    classes[2, 3:5, 2:4] = 0         # slice 2 alone misses a bay of it -> biceps again
    classes[:, 5, 7] = 1             # a humerus voxel in every slice, along the arm
    classes[4, 0, 0] = 1             # one slice's speck -> background
    classes[0:2, 0, 7] = 1           # a structure ending at slice 1 of 6: in 2 of the first 3 slices
    voted = vote_along_slices(classes, 3)
    np.testing.assert_array_equal(voted[2, 3:5, 2:4], 2)
    assert voted[4, 0, 0] == 0 and voted[:, 5, 7].all()
    # slice 0 sees itself twice beyond the scan's end: the structure stays there and in slice 1
    assert list(voted[:, 0, 7]) == [1, 1, 0, 0, 0, 0]
    assert (voted != classes).sum() == 4 + 1 + 0
    # In a window of 5, slice 2 sees 1 1 2 2 0 and slice 3 sees 1 2 2 0 0: ties, each keeps its own.
    tie = np.array([1, 1, 2, 2, 0], dtype=np.uint8).reshape(5, 1, 1)
    np.testing.assert_array_equal(vote_along_slices(tie, 5), tie)
    assert list(vote_along_slices(tie, 3)[:, 0, 0]) == [1, 1, 2, 2, 0]
    np.testing.assert_array_equal(vote_along_slices(classes, 1), classes)
    for window in (0, 4, 257):  # an even window has no centre; counts are uint8
        with pytest.raises(ValueError, match="slice_vote must be an odd number"):
            vote_along_slices(classes, window)


def test_largest_component_removes_islands_per_structure() -> None:
    from armseg.model.pyfunc import keep_largest_components

    classes = np.zeros((10, 12, 6), dtype=np.uint8)
    classes[1:5, 1:5, :] = 1      # the humerus body
    classes[8, 10, 2] = 1         # an island of humerus
    classes[6:9, 1:6, 1:5] = 2    # the biceps body
    classes[0, 11, 0] = 2         # an island of biceps
    kept = keep_largest_components(classes, 3)
    assert kept[8, 10, 2] == 0 and kept[0, 11, 0] == 0
    np.testing.assert_array_equal(kept[1:5, 1:5, :], 1)
    np.testing.assert_array_equal(kept[6:9, 1:6, 1:5], 2)
    assert (kept != classes).sum() == 2


def test_the_model_s_own_label_values(module_tracking: str, champion: str) -> None:
    bones = LabelMap(classes=("background", "bone"), raw_values={"background": (0,), "bone": (3, 4)})
    version = logged_unet(InferenceInfo(pad_multiple=4, label_map=bones), num_classes=2)
    labels = mlflow.pyfunc.load_model(f"models:/armseg-unet/{version}").predict(scan(np.int16, (20, 24, 3)))
    assert labels.shape == (20, 24, 3) and set(np.unique(labels)) <= {0, 3}


def test_not_a_scan_is_refused_with_a_reason(model) -> None:
    with pytest.raises(Exception, match="3-D scan or a 2-D slice"):
        model.predict(np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(Exception, match="numbers"):
        model.predict(np.array([["a", "b"], ["c", "d"]]))


# --- the MLflow CLI, as a user without armseg would apply the model ----------------------------------

def cli_env(tracking: str) -> dict[str, str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("MLFLOW_RUN_ID", None)
    return env


@pytest.mark.slow
def test_mlflow_models_predict_on_a_json_scan(module_tracking: str, champion: str, tmp_path: Path) -> None:
    raw = scan(shape=(9, 13, 2))
    (tmp_path / "scan.json").write_text(json.dumps({"inputs": raw.tolist()}))
    command = [str(BIN / "mlflow"), "models", "predict", "-m", CHAMPION, "-i", str(tmp_path / "scan.json"),
               "-t", "json", "-o", str(tmp_path / "labels.json"), "--env-manager", "local"]
    done = subprocess.run(command, env=cli_env(module_tracking), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    labels = np.array(json.loads((tmp_path / "labels.json").read_text())["predictions"])
    np.testing.assert_array_equal(labels, mlflow.pyfunc.load_model(CHAMPION).predict(raw))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_mlflow_models_serve_answers_a_request(module_tracking: str, champion: str, tmp_path: Path) -> None:
    port = free_port()
    with open(tmp_path / "serve.log", "w") as log:
        # Its own session: the server and the uvicorn worker it starts are stopped together.
        command = [str(BIN / "mlflow"), "models", "serve", "-m", CHAMPION, "--env-manager", "local",
                   "-h", "127.0.0.1", "-p", str(port)]
        server = subprocess.Popen(command, env=cli_env(module_tracking), stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log_tail = (tmp_path / "serve.log").read_text()[-3000:]
                pytest.fail(f"mlflow models serve did not start: {log_tail}")
            time.sleep(1)
        raw = scan(shape=(9, 13, 2))
        body = json.dumps({"inputs": raw.tolist()}).encode()
        request = urllib.request.Request(f"{url}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            labels = np.array(json.loads(answer.read())["predictions"])
        assert labels.shape == raw.shape and set(np.unique(labels)) <= {0, 7, 52}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


def test_the_logged_requirements_name_what_the_default_refinements_import() -> None:
    from armseg.model.registry import pip_requirements

    names = {pin.split("==")[0] for pin in pip_requirements()}
    assert {"keras", "numpy", "scipy"} <= names
