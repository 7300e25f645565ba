"""`armseg augment`: labels kept exact, geometry kept, rotation direction, determinism, names,
no overwriting, the run it logs, and bad parameters."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import nibabel as nib
import numpy as np
import pytest

from armseg.augment import command as augment_command
from armseg.augment.elastic import deform_pair, displacement_field
from armseg.augment.rotation import rotate_pair
from armseg.augment.run import augment_group
from armseg.augment.write import elastic_folder_name, rotation_folder_name
from armseg.cli import main
from armseg.errors import ArmsegError
from armseg.io.tree import find_group, group_scans, is_augmented, read_trial_folder, source_trial

SHAPE = (48, 64, 12)
# Oblique and anisotropic in-plane (0.2 x 0.15 mm): outputs must carry this affine exactly.
AFFINE = np.array([[0.0, -0.15, 0.0, 12.0], [0.2, 0.0, 0.0, -3.0],
                   [0.0, 0.0, 1.0, 40.0], [0.0, 0.0, 0.0, 1.0]])
RAW_VALUES = {0, 7, 51, 52}
GROUP = "group_1_2"


def phantom(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A speckled volume with a fat layer (51), a biceps (52) and a humerus (7)."""
    rows, cols = np.ogrid[: SHAPE[0], : SHAPE[1]]
    labels = np.zeros(SHAPE, np.uint8)
    labels[3:8] = 51
    labels[(rows - 18) ** 2 + (cols - 30) ** 2 < 100] = 52
    labels[(rows - 36) ** 2 + (cols - 34) ** 2 < 25] = 7
    speckle = np.random.default_rng(seed).integers(0, 60, SHAPE)
    volume = (speckle + np.select([labels == 51, labels == 52, labels == 7], [180, 90, 230], 20))
    return np.clip(volume, 0, 255).astype(np.uint8), labels


