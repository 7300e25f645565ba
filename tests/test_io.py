"""The reader/writer, label map, padding and the OpenArm tree, on hand-made files."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from armseg.errors import ArmsegError
from armseg.io.geometry import crop_to_shape, from_slices, pad_to_multiple, to_slices
from armseg.io.images import read_image, write_like
from armseg.io.labels import DEFAULT_LABEL_MAP, LabelMap
from armseg.io.pairs import read_labelled_scan
from armseg.io.tree import (
    find_group,
    find_prediction,
    group_scans,
    is_augmented,
    list_groups,
    prediction_path,
    prediction_sources,
    read_trial_folder,
    scan_key,
    source_trial,
)

AFFINE = np.array([[0.0, -0.15, 0.0, 12.0], [0.2, 0.0, 0.0, -3.0],
                   [0.0, 0.0, 1.0, 40.0], [0.0, 0.0, 0.0, 1.0]])


def save(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def make_trial(folder: Path, shape=(10, 12, 3), suffix=".nii", seg=True) -> Path:
    volume = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
    labels = np.zeros(shape, np.uint8)
    labels[2:5, 3:6] = 7
    labels[6:9, 1:4] = 52
    save(folder / f"{folder.name}_volume{suffix}", volume)
    if seg:
        save(folder / f"{folder.name}_seg{suffix}", labels)
    return folder


def test_label_map_encodes_openarm_values_and_mislabels() -> None:
    raw = np.array([0, 7, 8, 9, 45, 51, 52, 53, 68, 6, 1], dtype=np.uint8)
    classes = DEFAULT_LABEL_MAP.encode(raw, "x.nii")
    assert classes.tolist() == [0, 1, 0, 0, 0, 0, 2, 0, 0, 1, 1]
    assert DEFAULT_LABEL_MAP.decode(classes).tolist() == [0, 7, 0, 0, 0, 0, 52, 0, 0, 7, 7]


def test_unknown_label_values_name_the_file() -> None:
    with pytest.raises(ArmsegError, match=r"bad_seg.nii: unknown label values 3, 300"):
        DEFAULT_LABEL_MAP.encode(np.array([0, 3, 7, 300], np.int16), "bad_seg.nii")


def test_float_labels_must_be_integral() -> None:
    assert DEFAULT_LABEL_MAP.encode(np.array([7.0, 52.0]), "s.nii").tolist() == [1, 2]
    with pytest.raises(ArmsegError, match="non-integer"):
        DEFAULT_LABEL_MAP.encode(np.array([7.5]), "s.nii")


def test_label_map_from_json_and_conflicts() -> None:
    custom = LabelMap.from_json('{"background": [0], "humerus": [3], "biceps": [4, 5]}')
    assert custom.encode(np.array([0, 3, 5]), "s").tolist() == [0, 1, 2]
    with pytest.raises(ArmsegError, match="both"):
        LabelMap.from_json('{"background": [0, 3], "humerus": [3]}')


@pytest.mark.parametrize("shape", [(130, 517), (48, 64), (1, 1), (513, 600)])
def test_pad_and_crop_round_trip(shape: tuple[int, int]) -> None:
    stack = np.random.default_rng(0).integers(0, 255, (3, *shape), dtype=np.uint8)
    padded = pad_to_multiple(stack, 16)
    assert padded.shape[1] % 16 == 0 and padded.shape[2] % 16 == 0
    assert np.array_equal(crop_to_shape(padded, *shape), stack)


def test_slices_round_trip_any_axis() -> None:
    volume = np.arange(60).reshape(3, 4, 5)
    for axis in range(3):
        assert np.array_equal(from_slices(to_slices(volume, axis), axis), volume)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_write_like_keeps_affine_header_and_is_atomic(tmp_path: Path, suffix: str) -> None:
    source = save(tmp_path / f"vol{suffix}", np.zeros((130, 517, 4), np.float32))
    reference = read_image(source)
    out = write_like(tmp_path / "out" / f"pred{suffix}", np.full((130, 517, 4), 7, np.uint8), reference)
    written = nib.load(str(out))
    assert np.allclose(written.affine, AFFINE)
    assert written.get_data_dtype() == np.uint8
    assert np.asarray(written.dataobj).max() == 7
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary left behind
    assert reference.spacing == pytest.approx((0.2, 0.15, 1.0))


def test_write_like_refuses_a_different_shape(tmp_path: Path) -> None:
    reference = read_image(save(tmp_path / "vol.nii", np.zeros((4, 5, 6), np.uint8)))
    with pytest.raises(ArmsegError, match="differs"):
        write_like(tmp_path / "pred.nii", np.zeros((4, 5, 7), np.uint8), reference)
    assert not (tmp_path / "pred.nii").exists()


def test_mha_reads_with_nifti_axis_order_and_ras_affine(tmp_path: Path) -> None:
    array = np.random.default_rng(1).integers(0, 100, (5, 6, 7)).astype(np.uint8)  # (x, y, z)
    image = sitk.GetImageFromArray(array.T)
    image.SetSpacing((0.5, 0.25, 2.0))
    image.SetOrigin((10.0, 20.0, 30.0))
    sitk.WriteImage(image, str(tmp_path / "vol.mha"))
    read = read_image(tmp_path / "vol.mha")
    assert np.array_equal(read.array, array)
    assert read.spacing == pytest.approx((0.5, 0.25, 2.0))
    assert read.affine[:3, 3] == pytest.approx((-10.0, -20.0, 30.0))


def test_unreadable_file_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "broken.nii").write_bytes(b"not a nifti")
    with pytest.raises(ArmsegError, match=r"broken.nii: cannot be read"):
        read_image(tmp_path / "broken.nii")
    with pytest.raises(ArmsegError, match="no such file"):
        read_image(tmp_path / "missing.nii")


def test_groups_found_anywhere_and_unknown_lists_them(tmp_path: Path) -> None:
    make_trial(tmp_path / "training_groups/group_1/group_1_1/trial1_0_fs")
    make_trial(tmp_path / "training_groups/group_2_3/trial2_30_fs", suffix=".nii.gz")
    assert set(list_groups(tmp_path)) == {"group_1_1", "group_2_3"}
    assert find_group(tmp_path, "group_2_3").name == "group_2_3"
    with pytest.raises(ArmsegError, match=r"groups there: group_1_1, group_2_3"):
        find_group(tmp_path, "group_9")


def test_ambiguous_group_is_an_error(tmp_path: Path) -> None:
    make_trial(tmp_path / "training_groups/a/group_1/trial1_x")
    make_trial(tmp_path / "training_groups/b/group_1/trial2_x")
    with pytest.raises(ArmsegError, match="ambiguous"):
        find_group(tmp_path, "group_1")


@pytest.mark.parametrize("name", ["trial1_0_fs_ed", "trial1_0_fs_rot", "trial1_0_fs_rot-10",
                                  "trial1_0_fs_rot10", "trial1_0_fs_ROT", "trial1_0_fs_a4_s10_ed",
                                  "trial1_0_fs_rot7.5"])
def test_augmented_folders_are_recognised(name: str) -> None:
    """OpenArm's `_ed` and bare `_rot`, and armseg's `_rot<degrees>` and `_a<alpha>_s<sigma>_ed`."""
    assert is_augmented(name) and source_trial(name) == "trial1_0_fs"


def test_original_folders_are_not_augmented() -> None:
    for name in ("trial1_0_fs", "trial1_red_arm", "trial1_0_fs_rotated", "trial1_0_fs_edge",
                 "trial1_0_fs_SubB"):
        assert not is_augmented(name) and source_trial(name) == name
    assert scan_key("trial6_30_fs", "SubB") == "trial6B"


def test_trial_without_segmentation_is_named(tmp_path: Path) -> None:
    make_trial(tmp_path / "training_groups/g/trial1_a", seg=False)
    with pytest.raises(ArmsegError, match=r"trial1_a: has a volume but no segmentation"):
        group_scans(find_group(tmp_path, "g"))


def test_shape_mismatch_names_the_segmentation(tmp_path: Path) -> None:
    folder = tmp_path / "trial1_a"
    save(folder / "trial1_a_volume.nii", np.zeros((4, 5, 6), np.uint8))
    save(folder / "trial1_a_seg.nii", np.zeros((4, 5, 7), np.uint8))
    with pytest.raises(ArmsegError, match=r"trial1_a_seg.nii: shape"):
        read_labelled_scan(read_trial_folder(folder))


def test_prediction_sources_with_and_without_size_folders(tmp_path: Path) -> None:
    sources = tmp_path / "SubB/prediction_sources"
    make_trial(sources / "trial1_0_fs")
    make_trial(sources / "under_512/trial2_0_fs", seg=False)
    make_trial(sources / "over_512/trial3_0_fs", shape=(600, 20, 2))
    scans = prediction_sources(tmp_path, "SubB")
    assert [(s.trial, s.size_dir) for s in scans] == [
        ("trial1_0_fs", None), ("trial3_0_fs", "over_512"), ("trial2_0_fs", "under_512")]
    assert scans[2].segmentation is None
    assert prediction_path(tmp_path, "SubB", "group_1_1", scans[1]) == (
        tmp_path / "SubB/predictions/over_512/group_1_1/trial3_0_fs_pred_seg.nii")
    with pytest.raises(ArmsegError, match="subjects there: SubB"):
        prediction_sources(tmp_path, "SubZ")


def test_a_prediction_is_found_by_openarms_name_or_by_trial_number(tmp_path: Path) -> None:
    """`trial1_0_fs_pred_seg.nii` (OpenArm's predict_all_segs) first; `trial1_pred_seg.nii` when alone."""
    sources = tmp_path / "SubB/prediction_sources"
    make_trial(sources / "trial1_0_fs")
    make_trial(sources / "trial6_30_fs")
    make_trial(sources / "trial6_30_gc")
    scans = prediction_sources(tmp_path, "SubB")
    folder = tmp_path / "SubB/predictions/group_1_1"
    assert find_prediction(tmp_path, "SubB", "group_1_1", scans[0], scans) is None
    short = save(folder / "trial1_pred_seg.nii", np.zeros((10, 12, 3), np.uint8))
    assert find_prediction(tmp_path, "SubB", "group_1_1", scans[0], scans) == short
    full = save(folder / "trial1_0_fs_pred_seg.nii", np.zeros((10, 12, 3), np.uint8))
    assert find_prediction(tmp_path, "SubB", "group_1_1", scans[0], scans) == full
    save(folder / "trial6_pred_seg.nii", np.zeros((10, 12, 3), np.uint8))  # whose? two trial6 scans
    assert [find_prediction(tmp_path, "SubB", "group_1_1", scan, scans) for scan in scans[1:]] == [None, None]
