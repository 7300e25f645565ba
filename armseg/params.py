"""Command-line values as MLflow and argparse hand them over, turned into typed values.

`mlflow run -P subjects="SubB SubF"` arrives as one quoted string while `armseg predict
--subjects SubB SubF` arrives as a list; an empty value (`-P epochs=`) means not given.
Every conversion error names the parameter, in the user's own spelling.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

from armseg.errors import ArmsegError

T = TypeVar("T")


def split_list(values: Sequence[str] | str | None) -> list[str]:
    """Flatten `--x a b`, `--x "a b"` and `-P x=a,b` into ['a', 'b']."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [part for value in values for part in str(value).replace(",", " ").split()]


def empty_as_none(value: str | None) -> str | None:
    """An empty value (`-P epochs=`, `--epochs ''`) means 'not given'; the code sees None."""
    return None if value is None or str(value).strip() == "" else value


def flag(name: str) -> str:
    """`learning_rate` as the user types it: `--learning-rate`."""
    return f"--{name.replace('_', '-')}"


def convert(text: str, name: str, kind: Callable[[str], T]) -> T:
    """`kind(text)`, refusing what no parameter means: a bad word, and NaN or infinity, which
    Python's float() accepts and which would reach Keras (a NaN learning rate trains nothing
    and still "finishes"; an infinite weight decay crashes inside Keras)."""
    what = {int: "whole number", float: "number"}.get(kind, getattr(kind, "__name__", "value"))
    try:
        value = kind(text)
    except (ValueError, OverflowError) as error:  # int(float('inf')) overflows
        raise ArmsegError(f"{flag(name)}: '{text}' is not a {what}") from error
    if isinstance(value, float) and not math.isfinite(value):
        raise ArmsegError(f"{flag(name)}: '{text}' is not a finite number")
    return value


def typed_list(values: Sequence[str] | str | None, name: str,
               kind: Callable[[str], T] = float) -> list[T]:
    """Numbers from a list parameter; a bad item names the parameter and the item."""
    return [convert(item, name, kind) for item in split_list(values)]


def typed_value(value: str | None, name: str, kind: Callable[[str], T], default: T | None = None) -> T | None:
    """One optional typed parameter ('' and None mean not given, so `default`)."""
    value = empty_as_none(value)
    if value is None:
        return default
    return convert(value, name, kind)


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off", "")


def parse_bool(value: str | bool | None, name: str) -> bool:
    """`--overwrite`, `--overwrite true` and `mlflow run -P overwrite=false` alike."""
    if isinstance(value, bool):
        return value
    text = str(value or "").strip().lower()
    if text in TRUE_WORDS or text in FALSE_WORDS:
        return text in TRUE_WORDS
    raise ArmsegError(f"--{name.replace('_', '-')}: '{value}' is not true or false")


def parse_size(values: object, name: str = "size") -> tuple[int, int]:
    """`--size 256 256`, `--size "256 256"` or `256,256` as (rows, columns)."""
    size = typed_list(values, name, int)
    if len(size) != 2:
        raise ArmsegError(f"--{name} takes two integers (rows columns), got {len(size)}: "
                          f"{' '.join(str(s) for s in size)}")
    return size[0], size[1]
