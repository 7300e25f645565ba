"""`armseg demo`: the whole pipeline on a phantom, one parent run with a nested run per stage.

synth -> augment group_1_1 -> train group_1_1 (with its augmented copies) and group_2_1 ->
predict the held-out subject with both networks -> registration baseline from a group_1_1
scan -> evaluate -> measure (muscle volume, area, thickness of truth and models; the
deformation summary from the truth, under `<out>/measures`) -> the accuracy table (OpenArm's
mean_iou per scan) and a summary of every model (OpenArm's metrics beside armseg's, averaged over
the scans). Everything lands in the tracking store (SQLite `mlflow.db` in the working directory
unless MLFLOW_TRACKING_URI says otherwise) and under `--out`; `mlflow ui` shows it afterwards.
"""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import pandas as pd

from armseg.augment.run import augment_group
from armseg.evaluate.run import evaluate_subjects
from armseg.io.atomic import write_bytes_atomic
from armseg.io.tree import find_group
from armseg.measure.run import measure_subjects
from armseg.predict.run import predict_subjects
from armseg.registration.batch import register_subjects
from armseg.registration.settings import RegistrationSettings
from armseg.synth.run import synthesize
from armseg.table.run import write_table
from armseg.tracking.runs import stage_run
from armseg.train.config import resolve_config
from armseg.train.run import train

GROUPS = ("group_1_1", "group_2_1")
AUGMENTED_GROUP = "group_1_1"
ATLAS = "trial1_0_fs"
# Minutes of training per group when --epochs is not given: the full demo stays within 10 minutes on
# a 2-core CPU (two groups, each stopped before an epoch would overrun; see train's --time-budget).
DEMO_TIME_BUDGET = 2.0
# Slices per phantom scan: 64 rather than synth's 100 keeps the demo within its 10 minutes on a 2-core
# CPU whose TensorFlow runs at half the first rounds' speed; every stage but training scales with it,
# and training, held to its budget, gets more epochs from shorter ones.
DEMO_SLICES = 64
# The summary's columns: OpenArm's table metrics (fractions, on raw values), then armseg's (on each
# model's classes; class_agreement_percent in %, hd95 in mm).
OPENARM_COLUMNS = ("mean_iou", "total_percent", "humerus_iou", "bicep_iou")
ARMSEG_COLUMNS = ("class_agreement_percent", "iou_humerus", "iou_biceps", "dice_humerus", "dice_biceps",
                  "hd95_humerus", "hd95_biceps")


def demo(out: Path, size: tuple[int, int] = (256, 256), slices: int = DEMO_SLICES, epochs: int | None = None,
         seed: int = 0, quick: bool = False) -> dict[str, Path]:
    """Run every stage; return the accuracy table's files and the summary's (`summary`)."""
    if quick:
        size, slices = (48, 64), min(slices, 12)
        print("[armseg demo] --quick: tiny scans and a tiny network for a few epochs. This checks that "
              "every stage runs and is tracked; its numbers say nothing about accuracy.")
    data_root = out / "data"
    params = {"out": str(out), "size": list(size), "slices": slices, "epochs": epochs, "seed": seed,
              "quick": quick}
    started = time.monotonic()
    with stage_run("demo", params=params, run_name="demo"):
        summary = _stage("synth", lambda: synthesize(data_root, subjects=3, seed=seed, size=size,
                                                     slices=slices))
        test_subject = summary.test_subject
        _stage("augment", lambda: augment_group(data_root, AUGMENTED_GROUP, degrees=[-10, 10],
                                                alphas=[4.0], sigmas=[10.0], seed=seed))
        overrides = {"epochs": epochs, "seed": seed, "data_root": str(data_root),
                     "time_budget": None if epochs or quick else DEMO_TIME_BUDGET}
        if overrides["time_budget"]:
            print(f"[armseg demo] each group trains for at most {DEMO_TIME_BUDGET} minutes "
                  f"(train --time-budget {DEMO_TIME_BUDGET}; give --epochs for a fixed number of epochs)")
        if quick:
            overrides.update(depth=2, base_filters=4, epochs=epochs or 2, precision="float32")
        for group in GROUPS:
            config = resolve_config({**overrides, "group": group})
            _stage(f"train {group}", lambda config=config: train(config))
        # By group name: each group's newest finished train run, so rows read as in OpenArm's table.
        # Overwrite: a demo run again into the same folder predicts with the networks it just trained.
        _stage("predict", lambda: predict_subjects(data_root, list(GROUPS), [test_subject], overwrite=True))
        atlas = find_group(data_root, AUGMENTED_GROUP) / ATLAS
        settings = RegistrationSettings(iterations=(20,) if quick else ())
        _stage("register", lambda: register_subjects(data_root, [test_subject], atlas, settings))
        results = _stage("evaluate", lambda: evaluate_subjects(data_root, [test_subject]))
        _stage("measure", lambda: measure_subjects(data_root, [test_subject], out=out / "measures"))
        table = _stage("table", lambda: write_table("mean_iou", out / "table.csv", data_root=data_root))
        table["summary"] = write_summary(results, out / "summary.md")
    minutes = (time.monotonic() - started) / 60
    print(f"[armseg demo] done in {minutes:.1f} min: table {table['csv']} (+ .md, .tex, .html, .png), "
          f"summary {table['summary']} (+ .csv); `mlflow ui` shows every run")
    return table


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per model, the mean over its scans of OpenArm's metrics and armseg's, and the scans counted."""
    columns = [c for c in (*OPENARM_COLUMNS, *ARMSEG_COLUMNS) if c in results.columns]
    summary = results.groupby("model", sort=False)[columns].mean()
    summary.insert(0, "scans", results.groupby("model", sort=False).size())
    return summary


def summary_markdown(summary: pd.DataFrame) -> str:
    """A Markdown table: fractions with 3 decimals, percent and millimetres with 1."""
    def text(column: str, value: float) -> str:
        if pd.isna(value):
            return "-"
        if column == "scans":
            return str(int(value))
        return f"{value:.1f}" if column.startswith(("class_agreement", "hd95")) else f"{value:.3f}"

    header = ["model", *summary.columns]
    lines = ["Mean over the held-out subject's scans. OpenArm's metrics (fractions, on raw label values): "
             f"{', '.join(c for c in OPENARM_COLUMNS if c in summary)}; armseg's (each model's classes; "
             "% and mm): the rest.", "",
             "| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * summary.shape[1]) + "|"]
    for model, row in summary.iterrows():
        lines.append("| " + " | ".join([str(model), *(text(c, row[c]) for c in summary.columns)]) + " |")
    return "\n".join(lines) + "\n"


def write_summary(results: pd.DataFrame, path: Path) -> Path:
    """The summary as Markdown and CSV beside it, printed and logged in the demo's run."""
    summary = summary_table(results)
    text = summary_markdown(summary)
    write_bytes_atomic(path, text.encode("utf-8"))
    write_bytes_atomic(path.with_suffix(".csv"), summary.to_csv().encode("utf-8"))
    mlflow.log_artifact(str(path))
    mlflow.log_artifact(str(path.with_suffix(".csv")))
    print(text)
    return path


def _stage(name: str, work):
    print(f"\n[armseg demo] ===== {name} =====")
    started = time.monotonic()
    result = work()
    print(f"[armseg demo] {name}: {time.monotonic() - started:.0f} s")
    return result
