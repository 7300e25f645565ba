"""`armseg import` on a fake OpenArm 2.0 download made from phantom scans, MHA written by SimpleITK."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import mlflow
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from armseg.cli import main
from armseg.errors import ArmsegError
from armseg.io.images import read_image
from armseg.io.tree import prediction_sources
from armseg.openarm_import.plan import read_name
from armseg.openarm_import.run import import_download
from armseg.synth.tree import DEFAULT_TRIALS, render_trial

SIZE, SLICES = (40, 56), 5
# An oblique scan: ITK direction (LPS) with a rotation about z, spacing and origin that are not trivial.
ANGLE = np.deg2rad(20)
DIRECTION = (np.cos(ANGLE), -np.sin(ANGLE), 0.0, np.sin(ANGLE), np.cos(ANGLE), 0.0, 0.0, 0.0, 1.0)
SPACING, ORIGIN = (0.21, 0.17, 1.3), (12.5, -40.0, 7.25)


def itk_image(array: np.ndarray) -> sitk.Image:
    """armseg's (x, y, z) array as a placed ITK image."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.T))
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(DIRECTION)
    return image


def write_mha(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(itk_image(array), str(path))
    return path


def write_nifti(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    """Ground truth as the download ships it: NIfTI written by ITK on the volume's grid."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(itk_image(array), str(path), useCompression=compress)
    return path


@pytest.fixture(scope="module")
def download(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sub1: trials 1, 6, 11 (11 wide: over_512), ground truth .nii, .nii.gz and .mha; a ground truth
    without a volume (trial 16), a file without a trial number, a README. Sub2: two volumes of trial 7,
    one file of trial 10 whose name carries the subject."""
    root = tmp_path_factory.mktemp("download")
    trials = {t.number: t for t in DEFAULT_TRIALS}
    for number, kind in ((1, ".nii"), (6, ".nii.gz"), (11, ".mha")):
        size = (SIZE[0], 520) if number == 11 else SIZE
        volume, labels = render_trial(0, 0, trials[number], size, SLICES)
        write_mha(root / "Sub1/volumes" / f"{trials[number].name}_volume.mha", volume)
        seg = root / "Sub1/ground_segs" / f"trial{number}_seg{kind}"
        (write_mha(seg, labels) if kind == ".mha" else write_nifti(seg, labels, kind == ".nii.gz"))
    _, labels = render_trial(0, 0, trials[16], SIZE, SLICES)
    write_nifti(root / "Sub1/ground_segs/trial16_90_fs_seg.nii", labels)
    write_mha(root / "Sub1/volumes/arm_scan_volume.mha", np.zeros((4, 4, 2), np.uint8))
    (root / "Sub1/volumes/README.txt").write_text("notes")
    for number in (7, 10):
        volume, labels = render_trial(0, 1, trials[number], SIZE, SLICES)
        name = f"Sub2_trial{number}_30_gc_volume.mha" if number == 10 else f"trial{number}_30_gc_volume.mha"
        write_mha(root / "Sub2/volumes" / name, volume)
        write_nifti(root / "Sub2/ground_segs" / f"trial{number}_seg.nii", labels)
    write_mha(root / "Sub2/volumes/trial7_30_gc_volume_cropped.mha", np.zeros((8, 8, 2), np.uint8))
    return root


def test_names_are_read_from_the_trial_token() -> None:
    assert read_name(Path("trial6_30_fs_volume.mha"), "vol").trial == "trial6_30_fs"
    assert read_name(Path("Sub1_Trial06_30_fs_vol.mha"), "vol").trial == "trial6_30_fs"
    assert read_name(Path("trial11_60_fs_seg_cropped.nii.gz"), "seg").trial == "trial11_60_fs"
    assert read_name(Path("trial2_seg.nii"), "seg").number == 2
    assert read_name(Path("scan_volume.mha"), "vol") == "no trial<N> in its name"
    assert "2 trial<N> tokens" in read_name(Path("trial1_to_trial2_volume.mha"), "vol")


def test_dry_run_plans_and_writes_nothing(tracking: str, download: Path, tmp_path: Path, capsys) -> None:
    root = tmp_path / "data"
    assert main(["import", "--source", str(download), "--data-root", str(root), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert not root.exists()
    assert "plan: Sub1 trial11_60_fs (over_512, 40x520x5)" in out
    for name in ("trial16_90_fs_seg.nii: no volume of trial 16", "arm_scan_volume.mha: no trial<N>",
                 "README.txt: not an image", "trial7_30_gc_volume.mha: 2 volumes of trial 7",
                 "trial7_30_gc_volume_cropped.mha: 2 volumes of trial 7"):
        assert name in out, name
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.data.tags["armseg.stage"] == "import" and run.info.status == "FINISHED"
    assert run.data.params["dry_run"] == "True" and run.data.metrics["scans_written"] == 0
    plan = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=run.info.run_id,
                                                           artifact_path="import_plan.csv"))
    assert sorted(plan["trial"]) == ["trial10_30_gc", "trial11_60_fs", "trial1_0_fs", "trial6_30_fs"]
    assert set(plan["status"]) == {"planned"}
    refused = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=run.info.run_id,
                                                              artifact_path="not_placed.csv"))
    assert len(refused) == 6  # trial 16's seg, the unnamed scan, the README, 2 x trial 7, trial 7's seg
    assert any("trial7_seg.nii" in f and "its trial 7 has 2 volumes, none placed" in r
               for f, r in zip(refused["file"], refused["reason"], strict=True))


def test_import_places_converts_and_keeps_geometry(tracking: str, download: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    result = import_download(download, root)
    assert result.count("written") == 4 and len(result.plan.refused) == 6
    assert [(s.trial, s.size_dir, s.segmentation is not None) for s in prediction_sources(root, "Sub1")] == [
        ("trial11_60_fs", "over_512", True), ("trial1_0_fs", "under_512", True),
        ("trial6_30_fs", "under_512", True)]
    assert [s.trial for s in prediction_sources(root, "Sub2")] == ["trial10_30_gc"]
    source = download / "Sub1/volumes/trial6_30_fs_volume.mha"
    for path in (root / "Sub1/all_nifti/trial6_30_fs_volume.nii",
                 root / "Sub1/prediction_sources/under_512/trial6_30_fs/trial6_30_fs_volume.nii"):
        written, original = sitk.ReadImage(str(path)), sitk.ReadImage(str(source))
        assert written.GetSize() == original.GetSize()
        np.testing.assert_allclose(written.GetSpacing(), original.GetSpacing(), atol=1e-6)
        np.testing.assert_allclose(written.GetOrigin(), original.GetOrigin(), atol=1e-5)
        np.testing.assert_allclose(written.GetDirection(), original.GetDirection(), atol=1e-6)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(original))
        ours = read_image(path)
        np.testing.assert_allclose(ours.affine, read_image(source).affine, atol=1e-5)
        assert nib.load(str(path)).get_data_dtype() == np.uint8
    folder = root / "Sub1/prediction_sources/under_512"
    assert (folder / "trial1_0_fs/trial1_0_fs_seg.nii").read_bytes() == (
        download / "Sub1/ground_segs/trial1_seg.nii").read_bytes()  # NIfTI truth copied as it is
    assert (folder / "trial6_30_fs/trial6_30_fs_seg.nii").read_bytes() == gzip.decompress(
        (download / "Sub1/ground_segs/trial6_seg.nii.gz").read_bytes())
    seg = read_image(root / "Sub1/prediction_sources/over_512/trial11_60_fs/trial11_60_fs_seg.nii")
    assert set(np.unique(seg.array)) <= {0, 7, 8, 9, 45, 51, 52, 53}
    assert not [p for p in root.rglob(".*")]  # no temporary left behind

    again = import_download(download, root)
    assert again.count("kept") == 4 and again.count("written") == 0
    stamp = (folder / "trial1_0_fs/trial1_0_fs_volume.nii").stat().st_mtime_ns
    import_download(download, root, subjects=["Sub1"], overwrite=True)
    assert (folder / "trial1_0_fs/trial1_0_fs_volume.nii").stat().st_mtime_ns != stamp


def test_one_subject_folder_and_mistakes(tracking: str, download: Path, tmp_path: Path) -> None:
    one = tmp_path / "Sub2"
    shutil.copytree(download / "Sub2", one)
    result = import_download(one, tmp_path / "data", dry_run=True)
    assert [p.trial for p in result.plan.placements] == ["trial10_30_gc"]
    with pytest.raises(ArmsegError, match=r"--subjects Sub9: not in .* \(subjects there: Sub1, Sub2\)"):
        import_download(download, tmp_path / "data", subjects=["Sub9"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArmsegError, match="no Sub<x> folders"):
        import_download(tmp_path / "empty", tmp_path / "elsewhere")
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string="attributes.status = 'FAILED'")
    assert len(runs) == 2 and all("armseg.error" in run.data.tags for run in runs)
