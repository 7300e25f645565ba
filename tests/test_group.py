"""`armseg group`: a training group assembled from named scans, linked or copied, as one run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import mlflow
import pytest

from armseg.cli import main
from armseg.errors import ArmsegError
from armseg.group.run import assemble_group, parse_scan
from armseg.io.tree import find_group, group_scans


@pytest.fixture
def tree(tiny_tree: Path, tmp_path: Path) -> Path:
    """A writable copy of the phantom tree (SubA, SubB, SubC; six trials each)."""
    root = tmp_path / "data"
    shutil.copytree(tiny_tree, root, symlinks=True)
    return root


def test_group_of_named_scans_links_each_pair(tracking: str, tree: Path) -> None:
    specs = [parse_scan(s) for s in ("SubA:trial1", "SubA:trial6_30_fs", "SubB:trial11", "SubB:trial1")]
    folder = assemble_group(tree, "group_3_2", specs)
    assert folder == tree / "training_groups" / "group_3" / "group_3_2"
    assert find_group(tree, "group_3_2") == folder
    scans = group_scans(folder)
    # Two subjects' trial1_0_fs: the second carries its subject, as synth names them.
    assert [s.trial for s in scans] == ["trial11_60_fs", "trial1_0_fs", "trial1_0_fs_SubB", "trial6_30_fs"]
    link = folder / "trial11_60_fs" / "trial11_60_fs_volume.nii"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))  # relative: the root can move
    source = tree / "SubB/prediction_sources/trial11_60_fs/trial11_60_fs_volume.nii"
    assert link.resolve() == source.resolve()
    assert (folder / "trial1_0_fs_SubB" / "trial1_0_fs_SubB_seg.nii").read_bytes() == (
        tree / "SubB/prediction_sources/trial1_0_fs/trial1_0_fs_seg.nii").read_bytes()
    moved = tree.parent / "moved"
    tree.rename(moved)
    assert (moved / "training_groups/group_3/group_3_2/trial11_60_fs/trial11_60_fs_volume.nii").is_file()

    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.data.tags["armseg.stage"] == "group" and run.data.tags["armseg.group"] == "group_3_2"
    assert run.info.status == "FINISHED" and run.data.metrics["scans"] == 4


def test_copy_makes_independent_files(tracking: str, tree: Path) -> None:
    folder = assemble_group(tree, "mine", [parse_scan("SubC:trial16")], family="custom", copy=True)
    assert folder == tree / "training_groups/custom/mine"
    volume = folder / "trial16_90_fs" / "trial16_90_fs_volume.nii"
    assert volume.is_file() and not volume.is_symlink()


def test_unknown_scans_are_all_named_and_nothing_is_written(tracking: str, tree: Path) -> None:
    specs = [parse_scan(s) for s in ("SubA:trial1", "SubA:trial99", "SubQ:trial1", "SubA:trial6_30_gc")]
    with pytest.raises(ArmsegError, match=r"SubA:trial99 \(no trial folder trial99 .*SubQ:trial1 \(no "
                                          r"subject folder .*SubA:trial6_30_gc \(no trial folder"):
        assemble_group(tree, "group_3_3", specs)
    assert sorted(p.name for p in (tree / "training_groups/group_3").iterdir()) == ["group_3_1"]
    with pytest.raises(ArmsegError, match="group_1_1: a group of that name exists"):
        assemble_group(tree, "group_1_1", [parse_scan("SubA:trial1")])
    with pytest.raises(ArmsegError, match="are the same scan"):
        assemble_group(tree, "group_3_4", [parse_scan("SubA:trial1"), parse_scan("SubA:trial1_0_fs")])
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert len(runs) == 3 and all(run.info.status == "FAILED" for run in runs)


def test_cli_refuses_a_malformed_scan_before_any_run(tracking: str, tree: Path, capsys) -> None:
    assert main(["group", "--data-root", str(tree), "--name", "g_1_1", "--scans", "SubA/trial1"]) == 2
    assert "--scans SubA/trial1: expected subject:trial" in capsys.readouterr().err
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []
    assert main(["group", "--data-root", str(tree), "--name", "group_4_1", "--scans", "SubA:trial7",
                 "SubB:trial10"]) == 0
    assert len(group_scans(find_group(tree, "group_4_1"))) == 2
