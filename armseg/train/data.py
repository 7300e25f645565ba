"""A training group's slices: split without leaks, thinned as OpenArm did, streamed with tf.data.

Splitting rules, because neighbouring ultrasound slices are near-copies of each other:
- With enough scans, whole scans go to train, validation or test; with too few (a group of
  one or two scans), every scan is cut into contiguous blocks along the arm,
  train | gap | val | gap | test, and the gap slices are dropped.
- Augmented copies (`*_ed`, `*_rot10`) only ever train, and only when their source scan (or its
  training block) trains: a rotated copy of a validation scan would leak it into training.

Slices are held as the volume's own integer type and labels as uint8 class indices; batches are
cast to float32 only as they stream, so memory is ~one byte per voxel instead of OpenArm's
float64 one-hot (8 x classes bytes).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from armseg.errors import ArmsegError
from armseg.io.geometry import padded_size, to_slices
from armseg.io.labels import LabelMap
from armseg.io.pairs import read_labelled_scan
from armseg.io.tree import Scan, find_group, group_scans, list_groups, trial_folders
from armseg.train.config import TrainConfig

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Part:
    """Which slices of one scan a split uses."""

    scan: Scan
    indices: np.ndarray

    def describe(self) -> dict:
        return {"scan": self.scan.trial, "slices": _ranges(self.indices)}


@dataclass
class Split:
    """The parts of each split and how they were made (`by_scan` or `by_block`)."""

    mode: str
    parts: dict[str, list[Part]] = field(default_factory=lambda: {name: [] for name in SPLITS})

    def count(self, name: str) -> int:
        return int(sum(part.indices.size for part in self.parts[name]))

    def describe(self) -> dict:
        return {"mode": self.mode, **{name: [p.describe() for p in self.parts[name]] for name in SPLITS}}

    def summary(self) -> str:
        return ", ".join(f"{name} {self.count(name)} slices of {len(self.parts[name])} scans"
                         for name in SPLITS)


@dataclass(frozen=True)
class SliceSet:
    """Stacked slices of one split: images (N, H, W) as stored, labels (N, H, W) uint8."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])


def group_folder(config: TrainConfig) -> Path:
    """The group's folder: `training_data_dir` when it holds trials, else the group by name."""
    directory = Path(config.training_data_dir) if config.training_data_dir else None
    if directory is not None and directory.is_dir() and trial_folders(directory):
        return directory
    if directory is not None and directory.name != config.group and directory.name in list_groups(
            config.data_root):
        return find_group(config.data_root, directory.name)
    return find_group(config.data_root, config.group)


def plan_split(scans: Sequence[Scan], lengths: dict[str, int], config: TrainConfig) -> Split:
    """Assign scans (or blocks of them) to train/val/test and thin them (keep_percent, total_keep)."""
    families = _families(scans)
    eligible = sorted(name for name, members in families.items() if members[0] is not None)
    if not eligible:
        raise ArmsegError("the group holds only augmented copies (*_ed, *_rot*) and no original scan "
                          "to validate on")
    shares = np.array([config.train_percent, config.val_percent, config.test_percent], dtype=float)
    needed = 1 + int(shares[1] > 0) + int(shares[2] > 0)
    if len(eligible) >= needed:
        split = _split_by_scan(families, eligible, shares, lengths, config)
    else:
        split = _split_by_block(families, eligible, shares, lengths, config)
    for name in SPLITS:
        split.parts[name] = [_keep(part, config.keep_percent) for part in split.parts[name]]
    if config.total_keep is not None:
        split.parts["train"] = _cap(split.parts["train"], config.total_keep)
    return split


def _families(scans: Sequence[Scan]) -> dict[str, list]:
    """source trial -> [original or None, augmented copies...]."""
    families: dict[str, list] = {}
    for scan in scans:
        members = families.setdefault(scan.source_trial, [None])
        if scan.augmented:
            members.append(scan)
        else:
            members[0] = scan
    return families


