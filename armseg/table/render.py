"""The table's heat maps (PNG and HTML) drawn by a helper process that loads matplotlib meanwhile.

`armseg table` spends most of its time importing: MLflow and its SQL store, then matplotlib for
the pictures. The pictures need nothing but the finished table, so `Renderer.start()` launches
`python -m armseg.table.render` before the tracking store is opened: the helper loads matplotlib
on another core while this process loads MLflow and queries the store, then draws the table it
is handed. On any trouble (no helper, a crash, a timeout) the pictures are drawn
here instead, by the same functions: the files are the same either way.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from armseg.table.pictures import Grid

PICTURES = ("png", "html")
_TIMEOUT_S = 300


def draw(grid: Grid) -> dict[str, str | bytes]:
    from armseg.table.pictures import heatmap_png, to_html

    return {"png": heatmap_png(grid), "html": to_html(grid)}


class Renderer:
    """A helper process waiting for one table to draw; `pictures` never fails for its sake."""

    def __init__(self, process: subprocess.Popen | None) -> None:
        self.process = process

    @classmethod
    def start(cls) -> Renderer:
        package_parent = str(Path(__file__).resolve().parents[2])  # a checkout runs without installing
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_parent,
                                                                          os.environ.get("PYTHONPATH")]))}
        try:
            process = subprocess.Popen([sys.executable, "-m", "armseg.table.render"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        except OSError:
            process = None
        return cls(process)

    def pictures(self, grid: Grid) -> dict[str, str | bytes]:
        """The PNG and HTML of the table, from the helper when it delivers, else drawn here."""
        if self.process is not None:
            try:
                output, _ = self.process.communicate(pickle.dumps(grid), timeout=_TIMEOUT_S)
                drawn = pickle.loads(output) if self.process.returncode == 0 else None
                if isinstance(drawn, dict) and set(drawn) == set(PICTURES):
                    return drawn
            except Exception:  # whatever went wrong over there, the pictures are drawn here
                pass
            finally:
                self.close()
        return draw(grid)

    def close(self) -> None:
        """Stop the helper if it still runs (a table that failed never sends it anything)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


def main() -> int:
    """The helper: load matplotlib at once, then draw the one table that arrives on stdin."""
    import matplotlib.figure  # noqa: F401  (the point of starting early)

    import armseg.table.pictures  # noqa: F401

    data = sys.stdin.buffer.read()
    if not data:  # the table failed before it had anything to draw
        return 0
    sys.stdout.buffer.write(pickle.dumps(draw(pickle.loads(data))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
