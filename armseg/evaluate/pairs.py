"""Which predictions can be scored: every model folder under `predictions/` with ground truth.

A model is whatever folder sits under `Sub<X>/predictions/[size dir/]` — a group, a registry
version, a run, the registration baseline — so evaluate never needs to know who wrote it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from armseg.errors import ArmsegError
from armseg.io.tree import (
    SIZE_DIRS,
    Scan,
    find_prediction,
    natural_key,
    prediction_path,
    prediction_sources,
    scan_key,
    subjects_with_sources,
)


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


def model_folders(data_root: Path | str, subject: str) -> list[str]:
    """Every model folder with predictions for a subject, size folders looked through."""
    base = Path(data_root) / subject / "predictions"
    places = [base, *(base / size_dir for size_dir in SIZE_DIRS)]
    found = {folder.name for place in places if place.is_dir() for folder in place.iterdir()
             if folder.is_dir() and not folder.name.startswith(".") and folder.name not in SIZE_DIRS}
    return sorted(found, key=natural_key)


def subjects_to_score(data_root: Path | str, subjects: list[str] | None) -> list[str]:
    """The subjects asked for, or every subject with both scans and predictions of them."""
    root = Path(data_root)
    chosen = list(dict.fromkeys(subjects or [s for s in subjects_with_sources(root)
                                             if (root / s / "predictions").is_dir()]))
    if not chosen:
        raise ArmsegError(f"{data_root}: no Sub<X> folders with prediction_sources and predictions")
    return chosen


def models_to_score(present: dict[str, list[str]], models: list[str] | None) -> list[str]:
    """The model folders asked for (each must exist for some subject), or all that exist."""
    found = sorted({m for names in present.values() for m in names}, key=natural_key)
    wanted = list(dict.fromkeys(models)) if models else found
    for model in wanted:
        if model not in found:
            raise ArmsegError(f"--models {model}: no predictions folder of that name under "
                              f"{', '.join(present)} (models there: {', '.join(found) or 'none'})")
    return wanted


def pair_predictions(data_root: Path | str, subjects: list[str], models: list[str],
                     present: dict[str, list[str]]) -> tuple[list[Evaluation], list[Evaluation]]:
    """(pairs with a prediction file, pairs whose model skipped that scan), scan by scan.

    A prediction is `<trial folder>_pred_seg.nii` (OpenArm's name, what predict writes) or the
    older `<trialN>_pred_seg.nii`; a missing one is reported under OpenArm's name.
    """
    found, missing = [], []
    for subject in subjects:
        scans = prediction_sources(data_root, subject)
        labelled = [scan for scan in scans if scan.segmentation is not None]
        refuse_shared_columns(subject, labelled)
        for scan in sorted(labelled, key=lambda s: natural_key(s.trial)):
            # A model that never predicted this subject is not a gap worth a line per scan.
            for model in (m for m in models if m in present[subject]):
                path = find_prediction(data_root, subject, model, scan, scans)
                where = path or prediction_path(data_root, subject, model, scan)
                (missing if path is None else found).append(Evaluation(model, subject, scan, where))
    return found, missing


def refuse_shared_columns(subject: str, scans: list[Scan]) -> None:
    """Two labelled scans of one subject with one trial number would share a table column
    (`trial6B`, OpenArm's naming): the newer score would silently hide the other."""
    seen: dict[str, Scan] = {}
    for scan in scans:
        other = seen.setdefault(scan.trial_id, scan)
        if other is not scan:
            raise ArmsegError(f"{other.folder} and {scan.folder}: both are {scan.trial_id} of {subject}, so "
                              f"both would be the table column {scan_key(scan.trial, subject)}; give each "
                              "trial its own number")


def find_evaluations(data_root: Path | str, subjects: list[str] | None = None,
                     models: list[str] | None = None) -> list[Evaluation]:
    """(model, scan) pairs where a prediction and a ground truth both exist; gaps are reported."""
    chosen = subjects_to_score(data_root, subjects)
    present = {s: model_folders(data_root, s) for s in chosen}
    evaluations, missing = pair_predictions(data_root, chosen, models_to_score(present, models), present)
    for item in missing:
        print(f"[armseg evaluate] skipped {item.model} {item.key}: no prediction {item.prediction}")
    if not evaluations:
        raise ArmsegError(f"{data_root}: no predictions of scans with ground truth (*seg*) for subjects "
                          f"{', '.join(chosen)}; run `armseg predict` first")
    return evaluations