def _counts(total: int, shares: np.ndarray) -> tuple[int, int, int]:
    """Scans per split: at least one where a share is asked for, at least one training."""
    fractions = shares / shares.sum()
    val, test = (max(1, round(total * f)) if s > 0 else 0
                 for f, s in zip(fractions[1:], shares[1:], strict=True))
    while total - val - test < 1:
        if val >= test and val > 1:
            val -= 1
        else:
            test -= 1
    return total - val - test, val, test


def _split_by_scan(families: dict[str, list], eligible: list[str], shares: np.ndarray,
                   lengths: dict[str, int], config: TrainConfig) -> Split:
    order = [eligible[i] for i in np.random.default_rng(config.seed).permutation(len(eligible))]
    _, n_val, n_test = _counts(len(order), shares)
    held = {"val": order[:n_val], "test": order[n_val:n_val + n_test]}
    split = Split("by_scan")
    for name in ("val", "test"):
        split.parts[name] = [_whole(families[source][0], lengths) for source in sorted(held[name])]
    held_out = set(held["val"]) | set(held["test"])
    for source in sorted(families):
        if source in held_out:
            continue  # its augmented copies stay out of training too
        original, *copies = families[source]
        members = ([original] if original is not None else []) + (copies if config.include_augmented else [])
        split.parts["train"] += [_whole(scan, lengths) for scan in members]
    return split


def _whole(scan: Scan, lengths: dict[str, int]) -> Part:
    return Part(scan, np.arange(lengths[scan.trial]))


def block_bounds(length: int, shares: np.ndarray) -> dict[str, np.ndarray]:
    """Contiguous train | gap | val | gap | test slice indices of one scan of `length` slices."""
    gap = max(2, length // 20)
    gaps = gap * (int(shares[1] > 0) + int(shares[2] > 0))
    usable = length - gaps
    fractions = shares / shares.sum()
    val = max(1, round(usable * fractions[1])) if shares[1] > 0 else 0
    test = max(1, round(usable * fractions[2])) if shares[2] > 0 else 0
    train = usable - val - test
    if train < 1:
        raise ArmsegError(f"{length} slices are too few to cut into train/val/test blocks with "
                          f"{gap}-slice gaps; lower --val-percent/--test-percent or add scans")
    bounds, start = {}, 0
    for name, size in (("train", train), ("val", val), ("test", test)):
        bounds[name] = np.arange(start, start + size)
        start += size + (gap if size else 0)  # a gap after each block (the last one falls off the end)
    return bounds


def _split_by_block(families: dict[str, list], eligible: list[str], shares: np.ndarray,
                    lengths: dict[str, int], config: TrainConfig) -> Split:
    split = Split("by_block")
    for source in sorted(families):
        original, *copies = families[source]
        if original is None:  # copies of a scan that is not in the group: nothing to leak
            if config.include_augmented:
                split.parts["train"] += [_whole(c, lengths) for c in copies]
            continue
        try:
            bounds = block_bounds(lengths[original.trial], shares)
        except ArmsegError as error:
            raise ArmsegError(f"{original.folder}: {error}") from error
        for name in SPLITS:
            if bounds[name].size:
                split.parts[name].append(Part(original, bounds[name]))
        if config.include_augmented:
            for copy in copies:
                indices = bounds["train"][bounds["train"] < lengths[copy.trial]]
                split.parts["train"].append(Part(copy, indices))
    return split


def _keep(part: Part, keep_percent: float) -> Part:
    """OpenArm's keep_percent: evenly spaced slices along the arm, so the whole arm stays covered."""
    if keep_percent >= 100 or part.indices.size == 0:
        return part
    return Part(part.scan, _even(part.indices, math.ceil(part.indices.size * keep_percent / 100)))


def _cap(parts: list[Part], total: int) -> list[Part]:
    """OpenArm's total_keep: at most `total` training slices, thinned evenly across all scans."""
    sizes = np.array([p.indices.size for p in parts])
    if sizes.sum() <= total:
        return parts
    chosen = _even(np.arange(sizes.sum()), total)
    owner = np.searchsorted(np.cumsum(sizes), chosen, side="right")
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    capped = [Part(p.scan, p.indices[chosen[owner == i] - offsets[i]]) for i, p in enumerate(parts)]
    return [p for p in capped if p.indices.size]


def _even(indices: np.ndarray, count: int) -> np.ndarray:
    count = max(1, min(count, indices.size))
    return indices[np.unique(np.round(np.linspace(0, indices.size - 1, count)).astype(int))]


def _ranges(indices: np.ndarray) -> str:
    """[0 1 2 3 7 8] -> '0-3,7-8' for a readable split.json."""
    if indices.size == 0:
        return ""
    breaks = np.flatnonzero(np.diff(indices) != 1)
    starts = np.concatenate([[indices[0]], indices[breaks + 1]])
    ends = np.concatenate([indices[breaks], [indices[-1]]])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in zip(starts, ends, strict=True))


