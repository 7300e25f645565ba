"""A PNG that shows, at a glance, what a scan looks like and whether its labels fit it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from armseg.io.atomic import write_bytes_atomic

HUMERUS, BICEPS = 7, 52
_OVERLAY = {HUMERUS: ("#ff4040", "humerus (7)"), BICEPS: ("#30d0ff", "biceps (52)")}


def montage_slices(slices: int, n: int) -> list[int]:
    """`n` slice indices spread evenly along the arm, away from the very ends."""
    n = max(1, min(n, slices))
    return sorted({int(round(k)) for k in np.linspace(0, slices - 1, n + 2)[1:-1]})


def save_montage(volume: np.ndarray, labels: np.ndarray, path: Path | str, n: int = 4,
                 spacing: tuple[float, float] | None = None, title: str | None = None) -> Path:
    """B-mode slices along the arm (top row) and the same with humerus and biceps outlined and
    tinted (bottom row); `spacing` (depth, lateral mm) keeps the true aspect ratio."""
    path = Path(path)
    picks = montage_slices(volume.shape[2], n)
    aspect = spacing[0] / spacing[1] if spacing else 1.0
    width = 3.2 * len(picks)
    height = 2 * 3.2 * aspect * volume.shape[0] / volume.shape[1] + 0.8
    figure = Figure(figsize=(width, min(max(height, 3.0), 14.0)), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, len(picks), squeeze=False)
    for column, k in enumerate(picks):
        _show_slice(axes[0, column], volume[..., k], None, aspect, f"slice {k}")
        _show_slice(axes[1, column], volume[..., k], labels[..., k], aspect, f"slice {k} + labels")
    handles = [axes[1, 0].plot([], [], color=c, lw=3)[0] for c, _ in _OVERLAY.values()]
    figure.legend(handles, [name for _, name in _OVERLAY.values()], loc="lower center", ncol=2,
                  frameon=False)
    if title:
        figure.suptitle(title)
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_bytes_atomic(path, buffer.getvalue())
    return path


def _show_slice(axis, image: np.ndarray, labels: np.ndarray | None, aspect: float,
                title: str) -> None:
    axis.imshow(image, cmap="gray", vmin=0, vmax=255, aspect=aspect, interpolation="nearest")
    if labels is not None:
        for value, (colour, _) in _OVERLAY.items():
            mask = labels == value
            if not mask.any():
                continue
            tint = ListedColormap([(0, 0, 0, 0), colour])
            axis.imshow(mask, cmap=tint, vmin=0, vmax=1, alpha=0.3, aspect=aspect,
                        interpolation="nearest")
            axis.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=1.0)
    axis.set_title(title, fontsize=9)
    axis.set_axis_off()
