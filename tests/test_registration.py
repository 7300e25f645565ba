"""`armseg register`: the SimpleITK baseline recovers known misalignments and writes on F's grid."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter

from armseg.cli import main
from armseg.errors import ArmsegError
from armseg.io.images import read_image, write_volume
from armseg.io.itk import from_itk, to_itk
from armseg.io.tree import find_labelled_trial, prediction_path, prediction_sources
from armseg.predict.sidecar import read_sidecar
from armseg.registration.batch import register_subjects
from armseg.registration.pipeline import register_pair
from armseg.registration.settings import RegistrationSettings

SHAPE = (40, 48, 14)
FAST = {"shrink_factors": (2, 1), "sampling": 0.3}


def settings(**options) -> RegistrationSettings:
    return RegistrationSettings(**options)
LPS = np.diag([-1.0, -1.0, 1.0])


def phantom(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Skin band, an ellipsoid 'biceps' (52) and a cylinder 'humerus' (7), textured so MI has edges."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij")
    labels = np.zeros(SHAPE, np.uint8)
    labels[x < -0.75] = 8
    labels[((x + 0.2) / 0.35) ** 2 + (y / 0.5) ** 2 + (z / 1.6) ** 2 < 1] = 52
    labels[((x - 0.5) / 0.25) ** 2 + ((y - 0.15) / 0.28) ** 2 < 1] = 7
    means = np.zeros(256, np.float32)
    means[[0, 8, 52, 7]] = [60, 180, 110, 230]
    volume = means[labels] + 25 * gaussian_filter(rng.standard_normal(SHAPE), 1.0)
    return gaussian_filter(volume, 0.7).astype(np.float32), labels


def oblique_affine() -> np.ndarray:
    """Rotated 20 degrees about the long axis, anisotropic, off-centre: nothing lines up by luck."""
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.7, 0.6, 1.1])
    affine[:3, 3] = [12.0, -30.0, 5.0]
    return affine


def dice(a: np.ndarray, b: np.ndarray, value: int) -> float:
    a, b = a == value, b == value
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def read(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


@pytest.fixture
def fixed_pair(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    volume, labels = phantom()
    fixed, fixed_seg = tmp_path / "fixed.nii.gz", tmp_path / "fixed_seg.nii.gz"
    write_volume(fixed, volume, oblique_affine())
    write_volume(fixed_seg, labels, oblique_affine())
    return fixed, fixed_seg, volume, labels


@pytest.fixture
def misaligned(tmp_path: Path, fixed_pair) -> tuple[Path, Path, Path, np.ndarray]:
    """A moving scan = the fixed scan seen through a known rigid motion (7 degrees, ~2.5 mm)."""
    fixed, _, volume, labels = fixed_pair
    affine = oblique_affine()
    reference = to_itk(volume, affine)
    centre = reference.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in SHAPE])
    motion = sitk.Euler3DTransform(centre, 0.03, -0.02, np.deg2rad(7), (1.8, -1.2, 1.5))
    moving = from_itk(sitk.Resample(reference, reference, motion, sitk.sitkLinear, 60.0))
    moving_labels = from_itk(sitk.Resample(to_itk(labels, affine, np.uint8), reference, motion,
                                           sitk.sitkNearestNeighbor, 0))
    write_volume(tmp_path / "moving.nii.gz", moving.astype(np.float32), affine)
    write_volume(tmp_path / "moving_seg.nii.gz", moving_labels.astype(np.uint8), affine)
    return fixed, tmp_path / "moving.nii.gz", tmp_path / "moving_seg.nii.gz", labels


def test_rigid_affine_bspline_recover_a_known_misalignment(tmp_path: Path, misaligned) -> None:
    fixed, moving, moving_seg, truth = misaligned
    before = read(moving_seg)
    out = tmp_path / "out.nii.gz"
    result = register_pair(fixed, moving, moving_seg, out, settings(iterations=(60, 60, 4), **FAST),
                           progress=None)
    after = read(out)
    for value in (7, 52):
        assert dice(truth, before, value) < 0.8
        assert dice(truth, after, value) > 0.9
        assert dice(truth, after, value) - dice(truth, before, value) > 0.15
    reference = read_image(fixed)
    written = nib.load(str(out))
    assert written.shape == reference.array.shape
    np.testing.assert_allclose(written.affine, reference.affine, atol=1e-5)
    assert np.issubdtype(after.dtype, np.integer) and set(np.unique(after)) <= {0, 7, 8, 52}
    assert [stage.name for stage in result.stages] == ["rigid", "affine", "bspline"]
    assert result.transform.GetNumberOfTransforms() == 2  # affine (from the rigid) o B-spline
    assert all(stage.iterations > 0 and stage.seconds > 0 for stage in result.stages)
    assert result.final_metric < result.initial_metric  # Mattes MI is negated: lower is better


def test_output_lands_voxel_for_voxel_on_the_fixed_grid(tmp_path: Path, fixed_pair) -> None:
    """The same physical object stored with permuted, flipped axes as .mha maps back exactly."""
    fixed, _, volume, labels = fixed_pair
    # Moving array index (i', j', k') = (k, size_x - 1 - i, j): the affine says where each voxel is.
    to_fixed_index = np.zeros((4, 4))
    to_fixed_index[0, 1], to_fixed_index[0, 3] = -1.0, SHAPE[0] - 1
    to_fixed_index[1, 2] = to_fixed_index[2, 0] = to_fixed_index[3, 3] = 1.0
    moving_affine = oblique_affine() @ to_fixed_index
    reorder = lambda a: np.transpose(a[::-1], (2, 0, 1))  # noqa: E731
    for array, name, kind in ((volume, "moving.mha", np.float32), (labels, "moving_seg.mha", np.uint8)):
        sitk.WriteImage(to_itk(reorder(array), moving_affine, kind), str(tmp_path / name))
    assert read_image(tmp_path / "moving.mha").array.shape == (SHAPE[2], SHAPE[0], SHAPE[1])
    out = tmp_path / "out.nii"
    register_pair(fixed, tmp_path / "moving.mha", tmp_path / "moving_seg.mha", out, settings(stages=()),
                  progress=None)
    np.testing.assert_array_equal(read(out), labels)
    np.testing.assert_allclose(nib.load(str(out)).affine, oblique_affine(), atol=1e-5)


def test_manual_affine_maps_fixed_points_to_moving_points_in_lps(tmp_path: Path, fixed_pair) -> None:
    fixed, _, volume, labels = fixed_pair
    shift_ras = np.array([3.5, -2.1, 4.4])  # the moving scan's placement moved by this much (RAS)
    moving_affine = oblique_affine()
    moving_affine[:3, 3] += shift_ras
    write_volume(tmp_path / "moving.nii", volume, moving_affine)
    write_volume(tmp_path / "moving_seg.nii", labels, moving_affine)
    args = (fixed, tmp_path / "moving.nii", tmp_path / "moving_seg.nii")
    t = LPS @ shift_ras
    identity = list(np.eye(3).ravel())
    register_pair(*args, tmp_path / "right.nii", settings(stages=(), A=identity, t=list(t)), progress=None)
    np.testing.assert_array_equal(read(tmp_path / "right.nii"), labels)
    register_pair(*args, tmp_path / "wrong.nii", settings(stages=(), t=list(-t)), progress=None)
    assert dice(labels, read(tmp_path / "wrong.nii"), 52) < 0.9


def test_cli_pair_form_logs_a_register_run(tmp_path: Path, tracking: str, misaligned, capsys) -> None:
    fixed, moving, moving_seg, _ = misaligned
    out = tmp_path / "cli_out.nii.gz"
    argv = ["register", "--fixed", str(fixed), "--moving", str(moving), "--moving-seg", str(moving_seg),
            "--out", str(out), "--stages", "rigid affine", "--iterations", "10", "--shrink-factors", "2 1",
            "--smoothing-sigmas", "1", "0", "--sampling", "0.3"]
    assert main(argv) == 0
    assert str(out) in capsys.readouterr().out
    run = mlflow.search_runs(search_all_experiments=True, output_format="list")[0]
    assert run.info.status == "FINISHED" and run.data.tags["armseg.stage"] == "register"
    assert run.data.params["stages"] == "rigid affine" and run.data.params["iterations"] == "10 10"
    assert run.data.params["shrink_factors_used"] == "2 1"
    assert run.data.params["smoothing_sigmas_used"] == "1.0 0.0"
    for key in ("rigid_final_metric", "affine_final_metric", "rigid_iterations", "affine_seconds",
                "initial_metric", "final_metric"):
        assert key in run.data.metrics
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "rigid_metric")
    assert len(history) == run.data.metrics["rigid_iterations"]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"registration.png", "registration.json", "transforms"} <= artifacts
    listed = mlflow.MlflowClient().list_artifacts(run.info.run_id, "transforms")
    transforms = {Path(a.path).name for a in listed}
    assert transforms == {"1_rigid.tfm", "2_affine.tfm", "fixed_to_moving.h5"}
    assert main(argv) == 2  # the output exists and --overwrite was not given
    assert "--overwrite" in capsys.readouterr().err
    # As `mlflow run -P ...` passes them: every parameter a string, '' for "not given".
    mlproject = ["register", "--fixed", str(fixed), "--moving", str(moving), "--moving-seg", str(moving_seg),
                 "--out", str(out), "--atlas", "", "--subjects", "", "--stages", "none", "--A", "", "--t", "",
                 "--iterations", "", "--shrink-factors", "", "--smoothing-sigmas", "", "--sampling", "",
                 "--bins", "", "--bspline-grid-mm", "", "--seed", "", "--init", "", "--label-map", "",
                 "--overwrite", "true"]
    assert main(mlproject) == 0
    np.testing.assert_array_equal(read(out), read(moving_seg))  # no stage, no manual transform: identity


def test_cli_mistakes_fail_the_run_and_write_nothing(tmp_path: Path, tracking: str, misaligned,
                                                     capsys) -> None:
    fixed, moving, moving_seg, _ = misaligned
    image = nib.load(str(moving_seg))
    labels = np.asarray(image.dataobj).copy()
    labels[0, 0, 0] = 99
    write_volume(tmp_path / "bad_seg.nii", labels, image.affine)
    # A bad file is found in the data (a FAILED run); a bad parameter value opens no run at all.
    cases = [("nope.nii", [tmp_path / "nope.nii", moving, moving_seg], [], True),
             ("bad_seg.nii", [fixed, moving, tmp_path / "bad_seg.nii"], [], True),
             ("--t", [fixed, moving, moving_seg], ["--t", "1", "2"], False)]
    out = tmp_path / "never.nii"
    for named, (f, m, s), extra, failed_run in cases:
        before = len(mlflow.search_runs(search_all_experiments=True, output_format="list"))
        argv = ["register", "--fixed", str(f), "--moving", str(m), "--moving-seg", str(s), "--out", str(out),
                "--stages", "rigid", *extra]
        assert main(argv) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("armseg")]
        assert len(errors) == 1 and named in errors[0]  # MLflow's own log lines aside
        assert not out.exists() and not list(tmp_path.glob(".never*"))
        runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
        assert len(runs) == before + failed_run
        if failed_run:
            assert runs[0].info.status == "FAILED" and named in runs[0].data.tags["armseg.error"]


def test_default_pyramid_suits_the_scan_size() -> None:
    assert RegistrationSettings().pyramid((256, 256, 100)) == ((8, 4, 2), (4.0, 2.0, 1.0))
    assert RegistrationSettings().pyramid((48, 64, 12)) == ((3, 2), (1.5, 1.0))  # coarsest keeps 16 px
    assert RegistrationSettings(shrink_factors=(2, 1)).pyramid((48, 64, 12)) == ((2, 1), (1.0, 0.0))


def test_settings_mistakes_are_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ArmsegError, match="--stages"):
        settings(stages=["affine", "rigid"])
    with pytest.raises(ArmsegError, match="--smoothing-sigmas"):
        settings(shrink_factors=(4, 2), smoothing_sigmas=(1,))
    with pytest.raises(ArmsegError, match="--shrink-factors too"):
        settings(smoothing_sigmas=(1,))
    with pytest.raises(ArmsegError, match="--iterations"):
        settings(iterations=(1, 2))


@pytest.fixture
def tree(tmp_path: Path, tiny_tree: Path) -> Path:
    """A private copy: the session's tiny tree is shared and must stay untouched."""
    return Path(shutil.copytree(tiny_tree, tmp_path / "data"))


