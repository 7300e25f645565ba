"""Feeding a split's slices to Keras in batches, on every backend (a `keras.utils.PyDataset`).

Each batch is the slices and their class maps stacked as channels, (B, H, W, C + 1): C image
channels (1, or the slice between its neighbours with `context`), the class map last, still in
their stored integer types: the host only gathers bytes (one byte per voxel for 8-bit scans),
and the casting and the random transforms happen inside the train step on the training device
(armseg.train.trainer). Gathering a batch is a copy of a few hundred kilobytes, so it happens in
the training loop's own thread (one worker, Keras's default): JAX overlaps it with the device's
previous step (asynchronous dispatch, one batch ahead) and TensorFlow prefetches it from its own
thread.
Keras's pool of worker threads would cost more than it saves: it drains its queue for 0.1 s at the
end of every epoch.

Training batches walk an endless stream of shuffled passes over the pool (each pass reshuffled
from the seed and its number), cut into epochs of `steps` batches: `steps` counts the original
slices only (GroupData.steps_per_epoch), so augmented copies widen the pool without lengthening
an epoch. Any batch is a pure function of (seed, epoch, index), so Keras's look-ahead, worker
threads if asked for, and a resumed run all see the same stream.
"""

from __future__ import annotations

import threading

import keras
import numpy as np

from armseg.train.slices import SliceSet

DEFAULT_WORKERS = 1


class SliceBatches(keras.utils.PyDataset):
    """(B, H, W, C + 1) batches of [image channels, labels]; shuffled and endless for training, in
    order otherwise."""

    def __init__(self, slices: SliceSet, batch_size: int, training: bool, seed: int = 0,
                 steps: int | None = None, first_epoch: int = 0, workers: int = DEFAULT_WORKERS):
        super().__init__(workers=workers, use_multiprocessing=False)
        if len(slices) == 0:
            raise ValueError("no slices to batch")
        self.slices, self.images, self.labels = slices, slices.images, slices.labels
        self.batch_size = int(batch_size)
        self.training = training
        self.seed = int(seed)
        self.steps = int(steps) if steps else -(-len(slices) // self.batch_size)
        self.epoch = int(first_epoch)
        self.dtype = np.result_type(self.images.dtype, self.labels.dtype)
        self._passes: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int) -> tuple[np.ndarray]:
        indices = self.training_indices(self.epoch, index) if self.training else np.arange(
            index * self.batch_size, min((index + 1) * self.batch_size, len(self.images)))
        batch = np.empty((indices.size, *self.labels.shape[1:], self.slices.channels + 1), dtype=self.dtype)
        batch[..., :-1] = self.slices.with_channels(indices)
        batch[..., -1] = self.labels[indices]
        return (batch,)

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def training_indices(self, epoch: int, index: int) -> np.ndarray:
        """The slices of training batch `index` of `epoch`: the next `batch_size` of the stream."""
        count = len(self.images)
        positions = np.arange(self.batch_size) + (epoch * self.steps + index) * self.batch_size
        passes = positions // count
        indices = np.empty_like(positions)
        for number in np.unique(passes):
            chosen = passes == number
            indices[chosen] = self._permutation(int(number))[positions[chosen] % count]
        return indices

    def _permutation(self, number: int) -> np.ndarray:
        with self._lock:
            if number not in self._passes:
                self._passes = {n: p for n, p in self._passes.items() if n >= number - 1}
                generator = np.random.default_rng((self.seed, number))
                self._passes[number] = generator.permutation(len(self.images))
            return self._passes[number]
