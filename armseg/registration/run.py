"""The `register` stage's pair form: one scan segmented from one atlas scan, as one MLflow run."""

from __future__ import annotations

from pathlib import Path

from armseg.registration.pipeline import RegistrationResult, register_pair
from armseg.registration.report import log_result
from armseg.registration.settings import RegistrationSettings
from armseg.tracking.runs import stage_run


def register_files(fixed: str | Path, moving: str | Path, moving_seg: str | Path, out: str | Path,
                   settings: RegistrationSettings = RegistrationSettings(),  # noqa: B008 (frozen)
                   overwrite: bool = False) -> RegistrationResult:
    """Register, write `out`, log metrics and transforms."""
    params = {"fixed": str(fixed), "moving": str(moving), "moving_seg": str(moving_seg), "out": str(out),
              "overwrite": overwrite, **settings.as_params()}
    with stage_run("register", params, run_name=f"register-{Path(fixed).name}") as active:
        result = register_pair(fixed, moving, moving_seg, out, settings, overwrite=overwrite)
        log_result(result)
        print(f"[armseg register] wrote {result.out} (raw labels {list(result.labels)}, "
              f"{result.seconds:.1f} s); MLflow run {active.info.run_id}")
    return result
