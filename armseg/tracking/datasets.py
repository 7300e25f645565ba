"""Data lineage the MLflow way: the scans a run read, logged as MLflow dataset inputs.

A train run logs its training, validation and test splits, an evaluate run the scan it
scored, each as `mlflow.log_input` of a metadata-only dataset: the name (the group, the scan),
a digest over the files' contents (and, for a split, the slices it took from each), and the
folder as its source. The UI's Dataset column then says which data made a model and which scan a
number came from, and two runs on the same files show the same digest.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import mlflow
from mlflow.data.dataset_source_registry import get_dataset_source_from_json
from mlflow.data.meta_dataset import MetaDataset

from armseg.io.tree import file_digest

DIGEST_LENGTH = 16  # MLflow keeps at most 36 characters of a dataset digest


def files_digest(parts: Iterable[tuple[Path, str]]) -> str:
    """A digest over (file, extra) pairs: the files' contents and what was taken from each.

    The order does not matter and neither do the file names: the same scans copied elsewhere
    are the same data.
    """
    lines = sorted(f"{_content_digest(path)} {extra}" for path, extra in parts)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:DIGEST_LENGTH]


def _content_digest(path: Path) -> str:
    stat = Path(path).stat()
    return _cached_digest(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=1024)
def _cached_digest(path: str, modified_ns: int, size: int) -> str:
    """A scan's three splits (and every model scored on it) hash its file once."""
    return file_digest(Path(path))


def scans_dataset(name: str, source: Path, parts: Iterable[tuple[Path, str]]) -> MetaDataset:
    """A metadata-only dataset named `name`, read from the folder `source`."""
    folder = get_dataset_source_from_json(json.dumps({"uri": str(Path(source).resolve())}), "local")
    return MetaDataset(source=folder, name=name, digest=files_digest(parts))


def log_scans(dataset: MetaDataset, context: str) -> None:
    """Log `dataset` as an input of the active run, used as `context` (training, evaluation, ...)."""
    mlflow.log_input(dataset, context=context)
