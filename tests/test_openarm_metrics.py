"""OpenArm's accuracy numbers, reproduced: phantom scans and predictions in OpenArm's layout and naming,
scored by `armseg evaluate` and compared with an independent re-implementation of
generate_accuracy_table.py's definitions, for a three-class model and a model of every tissue."""

from __future__ import annotations

import json
import math
from pathlib import Path

import mlflow
import nibabel as nib
import numpy as np
import pytest

from armseg.cli import main
from armseg.evaluate.run import evaluate_subjects
from armseg.io.labels import DEFAULT_LABEL_MAP, OPENARM_ALL_LABEL_MAP
from armseg.synth.tree import DEFAULT_TRIALS, render_trial, scan_affine
from armseg.table.query import accuracy_table
from armseg.tracking.contract import OPENARM_METRICS

SIZE, SLICES = (48, 64), 6


def openarm_table_metrics(prediction_file: Path, reference_file: Path) -> dict[str, float]:
    """OpenArm's definitions, written again from its description: rounded raw values, no mapping,
    0/0 = NaN, mean of the two IoUs."""
    prediction = np.rint(nib.load(str(prediction_file)).get_fdata())
    reference = np.rint(nib.load(str(reference_file)).get_fdata())
    values = {"total_percent": float(np.sum(prediction == reference)) / reference.size}
    for name, raw in (("humerus", 7), ("bicep", 52)):
        guess, truth = prediction == raw, reference == raw
        with np.errstate(invalid="ignore", divide="ignore"):
            values[f"{name}_iou"] = float(np.float64(np.sum(guess & truth)) / np.sum(guess | truth))
            values[f"{name}_percent"] = float(np.float64(np.sum(guess & truth)) / np.sum(truth))
    values["mean_iou"] = (values["humerus_iou"] + values["bicep_iou"]) / 2
    return values