@dataclass
class GroupData:
    """A group read, split and stacked: what `train` feeds Keras."""

    folder: Path
    split: Split
    sets: dict[str, SliceSet]
    pad_multiple: int

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
    labels = config.labels
    volumes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for number, scan in enumerate(scans, 1):
        volumes[scan.trial] = _read_slices(scan, labels, config.slice_axis)
        if progress:
            shape = "x".join(str(s) for s in volumes[scan.trial][0].shape)
            print(f"[armseg train] read {number}/{len(scans)} {scan.trial} ({shape} slices x rows x cols)")
    lengths = {trial: images.shape[0] for trial, (images, _) in volumes.items()}
    split = plan_split(scans, lengths, config)
    if split.count("train") == 0 or split.count("val") == 0:
        raise ArmsegError(f"{folder}: the split left no training or no validation slices "
                          f"({split.summary()}); check --val-percent and the group's scans")
    height = padded_size(max(v[0].shape[1] for v in volumes.values()), pad_multiple)
    width = padded_size(max(v[0].shape[2] for v in volumes.values()), pad_multiple)
    sets = {name: _stack(split.parts[name], volumes, height, width) for name in SPLITS}
    return GroupData(folder=folder, split=split, sets=sets, pad_multiple=pad_multiple)


def _read_slices(scan: Scan, labels: LabelMap, slice_axis: int) -> tuple[np.ndarray, np.ndarray]:
    image, classes = read_labelled_scan(scan, labels)
    array = np.asarray(image.array)
    if not np.issubdtype(array.dtype, np.integer) or array.dtype.itemsize > 2:
        array = array.astype(np.float32)
    return to_slices(array, slice_axis), to_slices(classes, slice_axis)


def _stack(parts: list[Part], volumes: dict[str, tuple[np.ndarray, np.ndarray]], height: int,
           width: int) -> SliceSet:
    """One (N, height, width) array per split, zero-padded at the far edges like prediction does."""
    count = sum(p.indices.size for p in parts)
    dtype = np.result_type(*(volumes[p.scan.trial][0].dtype for p in parts)) if parts else np.uint8
    images = np.zeros((count, height, width), dtype=dtype)
    classes = np.zeros((count, height, width), dtype=np.uint8)
    at = 0
    for part in parts:
        source_images, source_labels = volumes[part.scan.trial]
        n, h, w = part.indices.size, source_images.shape[1], source_images.shape[2]
        images[at:at + n, :h, :w] = source_images[part.indices]
        classes[at:at + n, :h, :w] = source_labels[part.indices]
        at += n
    return SliceSet(images, classes)


# --- streaming -------------------------------------------------------------------------------

