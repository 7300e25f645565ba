"""A training group read into memory: its scans' slices, split and stacked per split.

Slices are held as the volume's own integer type and labels as uint8 class indices; batches are
cast to float32 only as they stream, so memory is ~one byte per voxel instead of OpenArm's
float64 one-hot (8 x classes bytes). With `context` k, each slice is stacked with its k
neighbours on each side along the arm as channels (2k + 1 bytes per voxel): the neighbours come
from the whole scan, kept or not, and repeat the end slice at the scan's ends, as at predict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from armseg.errors import ArmsegError
from armseg.io.geometry import padded_size, to_slices
from armseg.io.images import finite_voxels
from armseg.io.labels import LabelMap
from armseg.io.pairs import scan_pair
from armseg.io.tree import Scan, find_group, group_scans, list_groups, trial_folders
from armseg.train.config import TrainConfig
from armseg.train.split import SPLITS, Part, Split, plan_split


@dataclass(frozen=True)
class SliceSet:
    """Stacked slices of one split: images (N, H, W) as stored, or (N, H, W, 2k + 1) with k
    neighbours on each side as channels (the slice in the middle); labels (N, H, W) uint8."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[3]) if self.images.ndim == 4 else 1

    def with_channels(self, picks: np.ndarray) -> np.ndarray:
        """The picked slices as the network takes them, (n, H, W, channels), as stored."""
        chosen = self.images[picks]
        return chosen if chosen.ndim == 4 else chosen[..., np.newaxis]

    def middle(self, picks: np.ndarray) -> np.ndarray:
        """The picked slices themselves, (n, H, W), without their neighbours."""
        return self.with_channels(picks)[..., self.channels // 2]


def group_folder(config: TrainConfig) -> Path:
    """The group's folder: `training_data_dir` when it holds trials, else the group by name."""
    directory = Path(config.training_data_dir) if config.training_data_dir else None
    if directory is not None and directory.is_dir() and trial_folders(directory):
        return directory
    if directory is not None and directory.name != config.group and directory.name in list_groups(
            config.data_root):
        return find_group(config.data_root, directory.name)
    return find_group(config.data_root, config.group)


@dataclass
class GroupData:
    """A group read, split and stacked: what `train` feeds Keras."""

    folder: Path
    split: Split
    sets: dict[str, SliceSet]
    pad_multiple: int
    nonfinite_replaced: int = 0  # NaN/inf voxels set to 0 (--nonfinite replace)

    def split_json(self) -> str:
        return json.dumps({"group_folder": str(self.folder), **self.split.describe()}, indent=2)

    def steps_per_epoch(self, batch_size: int) -> int:
        """Batches per epoch: one pass over the *original* training slices.

        Augmented copies join the pool the batches are drawn from but do not lengthen the epoch:
        six rotated/deformed copies of a group would otherwise make each epoch seven times as
        long for views that on-the-fly augmentation already approximates.
        """
        originals = sum(p.indices.size for p in self.split.parts["train"] if not p.scan.augmented)
        return max(1, -(-(originals or self.split.count("train")) // batch_size))


def load_group(config: TrainConfig, pad_multiple: int, progress: bool = True) -> GroupData:
    """Read the group's scans, split them and stack each split's slices (padded alike)."""
    folder = group_folder(config)
    scans = group_scans(folder, include_augmented=config.include_augmented)
    if not scans:
        raise ArmsegError(f"{folder}: no trial folders with a volume and segmentation")
    labels = config.label_mapping
    volumes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    labelled: dict[str, np.ndarray] = {}
    replaced = 0
    for number, scan in enumerate(scans, 1):
        images, classes, labelled[scan.trial] = _read_slices(scan, labels, config.slice_axis)
        images, count = finite_voxels(images, scan.volume, config.nonfinite, "train")
        replaced += count
        volumes[scan.trial] = images, classes
        if progress:
            shape = "x".join(str(s) for s in images.shape)
            print(f"[armseg train] read {number}/{len(scans)} {scan.trial} ({shape} slices x rows x cols)")
    lengths = {trial: images.shape[0] for trial, (images, _) in volumes.items()}
    split = plan_split(scans, lengths, config, labelled if config.skip_empty else None)
    if config.skip_empty and progress:
        print(f"[armseg train] skipped {split.skipped_empty} unlabelled slices (segmentation all 0; "
              "--skip-empty false keeps them)")
    if split.count("train") == 0 or split.count("val") == 0:
        raise ArmsegError(f"{folder}: the split left no training or no validation slices "
                          f"({split.summary()}); check --val-percent and the group's scans")
    height = padded_size(max(v[0].shape[1] for v in volumes.values()), pad_multiple)
    width = padded_size(max(v[0].shape[2] for v in volumes.values()), pad_multiple)
    sets = {name: _stack(split.parts[name], volumes, height, width, config.context) for name in SPLITS}
    return GroupData(folder=folder, split=split, sets=sets, pad_multiple=pad_multiple,
                     nonfinite_replaced=replaced)


def _read_slices(scan: Scan, labels: LabelMap, slice_axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images, classes, indices of the slices with any raw label): slices stacked on axis 0.

    A slice is labelled when any voxel of its raw segmentation is not 0. Under the default map
    a slice with only other tissues labelled is all background to the network, yet it was
    annotated: it teaches where the humerus and the biceps are not, so it is kept.
    """
    image, raw = scan_pair(scan)
    raw_slices = to_slices(np.asarray(raw.array), slice_axis)
    classes = labels.encode(raw_slices, raw.path)
    array = np.asarray(image.array)
    if not np.issubdtype(array.dtype, np.integer) or array.dtype.itemsize > 2:
        array = array.astype(np.float32)
    labelled = np.flatnonzero(raw_slices.reshape(raw_slices.shape[0], -1).any(axis=1))
    return to_slices(array, slice_axis), classes, labelled


def neighbours(indices: np.ndarray, count: int, context: int) -> np.ndarray:
    """(n, 2 context + 1) slice numbers: each index's neighbours along the arm, itself in the
    middle, the scan's first or last slice repeated past its ends."""
    offsets = np.arange(-context, context + 1)
    return np.clip(np.asarray(indices)[:, None] + offsets, 0, count - 1)


def _stack(parts: list[Part], volumes: dict[str, tuple[np.ndarray, np.ndarray]], height: int,
           width: int, context: int = 0) -> SliceSet:
    """One (N, height, width[, 2 context + 1]) array per split, zero-padded at the far edges like
    prediction does."""
    count = sum(p.indices.size for p in parts)
    dtype = np.result_type(*(volumes[p.scan.trial][0].dtype for p in parts)) if parts else np.uint8
    channels = (2 * context + 1,) if context else ()
    images = np.zeros((count, height, width, *channels), dtype=dtype)
    classes = np.zeros((count, height, width), dtype=np.uint8)
    at = 0
    for part in parts:
        source_images, source_labels = volumes[part.scan.trial]
        n, h, w = part.indices.size, source_images.shape[1], source_images.shape[2]
        if context:
            around = neighbours(part.indices, source_images.shape[0], context)
            images[at:at + n, :h, :w] = np.moveaxis(source_images[around], 1, -1)
        else:
            images[at:at + n, :h, :w] = source_images[part.indices]
        classes[at:at + n, :h, :w] = source_labels[part.indices]
        at += n
    return SliceSet(images, classes)


