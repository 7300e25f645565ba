"""`armseg evaluate` on a hand-made tree: one child run per (model, scan), values, tags, mistakes."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import mlflow
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from armseg.cli import main
from armseg.errors import ArmsegError
from armseg.evaluate.metrics import METRICS, diagonal_mm, segmentation_metrics
from armseg.evaluate.run import evaluate_subjects
from armseg.io.images import read_image, write_like
from armseg.io.labels import DEFAULT_LABEL_MAP
from armseg.table.query import accuracy_table

AFFINE = np.array([[0.0, -0.25, 0.0, 5.0], [0.2, 0.0, 0.0, 1.0], [0.0, 0.0, 1.5, -2.0], [0, 0, 0, 1.0]])
SPACING = (0.2, 0.25, 1.5)


def raw_labels(shape: tuple[int, int, int]) -> np.ndarray:
    """OpenArm raw values: humerus 7 (with a 6 mislabel), biceps 52, other tissues 8 and 53."""
    labels = np.full(shape, 8, np.uint8)
    labels[shape[0] // 2:, 10:30] = 7
    labels[shape[0] // 2, 12] = 6
    labels[5:15, 20:45] = 52
    labels[16:20] = 53
    return labels


def add_scan(root: Path, subject: str, trial: str, shape: tuple[int, int, int], size_dir: str = "") -> Path:
    folder = root / subject / "prediction_sources" / size_dir / trial
    folder.mkdir(parents=True)
    volume = np.random.default_rng(0).integers(0, 255, shape).astype(np.uint8)
    nib.save(nib.Nifti1Image(volume, AFFINE), str(folder / f"{trial}_volume.nii"))
    seg = folder / f"{trial}_seg.nii"
    nib.save(nib.Nifti1Image(raw_labels(shape), AFFINE), str(seg))
    return seg


def add_prediction(root: Path, subject: str, model: str, seg: Path, change=None, size_dir: str = "",
                   short: bool = False) -> Path:
    """A prediction as `predict` writes it (`<trial folder>_pred_seg.nii`, or with `short` as armseg
    wrote it before, `<trialN>_pred_seg.nii`): raw values on the scan's grid, derived from the truth."""
    reference = read_image(seg)
    classes = DEFAULT_LABEL_MAP.encode(np.asarray(reference.array), seg)
    if change is not None:
        classes = change(classes.copy())
    trial = seg.parent.name.split("_")[0] if short else seg.parent.name
    out = root / subject / "predictions" / size_dir / model / f"{trial}_pred_seg.nii"
    return write_like(out, DEFAULT_LABEL_MAP.decode(classes), reference)


def shift(classes: np.ndarray) -> np.ndarray:
    return np.roll(classes, 3, axis=1)


