"""Raw OpenArm label values <-> the network's class indices, by lookup table.

OpenArm segmentations carry raw values (0, 7, 8, 9, 45, 51, 52, 53, 68). Two presets name the
usual maps (`--labels`): `openarm`, armseg's default, learns 0 = background, 1 = humerus,
2 = biceps, every other known tissue being background; `openarm-all` learns every raw value
as its own class, as OpenArm's own network did (nine classes, in raw-value order). In both,
raw 6 and 1 are known mislabels of the humerus (7). Anything else is a JSON `--label-map`.
A value the map does not know is an error: silently calling it background would hide a
labelling mistake.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from armseg.errors import ArmsegError
from armseg.model.choices import LABEL_PRESETS

HUMERUS_RAW = 7
BICEPS_RAW = 52
OPENARM_RAW_VALUES = (0, 7, 8, 9, 45, 51, 52, 53, 68)
KNOWN_MISLABELS = {6: HUMERUS_RAW, 1: HUMERUS_RAW}


@dataclass(frozen=True)
class LabelMap:
    """Which raw values form each class; class 0 is background and written back as raw 0."""

    classes: tuple[str, ...] = ("background", "humerus", "biceps")
    raw_values: dict[str, tuple[int, ...]] = field(
        default_factory=lambda: {
            "background": tuple(v for v in OPENARM_RAW_VALUES if v not in (7, 52)),
            "humerus": (HUMERUS_RAW, *KNOWN_MISLABELS),
            "biceps": (BICEPS_RAW,),
        }
    )

    def __post_init__(self) -> None:
        if not self.classes or self.classes[0] != "background":
            raise ArmsegError("label map: the first class must be 'background'")
        seen: dict[int, str] = {}
        for name in self.classes:
            for value in self.raw_values.get(name, ()):
                if value in seen and seen[value] != name:
                    raise ArmsegError(
                        f"label map: raw value {value} is in both '{seen[value]}' and '{name}'"
                    )
                if not 0 <= value <= 65535:
                    raise ArmsegError(f"label map: raw value {value} is out of range 0..65535")
                seen[value] = name

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def foreground(self) -> tuple[str, ...]:
        """The structures scored by metrics (all classes but background)."""
        return self.classes[1:]

    def written_value(self, class_index: int) -> int:
        """The raw value a predicted class is written as: its first raw value (7, 52; 0)."""
        if class_index == 0:
            return 0
        return self.raw_values[self.classes[class_index]][0]

    def lookup_table(self) -> np.ndarray:
        """raw value -> class index; 255 marks values the map does not know."""
        top = max((v for values in self.raw_values.values() for v in values), default=0)
        table = np.full(top + 1, 255, dtype=np.uint8)
        for index, name in enumerate(self.classes):
            table[list(self.raw_values.get(name, ()))] = index
        return table

    def encode(self, raw: np.ndarray, source: Path | str) -> np.ndarray:
        """Map a raw segmentation to uint8 class indices; unknown values name the file."""
        values = integer_labels(raw, source)
        table = self.lookup_table()
        if values.min(initial=0) >= 0 and values.max(initial=0) < table.size:
            classes = table[values]
            if not (classes == 255).any():
                return classes
        inside = (values >= 0) & (values < table.size)
        unknown = ~inside | (table[np.where(inside, values, 0)] == 255)
        bad = np.unique(values[unknown])
        shown = ", ".join(str(v) for v in bad[:10]) + (" ..." if bad.size > 10 else "")
        raise ArmsegError(
            f"{source}: unknown label values {shown} (the label map knows "
            f"{sorted(v for vs in self.raw_values.values() for v in vs)})"
        )

    def decode(self, classes: np.ndarray) -> np.ndarray:
        """Class indices back to raw values (uint8 when they fit), as predictions are written."""
        table = np.array([self.written_value(i) for i in range(self.num_classes)])
        dtype = np.uint8 if table.max() <= 255 else np.uint16
        return table.astype(dtype)[classes]

    def to_json(self) -> str:
        return json.dumps({name: list(self.raw_values.get(name, ())) for name in self.classes})

    @classmethod
    def from_json(cls, text: str) -> LabelMap:
        """Build from '{"background": [0, 8], "humerus": [7, 6, 1], "biceps": [52]}' (order = classes)."""
        try:
            mapping = json.loads(text)
            classes = tuple(str(name) for name in mapping)
            raw_values = {str(k): tuple(int(v) for v in vs) for k, vs in mapping.items()}
        except (ValueError, TypeError, AttributeError) as error:
            raise ArmsegError(f"label map: cannot parse {text!r} as JSON {{class: [raw values]}}") from error
        return cls(classes=classes, raw_values=raw_values)


def integer_labels(raw: np.ndarray, source: Path | str) -> np.ndarray:
    """Label files are sometimes stored as floats; accept them only if every value is integral."""
    if np.issubdtype(raw.dtype, np.integer):
        return raw
    rounded = np.rint(raw)
    if not np.array_equal(rounded, raw):
        raise ArmsegError(f"{source}: segmentation holds non-integer values; is it a volume?")
    return rounded.astype(np.int64)


DEFAULT_LABEL_MAP = LabelMap()


def tissue_name(raw: int) -> str:
    """The class name of a raw value in `openarm-all`: OpenArm names only 7 and 52."""
    return {0: "background", HUMERUS_RAW: "humerus", BICEPS_RAW: "biceps"}.get(raw, f"tissue_{raw}")


def _every_tissue() -> LabelMap:
    names = tuple(tissue_name(raw) for raw in OPENARM_RAW_VALUES)
    raw_values = {tissue_name(raw): (raw,) for raw in OPENARM_RAW_VALUES}
    raw_values["humerus"] = (HUMERUS_RAW, *KNOWN_MISLABELS)
    return LabelMap(classes=names, raw_values=raw_values)


OPENARM_ALL_LABEL_MAP = _every_tissue()
DEFAULT_PRESET = "openarm"
PRESETS: dict[str, LabelMap] = {DEFAULT_PRESET: DEFAULT_LABEL_MAP, "openarm-all": OPENARM_ALL_LABEL_MAP}
assert tuple(PRESETS) == LABEL_PRESETS  # the names --help shows without importing numpy


def preset(name: str, flag: str = "--labels") -> LabelMap:
    """A named label map; an unknown name lists the presets."""
    found = PRESETS.get(str(name).strip().lower())
    if found is None:
        raise ArmsegError(f"{flag} {name}: unknown preset (presets: {', '.join(PRESETS)}; "
                          "--label-map takes any other map as JSON)")
    return found


def choose_label_map(labels: str | None, label_map: str | None) -> LabelMap | None:
    """`--labels PRESET` or `--label-map JSON` (not both); None when neither is given."""
    labels = labels.strip() if labels and labels.strip() else None
    label_map = label_map.strip() if label_map and label_map.strip() else None
    if labels and label_map:
        raise ArmsegError("--labels and --label-map both given; give one (a preset or a JSON map)")
    if label_map:
        return LabelMap.from_json(label_map)
    return preset(labels) if labels else None


def preset_name(label_map: LabelMap) -> str | None:
    """The preset a map is, if it is one (for messages and logged parameters)."""
    return next((name for name, known in PRESETS.items() if known == label_map), None)


def smallest_preset_holding(values: set[int]) -> LabelMap | None:
    """The first preset whose written values include all `values`: which map made a prediction
    whose model is unknown (OpenArm's own, a copied folder). None when no preset explains them.
    The known mislabels (6, 1) count as the humerus they stand for."""
    values = {KNOWN_MISLABELS.get(value, value) for value in values}
    for known in PRESETS.values():
        written = {known.written_value(index) for index in range(known.num_classes)}
        if values <= written:
            return known
    return None
