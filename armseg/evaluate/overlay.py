"""A picture per evaluated scan: truth and prediction over the image on a few slices.

Numbers say how much a prediction is off; the overlay says where (a missed humerus tip, a
biceps spilling into the brachialis), which is what a person checks first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from armseg.io.geometry import to_slices

# Class 0 transparent; then one colour per structure of the model's map, in its order (the default
# map: humerus orange, biceps cyan; `openarm-all` has eight structures, each its own colour).
_COLOURS = ["#ff9f1c", "#2ec4b6", "#e71d36", "#9b5de5", "#f15bb5", "#fee440", "#00bbf9", "#8ac926",
            "#ffffff"]


def chosen_slices(reference: np.ndarray, prediction: np.ndarray, count: int = 4) -> np.ndarray:
    """`count` slices spread evenly over those where truth or prediction has a structure."""
    labelled = np.flatnonzero((reference > 0).any(axis=(1, 2)) | (prediction > 0).any(axis=(1, 2)))
    candidates = labelled if labelled.size else np.arange(reference.shape[0])
    picks = np.linspace(0, candidates.size - 1, num=min(count, candidates.size)).round().astype(int)
    return candidates[np.unique(picks)]


def overlay_figure(
    volume: np.ndarray,
    reference: np.ndarray,
    prediction: np.ndarray,
    classes: Sequence[str],
    slice_axis: int = 2,
    count: int = 4,
    title: str = "",
) -> Figure:
    """Rows: truth, prediction (truth outlined in white on it); columns: slices along the arm."""
    images, truths, predictions = (to_slices(a, slice_axis) for a in (volume, reference, prediction))
    picks = chosen_slices(truths, predictions, count)
    colours = ListedColormap(["none", *(_COLOURS[i % len(_COLOURS)] for i in range(len(classes) - 1))])
    # About one screen pixel per voxel (within limits): sharp enough to judge an edge, and
    # a PNG of tens of kB rather than megabytes of upsampled speckle.
    height, width = images.shape[1:]
    panel = float(np.clip(width / 100, 1.6, 4.0))
    figure = Figure(figsize=(panel * len(picks), 2 * panel * height / width + 0.8), dpi=100)
    axes = figure.subplots(2, len(picks), squeeze=False, gridspec_kw={"wspace": 0.04, "hspace": 0.12})
    figure.subplots_adjust(left=0.06, right=0.99, top=0.88, bottom=0.08)
    for column, index in enumerate(picks):
        low, high = np.percentile(images[index], (1, 99))
        for row, labels in enumerate((truths[index], predictions[index])):
            axis = axes[row, column]
            axis.imshow(images[index], cmap="gray", vmin=low, vmax=high, interpolation="nearest")
            axis.imshow(np.ma.masked_equal(labels, 0), cmap=colours, vmin=0, vmax=len(classes) - 1,
                        alpha=0.45, interpolation="nearest")
            if row == 1:
                for label in np.unique(truths[index])[1:]:
                    axis.contour(truths[index] == label, levels=[0.5], colors="white", linewidths=0.6)
            axis.set_xticks([])
            axis.set_yticks([])
        axes[0, column].set_title(f"slice {index}", fontsize=8)
    axes[0, 0].set_ylabel("truth", fontsize=8)
    axes[1, 0].set_ylabel("prediction\n(truth outlined)", fontsize=8)
    figure.legend(handles=[Patch(color=_COLOURS[(i - 1) % len(_COLOURS)], label=name)
                           for i, name in enumerate(classes) if i], loc="lower center",
                  ncols=len(classes) - 1, fontsize=7, frameon=False)
    if title:
        figure.suptitle(title, fontsize=9)
    return figure
