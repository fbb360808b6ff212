"""Training against the wall clock: a clock callback and a cosine schedule it can fit to a budget.

A cosine schedule only pays off if it reaches its end: cut short early, it stops near its peak
learning rate. With `--time-budget`, the clock measures the minutes per epoch
and moves the schedule's end to the last epoch that fits, so a slow CPU anneals fully too.
"""

import collections
import datetime
import pathlib
import time

import keras


def warmup_within(warmup_steps, total_steps):
    """The warm-up steps a schedule of `total_steps` keeps: as planned, up to a fifth of them,
    so that a short run (or a short time budget) still spends most of its steps annealing."""
    return int(min(warmup_steps, total_steps / 5))


@keras.saving.register_keras_serializable(package="alexnet_tf")
class FittedCosineDecay(keras.optimizers.schedules.CosineDecay):
    """Keras' CosineDecay (with its linear warm-up) whose `decay_steps` and `warmup_steps` live
    in variables, so `fit_to` can move the end of the schedule during `fit` without retracing
    the train step."""

    def __init__(self, initial_learning_rate, decay_steps, warmup_steps=0, **kwargs):
        super().__init__(initial_learning_rate, decay_steps, warmup_steps=warmup_steps, **kwargs)
        self.planned_warmup_steps = warmup_steps
        self.decay_steps = keras.Variable(float(decay_steps), dtype="float32", trainable=False,
                                          name="decay_steps")
        self.warmup_steps = keras.Variable(float(warmup_steps), dtype="float32", trainable=False,
                                           name="warmup_steps")

    @classmethod
    def linear_warmup(cls, learning_rate, total_steps, warmup_steps):
        """Linear warm-up from 0 to `learning_rate` (at most a fifth of the steps, see
        `warmup_within`), then cosine decay to 0 at step `total_steps`."""
        warmup = warmup_within(warmup_steps, total_steps)
        return cls(0.0 if warmup else learning_rate, decay_steps=max(1, total_steps - warmup),
                   warmup_target=learning_rate if warmup else None, warmup_steps=warmup)

    def fit_to(self, total_steps):
        """Ends the decay at `total_steps` (warm-up included), the warm-up kept within them."""
        warmup = warmup_within(self.planned_warmup_steps, total_steps)
        self.warmup_steps.assign(float(warmup))
        self.decay_steps.assign(float(max(1, total_steps - warmup)))

    @property
    def total_steps(self):
        return int(self.decay_steps.numpy()) + int(self.warmup_steps.numpy())

    def get_config(self):
        return {**super().get_config(), "decay_steps": int(self.decay_steps.numpy()),
                "warmup_steps": int(self.warmup_steps.numpy())}


