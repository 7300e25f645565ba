"""The experimental condition a trial's name carries: `trial<N>_<elbow angle>_<load>`.

OpenArm names every trial after its condition (`trial6_30_fs`: elbow at 30 degrees, forearm
fully supported; `trial10_30_p5`: 30 degrees holding weight 5). Deformation is studied against
these two factors, so they become tags and columns. A name in any other form (`trial1_pred`,
`trial3`) has no condition: nothing is guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from armseg.io.tree import source_trial

_CONDITION = re.compile(r"^trial\d+_(?P<angle>\d+(?:\.\d+)?)_(?P<load>[A-Za-z][A-Za-z0-9]*)$",
                        re.IGNORECASE)
# OpenArm's load codes from least to most effort: fully supported, gravity compensated, then
# held weights p<k>; anything else sorts after them, alphabetically.
_LOAD_ORDER = re.compile(r"^(?:(?P<fs>fs)|(?P<gc>gc)|p(?P<weight>\d+(?:\.\d+)?))$", re.IGNORECASE)


@dataclass(frozen=True)
class Condition:
    """Elbow angle in degrees and load code, as the trial's name spells them."""

    elbow_angle: float
    load: str

    @property
    def angle_text(self) -> str:
        """`30` rather than `30.0` in tags, as the name had it."""
        return f"{self.elbow_angle:g}"


def trial_condition(trial: str) -> Condition | None:
    """`trial6_30_fs` -> (30, 'fs'); augmented copies keep their source's condition; else None."""
    match = _CONDITION.match(source_trial(trial))
    if match is None:
        return None
    return Condition(float(match.group("angle")), match.group("load").lower())


def load_order(load: str) -> tuple[int, float, str]:
    """Sort key: fs < gc < p1 < p3 < p5 < other codes (alphabetical)."""
    match = _LOAD_ORDER.match(load)
    if match is None:
        return (3, 0.0, load)
    if match.group("fs"):
        return (0, 0.0, load)
    if match.group("gc"):
        return (1, 0.0, load)
    return (2, float(match.group("weight")), load)
