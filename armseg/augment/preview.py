"""The before/after picture: one slice of an original and of its augmented copies, outlined."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_NAMES = {7: "humerus", 52: "biceps"}
_COLOURS = ("#ff4040", "#30d0ff", "#ffd030", "#60ff60", "#ff60ff", "#ff9030", "#a0a0ff", "#ffffff")


@dataclass(frozen=True)
class Panel:
    """One transverse slice to show: its title, intensities and raw labels."""

    title: str
    image: np.ndarray
    labels: np.ndarray


def middle_slice(labels: np.ndarray, slice_axis: int) -> int:
    """The middle slice along the arm: away from the scan's ends, the same for every scan size."""
    return labels.shape[slice_axis] // 2


def panel(title: str, volume: np.ndarray, labels: np.ndarray, index: int, slice_axis: int) -> Panel:
    return Panel(title, np.take(volume, index, axis=slice_axis), np.take(labels, index, axis=slice_axis))


def preview_figure(panels: Sequence[Panel], spacing: Sequence[float] = (1.0, 1.0),
                   title: str | None = None) -> Figure:
    """Side-by-side slices with every raw label value outlined in its own colour."""
    values = sorted(int(v) for v in np.unique(panels[0].labels) if v != 0)
    colours = {v: _COLOURS[i % len(_COLOURS)] for i, v in enumerate(values)}
    aspect = spacing[0] / spacing[1]
    low, high = np.percentile(panels[0].image, (1, 99.5))
    rows, cols = panels[0].image.shape
    figure = Figure(figsize=(3.6 * len(panels), min(12.0, max(3.0, 3.6 * aspect * rows / cols + 0.9))),
                    dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axis, item in zip(axes, panels, strict=True):
        axis.imshow(item.image, cmap="gray", vmin=low, vmax=max(high, low + 1e-6), aspect=aspect,
                    interpolation="nearest")
        for value, colour in colours.items():
            mask = item.labels == value
            if mask.any():
                axis.contour(mask.astype(np.float32), levels=[0.5], colors=[colour], linewidths=1.0)
        axis.set_title(item.title, fontsize=9)
        axis.set_axis_off()
    handles = [axes[0].plot([], [], color=colour, lw=3)[0] for colour in colours.values()]
    names = [f"{_NAMES[v]} ({v})" if v in _NAMES else f"raw {v}" for v in colours]
    if handles:
        figure.legend(handles, names, loc="lower center", ncol=min(len(handles), 6), frameon=False,
                      fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout(rect=(0, 0.07 if handles else 0, 1, 1))
    return figure