def save(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def three_classes(labels: np.ndarray) -> np.ndarray:
    """What a background/humerus/biceps network writes: its classes as raw 0, 7, 52, a bit off."""
    classes = DEFAULT_LABEL_MAP.encode(labels, "truth")
    return DEFAULT_LABEL_MAP.decode(np.roll(classes, 2, axis=0))


def every_tissue(labels: np.ndarray) -> np.ndarray:
    """What OpenArm's nine-class network wrote: every tissue's raw value, stored as floats that
    need OpenArm's rounding, and a bit off."""
    shifted = np.roll(labels, -1, axis=1).astype(np.float32)
    noise = np.random.default_rng(0).uniform(-0.3, 0.3, labels.shape).astype(np.float32)
    return shifted + noise


@pytest.fixture(scope="module")
def openarm_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SubA's trials 1 and 6 in `prediction_sources/under_512/`, predicted by a three-class model
    (`group_1_1`, OpenArm's file names) and a nine-class one (`openarm_all_net`, trial 6 under the short
    name). Trial 6 has no biceps at all (its 52 relabelled 53, in truth and prediction)."""
    root = tmp_path_factory.mktemp("openarm") / "data"
    affine = scan_affine(SIZE, SLICES)
    for trial in (DEFAULT_TRIALS[0], DEFAULT_TRIALS[1]):
        volume, labels = render_trial(0, 0, trial, SIZE, SLICES)
        if trial.number == 6:
            labels[labels == 52] = 53
        folder = root / "SubA" / "prediction_sources" / "under_512" / trial.name
        save(folder / f"{trial.name}_volume.nii", volume, affine)
        save(folder / f"{trial.name}_seg.nii", labels, affine)
        predictions = root / "SubA" / "predictions" / "under_512"
        save(predictions / "group_1_1" / f"{trial.name}_pred_seg.nii", three_classes(labels), affine)
        name = trial.name if trial.number == 1 else f"trial{trial.number}"
        save(predictions / "openarm_all_net" / f"{name}_pred_seg.nii", every_tissue(labels), affine)
    return root


@pytest.fixture(scope="module")
def evaluated(module_tracking: str, openarm_tree: Path):
    return evaluate_subjects(openarm_tree)


def test_openarms_metrics_are_reproduced_exactly(evaluated, openarm_tree: Path) -> None:
    assert sorted(zip(evaluated["model"], evaluated["scan"], strict=True)) == [
        ("group_1_1", "trial1A"), ("group_1_1", "trial6A"), ("openarm_all_net", "trial1A"),
        ("openarm_all_net", "trial6A")]
    for row in evaluated.itertuples():
        logged = mlflow.get_run(row.run_id).data.metrics
        prediction = Path(row.prediction)
        sources = openarm_tree / "SubA/prediction_sources/under_512"
        reference = next(sources.glob(f"{row.trial}_*/*_seg.nii"))
        expected = openarm_table_metrics(prediction, reference)
        for name in OPENARM_METRICS:
            if math.isnan(expected[name]):
                assert math.isnan(logged[name]), (row.model, row.scan, name)
            else:
                assert logged[name] == pytest.approx(expected[name], abs=1e-12), (row.model, row.scan, name)
            assert 0 <= logged[name] <= 1 or math.isnan(logged[name])  # OpenArm's scale: fractions


def test_a_structure_absent_from_both_gives_nan_as_openarm(evaluated) -> None:
    trial6 = evaluated[evaluated["scan"] == "trial6A"]
    assert trial6["bicep_iou"].isna().all() and trial6["bicep_percent"].isna().all()
    assert trial6["mean_iou"].isna().all()  # (humerus_iou + NaN) / 2, as OpenArm's arithmetic gives
    assert trial6["iou_biceps"].isna().all()  # armseg's too: nothing to score, not a fake 1.0
    assert trial6["total_percent"].notna().all() and trial6["humerus_iou"].notna().all()


def test_each_model_is_scored_on_its_own_label_map(evaluated) -> None:
    """The three-class model gets humerus and biceps; the nine-class one every tissue it writes."""
    three = evaluated[evaluated["model"] == "group_1_1"].iloc[0]
    nine = evaluated[evaluated["model"] == "openarm_all_net"].iloc[0]
    assert math.isnan(three.get("iou_tissue_53", math.nan))
    structures = [name for name in OPENARM_ALL_LABEL_MAP.foreground if name != "tissue_68"]
    assert all(0 < nine[f"iou_{name}"] <= 1 for name in structures)
    # Against nine-tissue truth a three-class model agrees on its own classes, while OpenArm's raw
    # total_percent counts every tissue it calls background as wrong.
    assert three["class_agreement_percent"] / 100 > three["total_percent"] + 0.3
    run = mlflow.get_run(three["run_id"])
    assert run.data.params["label_map_from"] == "inferred"
    assert json.loads(run.data.params["label_map"]) == json.loads(DEFAULT_LABEL_MAP.to_json())


def test_the_table_takes_openarms_metric_names(evaluated, tmp_path: Path, capsys) -> None:
    table = accuracy_table("humerus_iou")
    for row in evaluated.itertuples():
        assert table.loc[row.model, row.scan] == pytest.approx(row.humerus_iou)
    for metric in OPENARM_METRICS:
        assert main(["table", "--metric", metric, "--out", str(tmp_path / f"{metric}.csv")]) == 0
    assert "openarm_all_net" in capsys.readouterr().out


def test_a_sidecar_or_a_given_map_wins_over_the_values(module_tracking: str, openarm_tree: Path,
                                                        tmp_path: Path) -> None:
    folder = openarm_tree / "SubA/predictions/under_512/openarm_all_net"
    (folder / "armseg_model.json").write_text(json.dumps({"model_uri": None, "label_map": json.loads(
        OPENARM_ALL_LABEL_MAP.to_json())}))
    try:
        results = evaluate_subjects(openarm_tree, models=["openarm_all_net"], metrics=["iou_tissue_8"])
        run = mlflow.get_run(results["run_id"].iloc[0])
        assert run.data.params["label_map_from"] == "sidecar" and set(run.data.metrics) == {"iou_tissue_8"}
    finally:
        (folder / "armseg_model.json").unlink()
    results = evaluate_subjects(openarm_tree, models=["openarm_all_net"], metrics=["iou_humerus"],
                                label_map=DEFAULT_LABEL_MAP)
    assert mlflow.get_run(results["run_id"].iloc[0]).data.params["label_map_from"] == "given"
