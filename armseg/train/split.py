"""Which slices of a group train, validate and test: split without leaks, thinned as OpenArm did.

Neighbouring ultrasound slices are near-copies of each other, so:
- With enough scans (two or more left to train after one per held-out split), whole scans go to
  train, validation or test; with too few, every scan is cut into contiguous blocks along the arm,
  train | gap | val | gap | test, and the gap slices are dropped. With `context` k (neighbours as
  input channels) the gap is at least 2k slices, so no slice is seen by two blocks.
- Augmented copies (`*_ed`, `*_rot`, `*_rot10`) only ever train, and only when their source scan
  (or its training block) trains: a rotated copy of a validation scan would leak it into training.
- Unlabelled slices (segmentation all 0: real scans are often segmented over part of their
  length) are left out of every split when `skip_empty` is set, as OpenArm's `no_empty` did; in
  a scan cut into blocks, the blocks are cut along its labelled slices.

Planning only: this module reads no file; it works on scan names and slice counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from armseg.errors import ArmsegError
from armseg.io.tree import Scan
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
    skipped: dict[str, int] = field(default_factory=dict)  # unlabelled slices left out, per scan

    def count(self, name: str) -> int:
        return int(sum(part.indices.size for part in self.parts[name]))

    @property
    def skipped_empty(self) -> int:
        return int(sum(self.skipped.values()))

    def describe(self) -> dict:
        return {"mode": self.mode, **{name: [p.describe() for p in self.parts[name]] for name in SPLITS},
                "skipped_unlabelled_slices": self.skipped}

    def summary(self) -> str:
        return ", ".join(f"{name} {self.count(name)} slices of {len(self.parts[name])} scans"
                         for name in SPLITS)


def plan_split(scans: Sequence[Scan], lengths: dict[str, int], config: TrainConfig,
               labelled: dict[str, np.ndarray] | None = None) -> Split:
    """Assign scans (or blocks of them) to train/val/test and thin them (keep_percent, total_keep).

    `labelled` (scan -> indices of its slices with any label) leaves every other slice out;
    None keeps every slice.
    """
    families = _families(scans)
    eligible = sorted(name for name, members in families.items() if members[0] is not None)
    if not eligible:
        raise ArmsegError("the group holds only augmented copies (*_ed, *_rot*) and no original scan "
                          "to validate on")
    if labelled is not None:
        unlabelled = [name for name in eligible if labelled[families[name][0].trial].size == 0]
        eligible = [name for name in eligible if name not in unlabelled]
        if not eligible:
            raise ArmsegError(f"every scan's segmentation is all 0 ({', '.join(unlabelled)}); nothing to "
                              "train on (--skip-empty false would train on empty labels)")
    shares = np.array([config.train_percent, config.val_percent, config.test_percent], dtype=float)
    # Whole scans only when at least two originals still train: one training scan teaches one arm
    # posture, while blocks of every scan teach them all.
    needed = 2 + int(shares[1] > 0) + int(shares[2] > 0)
    if len(eligible) >= needed:
        split = _split_by_scan(families, eligible, shares, lengths, config)
    else:
        split = _split_by_block(families, eligible, shares, lengths, config, labelled)
    if labelled is not None:
        _drop_unlabelled(split, labelled)
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


def block_bounds(length: int, shares: np.ndarray, context: int = 0) -> dict[str, np.ndarray]:
    """Contiguous train | gap | val | gap | test slice indices of one scan of `length` slices."""
    gap = max(2, length // 20, 2 * context)
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
                    lengths: dict[str, int], config: TrainConfig,
                    labelled: dict[str, np.ndarray] | None = None) -> Split:
    split = Split("by_block")
    for source in sorted(families):
        original, *copies = families[source]
        if original is None:  # copies of a scan that is not in the group: nothing to leak
            if config.include_augmented:
                split.parts["train"] += [_whole(c, lengths) for c in copies]
            continue
        if source not in eligible:  # no labelled slice at all: left to _drop_unlabelled to count
            members = [original, *(copies if config.include_augmented else [])]
            split.parts["train"] += [_whole(scan, lengths) for scan in members]
            continue
        # Blocks along the slices that count: the labelled ones when unlabelled slices are skipped.
        along = labelled[original.trial] if labelled is not None else np.arange(lengths[original.trial])
        try:
            blocks = block_bounds(along.size, shares, config.context)
            bounds = {name: along[block] for name, block in blocks.items()}
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


def _drop_unlabelled(split: Split, labelled: dict[str, np.ndarray]) -> None:
    """Keep only labelled slices in every part; count what was left out, per scan."""
    for name in SPLITS:
        kept = []
        for part in split.parts[name]:
            indices = part.indices[np.isin(part.indices, labelled[part.scan.trial])]
            if indices.size < part.indices.size:
                split.skipped[part.scan.trial] = (split.skipped.get(part.scan.trial, 0)
                                                  + int(part.indices.size - indices.size))
            if indices.size:
                kept.append(Part(part.scan, indices))
        split.parts[name] = kept


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
