"""The phantom generator: exact labels, ultrasound-like images, a complete OpenArm tree."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy.ndimage import binary_erosion

from armseg.errors import ArmsegError
from armseg.synth import command
from armseg.synth.montage import save_montage
from armseg.synth.phantom import (
    BICEPS,
    HUMERUS,
    _Echoes,
    envelope,
    field_of_view,
    sample_subject,
    synth_envelope,
    synth_scan,
)
from armseg.synth.tree import write_tree

OPENARM_LABELS = {0, 7, 8, 9, 45, 51, 52, 53}
TINY = (48, 64)


def scan(seed: int = 1, size: tuple[int, int] = TINY, slices: int = 12, angle: float = 0.0,
         load: float = 0.0, subject_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    subject = sample_subject(np.random.default_rng(subject_seed))
    return synth_scan(size, slices, subject, angle, load, np.random.default_rng(seed))


def test_same_seed_same_scan_and_another_seed_another() -> None:
    volume, labels = scan(seed=1)
    again, again_labels = scan(seed=1)
    other, _ = scan(seed=2)
    assert volume.dtype == labels.dtype == np.uint8
    assert volume.shape == labels.shape == (*TINY, 12)
    np.testing.assert_array_equal(volume, again)
    np.testing.assert_array_equal(labels, again_labels)
    assert (volume != other).mean() > 0.5


def test_labels_are_openarm_values_with_humerus_and_biceps_in_most_slices() -> None:
    for subject_seed in range(4):
        _, labels = scan(subject_seed=subject_seed, angle=30 * subject_seed)
        assert set(np.unique(labels).tolist()) <= OPENARM_LABELS
        for target in (HUMERUS, BICEPS):
            present = (labels == target).any(axis=(0, 1))
            assert present.mean() >= 0.8, (subject_seed, target)


def test_odd_in_plane_size_is_handled() -> None:
    volume, labels = scan(size=(130, 517), slices=3)
    assert volume.shape == labels.shape == (130, 517, 3)
    assert {HUMERUS, BICEPS} <= set(np.unique(labels).tolist())


def test_anatomy_follows_elbow_angle_and_changes_smoothly_along_the_arm() -> None:
    _, straight = scan(size=(64, 64), slices=40, angle=0)
    _, flexed = scan(size=(64, 64), slices=40, angle=90, load=0.75)
    area = (straight == BICEPS).sum(axis=(0, 1)).astype(float)
    assert (flexed == BICEPS).sum() > 1.1 * area.sum()  # a flexed, loaded biceps bulges
    assert np.abs(np.diff(area)).max() < 0.1 * area.max()  # no jumps between 1 mm slices
    _, someone_else = scan(size=(64, 64), slices=40, subject_seed=7)
    assert (someone_else != straight).mean() > 0.05


def test_speckle_is_rayleigh_in_homogeneous_tissue() -> None:
    shape = (128, 128, 4)
    echoes = _Echoes(np.full(shape, 0.05, np.float32), np.zeros(shape, np.float32))
    gain = np.ones(shape, np.float32)
    single = envelope(echoes, gain, (1.2, 2.5), np.random.default_rng(0))
    assert 0.47 < single.std() / single.mean() < 0.57  # Rayleigh: sqrt(4/pi - 1) = 0.52
    compounded = envelope(echoes, gain, (1.2, 2.5), np.random.default_rng(0), looks=2)
    assert 0.3 < compounded.std() / compounded.mean() < 0.45  # two looks: about 0.52 / sqrt(2)


def test_image_looks_like_arm_ultrasound() -> None:
    size, slices = (128, 128), 6
    subject = sample_subject(np.random.default_rng(3))
    volume, labels = synth_scan(size, slices, subject, 0, 0, np.random.default_rng(4))
    env, env_labels = synth_envelope(size, slices, subject, 0, 0, np.random.default_rng(4))
    np.testing.assert_array_equal(labels, env_labels)
    dz = field_of_view(size, slices).spacing[0]

    biceps = binary_erosion(labels == BICEPS, np.ones((3, 3, 1)), iterations=2)
    muscle_grey = volume[biceps].mean()
    muscle_env = env[biceps]
    assert 0.45 < muscle_env.std() / muscle_env.mean() < 1.5  # speckle, not a flat fill

    bone = labels == HUMERUS
    top = np.argmax(bone, axis=0)  # first bone row per (column, slice)
    has_bone = bone.any(axis=0)
    rows = np.arange(size[0])[:, None, None]
    surface = has_bone & (rows >= top - round(1.0 / dz)) & (rows <= top)
    deep = has_bone & (rows > top + round(3.0 / dz))  # bone interior and shadow beneath
    surface_peak = np.where(surface, volume, 0).max(axis=0)[has_bone].astype(float)
    assert np.median(surface_peak) > muscle_grey + 80  # bright cortical line
    assert volume[deep].mean() < 0.5 * muscle_grey  # acoustic shadow
    assert volume[:2].mean() > muscle_grey  # bright skin line at the probe


def test_tree_has_openarm_layout_and_holds_out_the_last_subject(tmp_path: Path) -> None:
    root = tmp_path / "data"
    summary = write_tree(root, subjects=3, seed=5, size=TINY, slices=4, progress=None)
    assert summary.subjects == ["SubA", "SubB", "SubC"]
    assert summary.test_subject == "SubC" and "SubC" not in summary.training_subjects
    groups = sorted(p.name for p in (root / "training_groups").glob("group_*/group_*_*"))
    assert groups == sorted(summary.groups) and len(groups) >= 3
    for group_folder in (root / "training_groups").glob("group_*/group_*_*"):
        trials = sorted(group_folder.iterdir())
        assert 2 <= len(trials) <= 4
        for trial in trials:
            assert trial.name.startswith("trial") and "SubC" not in trial.name
            (vol,) = [p for p in trial.iterdir() if "vol" in p.name]
            (seg,) = [p for p in trial.iterdir() if "seg" in p.name]
            assert vol.name.startswith(trial.name) and seg.name.startswith(trial.name)
            assert nib.load(vol).shape == nib.load(seg).shape == (*TINY, 4)
    for subject in summary.subjects:
        base = root / subject
        assert (base / "predictions").is_dir() and not any((base / "predictions").iterdir())
        volumes = sorted(p.name for p in (base / "all_nifti").iterdir())
        assert volumes == sorted(f"{t}_volume.nii" for t in summary.trials)
        for trial in summary.trials:
            seg = nib.load(base / "prediction_sources" / trial / f"{trial}_seg.nii")
            vol = nib.load(base / "prediction_sources" / trial / f"{trial}_volume.nii")
            assert seg.get_data_dtype() == vol.get_data_dtype() == np.uint8
            assert seg.shape == vol.shape
            np.testing.assert_allclose(seg.header.get_zooms(), summary.spacing_mm, rtol=1e-5)
    assert not list(root.rglob(".*"))  # no temporary files left behind
    assert json.loads((root / "synth.json").read_text())["test_subject"] == "SubC"


def test_same_seed_writes_byte_identical_trees(tmp_path: Path) -> None:
    def files(root: Path) -> dict[str, bytes]:
        write_tree(root, subjects=2, seed=9, size=(40, 40), slices=3, progress=None)
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    first, second = files(tmp_path / "a"), files(tmp_path / "b")
    assert first == second
    other = write_tree(tmp_path / "c", subjects=2, seed=10, size=(40, 40), slices=3,
                       progress=None)
    name = "SubA/all_nifti/trial1_0_fs_volume.nii"
    assert (other.root / name).read_bytes() != first[name]


@pytest.mark.parametrize(("kwargs", "parameter"), [
    ({"subjects": 1}, "--subjects"),
    ({"size": (16, 64)}, "--size"),
    ({"slices": 0}, "--slices"),
    ({"seed": -1}, "--seed"),
])
def test_bad_parameters_are_one_sentence_naming_them(tmp_path: Path, kwargs: dict,
                                                     parameter: str) -> None:
    arguments = {"subjects": 2, "size": TINY, "slices": 2, "progress": None, **kwargs}
    with pytest.raises(ArmsegError, match=parameter):
        write_tree(tmp_path / "out", **arguments)
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "data"
    target.write_text("not a folder")
    with pytest.raises(ArmsegError, match="--out"):
        write_tree(target, subjects=2, size=TINY, slices=2, progress=None)


def test_montage_is_a_png(tmp_path: Path) -> None:
    volume, labels = scan()
    path = save_montage(volume, labels, tmp_path / "pics" / "montage.png", n=4,
                        spacing=(0.8, 0.8))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["montage.png"]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-root", default="data")
    command.configure(parser)
    return parser.parse_args(argv)


def test_command_writes_tree_and_montage_as_a_tracked_run(tmp_path: Path, tracking: str) -> None:
    import mlflow

    out = tmp_path / "tree"
    command.run(parse(["--out", str(out), "--subjects", "2", "--size", "40 48", "--slices", "3",
                       "--seed", "4"]))
    assert (out / "montage.png").is_file()
    assert (out / "SubB" / "prediction_sources" / "trial1_0_fs").is_dir()
    [run] = mlflow.search_runs(output_format="list")
    assert run.info.status == "FINISHED" and run.data.tags["armseg.stage"] == "synth"
    assert run.data.params["size"] == "40 48" and run.data.params["subjects"] == "2"
    assert run.data.metrics["seconds_per_scan"] >= 0 and run.data.metrics["scans"] == 12
    artifacts = {f.path for f in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert artifacts == {"montage.png", "synth.json"}


def test_command_refuses_a_one_number_size(tmp_path: Path, tracking: str) -> None:
    with pytest.raises(ArmsegError, match="--size"):
        command.run(parse(["--out", str(tmp_path / "x"), "--size", "64"]))