def drop_biceps(classes: np.ndarray) -> np.ndarray:
    classes[classes == 2] = 0
    return classes


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SubA: trial1 and (over_512) trial12; SubB: trial6. Models: perfect, shifted everywhere;
    the registration baseline only on SubA trial1, missing the biceps."""
    root = tmp_path_factory.mktemp("evaluate") / "data"
    seg_a1 = add_scan(root, "SubA", "trial1_0_fs", (40, 50, 4))
    seg_a12 = add_scan(root, "SubA", "trial12_60_gc", (40, 61, 3), size_dir="over_512")
    seg_b6 = add_scan(root, "SubB", "trial6_30_fs", (40, 50, 5))
    unlabelled = root / "SubB" / "prediction_sources" / "trial7_30_gc"
    unlabelled.mkdir()
    shutil.copy(seg_b6.parent / "trial6_30_fs_volume.nii", unlabelled / "trial7_30_gc_volume.nii")
    for subject, seg, size_dir in (("SubA", seg_a1, ""), ("SubA", seg_a12, "over_512"), ("SubB", seg_b6, "")):
        add_prediction(root, subject, "perfect", seg, size_dir=size_dir)
        add_prediction(root, subject, "shifted", seg, shift, size_dir=size_dir)
    add_prediction(root, "SubA", "registration-trial1", seg_a1, drop_biceps, short=True)
    (root / "SubC").mkdir()  # neither sources nor predictions: not a default subject
    return root


def child_runs(parent_id: str) -> list:
    return mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")


def test_every_model_and_labelled_scan_gets_a_child_run(module_tracking: str, tree: Path, capsys) -> None:
    results = evaluate_subjects(tree)
    assert "skipped registration-trial1 trial12A" in capsys.readouterr().out
    pairs = sorted(zip(results["model"], results["scan"], strict=True))
    scans = ("trial1A", "trial12A", "trial6B")
    assert pairs == sorted([(m, s) for m in ("perfect", "shifted") for s in scans]
                           + [("registration-trial1", "trial1A")])
    assert list(results.columns[-len(METRICS):]) == list(METRICS)

    perfect = results[results["model"] == "perfect"]
    assert (perfect["class_agreement_percent"] == 100).all() and (perfect["iou_humerus"] == 1).all()
    assert (perfect["hd95_humerus"] == 0).all() and (perfect["bicep_iou"] == 1).all()
    # OpenArm's metrics read raw values: the truth's mislabelled 6 is not the predicted 7, and the
    # tissues 8 and 53 a three-class model calls 0 do not match either.
    assert (perfect["humerus_iou"] < 1).all() and (perfect["total_percent"] < 0.5).all()
    assert perfect["mean_iou"].tolist() == pytest.approx(((perfect["humerus_iou"] + 1) / 2).tolist())
    baseline = results[results["model"] == "registration-trial1"].iloc[0]
    assert baseline["iou_biceps"] == 0 and baseline["iou_humerus"] == 1
    assert baseline["hd95_biceps"] == pytest.approx(diagonal_mm((40, 50, 4), SPACING))
    seg = tree / "SubB/prediction_sources/trial6_30_fs/trial6_30_fs_seg.nii"
    truth = DEFAULT_LABEL_MAP.encode(np.asarray(read_image(seg).array), seg)
    expected = segmentation_metrics(truth, shift(truth.copy()), DEFAULT_LABEL_MAP.classes, SPACING)
    row = results[(results["model"] == "shifted") & (results["scan"] == "trial6B")].iloc[0]
    assert row[list(expected)].to_dict() == pytest.approx(expected)
    expected = {**{name: row[name] for name in METRICS[:6]}, **expected}

    child = mlflow.get_run(row["run_id"])
    assert child.data.tags["armseg.stage"] == "evaluate"
    tags = {"armseg.model": "shifted", "armseg.subject": "SubB", "armseg.trial": "trial6",
            "armseg.scan": "trial6B"}
    assert {key: child.data.tags[key] for key in tags} == tags
    assert child.data.metrics == pytest.approx(expected)
    assert [a.path for a in mlflow.MlflowClient().list_artifacts(child.info.run_id)] == ["overlay.png"]
    # The scan scored, as the run's MLflow dataset input (the UI's Dataset column).
    (scored,) = child.inputs.dataset_inputs
    assert (scored.dataset.name, scored.tags[0].value) == ("trial6B", "evaluation")
    assert str(seg.parent.resolve()) in scored.dataset.source
    other = mlflow.get_run(results[(results["model"] == "perfect") & (results["scan"] == "trial6B")].iloc[0][
        "run_id"]).inputs.dataset_inputs[0].dataset
    assert other.digest == scored.dataset.digest  # one scan, one digest, whichever model is scored
    parent = mlflow.get_run(child.data.tags["mlflow.parentRunId"])
    assert parent.data.tags["armseg.stage"] == "evaluate" and parent.info.status == "FINISHED"
    assert len(child_runs(parent.info.run_id)) == len(results)
    logged = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=parent.info.run_id,
                                                            artifact_path="evaluation.csv"))
    assert len(logged) == len(results)


def test_subset_of_metrics_and_models(module_tracking: str, tree: Path) -> None:
    results = evaluate_subjects(tree, subjects=["SubA"], models=["registration-trial1"],
                                metrics=["hd95_biceps", "mean_iou"])
    assert list(results["scan"]) == ["trial1A"]
    child = mlflow.get_run(results["run_id"].iloc[0])
    assert set(child.data.metrics) == {"mean_iou", "hd95_biceps"}
    assert math.isclose(child.data.metrics["mean_iou"], (1596 / 1600 + 0) / 2)  # 4 voxels are raw 6


def test_re_evaluating_replaces_cells_without_adding_rows(module_tracking: str, tree: Path,
                                                          tmp_path: Path) -> None:
    evaluate_subjects(tree, models=["shifted"], metrics=["iou_biceps"])
    before = accuracy_table("iou_biceps")
    seg = tree / "SubB/prediction_sources/trial6_30_fs/trial6_30_fs_seg.nii"
    add_prediction(tree, "SubB", "shifted", seg)  # now perfect on trial6B
    evaluate_subjects(tree, subjects=["SubB"], models=["shifted"], metrics=["iou_biceps"])
    after = accuracy_table("iou_biceps")
    assert list(after.index) == list(before.index) == ["perfect", "registration-trial1", "shifted"]
    assert list(after.columns) == ["trial1A", "trial12A", "trial6B", "mean"]
    assert before.loc["shifted", "trial6B"] < 1 and after.loc["shifted", "trial6B"] == 1
    add_prediction(tree, "SubB", "shifted", seg, shift)  # restore for other tests


@pytest.mark.parametrize(("kwargs", "message", "failed_run"), [
    ({"metrics": ["mean_iou", "recall"]}, r"--metrics: unknown recall \(valid: mean_iou, total_percent",
     False),
    ({"metrics": ["iou"]}, r"--metrics: unknown iou \(valid: .* iou_<structure>", False),
    ({"models": ["group_9_9"]}, r"group_9_9: no predictions .*: perfect, registration-trial1, shifted\)",
     True),
    ({"subjects": ["SubQ"]}, r"subject 'SubQ' not found", True),
    ({"subjects": ["SubC"]}, r"SubC/prediction_sources: missing", True),
])
def test_mistakes_fail_the_parent_run(module_tracking: str, tree: Path, kwargs: dict, message: str,
                                      failed_run: bool) -> None:
    """A bad parameter value opens no run; a mistake found in the data ends the run FAILED."""
    def evaluate_runs() -> list:
        return mlflow.search_runs(search_all_experiments=True, output_format="list",
                                  filter_string="tags.`armseg.stage` = 'evaluate'")

    before = len(evaluate_runs())
    with pytest.raises(ArmsegError, match=message):
        evaluate_subjects(tree, **kwargs)
    runs = evaluate_runs()
    assert len(runs) == before + failed_run
    if failed_run:
        assert runs[0].info.status == "FAILED" and "armseg.error" in runs[0].data.tags


def test_a_prediction_off_the_grid_names_the_file(module_tracking: str, tmp_path: Path, capsys) -> None:
    root = tmp_path / "data"
    seg = add_scan(root, "SubA", "trial1_0_fs", (40, 50, 4))
    bad = root / "SubA" / "predictions" / "cropped" / "trial1_pred_seg.nii"
    bad.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(raw_labels((40, 48, 4)), AFFINE), str(bad))
    capsys.readouterr()
    assert main(["evaluate", "--data-root", str(root)]) == 2
    error = capsys.readouterr().err.strip()
    assert f"{bad}: shape (40, 48, 4) differs from its scan" in error and "\n" not in error
    assert seg.exists()
    running = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                 filter_string="attributes.status = 'RUNNING'")
    assert running == []


def test_nothing_to_evaluate_is_one_sentence(module_tracking: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    add_scan(root, "SubA", "trial1_0_fs", (40, 50, 4))
    (root / "SubA" / "predictions").mkdir()
    with pytest.raises(ArmsegError, match=r"no predictions of scans with ground truth .*`armseg predict`"):
        evaluate_subjects(root)
