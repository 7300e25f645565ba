"""Model resolution (all four forms), exact geometry of whole-volume prediction, the predict run."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from armseg.cli import main
from armseg.errors import ArmsegError
from armseg.io.labels import DEFAULT_LABEL_MAP
from armseg.io.tree import data_root_key
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
    classes = predict_classes(echo, volume, InferenceInfo(pad_multiple=16, slice_axis=axis), batch_size=2,
                              tta=False, largest_component=False, fill_holes=False, slice_vote=1)
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
    predict_file(LabelEcho(16), InferenceInfo(pad_multiple=16), source, out, tta=False,
                 largest_component=False, fill_holes=False, slice_vote=1)
    written = nib.load(str(out))
    assert np.array_equal(written.affine, nib.load(str(source)).affine)
    assert written.shape == truth.shape and written.get_data_dtype() == np.uint8
    assert written.header["descrip"].tobytes().startswith(b"scanner export")
    expected = DEFAULT_LABEL_MAP.decode((truth * 2).clip(0, 2).astype(np.uint8))  # scaled by the slope
    np.testing.assert_array_equal(np.asarray(written.dataobj), expected)
    assert sorted(p.name for p in out.parent.iterdir()) == ["trial3_pred_seg.nii"]  # no temporary left


# --- model resolution: registry alias, registry version, run URI / id, group name ----------------

def train_run(group: str, root: Path, model=None, status: str = "FINISHED", register: bool = True,
              tags: dict[str, str] | None = None) -> str:
    """A run tagged like `armseg train`'s on data root `root`, optionally with a logged U-Net
    (registered unless `register` is false, as tune's trials are not)."""
    from armseg.model.registry import log_unet, register_run_model

    with mlflow.start_run() as run:
        mlflow.set_tags({"armseg.stage": "train", "armseg.group": group,
                         "armseg.data_root": data_root_key(root), **(tags or {})})
        if model is not None:
            log_unet(model, InferenceInfo(pad_multiple=4, group=group))
    mlflow.MlflowClient().set_terminated(run.info.run_id, status)
    if model is not None and register:
        register_run_model(run.info.run_id, "train")
    time.sleep(0.01)  # distinct start times: "newest" must be well defined
    return run.info.run_id


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data root the module's train runs trained on (its trees are made there per test)."""
    return tmp_path_factory.mktemp("predict_root") / "data"


@pytest.fixture(scope="module")
def store(module_tracking: str, root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One store for the module: group_1_1 trained twice on `root` (versions 1, 2), then runs that
    group_1_1 must never mean: a failed run, a finished run without a model, a tune trial (not
    registered) and a run on another data root (version 3); `champion` points at version 1."""
    from armseg.model.unet import build_unet

    model = build_unet(depth=2, base_filters=4)
    runs = {"older": train_run("group_1_1", root, model), "newer": train_run("group_1_1", root, model)}
    train_run("group_1_1", root, status="FAILED")
    train_run("group_1_1", root)
    runs["trial"] = train_run("group_1_1", root, model, register=False,
                              tags={"armseg.study": "s", "armseg.trial_number": "0"})
    runs["elsewhere"] = train_run("group_1_1", tmp_path_factory.mktemp("other") / "data", model)
    mlflow.MlflowClient().set_registered_model_alias("armseg-unet", "champion", "1")
    return runs


def test_model_resolution_does_not_load_tensorflow() -> None:
    import subprocess
    import sys

    code = "import sys, armseg.predict.models, armseg.evaluate.command; print('tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_resolve_every_form(store: dict[str, str], root: Path, capsys) -> None:
    older, newer = store["older"], store["newer"]
    # The newest finished standalone train run on this data root: not the trial, not the other root.
    by_group = resolve_model("group_1_1", root)
    assert (by_group.uri, by_group.folder, by_group.run_id) == (f"runs:/{newer}/model", "group_1_1", newer)
    assert (by_group.registered_model, by_group.version) == ("armseg-unet", "2")
    assert f"group_1_1 = run {newer} (armseg-unet version 2)" in capsys.readouterr().out
    champion = resolve_model("models:/armseg-unet@champion")
    assert (champion.uri, champion.folder, champion.run_id) == ("models:/armseg-unet/1", "armseg-unet-v1",
                                                                older)
    assert resolve_model("models:/armseg-unet/2").folder == "armseg-unet-v2"
    assert resolve_model("models:/armseg-unet/latest").folder == "armseg-unet-v3"
    by_run = resolve_model(f"runs:/{older}/model")
    assert (by_run.uri, by_run.folder, by_run.version) == (f"runs:/{older}/model", f"run-{older[:8]}", "1")
    assert resolve_model(older).folder == f"run-{older[:8]}"
    trial = resolve_model(store["trial"])  # a tune trial only by its run (or the champion alias)
    assert (trial.run_id, trial.version) == (store["trial"], None)
    other_root = mlflow.get_run(store["elsewhere"]).data.tags["armseg.data_root"]
    elsewhere = resolve_model("group_1_1", Path(other_root))
    assert elsewhere.run_id == store["elsewhere"]


@pytest.mark.parametrize(("spec", "message"), [
    ("models:/armseg-unet@nope", r"no alias 'nope' \(aliases: champion\)"),
    ("models:/armseg-unet/9", r"no version 9 \(versions: 1, 2, 3\)"),
    ("models:/other@champion", r"no registered model 'other'.*armseg-unet"),
    ("runs:/0123456789abcdef0123456789abcdef/model", r"no run 0123456789abcdef0123456789abcdef"),
    ("group_9_9", r"groups trained there: group_1_1"),
])
def test_unknown_models_are_one_sentence(store: dict[str, str], root: Path, spec: str, message: str) -> None:
    with pytest.raises(ArmsegError, match=message) as error:
        resolve_model(spec, root)
    assert "\n" not in str(error.value)


def test_a_group_trained_only_elsewhere_names_where(store: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ArmsegError, match=r"no finished train run of group_1_1 on data root .*it was trained "
                                          r"on .*other.*/data, .*predict_root.*/data\)") as error:
        resolve_model("group_1_1", tmp_path / "data")
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
def subjects_tree(root: Path) -> Iterator[Path]:
    """A hand-made tree at the data root the module's train runs are tagged with."""
    make_scan(root / "SubA" / "prediction_sources" / "trial1_0_fs", (48, 64, 4))
    make_scan(root / "SubA" / "prediction_sources" / "over_512" / "trial3_60_p1", (130, 517, 2), seg=False)
    make_scan(root / "SubB" / "prediction_sources" / "trial6_30_fs", (40, 52, 3),
              np.diag([0.2, 0.3, 1.0, 1.0]))
    (root / "SubZ").mkdir()  # a subject folder without prediction_sources is not a default subject
    yield root
    shutil.rmtree(root)


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
    # Each predictions folder records the model that wrote it, and predictions.csv names it per file.
    newer = store["newer"]
    writers = {"group_1_1": (f"runs:/{newer}/model", newer, "2"), f"run-{run_id[:8]}": (
        f"runs:/{run_id}/model", run_id, "1")}
    for path in paths:
        record = json.loads((path.parent / "armseg_model.json").read_text())
        assert set(record) == {"model_uri", "run_id", "registered_model", "version", "armseg_version",
                               "written_at", "folder"}
        assert (record["model_uri"], record["run_id"], record["version"]) == writers[path.parent.name]
        assert record["folder"] == path.parent.name and record["registered_model"] == "armseg-unet"
    by_file = {Path(row.prediction).parent.name: (row.model_uri, row.model_run_id, str(row.model_version))
               for row in listing.itertuples()}
    assert by_file == writers

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
    written = predict_subjects(root, [store["older"]])
    assert sorted(p.name for p in written) == ["trial6_30_fs_pred_seg.nii", "trial6_30_gc_pred_seg.nii"]
    assert all(p.is_file() for p in written)


def test_a_prediction_of_another_model_is_never_kept_silently(store: dict[str, str], root: Path,
                                                              subjects_tree: Path) -> None:
    from armseg.model.unet import build_unet
    from armseg.predict.run import predict_subjects

    model = build_unet(depth=2, base_filters=4)
    first = train_run("group_2_1", root, model)
    out = subjects_tree / "SubB/predictions/group_2_1"
    predict_subjects(subjects_tree, ["group_2_1"], ["SubB"])
    assert json.loads((out / "armseg_model.json").read_text())["run_id"] == first

    # group_2_1 now means a newer run: the files there are another model's.
    second = train_run("group_2_1", root, model)
    stamp = (out / "trial6_30_fs_pred_seg.nii").stat().st_mtime_ns
    with pytest.raises(ArmsegError, match=rf"written by run {first} \(armseg-unet version \d+\).*group_2_1 "
                                          rf"now means run {second} \(armseg-unet version \d+\); give "
                                          "--overwrite"):
        predict_subjects(subjects_tree, ["group_2_1"], ["SubB"])
    assert (out / "trial6_30_fs_pred_seg.nii").stat().st_mtime_ns == stamp
    assert predict_runs()[0].info.status == "FAILED"
    predict_subjects(subjects_tree, ["group_2_1"], ["SubB"], overwrite=True)
    assert json.loads((out / "armseg_model.json").read_text())["run_id"] == second
    assert (out / "trial6_30_fs_pred_seg.nii").stat().st_mtime_ns != stamp

    # A folder with predictions and no record (OpenArm's own, an older armseg): an unknown model.
    (out / "armseg_model.json").unlink()
    with pytest.raises(ArmsegError, match=r"written by an unknown model \(no armseg_model.json\)"):
        predict_subjects(subjects_tree, ["group_2_1"], ["SubB"])
