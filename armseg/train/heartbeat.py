"""Who is training a run now (the `armseg.heartbeat` tag), so two processes never train one run,
and whether a run may be resumed. Keras-free: `train --resume` answers before Keras loads.

The process training a run writes `<host> <pid> <UTC time>` when it opens the run and after every
epoch. `--resume` of a run still RUNNING reads it: on the same host a live process with that pid
is still training; from another host a heartbeat younger than a few epochs (at least ten
minutes) is. A run whose process is gone (SIGKILL, a lost machine) can be resumed.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from armseg.errors import ArmsegError
from armseg.tracking.contract import HEARTBEAT_TAG, STAGE_TAG

# A heartbeat from another host counts as alive for this long, or three of its epochs if longer.
STALE_AFTER_SECONDS = 600.0
STALE_AFTER_EPOCHS = 3


@dataclass(frozen=True)
class Heartbeat:
    host: str
    pid: int
    time: datetime

    def text(self) -> str:
        return f"{self.host} {self.pid} {self.time.isoformat(timespec='seconds')}"

    @classmethod
    def parse(cls, text: str) -> Heartbeat | None:
        try:
            host, pid, when = text.split()
            return cls(host, int(pid), datetime.fromisoformat(when))
        except ValueError:
            return None


def resumable_run(run_id: str):
    """The train run `run_id`, if it can be resumed now: it exists, is a train run, has not
    finished, and no live process trains it (RUNNING after SIGKILL is fine)."""
    import mlflow

    client = mlflow.MlflowClient()
    try:
        run = client.get_run(run_id)
    except Exception as error:  # MLflow raises its own error types for unknown/malformed ids
        raise ArmsegError(f"--resume: no MLflow run {run_id} at {mlflow.get_tracking_uri()}") from error
    if run.data.tags.get(STAGE_TAG) != "train":
        raise ArmsegError(f"--resume: run {run_id} is not a train run "
                          f"({STAGE_TAG}={run.data.tags.get(STAGE_TAG)!r})")
    if run.info.status == "FINISHED":
        raise ArmsegError(f"--resume: run {run_id} already finished; there is nothing to continue")
    if run.info.status == "RUNNING":  # killed without a word (SIGKILL), or still training elsewhere
        seconds = [m.value for m in client.get_metric_history(run_id, "epoch_seconds")]
        refuse_if_alive(run_id, run.data.tags.get(HEARTBEAT_TAG), max(seconds, default=0.0))
    return run


def beat() -> str:
    """This process's heartbeat, now."""
    return Heartbeat(socket.gethostname(), os.getpid(), datetime.now(timezone.utc)).text()


def refuse_if_alive(run_id: str, text: str | None, longest_epoch_seconds: float = 0.0) -> None:
    """Raise if the heartbeat says another process is training `run_id` now."""
    heartbeat = Heartbeat.parse(text or "")
    if heartbeat is None or heartbeat.pid == os.getpid():
        return
    if heartbeat.host == socket.gethostname():
        if _process_alive(heartbeat.pid):
            raise ArmsegError(f"--resume: run {run_id} is being trained now by process {heartbeat.pid} on "
                              f"this machine ({heartbeat.host}); stop it first or wait for it")
        return
    age = (datetime.now(timezone.utc) - heartbeat.time).total_seconds()
    fresh = max(STALE_AFTER_SECONDS, STALE_AFTER_EPOCHS * longest_epoch_seconds)
    if age < fresh:
        raise ArmsegError(f"--resume: run {run_id} is being trained by process {heartbeat.pid} on "
                          f"{heartbeat.host} (heartbeat {age:.0f} s ago); if that process is gone, "
                          f"resume after {fresh - age:.0f} s")


def _process_alive(pid: int) -> bool:
    """A live process with that pid that is a Python program (a reused pid is not the trainer)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        pass
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            return b"python" in cmdline.read_bytes() or b"armseg" in cmdline.read_bytes()
        except OSError:
            return True
    return True