class TrainingClock(keras.callbacks.Callback):
    """Adds `minutes` of training so far (validation included; a resumed run continues the
    count) and the `learning_rate` to each epoch's logs, so history.csv is an
    accuracy-against-time curve that shows its schedule.

    With a `budget` (minutes) it stops before an epoch that would end past it, projected from
    the slowest of the last five epochs (a shared machine's pace swings from epoch to epoch).
    Given a FittedCosineDecay `schedule` too, after every epoch it plans the epochs the budget
    holds at the mean pace so far, leaving room for the last one to be that slow (at most
    `max_epochs`), fits the schedule to them and stops when they are done.

    After the first epoch of a session it prints the minutes per epoch and when the run should
    end (with a budget: how many epochs fit), so a long run says early how long it takes.

    When it stops training it writes the epoch count to the file `marker` (if given) at once,
    before the callbacks after it back the epoch up. A resumed run whose marker exists has
    `budget_used_up_at` set to that count: the schedule is fitted to it and no replanning
    follows, so killed at any point after the stop, the run trains no epoch past it."""

    def __init__(self, minutes_before, budget=None, *, epochs_before=0, schedule=None,
                 steps_per_epoch=None, max_epochs=None, marker=None):
        super().__init__()
        self.minutes_before, self.budget, self.out_of_time = minutes_before, budget, False
        self.marker = pathlib.Path(marker) if marker is not None else None
        self.epochs_done, self.schedule = epochs_before, schedule if budget else None
        self.steps_per_epoch, self.max_epochs = steps_per_epoch, max_epochs
        self.planned_epochs = max_epochs
        self.recent_epochs = collections.deque(maxlen=5)  # minutes each, this session only
        self.budget_used_up_at = _read_epochs(self.marker)
        if self.budget_used_up_at:
            self.planned_epochs = self.budget_used_up_at
            if self.schedule is not None:
                self.schedule.fit_to(self.planned_epochs * self.steps_per_epoch)
        elif self.schedule is not None and self.epochs_done:  # resumed: plan from the history
            self._plan(self.minutes_before)

    def on_train_begin(self, logs=None):
        self.started = self.epoch_started = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        now = time.time()
        minutes = self.minutes_before + (now - self.started) / 60
        self.recent_epochs.append((now - self.epoch_started) / 60)
        # `epoch` counts across a resume; history.csv may lack the row of an epoch the backup has.
        self.epochs_done = epoch + 1
        if self.schedule is not None and not self.budget_used_up_at:  # given with a budget
            self._plan(minutes)
            if self.planned_epochs <= self.epochs_done < self.max_epochs:
                self._stop()
        # The hard limit, should the recent epochs have been much slower than the mean.
        if self.budget and minutes + max(self.recent_epochs) > self.budget:
            self._stop()
        if len(self.recent_epochs) == 1:
            print(self.pace_report(now), flush=True)
        if logs is not None:
            logs["minutes"] = minutes
            if getattr(self.model, "optimizer", None) is not None:  # the next step's rate
                # A constant or plateau rate is a variable, mirrored under a strategy, which
                # float() refuses inside fit; convert_to_numpy reads any of them.
                rate = self.model.optimizer.learning_rate
                logs["learning_rate"] = float(keras.ops.convert_to_numpy(rate))

    def pace_report(self, now):
        """One line: this session's minutes per epoch and the expected end of the run."""
        pace = (now - self.started) / 60 / len(self.recent_epochs)
        total = self.max_epochs or self.epochs_done
        if self.budget:
            # The planned epochs (a fitted cosine), else those the budget holds at this pace.
            fits = self.planned_epochs if self.schedule is not None else int(self.budget / pace)
            total = max(self.epochs_done, min(total, fits))
        left = (total - self.epochs_done) * pace
        end = datetime.datetime.fromtimestamp(now) + datetime.timedelta(minutes=left)
        fitted = (f"; {total} of {self.max_epochs} epochs fit the {self.budget:g}-minute budget"
                  if self.budget else "")
        return (f"{pace:.1f} min per epoch{fitted}: epoch {total} should end at about "
                f"{end:%H:%M} (in {left:.0f} min)")

    def _stop(self):
        self.out_of_time = self.model.stop_training = True
        if self.marker is not None:
            self.marker.parent.mkdir(parents=True, exist_ok=True)
            self.marker.write_text(f"{self.epochs_done}\n")

    def _plan(self, minutes):
        pace = minutes / self.epochs_done  # minutes per epoch, validation included
        # Room for the last epoch to be as slow as the slowest recent one: a shared machine's
        # pace swings, and a plan at the mean alone can end past the budget.
        slack = max(0.0, max(self.recent_epochs, default=pace) - pace)
        fits = int((self.budget - slack) / pace) if pace > 0 else self.max_epochs
        self.planned_epochs = max(self.epochs_done, min(self.max_epochs, fits))
        self.schedule.fit_to(self.planned_epochs * self.steps_per_epoch)


def _read_epochs(marker):
    """The epoch count in `marker`, or None (no marker, or one cut off while being written)."""
    try:
        return int(marker.read_text()) if marker is not None else None
    except (FileNotFoundError, ValueError):
        return None
