"""Whole-file writes: a reader never sees half a file, even if the writer is interrupted.

A write that fails (a read-only folder, a file where a folder should be, a full disk) is one
sentence naming the file the user asked for, never the hidden temporary one, and leaves
nothing behind: removing the temporary file is best effort, so its own failure (there is no
such file in a folder that could not be created) can never hide the real reason.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from armseg.errors import ArmsegError


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write to a hidden temporary file beside `path`, then rename it into place."""
    path = Path(path)
    temporary: str | None = None
    with writing(path):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
            os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide the data from other users
            os.replace(temporary, path)
        finally:
            if temporary is not None:
                remove_quietly(Path(temporary))


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an operating-system error met while writing `path` into one sentence naming `path`."""
    try:
        yield
    except OSError as error:
        raise ArmsegError(f"{path}: cannot write ({cannot_write_reason(error)})") from error


def cannot_write_reason(error: OSError) -> str:
    """`Permission denied`, `No space left on device`, `Not a directory: 'out/x'`: the reason alone."""
    reason = error.strerror or type(error).__name__
    return reason


def remove_quietly(path: Path) -> None:
    """Remove a leftover temporary file if there is one; never raise (the real error matters)."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass
