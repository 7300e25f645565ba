"""The few MLflow helpers every command shares: the store, stage runs, their final status."""

from armseg.tracking.runs import (
    DEFAULT_TRACKING_URI,
    configure_tracking,
    log_params_flat,
    stage_run,
)

__all__ = ["DEFAULT_TRACKING_URI", "configure_tracking", "log_params_flat", "stage_run"]
