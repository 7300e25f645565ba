"""Model resolution (all four forms), exact geometry of whole-volume prediction, the predict run."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from armseg.cli import main
from armseg.errors import ArmsegError
from armseg.io.labels import DEFAULT_LABEL_MAP
from armseg.model.registry import InferenceInfo
from armseg.predict.models import resolve_model
from armseg.predict.volume import predict_classes, predict_file

# Oblique, anisotropic and offset: a prediction must come back with this affine exactly.
AFFINE = np.array([[0.0, -0.21, 0.05, 12.5], [0.18, 0.0, 0.0, -3.0],
                   [0.0, 0.02, 1.1, 40.0], [0.0, 0.0, 0.0, 1.0]])


class LabelEcho:
    """A stand-in network whose 'probabilities' are the one-hot of its input intensities.

    Feeding it a volume of class indices must give them back voxel for voxel: any slip in
    slicing, padding or cropping shows up as a difference.
    """

    def __init__(self, multiple: int) -> None:
        self.multiple = multiple
        self.shapes: list[tuple[int, ...]] = []

    def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
        assert batch.dtype == np.float32 and batch.shape[-1] == 1
        assert batch.shape[1] % self.multiple == 0 and batch.shape[2] % self.multiple == 0
        self.shapes.append(batch.shape)
        return np.eye(3, dtype=np.float32)[np.clip(np.rint(batch[..., 0]).astype(int), 0, 2)]


@pytest.mark.parametrize(("shape", "axis"), [((130, 517, 5), 2), ((7, 130, 517), 0), ((48, 3, 64), 1)])
def test_volume_round_trip_any_size_and_axis(shape: tuple[int, int, int], axis: int) -> None:
    volume = np.random.default_rng(0).integers(0, 3, size=shape).astype(np.float32)
    echo = LabelEcho(16)
    classes = predict_classes(echo, volume, InferenceInfo(pad_multiple=16, slice_axis=axis), batch_size=2)
    assert classes.dtype == np.uint8 and classes.shape == shape
    np.testing.assert_array_equal(classes, volume.astype(np.uint8))
    slices = shape[axis]
    assert [s[0] for s in echo.shapes] == [2] * (slices // 2) + [1] * (slices % 2)  # batches, not slices


def test_prediction_file_lies_on_the_source_grid(tmp_path: Path) -> None:
    truth = np.random.default_rng(1).integers(0, 3, size=(130, 517, 3)).astype(np.int16)
    source_image = nib.Nifti1Image(truth, AFFINE)
    source_image.header["descrip"] = b"scanner export"
    source_image.header.set_slope_inter(2.0, 0.0)  # intensity scaling a label file must not inherit
    source = tmp_path / "trial3_90_fs_volume.nii"
    nib.save(source_image, str(source))
    out = tmp_path / "predictions" / "m" / "trial3_pred_seg.nii"
    predict_file(LabelEcho(16), InferenceInfo(pad_multiple=16), source, out)
    written = nib.load(str(out))
    assert np.array_equal(written.affine, nib.load(str(source)).affine)
    assert written.shape == truth.shape and written.get_data_dtype() == np.uint8
    assert written.header["descrip"].tobytes().startswith(b"scanner export")
    expected = DEFAULT_LABEL_MAP.decode((truth * 2).clip(0, 2).astype(np.uint8))  # scaled by the slope
    np.testing.assert_array_equal(np.asarray(written.dataobj), expected)
    assert sorted(p.name for p in out.parent.iterdir()) == ["trial3_pred_seg.nii"]  # no temporary left


# --- model resolution: registry alias, registry version, run URI / id, group name ----------------

def train_run(group: str, model=None, status: str = "FINISHED") -> str:
    """A run tagged like `armseg train`'s, optionally with a logged, registered U-Net."""
    from armseg.model.registry import log_unet

    with mlflow.start_run() as run:
        mlflow.set_tags({"armseg.stage": "train", "armseg.group": group})
        if model is not None:
            log_unet(model, InferenceInfo(pad_multiple=4, group=group))
    mlflow.MlflowClient().set_terminated(run.info.run_id, status)
    time.sleep(0.01)  # distinct start times: "newest" must be well defined
    return run.info.run_id


