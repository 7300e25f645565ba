"""`armseg demo`: the whole pipeline on a phantom, one parent run with a nested run per stage.

synth -> augment group_1_1 -> train group_1_1 (with its augmented copies) and group_2_1 ->
predict the held-out subject with both networks -> registration baseline from a group_1_1
scan -> evaluate -> measure (muscle volume, area, thickness of truth and models; the
deformation summary from the truth, under `<out>/measures`) -> the accuracy table.
Everything lands in the tracking store (SQLite `mlflow.db` in the working directory unless
MLFLOW_TRACKING_URI says otherwise) and under `--out`; `mlflow ui` shows it afterwards.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from armseg.params import parse_bool, typed_value

GROUPS = ("group_1_1", "group_2_1")
AUGMENTED_GROUP = "group_1_1"
ATLAS = "trial1_0_fs"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo", help="folder for the phantom tree and the table "
                                                      "(default: %(default)s)")
    parser.add_argument("--size", nargs="+", default=["256", "256"], metavar="N",
                        help="in-plane size of the phantom scans (default: 256 256)")
    parser.add_argument("--slices", default="100", help="slices per scan (default: %(default)s)")
    parser.add_argument("--epochs", default=None, help="train epochs (default: train's default)")
    parser.add_argument("--seed", default="0", help="seed of the phantom and of training (default: 0)")
    parser.add_argument("--quick", nargs="?", const="true", default="false", metavar="BOOL",
                        help="tiny scans and networks: the plumbing in a minute, not the accuracy")


def run(args: argparse.Namespace) -> None:
    from armseg.synth.command import parse_size

    demo(Path(args.out), parse_size(args.size), typed_value(args.slices, "slices", int) or 100,
         epochs=typed_value(args.epochs, "epochs", int), seed=typed_value(args.seed, "seed", int) or 0,
         quick=parse_bool(args.quick, "quick"))


def demo(out: Path, size: tuple[int, int] = (256, 256), slices: int = 100, epochs: int | None = None,
         seed: int = 0, quick: bool = False) -> dict[str, Path]:
    """Run every stage; return the accuracy table's files."""
    from armseg.augment.command import augment_group
    from armseg.evaluate.command import evaluate_subjects
    from armseg.evaluate.table_command import write_table
    from armseg.io.tree import find_group
    from armseg.measure.run import measure_subjects
    from armseg.predict.command import predict_subjects
    from armseg.registration.batch import register_subjects
    from armseg.synth.command import synthesize
    from armseg.tracking import stage_run
    from armseg.train.config import resolve_config
    from armseg.train.run import train

    if quick:
        size, slices = (48, 64), min(slices, 12)
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
        _stage("register", lambda: register_subjects(data_root, [test_subject], atlas,
                                                     **({"iterations": (20,)} if quick else {})))
        _stage("evaluate", lambda: evaluate_subjects(data_root, [test_subject]))
        _stage("measure", lambda: measure_subjects(data_root, [test_subject], out=out / "measures"))
        table = _stage("table", lambda: write_table("mean_iou", out / "table.csv"))
    minutes = (time.monotonic() - started) / 60
    print(f"[armseg demo] done in {minutes:.1f} min: table {table['csv']} (+ .md, .html); "
          "`mlflow ui` shows every run")
    return table


def _stage(name: str, work):
    print(f"\n[armseg demo] ===== {name} =====")
    started = time.monotonic()
    result = work()
    print(f"[armseg demo] {name}: {time.monotonic() - started:.0f} s")
    return result
