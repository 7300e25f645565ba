"""A cell of the accuracy table: one per-(model, scan) run's tags and metrics, as the table needs them.

The per-scan run stays the unit a cell leads to (its run id is kept); a parent that logged many
of them also writes them all into one artifact, `cells.json` (`record_text`), so the table reads
one small file per parent instead of one run per cell. `cell_from_run` is the one place a run
becomes a cell, used on both paths, so the fast table and a plain `search_runs` agree byte for
byte. Standard library only: the record format is readable without MLflow.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from armseg.tracking.contract import (
    DATA_ROOT_TAG,
    MODEL_RUN_TAG,
    MODEL_TAG,
    MODEL_URI_TAG,
    MODEL_VERSION_TAG,
    SCAN_TAG,
    SUBJECT_TAG,
    TRIAL_TAG,
)

RECORD_FORMAT = "armseg-cells/1"
# The record's columns: a cell's identity, where it came from, and the model that made it.
FIELDS = ("run_id", "start_time", "model", "subject", "trial", "scan", "data_root", "model_version",
          "model_run_id", "model_uri")
_TAG_FIELDS = {"model": MODEL_TAG, "subject": SUBJECT_TAG, "trial": TRIAL_TAG, "scan": SCAN_TAG,
               "data_root": DATA_ROOT_TAG, "model_version": MODEL_VERSION_TAG, "model_run_id": MODEL_RUN_TAG,
               "model_uri": MODEL_URI_TAG}


@dataclass(frozen=True, slots=True)
class Cell:
    """What the table reads of one per-(model, scan) run. `metrics` holds the store's values as read back."""

    run_id: str
    start_time: int
    model: str
    subject: str
    trial: str
    scan: str
    data_root: str | None = None
    model_version: str | None = None
    model_run_id: str | None = None
    model_uri: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def newest_first(self) -> tuple[int, str]:
        """Sort key of `search_runs(order_by=['attributes.start_time DESC'])`: ties go by run id."""
        return -self.start_time, self.run_id


def cell_from_run(run: Any) -> Cell | None:
    """The cell an MLflow run stands for, or None for a run without the pivot tags (a parent)."""
    tags = run.data.tags
    if MODEL_TAG not in tags or SCAN_TAG not in tags:
        return None
    return Cell(run_id=run.info.run_id, start_time=int(run.info.start_time or 0), model=tags[MODEL_TAG],
                subject=tags.get(SUBJECT_TAG, ""), trial=tags.get(TRIAL_TAG, tags[SCAN_TAG]),
                scan=tags[SCAN_TAG], data_root=tags.get(DATA_ROOT_TAG),
                model_version=tags.get(MODEL_VERSION_TAG), model_run_id=tags.get(MODEL_RUN_TAG),
                model_uri=tags.get(MODEL_URI_TAG),
                metrics=dict(run.data.metrics))


def cell_tags(cell: Cell) -> dict[str, str]:
    """The pivot tags a run must carry to be this cell (what evaluate and measure set)."""
    values = {name: getattr(cell, name) for name in _TAG_FIELDS}
    return {_TAG_FIELDS[name]: value for name, value in values.items() if value is not None}


def record_text(cells: Iterable[Cell]) -> str:
    """Cells as one compact JSON document: columns once, a row per cell, metrics as one aligned list.

    Floats are written with Python's round-trip repr (NaN as NaN), so reading a record gives back
    exactly the values the runs hold; an absent metric is null, distinct from a NaN score.
    """
    cells = list(cells)
    metrics = sorted({name for cell in cells for name in cell.metrics})
    rows = [[*(getattr(cell, name) for name in FIELDS), [cell.metrics.get(m) for m in metrics]]
            for cell in cells]
    return json.dumps({"format": RECORD_FORMAT, "fields": FIELDS, "metrics": metrics, "cells": rows},
                      separators=(",", ":"))


def read_record(text: str) -> list[Cell]:
    """The cells of a `record_text` document; a document in another format is a ValueError."""
    document = json.loads(text)
    if not isinstance(document, dict) or document.get("format") != RECORD_FORMAT:
        raise ValueError(f"not an {RECORD_FORMAT} record")
    fields, metrics = document["fields"], document["metrics"]
    cells = []
    for *values, scores in document["cells"]:
        if len(values) != len(fields) or len(scores) != len(metrics):
            raise ValueError("a cell does not match the record's columns")
        known = dict(zip(fields, values, strict=True))
        scored = dict(zip(metrics, scores, strict=True))
        if None in scores:  # a metric this cell's run did not log
            scored = {name: value for name, value in scored.items() if value is not None}
        cells.append(Cell(*(known.get(name) for name in FIELDS), metrics=scored))
    return cells