def test_batch_writes_a_model_folder_and_skips_the_atlas(tree: Path, tracking: str) -> None:
    argv = ["register", "--data-root", str(tree), "--subjects", "SubA", "--atlas", "trial1_0_fs",
            "--stages", "rigid", "--iterations", "3", "--shrink-factors", "1"]
    assert main(argv) == 0
    scans = prediction_sources(tree, "SubA")
    expected = [prediction_path(tree, "SubA", "registration-trial1_0_fs", s) for s in scans
                if s.trial != "trial1_0_fs"]  # the atlas is a byte copy of SubA's trial1: skipped
    folder = tree / "SubA" / "predictions" / "registration-trial1_0_fs"
    sidecars = sorted(p for p in (tree / "SubA" / "predictions").rglob("armseg_model.json"))
    assert sorted(p for p in (tree / "SubA" / "predictions").rglob("*_pred_seg.nii")) == sorted(expected)
    assert sidecars == [folder / "armseg_model.json"]
    for scan in scans:
        if scan.trial != "trial1_0_fs":
            source = read_image(scan.volume)
            written = read_image(prediction_path(tree, "SubA", "registration-trial1_0_fs", scan))
            assert written.array.shape == source.array.shape
            np.testing.assert_allclose(written.affine, source.affine)
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == len(expected)
    assert parents[0].data.tags["armseg.model"] == "registration-trial1_0_fs"
    record = read_sidecar(folder)  # the baseline's record: the register run, no model URI
    assert (record.model_uri, record.run_id, record.version, record.folder) == (
        None, parents[0].info.run_id, None, "registration-trial1_0_fs")
    assert {r.data.tags["armseg.scan"] for r in children} == {f"{s.trial_id}A" for s in scans} - {"trial1A"}
    assert all(r.info.status == "FINISHED" and r.data.tags["armseg.stage"] == "register" for r in runs)
    stamps = {p: p.stat().st_mtime_ns for p in expected}
    paths = register_subjects(tree, ["SubA"], "trial1_0_fs", settings(stages=["rigid"], iterations=(3,)))
    assert sorted(paths) == sorted(expected) and {p: p.stat().st_mtime_ns for p in expected} == stamps
    assert len(mlflow.search_runs(search_all_experiments=True, output_format="list")) == len(runs) + 1


def test_atlas_is_found_by_name_or_path_and_must_be_unique_and_segmented(tree: Path) -> None:
    assert "training_groups" in find_labelled_trial(tree, "trial6_30_fs").folder.parts  # groups come first
    by_path = find_labelled_trial(tree, "SubB/prediction_sources/trial6_30_fs")
    assert by_path.folder == tree / "SubB" / "prediction_sources" / "trial6_30_fs"
    with pytest.raises(ArmsegError, match="no trial folder of that name"):
        find_labelled_trial(tree, "trial99_0_fs")
    other = tree / "training_groups" / "group_9" / "group_9_1" / "trial1_0_fs"
    shutil.copytree(tree / "SubB" / "prediction_sources" / "trial1_0_fs", other)
    with pytest.raises(ArmsegError, match="ambiguous"):
        find_labelled_trial(tree, "trial1_0_fs")
    (other / "trial1_0_fs_seg.nii").unlink()
    with pytest.raises(ArmsegError, match="no segmentation"):
        find_labelled_trial(tree, str(other))