@pytest.fixture(scope="module")
def store(module_tracking: str) -> dict[str, str]:
    """One store for the module: group_1_1 trained twice (versions 1, 2), then a failed run and
    a finished run without a model (both to be passed over); `champion` points at version 1."""
    from armseg.model.unet import build_unet

    model = build_unet(depth=2, base_filters=4)
    runs = {"older": train_run("group_1_1", model), "newer": train_run("group_1_1", model)}
    train_run("group_1_1", status="FAILED")
    train_run("group_1_1")
    mlflow.MlflowClient().set_registered_model_alias("armseg-unet", "champion", "1")
    return runs


def test_model_resolution_does_not_load_tensorflow() -> None:
    import subprocess
    import sys

    code = "import sys, armseg.predict.models, armseg.evaluate.command; print('tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_resolve_every_form(store: dict[str, str]) -> None:
    older, newer = store["older"], store["newer"]
    by_group = resolve_model("group_1_1")
    assert (by_group.uri, by_group.folder) == (f"runs:/{newer}/model", "group_1_1")
    champion = resolve_model("models:/armseg-unet@champion")
    assert (champion.uri, champion.folder) == ("models:/armseg-unet/1", "armseg-unet-v1")
    assert resolve_model("models:/armseg-unet/2").folder == "armseg-unet-v2"
    assert resolve_model("models:/armseg-unet/latest").folder == "armseg-unet-v2"
    by_run = resolve_model(f"runs:/{older}/model")
    assert (by_run.uri, by_run.folder) == (f"runs:/{older}/model", f"run-{older[:8]}")
    assert resolve_model(older).folder == f"run-{older[:8]}"


@pytest.mark.parametrize(("spec", "message"), [
    ("models:/armseg-unet@nope", r"no alias 'nope' \(aliases: champion\)"),
    ("models:/armseg-unet/9", r"no version 9 \(versions: 1, 2\)"),
    ("models:/other@champion", r"no registered model 'other'.*armseg-unet"),
    ("runs:/0123456789abcdef0123456789abcdef/model", r"no run 0123456789abcdef0123456789abcdef"),
    ("group_9_9", r"groups trained: group_1_1"),
])
def test_unknown_models_are_one_sentence(store: dict[str, str], spec: str, message: str) -> None:
    with pytest.raises(ArmsegError, match=message) as error:
        resolve_model(spec)
    assert "\n" not in str(error.value)


# --- the predict command on a hand-made tree --------------------------------------------------------

def make_scan(folder: Path, shape: tuple[int, int, int], affine: np.ndarray = AFFINE,
              seg: bool = True) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(len(folder.name))
    nib.save(nib.Nifti1Image(rng.integers(0, 255, shape).astype(np.uint8), affine),
             str(folder / f"{folder.name}_volume.nii"))
    if seg:
        labels = np.zeros(shape, np.uint8)
        labels[: shape[0] // 2] = 52
        nib.save(nib.Nifti1Image(labels, affine), str(folder / f"{folder.name}_seg.nii"))


@pytest.fixture
def subjects_tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    make_scan(root / "SubA" / "prediction_sources" / "trial1_0_fs", (48, 64, 4))
    make_scan(root / "SubA" / "prediction_sources" / "over_512" / "trial3_60_p1", (130, 517, 2), seg=False)
    make_scan(root / "SubB" / "prediction_sources" / "trial6_30_fs", (40, 52, 3),
              np.diag([0.2, 0.3, 1.0, 1.0]))
    (root / "SubZ").mkdir()  # a subject folder without prediction_sources is not a default subject
    return root


def predict_runs() -> list:
    return mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string="tags.`armseg.stage` = 'predict'")


def test_predict_writes_every_scan_with_every_model(store: dict[str, str], subjects_tree: Path) -> None:
    from armseg.predict.run import predict_subjects

    run_id = store["older"]
    paths = predict_subjects(subjects_tree, ["group_1_1", f"runs:/{run_id}/model"], ["SubA"], batch_size=3)
    expected = [subjects_tree / "SubA/predictions" / where for where in (
        "over_512/group_1_1/trial3_60_p1_pred_seg.nii", "group_1_1/trial1_0_fs_pred_seg.nii",
        f"over_512/run-{run_id[:8]}/trial3_60_p1_pred_seg.nii", f"run-{run_id[:8]}/trial1_0_fs_pred_seg.nii")]
    assert sorted(paths) == sorted(expected)
    source_affine = nib.load(str(next((subjects_tree / "SubA").rglob("trial1_0_fs_volume.nii")))).affine
    for path in paths:
        written = nib.load(str(path))
        assert np.array_equal(written.affine, source_affine)
        assert set(np.unique(np.asarray(written.dataobj))) <= {0, 7, 52}
    assert nib.load(str(expected[0])).shape == (130, 517, 2)

    run = predict_runs()[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["model"] == f"group_1_1 runs:/{run_id}/model"
    assert run.data.params["subjects"] == "SubA" and run.data.params["overwrite"] == "False"
    assert run.data.metrics["scans_written"] == 4
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "seconds_per_scan")
    assert len(history) == 4
    listing = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=run.info.run_id,
                                                             artifact_path="predictions.csv"))
    assert list(listing["status"]) == ["written"] * 4

    # Again without overwrite: SubA's files are kept untouched, SubB (default subjects) is written.
    stamps = {p: p.stat().st_mtime_ns for p in paths}
    again = predict_subjects(subjects_tree, ["group_1_1"])
    assert {p: p.stat().st_mtime_ns for p in paths} == stamps
    assert subjects_tree / "SubB/predictions/group_1_1/trial6_30_fs_pred_seg.nii" in again
    predict_subjects(subjects_tree, ["group_1_1"], ["SubA"], overwrite=True)
    assert all(expected[i].stat().st_mtime_ns != stamps[expected[i]] for i in (0, 1))


@pytest.mark.parametrize(("argv", "message", "runs"), [
    (["--model", "group_1_1", "--subjects", "SubQ"], "subject 'SubQ' not found", 1),
    (["--model", "models:/armseg-unet@best"], "no alias 'best'", 1),
    (["--model", "group_1_1", "--overwrite", "maybe"], "--overwrite: 'maybe' is not true or false", 0),
])
def test_cli_mistakes_fail_the_run_in_one_line(store: dict[str, str], subjects_tree: Path, capsys,
                                               argv: list[str], message: str, runs: int) -> None:
    before = {run.info.run_id for run in predict_runs()}
    capsys.readouterr()
    assert main(["predict", "--data-root", str(subjects_tree), *argv]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error
    new = [run for run in predict_runs() if run.info.run_id not in before]
    assert len(new) == runs  # a flag that does not parse fails before any run opens
    assert all(run.info.status == "FAILED" and message in run.data.tags["armseg.error"] for run in new)
    assert not (subjects_tree / "SubA" / "predictions").exists()


def test_two_sources_with_one_trial_number_get_their_own_files(store: dict[str, str],
                                                               tmp_path: Path) -> None:
    """OpenArm's `<trial folder>_pred_seg.nii` names cannot collide: both scans are predicted."""
    from armseg.predict.run import predict_subjects

    root = tmp_path / "data"
    make_scan(root / "SubA" / "prediction_sources" / "trial6_30_fs", (16, 16, 2))
    make_scan(root / "SubA" / "prediction_sources" / "trial6_30_gc", (16, 16, 2))
    written = predict_subjects(root, ["group_1_1"])
    assert sorted(p.name for p in written) == ["trial6_30_fs_pred_seg.nii", "trial6_30_gc_pred_seg.nii"]
    assert all(p.is_file() for p in written)
