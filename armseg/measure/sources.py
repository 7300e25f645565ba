"""What `armseg measure` measures: each labelled scan's ground truth and every model's
prediction of it, and which label map and structures to read them with.

A source is `ground_truth` or a predictions folder name (a group, `armseg-unet-v3`,
`registration-trial1_0_fs`), found the way `evaluate` finds them, so both stages see the same
(model, scan) pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from armseg.errors import ArmsegError
from armseg.evaluate.pairs import model_folders
from armseg.io.labels import DEFAULT_LABEL_MAP, HUMERUS_RAW, KNOWN_MISLABELS, OPENARM_RAW_VALUES, LabelMap
from armseg.io.tree import Scan, find_prediction, list_subjects, natural_key, prediction_sources, scan_key
from armseg.measure.conditions import Condition, trial_condition
from armseg.measure.names import GROUND_TRUTH

DEFAULT_LABELS = "openarm"


def openarm_all_map() -> LabelMap:
    """Every OpenArm raw value its own class, as OpenArm's network had: 7 humerus, 52 biceps,
    the others `raw<value>` (their meaning differs between annotators, so no name is guessed)."""
    names = {0: "background", HUMERUS_RAW: "humerus", 52: "biceps"}
    classes = tuple(names.get(value, f"raw{value}") for value in OPENARM_RAW_VALUES)
    raw_values = {names.get(value, f"raw{value}"): (value,) for value in OPENARM_RAW_VALUES}
    raw_values["humerus"] = (HUMERUS_RAW, *KNOWN_MISLABELS)
    return LabelMap(classes=classes, raw_values=raw_values)


LABEL_PRESETS = {"openarm": lambda: DEFAULT_LABEL_MAP, "openarm-all": openarm_all_map}


def choose_label_map(labels: str | None = None, label_map_json: str | None = None) -> LabelMap:
    """`--labels` preset or `--label-map` JSON (not both); OpenArm's three classes by default."""
    if labels and label_map_json:
        raise ArmsegError("--labels and --label-map: give one of them, not both")
    if label_map_json:
        return LabelMap.from_json(label_map_json)
    preset = LABEL_PRESETS.get((labels or DEFAULT_LABELS).strip().lower())
    if preset is None:
        raise ArmsegError(f"--labels {labels}: unknown preset (valid: {', '.join(LABEL_PRESETS)})")
    return preset()


def choose_structures(label_map: LabelMap, structures: Sequence[str] | None = None) -> dict[str, int]:
    """Structure name -> class index, every foreground class by default, in the map's order."""
    known = {name: index for index, name in enumerate(label_map.classes) if index > 0}
    if not structures:
        return known
    unknown = [name for name in structures if name not in known]
    if unknown:
        raise ArmsegError(f"--structures: unknown {', '.join(unknown)} (the label map has "
                          f"{', '.join(known) or 'no structures'})")
    return {name: known[name] for name in known if name in structures}


@dataclass(frozen=True)
class LabelledScan:
    """A scan with ground truth, of one subject."""

    subject: str
    scan: Scan
    truth: Path  # the scan's *seg* file

    @property
    def key(self) -> str:
        """The table column, e.g. `trial6C`."""
        return scan_key(self.scan.trial, self.subject)

    @property
    def condition(self) -> Condition | None:
        return trial_condition(self.scan.trial)


def labelled_subjects(data_root: Path | str) -> list[str]:
    """Subjects with a prediction_sources folder: those that can hold ground truth."""
    root = Path(data_root)
    return [s for s in list_subjects(root) if (root / s / "prediction_sources").is_dir()]


def find_scans(data_root: Path | str, subjects: Sequence[str] | None = None) -> list[LabelledScan]:
    """Every scan with ground truth (*seg*) of the subjects, subject by subject, trial by trial."""
    chosen = list(dict.fromkeys(subjects or labelled_subjects(data_root)))
    if not chosen:
        raise ArmsegError(f"--data-root {data_root}: no Sub<X> folders with prediction_sources")
    found = [LabelledScan(subject, scan, scan.segmentation) for subject in chosen
             for scan in sorted(prediction_sources(data_root, subject), key=lambda s: natural_key(s.trial))
             if scan.segmentation is not None]
    if not found:
        raise ArmsegError(f"--subjects {' '.join(chosen)}: no scans with ground truth (*seg*) under "
                          f"{data_root}/<subject>/prediction_sources")
    return found


def find_models(data_root: Path | str, subjects: Sequence[str],
                models: Sequence[str] | None = None) -> list[str]:
    """Predictions folders to measure: the given ones (each must exist), else all of them."""
    found = sorted({m for s in subjects for m in model_folders(data_root, s)}, key=natural_key)
    if GROUND_TRUTH in found:
        raise ArmsegError(f"{data_root}: a predictions folder is named '{GROUND_TRUTH}', the name "
                          "measure gives the ground truth; rename the folder")
    if models is None:
        return found
    for model in models:
        if model not in found:
            raise ArmsegError(f"--models {model}: no predictions folder of that name under "
                              f"{', '.join(subjects)} (models there: {', '.join(found) or 'none'})")
    return list(dict.fromkeys(models))


def prediction_of(data_root: Path | str, model: str, labelled: LabelledScan) -> Path | None:
    """The model's prediction of the scan (OpenArm's `trial6_30_fs_pred_seg.nii`, or the short
    `trial6_pred_seg.nii` of earlier armseg versions), or None when it has not predicted it."""
    return find_prediction(data_root, labelled.subject, model, labelled.scan)
