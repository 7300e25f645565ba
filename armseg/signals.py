"""Signals as a run sees them: SIGTERM stops a command as Ctrl-C does, and closing a run is never cut.

`timeout`, Slurm and `docker stop` send SIGTERM, which by default kills Python on the spot: the
run stays RUNNING and scratch folders stay behind. While a command runs, SIGTERM (and SIGHUP,
a closed terminal) raise `Terminated`, a KeyboardInterrupt, so every `finally`, every
`TemporaryDirectory` and `stage_run`'s KILLED path runs. While a run's final status is written,
`interrupts_deferred` holds SIGINT and SIGTERM back: an interrupt then still ends the run KILLED,
but can no longer land between "work done" and "status written" and leave it RUNNING.
SIGKILL cannot be caught: `train --resume` starts again from the last complete epoch.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """A stopping signal other than Ctrl-C; handled wherever Ctrl-C is."""

    def __init__(self, signum: int):
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


def interrupt_for(signum: int) -> KeyboardInterrupt:
    """The exception a signal stands for: KeyboardInterrupt for SIGINT, else `Terminated`."""
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


def _heeded(signums: tuple[int, ...]) -> tuple[int, ...]:
    """The signals this process does not ignore: under `nohup` SIGHUP stays ignored, and a
    background job's ignored SIGINT is not turned into an interrupt."""
    return tuple(signum for signum in signums if signal.getsignal(signum) is not signal.SIG_IGN)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()  # only it may set handlers


@contextmanager
def stopping_signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise `Terminated` for the duration (as Ctrl-C raises KeyboardInterrupt)."""
    if not _in_main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise_terminated) for signum in _heeded(STOPPING_SIGNALS)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def interrupts_deferred() -> Iterator[list[int]]:
    """Hold SIGINT, SIGTERM and SIGHUP back for the duration; yields the list of those that came.

    The caller decides what a held-back interrupt means (end the run KILLED) and raises
    `interrupt_for(pending[0])` afterwards, so the command still stops.
    """
    pending: list[int] = []
    if not _in_main_thread():
        yield pending
        return
    def hold(signum: int, frame: object) -> None:
        pending.append(signum)

    previous = {signum: signal.signal(signum, hold) for signum in _heeded((signal.SIGINT, *STOPPING_SIGNALS))}
    try:
        yield pending
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
