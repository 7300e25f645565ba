"""The `augment` stage: augmented copies of a group's scans as one MLflow run.

Every original vol+seg pair of the group gets one copy per rotation angle and one per
(alpha, sigma) combination, each a new trial folder beside the original whose name marks it
as augmented (`trial1_0_fs_rot-10`, `trial1_0_fs_a5_s10_ed`), so `train` can tell copies
from originals and keep the copies out of validation and test. The run records the
parameters, the files written, a before/after picture and the seconds per scan.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import mlflow
import numpy as np

from armseg.augment.copies import Outcome, augment_scans, copy_specs
from armseg.augment.preview import preview_figure
from armseg.errors import ArmsegError
from armseg.io.tree import find_group, group_scans
from armseg.tracking.contract import DATA_ROOT_TAG, GROUP_TAG
from armseg.tracking.runs import stage_run

PREVIEW_ARTIFACT = "augment_preview.png"


def augment_group(data_root: Path | str, group: str, degrees: Sequence[float], alphas: Sequence[float],
                  sigmas: Sequence[float], seed: int = 0, overwrite: bool = False, slice_axis: int = 2,
                  slice_sigma: float = 0.0) -> list[Path]:
    """Augment every original scan of `group` as one `augment` run; return the folders written.

    Parameters are checked before the run opens; existing copies are kept (and reported as
    skipped) unless `overwrite`.
    """
    validate(degrees, alphas, sigmas, seed, slice_axis, slice_sigma)
    params = {"data_root": str(data_root), "group": group, "degrees": list(degrees),
              "alphas": list(alphas), "sigmas": list(sigmas), "seed": seed, "overwrite": overwrite,
              "slice_axis": slice_axis, "slice_sigma": slice_sigma}
    with stage_run("augment", params, tags={GROUP_TAG: group, DATA_ROOT_TAG: str(data_root)},
                   run_name=f"augment-{group}") as active:
        folder = find_group(data_root, group)
        scans = group_scans(folder, include_augmented=False)
        if not scans:
            raise ArmsegError(f"group '{group}' at {folder} holds no original scans to augment")
        outcome = augment_scans(scans, copy_specs(degrees, alphas, sigmas), seed, overwrite, slice_axis,
                                slice_sigma)
        _log(outcome)
        _report(outcome, folder, active.info.run_id)
    return outcome.written


def validate(degrees: Sequence[float], alphas: Sequence[float], sigmas: Sequence[float], seed: int,
             slice_axis: int, slice_sigma: float) -> None:
    """User mistakes as one sentence naming the parameter."""
    _check("degrees", degrees, lambda d: abs(d) <= 180, "outside -180..180")
    _check("alphas", alphas, lambda a: a >= 0, "negative (alpha is a displacement in pixels, >= 0)")
    _check("sigmas", sigmas, lambda s: s > 0, "not positive (sigma is a smoothing width in pixels, > 0)")
    _check("slice_sigma", [slice_sigma], lambda s: s >= 0, "negative (0 deforms slices independently)")
    if slice_axis not in (0, 1, 2):
        raise ArmsegError(f"--slice-axis must be 0, 1 or 2 (an array axis of a 3D volume), got {slice_axis}")
    if seed < 0:
        raise ArmsegError(f"--seed must be a non-negative integer, got {seed}")
    if not degrees and not (alphas and sigmas):
        raise ArmsegError("nothing to do: --degrees is empty and --alphas/--sigmas give no (alpha, sigma) "
                          "pair; give angles, or both alphas and sigmas")


def _check(name: str, values: Sequence[float], ok: Callable[[float], bool], problem: str) -> None:
    flag = f"--{name.replace('_', '-')}"
    for value in values:
        if not math.isfinite(value):
            raise ArmsegError(f"{flag}: {value} is not a finite number")
        if not ok(value):
            raise ArmsegError(f"{flag}: {value:g} is {problem}")


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else 0.0


def _log(outcome: Outcome) -> None:
    """Metrics, the list of files written (and skipped), and the before/after picture."""
    mlflow.log_metrics({
        "seconds_per_scan": outcome.seconds / outcome.scans if outcome.scans else 0.0,
        "seconds_per_rotation": _mean(outcome.seconds_by_kind["rotation"]),
        "seconds_per_elastic": _mean(outcome.seconds_by_kind["elastic"]),
        "scans": outcome.scans,
        "folders_written": len(outcome.written),
        "folders_skipped": len(outcome.skipped),
    })
    mlflow.log_text("".join(f"{path}\n" for path in outcome.files), "written.txt")
    if outcome.skipped:
        mlflow.log_text("".join(f"{path}\n" for path in outcome.skipped), "skipped.txt")
    if outcome.panels:
        figure = preview_figure(outcome.panels, outcome.panel_spacing, outcome.panel_title)
        mlflow.log_figure(figure, PREVIEW_ARTIFACT)


def _report(outcome: Outcome, folder: Path, run_id: str) -> None:
    per_scan = outcome.seconds / outcome.scans if outcome.scans else 0.0
    print(f"[armseg augment] wrote {len(outcome.written)} folders ({len(outcome.files)} files) beside "
          f"the originals in {folder}; {per_scan:.2f} s per scan")
    if outcome.skipped:
        print(f"[armseg augment] skipped {len(outcome.skipped)} existing folders (--overwrite replaces "
              f"them); listed in skipped.txt")
    print(f"[armseg augment] file list written.txt and picture {PREVIEW_ARTIFACT} are artifacts of "
          f"MLflow run {run_id} at {mlflow.get_tracking_uri()}")
