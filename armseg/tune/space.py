"""The search space: defaults a user narrows or widens with YAML/JSON, inline or in a file.

    learning_rate: {low: 1.0e-4, high: 3.0e-3, log: true}   # a float range
    depth: [3, 4]                                          # a choice
    dropout: 0.2                                           # held fixed
    loss: null                                             # removed from the search

Numbers in a `{low, high}` range that are both integers make an integer range.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from armseg.errors import ArmsegError

DEFAULT_SPACE: dict[str, Any] = {
    "learning_rate": {"low": 1e-4, "high": 3e-3, "log": True},
    "weight_decay": {"low": 1e-7, "high": 1e-4, "log": True},
    "dropout": {"low": 0.0, "high": 0.5},
    "base_filters": [8, 16, 32],
    "depth": [3, 4, 5],
    "batch_size": [4, 8, 16],
    "loss": ["ce", "dice", "ce+dice"],
    "include_augmented": [True, False],
}


@dataclass(frozen=True)
class Dimension:
    """One searched hyperparameter: a numeric range or a list of choices."""

    name: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if isinstance(self.low, int) and isinstance(self.high, int):
            return trial.suggest_int(self.name, self.low, self.high, log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)


def read_space_text(value: str | None) -> dict[str, Any]:
    """Parse `--search-space`: a path to a .yaml/.yml/.json file, or the YAML/JSON itself."""
    if value is None or not value.strip():
        return {}
    path = Path(value)
    source = f"search space file {path}" if path.suffix in (".yaml", ".yml", ".json") else "--search-space"
    try:
        text = path.read_text() if source != "--search-space" else value
        parsed = yaml.safe_load(text)
    except OSError as error:
        raise ArmsegError(f"{source}: cannot be read ({error.strerror})") from error
    except yaml.YAMLError as error:
        raise ArmsegError(f"{source}: not valid YAML/JSON ({str(error).splitlines()[0]})") from error
    if not isinstance(parsed, dict):
        raise ArmsegError(f"{source}: expected a mapping of hyperparameter names, got {parsed!r}")
    return parsed


def build_space(
    overrides: Mapping[str, Any], known: Iterable[str], held_fixed: Iterable[str] = ()
) -> tuple[dict[str, Dimension], dict[str, Any]]:
    """(searched dimensions, values held fixed) from the defaults and the user's overrides.

    Hyperparameters the user gave to `tune` directly (`held_fixed`) leave the search.
    """
    known = set(known)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ArmsegError(f"--search-space: unknown hyperparameter(s) {', '.join(unknown)} "
                          f"(train's are: {', '.join(sorted(known))})")
    merged = {**DEFAULT_SPACE, **overrides}
    dimensions: dict[str, Dimension] = {}
    fixed: dict[str, Any] = {}
    for name, spec in merged.items():
        if spec is None or name in held_fixed:
            continue
        if isinstance(spec, list):
            if not spec:
                raise ArmsegError(f"--search-space: '{name}' has an empty list of choices")
            dimensions[name] = Dimension(name, choices=tuple(spec))
        elif isinstance(spec, dict):
            dimensions[name] = _range(name, spec)
        else:
            fixed[name] = spec
    return dimensions, fixed


def _range(name: str, spec: Mapping[str, Any]) -> Dimension:
    extra = set(spec) - {"low", "high", "log"}
    if extra or "low" not in spec or "high" not in spec:
        raise ArmsegError(f"--search-space: '{name}' needs {{low, high[, log]}}, got {dict(spec)}")
    low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise ArmsegError(f"--search-space: '{name}' low/high must be numbers, got {low!r}, {high!r}")
    if low > high or (log and low <= 0):
        raise ArmsegError(f"--search-space: '{name}' needs low <= high (and low > 0 when log), "
                          f"got {low}..{high}")
    return Dimension(name, low=low, high=high, log=log)


def suggest_all(trial: optuna.trial.BaseTrial, dimensions: Mapping[str, Dimension]) -> dict[str, Any]:
    return {name: dimension.suggest(trial) for name, dimension in dimensions.items()}
