"""The pictures a train run logs: learning curves, predictions over validation slices, and what
the random transforms do to training slices. Each function takes arrays and returns a Figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

# Class 0 transparent; the structures in the order of the label map.
COLOURS = ["none", "tab:orange", "tab:cyan", "tab:green", "tab:pink", "tab:olive", "tab:purple", "tab:red",
           "tab:brown", "tab:blue"]


def class_colours(num_classes: int) -> list[str]:
    return [COLOURS[i % len(COLOURS)] if i else "none" for i in range(num_classes)]


def learning_curve_figure(history: Mapping[str, Sequence[tuple[int, float]]],
                          structures: Sequence[str], best_epoch: int | None = None) -> Figure:
    """Loss and validation IoU per epoch (epochs counted from 1, as Keras prints them)."""
    figure = Figure(figsize=(10, 4), layout="constrained")
    left, right = figure.subplots(1, 2)
    panels = ((left, ("loss", "val_loss")),
              (right, (*(f"val_iou_{name}" for name in structures), "val_mean_iou")))
    for axis, names in panels:
        for name in names:
            points = sorted(history.get(name, ()))
            if points:
                steps, values = zip(*points, strict=True)
                axis.plot(steps, values, marker="o", label=name)
        if best_epoch is not None:
            axis.axvline(best_epoch, color="grey", linestyle=":", label=f"kept: epoch {best_epoch}")
        axis.set_xlabel("epoch")
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    left.set_title("loss")
    right.set_title("validation IoU")
    right.set_ylim(0, 1)
    return figure


def slice_ious(truth: np.ndarray, guess: np.ndarray, num_classes: int) -> str:
    """`IoU 0.93/0.88` for one slice, '-' where a structure is in neither."""
    parts = []
    for index in range(1, num_classes):
        union = np.count_nonzero((truth == index) | (guess == index))
        both = np.count_nonzero((truth == index) & (guess == index))
        parts.append(f"{both / union:.2f}" if union else "-")
    return "IoU " + "/".join(parts)


def overlay_figure(images: np.ndarray, truths: np.ndarray, guesses: np.ndarray, indices: Sequence[int],
                   structures: Sequence[str], title: str) -> Figure:
    """Prediction (filled) over ground truth (outline) on a few slices."""
    num_classes = len(structures) + 1
    colours = class_colours(num_classes)
    figure = Figure(figsize=(4 * len(indices), 4), layout="constrained")
    axes = figure.subplots(1, len(indices), squeeze=False)[0]
    for axis, image, truth, guess, index in zip(axes, images, truths, guesses, indices, strict=True):
        axis.imshow(image, cmap="gray")
        axis.imshow(np.ma.masked_equal(guess, 0), cmap=ListedColormap(colours), alpha=0.4,
                    vmin=0, vmax=num_classes - 1, interpolation="nearest")
        for class_index in range(1, num_classes):
            if (truth == class_index).any():
                axis.contour(truth == class_index, levels=[0.5], colors=[colours[class_index]],
                             linewidths=1.2)
        axis.set_title(f"val slice {index}: {slice_ious(truth, guess, num_classes)}", fontsize=8)
        axis.axis("off")
    legend = ", ".join(f"{name} {colour.removeprefix('tab:')}"
                       for name, colour in zip(structures, colours[1:], strict=True))
    figure.suptitle(f"{title}: prediction (filled) vs ground truth (outline); {legend}", fontsize=9)
    return figure


def transforms_figure(originals: np.ndarray, transformed: np.ndarray, labels: np.ndarray,
                      indices: Sequence[int], num_classes: int) -> Figure:
    """Training slices before and after the random transforms, labels outlined, to check by eye."""
    figure = Figure(figsize=(3.5 * len(indices), 7), layout="constrained")
    axes = figure.subplots(2, len(indices), squeeze=False)
    for column, index in enumerate(indices):
        axes[0, column].imshow(originals[column], cmap="gray")
        axes[0, column].set_title(f"train slice {index}", fontsize=8)
        axes[1, column].imshow(transformed[column], cmap="gray")
        axes[1, column].contour(labels[column], levels=np.arange(num_classes - 1) + 0.5,
                                colors="tab:orange", linewidths=0.8)
        axes[1, column].set_title("randomly transformed, labels outlined", fontsize=8)
    for axis in axes.ravel():
        axis.axis("off")
    return figure
