"""Which predictions can be scored: every model folder under `predictions/` with ground truth.

A model is whatever folder sits under `Sub<X>/predictions/[size dir/]` — a group, a registry
version, a run, the registration baseline — so evaluate never needs to know who wrote it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from armseg.errors import ArmsegError
from armseg.io.tree import SIZE_DIRS, Scan, list_subjects, prediction_path, prediction_sources, scan_key

# The tags `armseg table` pivots on; every per-(model, scan) evaluate run carries all four.
MODEL_TAG, SUBJECT_TAG, TRIAL_TAG, SCAN_TAG = "armseg.model", "armseg.subject", "armseg.trial", "armseg.scan"


@dataclass(frozen=True)
class Evaluation:
    """One prediction of one labelled scan by one model."""

    model: str
    subject: str
    scan: Scan
    prediction: Path

    @property
    def key(self) -> str:
        """The table column, e.g. `trial6B`."""
        return scan_key(self.scan.trial, self.subject)


def natural_key(text: str) -> tuple:
    """`group_1_10` after `group_1_2`, `trial10` after `trial9`."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text))


def model_folders(data_root: Path | str, subject: str) -> list[str]:
    """Every model folder with predictions for a subject, size folders looked through."""
    base = Path(data_root) / subject / "predictions"
    places = [base, *(base / size_dir for size_dir in SIZE_DIRS)]
    found = {folder.name for place in places if place.is_dir() for folder in place.iterdir()
             if folder.is_dir() and not folder.name.startswith(".") and folder.name not in SIZE_DIRS}
    return sorted(found, key=natural_key)


def default_subjects(data_root: Path | str) -> list[str]:
    """Subjects that have both scans to compare against and predictions of them."""
    root = Path(data_root)
    return [s for s in list_subjects(root)
            if (root / s / "prediction_sources").is_dir() and (root / s / "predictions").is_dir()]


def find_evaluations(data_root: Path | str, subjects: list[str] | None = None,
                     models: list[str] | None = None) -> list[Evaluation]:
    """(model, scan) pairs where a prediction and a ground truth both exist, scan by scan.

    `models` are predictions folder names; a name found under no subject is an error that
    lists the folders there. A labelled scan a model has not predicted is reported and skipped.
    """
    subjects = list(dict.fromkeys(subjects or default_subjects(data_root)))
    if not subjects:
        raise ArmsegError(f"{data_root}: no Sub<X> folders with prediction_sources and predictions")
    labelled = {s: [scan for scan in prediction_sources(data_root, s) if scan.segmentation is not None]
                for s in subjects}
    present = {s: model_folders(data_root, s) for s in subjects}
    found = sorted({m for names in present.values() for m in names}, key=natural_key)
    wanted = list(dict.fromkeys(models)) if models else found
    for model in wanted:
        if model not in found:
            raise ArmsegError(f"--models {model}: no predictions folder of that name under "
                              f"{', '.join(subjects)} (models there: {', '.join(found) or 'none'})")
    evaluations, missing = [], []
    for subject in subjects:
        for scan in sorted(labelled[subject], key=lambda s: natural_key(s.trial)):
            # A model that never predicted this subject is not a gap worth a line per scan.
            for model in (m for m in wanted if m in present[subject]):
                path = prediction_path(data_root, subject, model, scan)
                (evaluations if path.is_file() else missing).append(Evaluation(model, subject, scan, path))
    for item in missing:
        print(f"[armseg evaluate] skipped {item.model} {item.key}: no prediction {item.prediction}")
    if not evaluations:
        raise ArmsegError(f"{data_root}: no predictions of scans with ground truth (*seg*) for subjects "
                          f"{', '.join(subjects)}; run `armseg predict` first")
    return evaluations
