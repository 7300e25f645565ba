"""Train's parameters: armseg defaults < OpenArm `trainingconfig.ini` < what the user gave.

OpenArm kept one ini per set of networks: a DEFAULT section and one section per training
group. armseg reads that file as it is, so a lab's existing configs keep working, and any
parameter given on the command line (or `-P` of `mlflow run`) wins over the file. Values
arrive as strings from the CLI, MLproject and ini alike; this module types and checks them
once, naming the parameter (and the file) when one is wrong.
"""

from __future__ import annotations

import configparser
import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from armseg.errors import ArmsegError, ParameterError
from armseg.io.labels import DEFAULT_PRESET, LabelMap, choose_label_map
from armseg.io.tree import is_plain_name
from armseg.model.choices import LOSSES, NORMALIZATIONS, PRECISIONS
from armseg.params import FALSE_WORDS, TRUE_WORDS, empty_as_none, flag, typed_value
from armseg.train.augmentation import RandomTransforms

# OpenArm keys that armseg accepts and logs but does not act on: MLflow's artifact store holds
# the checkpoints (`models_dir`), one last and one best checkpoint replace the keep/hours knobs.
# (`ckpt_n_epochs` acts: every n epochs the weights are logged as `checkpoints/epoch_<i>`.)
OPENARM_ONLY_KEYS = ("models_dir", "max_to_keep", "ckpt_n_hours")
# What to do with NaN or infinite voxels in a training scan: refuse the scan (naming it), or
# replace them by 0 and log how many there were.
NONFINITE_CHOICES = ("error", "replace")
# Which epoch's weights the run logs as its model: the last (after the cosine has annealed the
# rate) or the one with the best val_mean_iou (OpenArm's habit; the validation split is one scan).
KEEP_WEIGHTS_CHOICES = ("last", "best")
_RANGES = RandomTransforms()
# The most neighbouring slices on each side `context` takes in as channels: beyond a few, the
# neighbours are other anatomy, and every one more is a copy of the slice in memory and in a batch.
MAX_CONTEXT = 4
# The in-plane factors the U-Net may work at below the scan's resolution (`downsample`).
DOWNSAMPLE_CHOICES = (1, 2, 4)


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run depends on; logged as the run's parameters.

    Defaults are sized for a 2-core CPU: a few 256x256x100 phantom scans train to a good model
    in minutes (see the README's numbers). OpenArm's own network is depth=5, base_filters=64.
    """

    group: str
    data_root: str = "data"
    training_data_dir: str | None = None
    epochs: int = 20
    time_budget: float | None = None
    batch_size: int = 8
    train_percent: float = 85.0
    val_percent: float = 15.0
    test_percent: float = 0.0
    keep_percent: float = 100.0
    total_keep: int | None = None
    mean: float = 0.0
    weight_decay: float = 1e-6
    learning_rate: float = 2e-3
    ema_momentum: float = 0.0
    dropout: float = 0.1
    base_filters: int = 16
    depth: int = 4
    context: int = 0
    downsample: int = 2
    loss: str = "ce+dice"
    include_augmented: bool = True
    precision: str = "auto"
    seed: int = 0
    slice_axis: int = 2
    labels: str | None = None
    label_map: str | None = None
    skip_empty: bool = True
    normalization: str = "slice"
    batch_norm: bool = True
    patience: int = 0
    keep_weights: str = "last"
    random_transforms: bool = True
    rand_flip_prob: float = _RANGES.flip_prob
    rand_zoom: float = _RANGES.zoom
    rand_stretch: float = _RANGES.stretch
    rand_elastic: float = _RANGES.elastic
    rand_rotate_deg: float = _RANGES.rotate_deg
    rand_shift: float = _RANGES.shift
    rand_gain: float = _RANGES.gain
    rand_offset: float = _RANGES.offset
    rand_gamma: float = _RANGES.gamma
    rand_tgc: float = _RANGES.tgc
    rand_speckle_prob: float = _RANGES.speckle_prob
    rand_speckle: float = _RANGES.speckle
    rand_lowres_prob: float = _RANGES.lowres_prob
    rand_crop: float = _RANGES.crop
    rand_crop_depth: float = _RANGES.crop_depth
    models_dir: str | None = None
    max_to_keep: int | None = None
    ckpt_n_hours: float | None = None
    ckpt_n_epochs: int | None = None
    nonfinite: str = "error"

    def __post_init__(self) -> None:
        _coerce(self)
        _check(self)

    @property
    def label_mapping(self) -> LabelMap:
        """The network's classes: `label_map` (JSON) if given, else the `labels` preset (openarm)."""
        return choose_label_map(self.labels or (None if self.label_map else DEFAULT_PRESET), self.label_map)

    @property
    def transforms(self) -> RandomTransforms | None:
        """The random training transforms' ranges, or None when they are off."""
        return RandomTransforms.from_params(self) if self.random_transforms else None

    def params(self) -> dict[str, Any]:
        """The run's MLflow parameters (every field, None included, so runs compare column by column)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def _bool(text: str) -> bool:
    """armseg's true/false words; unlike a CLI switch, an empty value is not a choice here."""
    lowered = str(text).strip().lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered and lowered in FALSE_WORDS:
        return False
    raise ValueError(text)


_bool.__name__ = "boolean (true/false)"


def _optional_int(text: str) -> int | None:
    return None if str(text).strip().lower() in ("none", "0", "-1") else int(float(text))


def _int(text: str) -> int:
    number = float(text)
    if number != int(number):
        raise ValueError(text)
    return int(number)


_int.__name__ = "whole number"
_optional_int.__name__ = "whole number"


def _optional(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return None if str(text).strip().lower() == "none" else kind(text)

    parse.__name__ = getattr(kind, "__name__", "value")
    return parse


def _parsers() -> dict[str, Callable[[str], Any]]:
    """How each field's text is read, from its annotation."""
    kinds: dict[str, Callable[[str], Any]] = {
        "int": _int, "float": float, "str": str, "bool": _bool,
        "int | None": _optional(_int), "float | None": _optional(float), "str | None": _optional(str),
    }
    return {f.name: kinds[str(f.type)] for f in fields(TrainConfig)}


PARSERS = _parsers()
HYPERPARAMETERS = tuple(name for name in PARSERS if name not in ("group", "data_root", "training_data_dir",
                                                                  *OPENARM_ONLY_KEYS))
INI_KEYS = tuple(name for name in PARSERS if name != "group")


def typed(name: str, value: Any) -> Any:
    """One parameter from a string (or already typed); None and '' mean not given."""
    if value is None or isinstance(value, bool) or not isinstance(value, str):
        return value
    if name == "total_keep":
        return typed_value(value, name, _optional_int)
    return typed_value(value, name, PARSERS[name])


def resolve_config(values: Mapping[str, Any], config_path: str | None = None,
                   section: str | None = None) -> TrainConfig:
    """Defaults, then the ini's DEFAULT and section, then `values` (None/'' = not given)."""
    unknown = sorted(set(values) - set(PARSERS))
    if unknown:
        raise ArmsegError(f"unknown train parameter(s) {', '.join(unknown)} (known: {', '.join(PARSERS)})")
    given = {name: typed(name, value) for name, value in values.items()}
    given = {name: value for name, value in given.items() if value is not None}
    config_path = empty_as_none(config_path)
    section = empty_as_none(section)
    merged: dict[str, Any] = {}
    from_ini: dict[str, Any] = {}
    if config_path is not None:
        if not (section or given.get("group")):
            raise ArmsegError(f"{config_path}: say which section to read (--group or --section)")
        section = section or given["group"]
        from_ini = read_ini(Path(config_path), section)
        merged.update(from_ini)
    merged.update(given)
    if "group" not in merged and section not in (None, "DEFAULT"):
        merged["group"] = section
    if not merged.get("group"):
        raise ArmsegError("--group is required (the training group's folder name, e.g. group_1_1)")
    try:
        return TrainConfig(**merged)
    except ParameterError as error:
        # A value the user never typed as a flag is named where it was written: file and section.
        from_file = [name for name in error.names if name in from_ini and name not in given]
        if from_file:
            written = ", ".join(f"{name} = {from_ini[name]!r}" for name in from_file)
            raise ArmsegError(f"{config_path}: [{section}] {written}: {error.why}") from error
        raise


def read_ini(path: Path, section: str) -> dict[str, Any]:
    """The typed values of `section` in an OpenArm trainingconfig.ini, DEFAULT filling gaps."""
    if not path.is_file():
        raise ArmsegError(f"{path}: no such config file (--config)")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as error:
        reason = str(error).splitlines()[0]
        raise ArmsegError(f"{path}: not an ini file OpenArm's trainingconfig format ({reason})") from error
    if section != "DEFAULT" and not parser.has_section(section):
        sections = ", ".join(parser.sections()) or "none"
        raise ArmsegError(f"{path}: no section [{section}] (sections there: {sections}; --section picks one)")
    entries = parser.defaults() if section == "DEFAULT" else parser[section]
    values: dict[str, Any] = {}
    for key, text in entries.items():
        if key not in INI_KEYS:
            raise ArmsegError(f"{path}: unknown key '{key}' in [{section}] (known: {', '.join(INI_KEYS)})")
        try:
            values[key] = typed(key, text)
        except ArmsegError as error:
            reason = str(error).split(": ", 1)[-1]  # the flag's name means nothing inside an ini
            raise ArmsegError(f"{path}: [{section}] {key} = {text!r}: {reason}") from error
    return {key: value for key, value in values.items() if value is not None}


def _coerce(config: TrainConfig) -> None:
    """100 and 100.0 are the same keep_percent: store one type, so logged params compare (and a
    resumed run re-logs exactly what it logged first)."""
    for item in fields(config):
        value = getattr(config, item.name)
        if value is None or isinstance(value, bool):
            continue
        if str(item.type).startswith("float") and isinstance(value, int):
            object.__setattr__(config, item.name, float(value))
        elif str(item.type).startswith("int") and isinstance(value, float) and value.is_integer():
            object.__setattr__(config, item.name, int(value))


def _check(config: TrainConfig) -> None:
    """Refuse values no training could use, naming the parameter."""
    def bad(name: str, why: str) -> ParameterError:
        return ParameterError(f"{flag(name)}: {getattr(config, name)!r} {why}", (name,),
                              f"{getattr(config, name)!r} {why}")

    for item in fields(config):  # NaN passes every comparison below; infinity crashes Keras
        value = getattr(config, item.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise bad(item.name, "is not a finite number")
    if not is_plain_name(config.group):
        raise bad("group", "is not a folder name (no '/', '\\' or '..': groups are found by name "
                           "under <data-root>/training_groups)")
    for name in ("epochs", "batch_size", "base_filters", "depth"):
        if getattr(config, name) < 1:
            raise bad(name, "must be at least 1")
    for name in ("train_percent", "val_percent", "test_percent"):
        if not 0 <= getattr(config, name) <= 100:
            raise bad(name, "must be between 0 and 100")
    for name in ("train_percent", "val_percent"):  # validation picks the best epoch: it cannot be empty
        if getattr(config, name) <= 0:
            raise bad(name, "must be above 0")
    percents = ("train_percent", "val_percent", "test_percent")
    shares = [getattr(config, name) for name in percents]
    if abs(sum(shares) - 100) > 1e-6:  # rescaling them silently would log numbers that were not used
        why = " + ".join(f"{share:g}" for share in shares) + f" = {sum(shares):g}, not 100"
        raise ParameterError(f"{', '.join(flag(n) for n in percents)}: {why}", percents, why)
    if config.keep_weights not in KEEP_WEIGHTS_CHOICES:
        raise bad("keep_weights", f"is not one of {', '.join(KEEP_WEIGHTS_CHOICES)}")
    if config.nonfinite not in NONFINITE_CHOICES:
        raise bad("nonfinite", f"is not one of {', '.join(NONFINITE_CHOICES)}")
    if not 0 < config.keep_percent <= 100:
        raise bad("keep_percent", "must be above 0 and at most 100")
    if config.total_keep is not None and config.total_keep < 1:
        raise bad("total_keep", "must be at least 1 (or None for no cap)")
    if not 0 <= config.context <= MAX_CONTEXT:
        raise bad("context", f"must be from 0 (one slice) to {MAX_CONTEXT} (neighbours on each side)")
    if config.downsample not in DOWNSAMPLE_CHOICES:
        raise bad("downsample", f"is not one of {', '.join(map(str, DOWNSAMPLE_CHOICES))}")
    if not 0 <= config.dropout < 1:
        raise bad("dropout", "must be in [0, 1)")
    if config.learning_rate <= 0 or config.weight_decay < 0:
        name = "learning_rate" if config.learning_rate <= 0 else "weight_decay"
        raise bad(name, "must be positive")
    if not 0 <= config.ema_momentum < 1:
        raise bad("ema_momentum", "must be in [0, 1) (0 = no weight averaging)")
    if config.time_budget is not None and not config.time_budget > 0:
        raise bad("time_budget", "must be a positive number of minutes (or None for no budget)")
    if config.patience < 0:
        raise bad("patience", "must be 0 (no early stopping) or more")
    if config.slice_axis not in (0, 1, 2):
        raise bad("slice_axis", "must be 0, 1 or 2")
    for name, choices in (("loss", LOSSES), ("precision", PRECISIONS), ("normalization", NORMALIZATIONS)):
        if getattr(config, name) not in choices:
            raise bad(name, f"is not one of {', '.join(choices)}")
    if config.depth > 7:
        raise bad("depth", "is deeper than any slice allows (at most 7)")
    RandomTransforms.from_params(config).check()
    if config.ckpt_n_epochs is not None and config.ckpt_n_epochs < 0:
        raise bad("ckpt_n_epochs", "must be 0 or None (no epoch checkpoints) or a number of epochs")
    if config.label_mapping.num_classes < 2:
        raise bad("label_map", "needs background and at least one structure")

