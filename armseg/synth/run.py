"""The `synth` stage: a phantom OpenArm tree and a montage, as one MLflow run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import mlflow

from armseg.errors import ArmsegError
from armseg.synth.montage import save_montage
from armseg.synth.tree import SynthSummary, read_scan, subject_names, write_tree
from armseg.tracking.runs import stage_run


def synthesize(out: Path, subjects: int | Sequence[str] = 3, seed: int = 0,
               size: tuple[int, int] = (256, 256), slices: int = 100,
               montage: Path | None = None) -> SynthSummary:
    """A `synth` run: the tree, a montage, seconds per scan; montage and synth.json as artifacts."""
    montage = montage or out / "montage.png"
    params = {"out": str(out), "subjects": subjects if isinstance(subjects, int) else list(subjects),
              "seed": seed, "size": list(size), "slices": slices, "montage": str(montage)}
    with stage_run("synth", params=params, run_name=f"synth-seed{seed}"):
        subject_names(subjects)  # a bad name fails before anything is written
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
