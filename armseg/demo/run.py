"""`armseg demo`: the whole pipeline on a phantom, one parent run with a nested run per stage.

synth -> augment group_1_1 -> train group_1_1 (with its augmented copies) and group_2_1 ->
predict the held-out subject with both networks -> registration baseline from a group_1_1
scan -> evaluate -> the accuracy table. Everything lands in the tracking store (SQLite
`mlflow.db` in the working directory unless MLFLOW_TRACKING_URI says otherwise) and under
`--out`; `mlflow ui` shows it afterwards.
"""

from __future__ import annotations

import time
from pathlib import Path

from armseg.augment.run import augment_group
from armseg.evaluate.run import evaluate_subjects
from armseg.io.tree import find_group
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


def demo(out: Path, size: tuple[int, int] = (256, 256), slices: int = 100, epochs: int | None = None,
         seed: int = 0, quick: bool = False) -> dict[str, Path]:
    """Run every stage; return the accuracy table's files."""
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
        overrides = {"epochs": epochs, "seed": seed, "data_root": str(data_root)}
        if quick:
            overrides.update(depth=2, base_filters=4, epochs=epochs or 2, precision="float32")
        for group in GROUPS:
            config = resolve_config({**overrides, "group": group})
            _stage(f"train {group}", lambda config=config: train(config))
        # By group name: each group's newest finished train run, so rows read as in OpenArm's table.
        _stage("predict", lambda: predict_subjects(data_root, list(GROUPS), [test_subject]))
        atlas = find_group(data_root, AUGMENTED_GROUP) / ATLAS
        settings = RegistrationSettings(iterations=(20,) if quick else ())
        _stage("register", lambda: register_subjects(data_root, [test_subject], atlas, settings))
        _stage("evaluate", lambda: evaluate_subjects(data_root, [test_subject]))
        table = _stage("table", lambda: write_table("mean_iou", out / "table.csv", data_root=data_root))
    minutes = (time.monotonic() - started) / 60
    print(f"[armseg demo] done in {minutes:.1f} min: table {table['csv']} (+ .md, .tex, .html, .png); "
          "`mlflow ui` shows every run")
    return table


def _stage(name: str, work):
    print(f"\n[armseg demo] ===== {name} =====")
    started = time.monotonic()
    result = work()
    print(f"[armseg demo] {name}: {time.monotonic() - started:.0f} s")
    return result