def make_dataset(slices: SliceSet, batch_size: int, training: bool, seed: int = 0,
                 augment: bool = True):
    """(float32 (B, H, W, 1) raw intensities, uint8 (B, H, W) classes) batches; for training
    reshuffled every pass, repeated without end (fit's steps_per_epoch sets the epoch) and
    augmented on the fly. The arrays stay in their stored types until batched."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((slices.images, slices.labels))
    if training:
        dataset = dataset.shuffle(len(slices), seed=seed, reshuffle_each_iteration=True).repeat()
    dataset = dataset.batch(batch_size)
    if training and augment:
        dataset = dataset.map(augment_batch, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        dataset = dataset.map(_as_model_input, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _as_model_input(images, labels):
    import tensorflow as tf

    return tf.cast(images, tf.float32)[..., None], labels


def augment_batch(images, labels):
    """Scanner- and probe-like variation, drawn per slice (a careful practitioner's set for B-mode):

    - geometry: lateral flip (left/right arm), +-10 % zoom (depth setting), +-6 degrees tilt,
      +-6 % shift; labels follow with nearest-neighbour sampling;
    - intensity: gain, gamma (log-compression curve), a depth ramp (time-gain compensation);
    - texture: multiplicative speckle-like noise and, for some batches, a lower resolution
      (a blurrier probe). Vertical flips are left out: the probe is always at the top.
    """
    import tensorflow as tf

    images = tf.cast(images, tf.float32)[..., None]
    batch = tf.shape(images)[0]
    size = tf.shape(images)[1:3]
    transforms = _random_transforms(batch, tf.cast(size, tf.float32))
    images = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=size, fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT")
    labels = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(labels, tf.float32)[..., None], transforms=transforms, output_shape=size,
        fill_value=0.0, interpolation="NEAREST", fill_mode="CONSTANT")
    images = _jitter_intensity(images, batch, size)
    return images, tf.cast(tf.round(labels[..., 0]), tf.uint8)


def _random_transforms(batch, size):
    """Per-slice output->input maps for ImageProjectiveTransformV3 (flip, zoom, tilt, shift)."""
    import tensorflow as tf

    height, width = size[0], size[1]
    flip = tf.where(tf.random.uniform([batch]) < 0.5, -1.0, 1.0)
    zoom = tf.exp(tf.random.uniform([batch], -0.1, 0.1))
    angle = tf.random.uniform([batch], -6.0, 6.0) * (math.pi / 180.0)
    shift_x = tf.random.uniform([batch], -0.06, 0.06) * width
    shift_y = tf.random.uniform([batch], -0.06, 0.06) * height
    # input = centre + R(angle) @ diag(flip, 1) @ (output - centre - shift) / zoom
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    a0, a1 = cos * flip, -sin
    b0, b1 = sin * flip, cos
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    ox, oy = -cx - shift_x, -cy - shift_y
    a2 = cx + a0 * ox + a1 * oy
    b2 = cy + b0 * ox + b1 * oy
    zeros = tf.zeros([batch])
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def _jitter_intensity(images, batch, size):
    """Gain, gamma, depth ramp and speckle on the slice's own scale (any bit depth)."""
    import tensorflow as tf

    peak = tf.maximum(tf.reduce_max(images, axis=[1, 2, 3], keepdims=True), 1e-6)
    unit = images / peak

    def per_slice(low, high):
        return tf.random.uniform([batch, 1, 1, 1], low, high)

    unit = tf.pow(unit, tf.exp(per_slice(-0.3, 0.3)))
    depth = tf.linspace(-0.5, 0.5, size[0])[None, :, None, None]
    unit *= tf.exp(per_slice(-0.6, 0.6) * depth) * tf.exp(per_slice(-0.3, 0.3))
    speckle = tf.where(per_slice(0.0, 1.0) < 0.5, per_slice(0.0, 0.25), 0.0)
    unit *= tf.maximum(1.0 + speckle * tf.random.normal(tf.shape(unit)), 0.0)
    unit = tf.cond(tf.random.uniform([]) < 0.25, lambda: _lower_resolution(unit, size), lambda: unit)
    return unit * peak


def _lower_resolution(images, size):
    """Down- and up-sample a batch: the blur of a lower-frequency probe."""
    import tensorflow as tf

    factor = tf.random.uniform([], 0.5, 0.85)
    small = tf.cast(tf.round(tf.cast(size, tf.float32) * factor), tf.int32)
    return tf.image.resize(tf.image.resize(images, small, antialias=True), size)
