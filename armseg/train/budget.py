"""Training to a time budget (`--time-budget MINUTES`): as many epochs as the minutes allow.

A fixed number of epochs takes 2 minutes on one machine and 20 on another, and a group twice as
large takes twice as long. With a budget, the learning rate follows a cosine over the *time*
given instead of over the planned steps, so the run anneals fully however many epochs fit, and
training stops before an epoch that would overrun it. The last epoch's length is the estimate
(the first one also pays for compiling the step); `--epochs` stays the cap. The schedule is
Keras's own `LearningRateScheduler`; the budget counts this process's training time (a resumed
run gets its budget anew).
"""

from __future__ import annotations

import math
import time

import keras

FINAL_FRACTION = 0.05  # the learning rate ends at 5% of its start, as the step-wise cosine does


def clock() -> float:
    """Seconds on a clock that never goes back (a test replaces it to make time pass)."""
    return time.monotonic()


class TimeBudget(keras.callbacks.Callback):
    """Stops training before an epoch that would end past `seconds`; says how far along time is."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = float(seconds)
        self.started = clock()
        self.last = 0.0
        self._epoch_started = self.started

    def on_train_begin(self, logs=None):
        self.started = clock()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_started = clock()

    def on_epoch_end(self, epoch, logs=None):
        now = clock()
        self.last = now - self._epoch_started
        if now - self.started + self.last > self.seconds:
            print(f"[armseg train] time budget: stopping after epoch {epoch + 1} "
                  f"({now - self.started:.0f} s of {self.seconds:.0f} s used)")
            self.model.stop_training = True

    def progress(self) -> float:
        """Share of the budget used, 0 at the start of training, 1 at its end."""
        return min(1.0, (clock() - self.started) / self.seconds)


def cosine_by_time(budget: TimeBudget, initial: float) -> keras.callbacks.LearningRateScheduler:
    """Each epoch's learning rate: a cosine from `initial` to 5% of it over the budget's time."""
    def rate(epoch: int, current: float) -> float:
        fraction = FINAL_FRACTION + (1 - FINAL_FRACTION) * 0.5 * (1 + math.cos(math.pi * budget.progress()))
        return float(initial * fraction)

    return keras.callbacks.LearningRateScheduler(rate)