def write_trial(folder: Path, volume: np.ndarray, labels: np.ndarray, suffix: str = ".nii") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(volume, AFFINE)
    image.header["descrip"] = b"scanner export"
    image.header.set_xyzt_units("mm")
    nib.save(image, str(folder / f"{folder.name}_volume{suffix}"))
    nib.save(nib.Nifti1Image(labels, AFFINE), str(folder / f"{folder.name}_seg{suffix}"))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Two original trials and one old seed-style elastic copy in `group_1_2`."""
    root = tmp_path / "data"
    group = root / "training_groups" / "group_1" / GROUP
    write_trial(group / "trial1_0_fs", *phantom(0))
    write_trial(group / "trial6_30_fs", *phantom(1), suffix=".nii.gz")
    write_trial(group / "trial6_30_fs_ed", *phantom(2))
    return root


def group_folder(root: Path) -> Path:
    return find_group(root, GROUP)


def centroid(mask: np.ndarray) -> np.ndarray:
    return np.array([index.mean() for index in np.nonzero(mask)])


# --- the transforms on arrays -------------------------------------------------------------

def test_rotation_keeps_labels_exact_and_shape() -> None:
    volume, labels = phantom()
    rotated, rotated_labels = rotate_pair(volume, labels, 17.5, spacing=(0.2, 0.15, 1.0))
    assert rotated.shape == rotated_labels.shape == SHAPE
    assert rotated_labels.dtype == labels.dtype
    assert set(np.unique(rotated_labels)) <= RAW_VALUES
    assert {7, 52} <= set(np.unique(rotated_labels))


def test_rotation_moves_an_off_centre_blob_the_documented_way() -> None:
    shape = (41, 41, 3)
    labels = np.zeros(shape, np.uint8)
    labels[28:33, 18:23] = 52  # 10 px below the centre (20, 20) along the first axis
    volume = labels.astype(np.float32)
    for degrees in (30.0, 90.0, -45.0):
        _, moved = rotate_pair(volume, labels, degrees)
        offset = centroid(moved[..., 1] == 52) - 20.0
        assert np.degrees(np.arctan2(offset[1], offset[0])) == pytest.approx(degrees, abs=3)
        assert np.hypot(*offset) == pytest.approx(10.0, abs=0.6)
    # On 2 x 1 mm pixels a quarter turn takes 5 rows (10 mm) to 10 columns (10 mm): no shear.
    labels[:] = 0
    labels[23:28, 18:23] = 52
    _, moved = rotate_pair(labels.astype(np.float32), labels, 90.0, spacing=(2.0, 1.0, 1.0))
    offset = centroid(moved[..., 1] == 52) - 20.0
    assert offset == pytest.approx([0.0, 10.0], abs=0.6)


def test_rotation_back_and_forth_restores_the_interior() -> None:
    rows, cols = np.ogrid[:48, :64]
    plane = 100 + 50 * np.sin(rows / 5.0) * np.cos(cols / 7.0)
    volume = np.repeat(plane[..., np.newaxis], 12, axis=2).astype(np.float32)
    labels = np.zeros(volume.shape, np.uint8)
    there, _ = rotate_pair(volume, labels, 10.0)
    back, _ = rotate_pair(there, labels, -10.0)
    interior = (rows - 23.5) ** 2 + (cols - 31.5) ** 2 < 18**2
    assert np.abs(back - volume)[interior].mean() < 1.0
    assert (back[0, 0] == 0).all()  # the corners come from outside the field of view: 0


def test_rotation_about_another_slice_axis() -> None:
    volume, labels = phantom()
    moved, moved_labels = rotate_pair(np.moveaxis(volume, 2, 0), np.moveaxis(labels, 2, 0), 12.0,
                                      slice_axis=0)
    expected, expected_labels = rotate_pair(volume, labels, 12.0)
    np.testing.assert_allclose(np.moveaxis(moved, 0, 2), expected, atol=1e-4)
    np.testing.assert_array_equal(np.moveaxis(moved_labels, 0, 2), expected_labels)


def test_elastic_field_is_in_plane_smooth_and_scaled_by_alpha() -> None:
    field = displacement_field(SHAPE, 3.0, 6.0, np.random.default_rng(0))
    assert field.shape == (2, *SHAPE) and field.dtype == np.float32
    assert np.sqrt((field.astype(float) ** 2).sum(axis=0).mean()) == pytest.approx(3.0, rel=1e-4)
    # Neighbouring pixels move alike (smooth); without slice smoothing, slices are independent.
    assert np.corrcoef(field[0, :-1].ravel(), field[0, 1:].ravel())[0, 1] > 0.9
    assert abs(np.corrcoef(field[0, ..., :-1].ravel(), field[0, ..., 1:].ravel())[0, 1]) < 0.2
    along = displacement_field(SHAPE, 3.0, 6.0, np.random.default_rng(0), slice_sigma=3.0)
    assert np.corrcoef(along[0, ..., :-1].ravel(), along[0, ..., 1:].ravel())[0, 1] > 0.8


def test_elastic_keeps_labels_exact_and_alpha_zero_is_identity() -> None:
    volume, labels = phantom()
    field = displacement_field(SHAPE, 4.0, 5.0, np.random.default_rng(1))
    warped, warped_labels = deform_pair(volume, labels, field)
    assert set(np.unique(warped_labels)) <= RAW_VALUES and warped_labels.dtype == labels.dtype
    assert (warped_labels != labels).any()
    still, still_labels = deform_pair(volume, labels, np.zeros_like(field))
    np.testing.assert_array_equal(still_labels, labels)
    np.testing.assert_allclose(still, volume)


def test_elastic_in_slabs_equals_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    volume, labels = phantom()
    field = displacement_field(SHAPE, 4.0, 5.0, np.random.default_rng(2), slice_axis=1)
    whole = deform_pair(volume, labels, field, slice_axis=1)
    monkeypatch.setattr("armseg.augment.elastic.SLAB_VOXELS", SHAPE[0] * SHAPE[2] * 5)
    slabs = deform_pair(volume, labels, field, slice_axis=1)
    np.testing.assert_array_equal(whole[0], slabs[0])
    np.testing.assert_array_equal(whole[1], slabs[1])


def test_folder_names_are_the_seeds_and_recognised_as_augmented() -> None:
    names = [rotation_folder_name("trial1_0_fs", -10.0), rotation_folder_name("trial1_0_fs", 10),
             rotation_folder_name("trial1_0_fs", 7.5), elastic_folder_name("trial1_0_fs", 5, 10.0),
             elastic_folder_name("trial1_0_fs", 2.5, 0.75),
             elastic_folder_name("trial6_30_fs_SubB", 1e-5, 3)]
    assert names[:4] == ["trial1_0_fs_rot-10", "trial1_0_fs_rot10", "trial1_0_fs_rot7.5",
                         "trial1_0_fs_a5_s10_ed"]
    assert names[5] == "trial6_30_fs_SubB_a0.00001_s3_ed"
    assert all(is_augmented(name) for name in names)
    assert [source_trial(name) for name in names] == ["trial1_0_fs"] * 5 + ["trial6_30_fs_SubB"]


# --- the command on a tree ----------------------------------------------------------------

def test_augment_group_writes_copies_on_the_source_grid(tree: Path, tracking: str) -> None:
    written = augment_group(tree, GROUP, degrees=[-10, 10], alphas=[3], sigmas=[6], seed=0)
    folder = group_folder(tree)
    names = sorted(path.name for path in written)
    assert names == sorted(f"{trial}_{suffix}" for trial in ("trial1_0_fs", "trial6_30_fs")
                           for suffix in ("rot-10", "rot10", "a3_s6_ed"))
    assert not (folder / "trial6_30_fs_ed_rot10").exists()  # copies are never augmented again
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no staging left behind
    originals = {s.trial: s for s in group_scans(folder, include_augmented=False)}
    assert sorted(originals) == ["trial1_0_fs", "trial6_30_fs"]
    everything = group_scans(folder, include_augmented=True)
    assert len(everything) == 2 + 1 + 6
    for path in written:
        scan = read_trial_folder(path)
        assert scan.volume.name == f"{path.name}_volume.nii"
        assert scan.segmentation.name == f"{path.name}_seg.nii"
        assert scan.augmented and scan.source_trial in originals
        source = originals[scan.source_trial]
        for new, old in ((scan.volume, source.volume), (scan.segmentation, source.segmentation)):
            new_image, old_image = nib.load(str(new)), nib.load(str(old))
            assert new_image.shape == old_image.shape == SHAPE
            np.testing.assert_array_equal(new_image.affine, old_image.affine)
            assert new_image.get_data_dtype() == old_image.get_data_dtype()
            for key in ("pixdim", "qform_code", "sform_code", "xyzt_units", "descrip"):
                np.testing.assert_array_equal(new_image.header[key], old_image.header[key])
        labels = np.asarray(nib.load(str(scan.segmentation)).dataobj)
        source_labels = np.asarray(nib.load(str(source.segmentation)).dataobj)
        assert set(np.unique(labels)) <= set(np.unique(source_labels))


def test_augment_run_is_logged(tree: Path, tracking: str) -> None:
    augment_group(tree, GROUP, degrees=[5], alphas=[2], sigmas=[4, 8], seed=3)
    run = mlflow.search_runs(search_all_experiments=True, output_format="list")[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["armseg.stage"] == "augment" and run.data.tags["armseg.group"] == GROUP
    assert run.data.params["degrees"] == "5" and run.data.params["sigmas"] == "4 8"
    assert run.data.params["seed"] == "3" and run.data.params["overwrite"] == "False"
    assert run.data.metrics["seconds_per_scan"] > 0
    assert run.data.metrics["folders_written"] == 6 and run.data.metrics["scans"] == 2
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"written.txt", "augment_preview.png"} <= artifacts
    listed = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="written.txt"))
    assert len(listed.read_text().splitlines()) == 12


def test_same_seed_same_files_other_seed_other_elastic(tree: Path, tmp_path: Path, tracking: str) -> None:

    twin = tmp_path / "twin"
    other = tmp_path / "other"
    shutil.copytree(tree, twin)
    shutil.copytree(tree, other)
    kwargs = {"degrees": [10], "alphas": [3], "sigmas": [6]}
    augment_group(tree, GROUP, seed=7, **kwargs)
    augment_group(twin, GROUP, seed=7, **kwargs)
    augment_group(other, GROUP, seed=8, **kwargs)
    for relative in ("trial1_0_fs_a3_s6_ed/trial1_0_fs_a3_s6_ed_volume.nii",
                     "trial1_0_fs_a3_s6_ed/trial1_0_fs_a3_s6_ed_seg.nii",
                     "trial1_0_fs_rot10/trial1_0_fs_rot10_volume.nii"):
        assert (group_folder(tree) / relative).read_bytes() == (group_folder(twin) / relative).read_bytes()
    elastic = "trial1_0_fs_a3_s6_ed/trial1_0_fs_a3_s6_ed_volume.nii"
    assert (group_folder(tree) / elastic).read_bytes() != (group_folder(other) / elastic).read_bytes()
    rotated = "trial1_0_fs_rot10/trial1_0_fs_rot10_volume.nii"
    assert (group_folder(tree) / rotated).read_bytes() == (group_folder(other) / rotated).read_bytes()


def test_existing_folders_are_kept_unless_overwrite(tree: Path, tracking: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    folder = group_folder(tree) / "trial1_0_fs_rot10"
    write_trial(folder, *phantom(5))
    mine = {path.name: path.read_bytes() for path in folder.iterdir()}
    written = augment_group(tree, GROUP, degrees=[10], alphas=[], sigmas=[])
    assert [p.name for p in written] == ["trial6_30_fs_rot10"]
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == mine
    assert "trial1_0_fs_rot10 exists, skipped" in capsys.readouterr().out
    run = mlflow.search_runs(search_all_experiments=True, output_format="list")[0]
    assert run.data.metrics["folders_skipped"] == 1
    written = augment_group(tree, GROUP, degrees=[10], alphas=[], sigmas=[], overwrite=True)
    assert sorted(p.name for p in written) == ["trial1_0_fs_rot10", "trial6_30_fs_rot10"]
    assert {path.name: path.read_bytes() for path in folder.iterdir()} != mine


def test_a_failed_write_leaves_no_folder(tree: Path, tracking: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import armseg.augment.write as write

    real = write.write_like

    def fail_on_seg(path: Path, array: np.ndarray, reference: object) -> Path:
        if "_seg" in Path(path).name:
            raise OSError("disk full")
        return real(path, array, reference)

    monkeypatch.setattr(write, "write_like", fail_on_seg)
    with pytest.raises(OSError):
        augment_group(tree, GROUP, degrees=[10], alphas=[], sigmas=[])
    assert sorted(p.name for p in group_folder(tree).iterdir()) == ["trial1_0_fs", "trial6_30_fs",
                                                                   "trial6_30_fs_ed"]
    run = mlflow.search_runs(search_all_experiments=True, output_format="list")[0]
    assert run.info.status == "FAILED"


def test_cli_augments_with_mlproject_style_lists(tree: Path, tracking: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # MLproject hands a list over as one string; `--degrees=...` keeps a leading minus a value.
    code = main(["augment", "--data-root", str(tree), "--group", GROUP, "--degrees=-7.5,7.5",
                 "--alphas", "", "--sigmas", "4", "--seed", "1", "--overwrite", "false"])
    assert code == 0
    out = capsys.readouterr().out
    assert "wrote 4 folders" in out and "MLflow run" in out
    assert (group_folder(tree) / "trial1_0_fs_rot-7.5").is_dir()


@pytest.mark.parametrize(("args", "message"), [
    (["--degrees", "200"], "--degrees: 200 is outside -180..180"),
    (["--degrees", "ten"], "--degrees: 'ten' is not a number"),
    (["--sigmas", "0"], "--sigmas: 0 is not positive"),
    (["--alphas", "-1"], "--alphas: -1 is negative"),
    (["--alphas", "nan"], "--alphas: 'nan' is not a finite number"),
    (["--slice-axis", "3"], "--slice-axis must be 0, 1 or 2"),
    (["--seed", "-1"], "--seed must be a non-negative integer"),
    (["--overwrite", "maybe"], "--overwrite: 'maybe' is not true or false"),
    (["--degrees", "--alphas"], "nothing to do"),
    (["--group", "group_9"], "group 'group_9' not found"),
])
def test_bad_parameters_are_one_sentence_and_a_failed_run(
        tree: Path, tracking: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    code = main(["augment", "--data-root", str(tree), "--group", GROUP, *args])
    assert code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # MLflow may log before it
    assert error.startswith("armseg augment: error: ") and message in error
    assert sorted(p.name for p in group_folder(tree).iterdir()) == ["trial1_0_fs", "trial6_30_fs",
                                                                   "trial6_30_fs_ed"]
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert all(run.info.status == "FAILED" for run in runs)


def test_a_group_without_originals_is_an_error(tmp_path: Path, tracking: str) -> None:
    group = tmp_path / "data" / "training_groups" / "g"
    write_trial(group / "trial1_0_fs_ed", *phantom())
    with pytest.raises(ArmsegError, match="holds no original scans"):
        augment_group(tmp_path / "data", "g", degrees=[10], alphas=[], sigmas=[])


def test_mismatched_segmentation_names_the_file(tree: Path, tracking: str) -> None:
    folder = group_folder(tree) / "trial1_0_fs"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), AFFINE), str(folder / "trial1_0_fs_seg.nii"))
    with pytest.raises(ArmsegError, match=r"trial1_0_fs_seg.nii: shape \(4, 4, 4\) differs"):
        augment_group(tree, GROUP, degrees=[10], alphas=[], sigmas=[])


def test_command_module_has_defaults_for_every_flag() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    augment_command.configure(parser)
    args = parser.parse_args(["--group", GROUP])
    assert args.degrees == ["-10", "10"] and args.seed == "0" and args.slice_axis == "2"
