"""`armseg synth`: parse the parameters, write the tree and a montage, report what was made.

`synthesize` is the plain function (the demo calls it); `run` adds the MLflow run around it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from armseg.errors import ArmsegError
from armseg.params import empty_as_none, typed_list
from armseg.synth.montage import save_montage
from armseg.synth.tree import SynthSummary, read_scan, write_tree


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None,
                        help="root of the OpenArm tree to write (default: --data-root, i.e. data)")
    parser.add_argument("--subjects", type=int, default=3,
                        help="subjects SubA, SubB, ...; the last is held out for testing "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="same seed, byte-identical files (default: %(default)s)")
    parser.add_argument("--size", nargs="+", default=["256", "256"], metavar="N",
                        help="in-plane size: rows (depth) and columns (lateral), each >= 32 "
                             "(default: 256 256)")
    parser.add_argument("--slices", type=int, default=100,
                        help="slices along the arm, 1 mm apart (default: %(default)s)")
    parser.add_argument("--montage", default=None,
                        help="PNG of the test subject's first scan (default: <out>/montage.png)")


def parse_size(values: object) -> tuple[int, int]:
    """`--size 256 256`, `--size "256 256"` or `256,256` as (rows, columns)."""
    size = typed_list(values, "size", int)
    if len(size) != 2:
        raise ArmsegError(f"--size takes two integers (rows columns), got {len(size)}: "
                          f"{' '.join(str(s) for s in size)}")
    return size[0], size[1]


def run(args: argparse.Namespace) -> None:
    out = Path(empty_as_none(args.out) or getattr(args, "data_root", None) or "data")
    montage = empty_as_none(args.montage)
    synthesize(out, subjects=args.subjects, seed=args.seed, size=args.size, slices=args.slices,
               montage=Path(montage) if montage else None)


def synthesize(out: Path, subjects: int = 3, seed: int = 0, size: object = (256, 256), slices: int = 100,
               montage: Path | None = None) -> SynthSummary:
    """A `synth` run: the tree, a montage, seconds per scan; montage and synth.json as artifacts."""
    import mlflow

    from armseg.tracking import stage_run

    montage = montage or out / "montage.png"
    params = {"out": str(out), "subjects": subjects, "seed": seed, "size": size, "slices": slices,
              "montage": str(montage)}
    with stage_run("synth", params=params):
        size = parse_size([str(v) for v in size] if not isinstance(size, str) else size)
        if montage.is_dir():
            raise ArmsegError(f"--montage {montage} is a folder; give the path of a .png file")
        summary = write_tree(out, subjects=subjects, seed=seed, size=size, slices=slices)
        first = summary.trials[0]
        volume, labels = read_scan(summary.scan_folder(summary.test_subject, first))
        save_montage(volume, labels, montage, n=4, spacing=summary.spacing_mm[:2],
                     title=f"{summary.test_subject} {first} (held-out test subject)")
        print(summary.describe())
        print(f"synth: wrote {summary.scans} scans under {out}, montage {montage}")
        mlflow.log_metrics({"seconds_per_scan": summary.seconds_per_scan, "scans": summary.scans})
        mlflow.log_artifact(str(montage))
        mlflow.log_artifact(str(out / "synth.json"))
    return summary
