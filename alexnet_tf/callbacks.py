"""The callbacks of a training run: its list (`for_run`), and Keras' own where a kill, a full
disk or an early stop needs more than Keras does."""

import pathlib

import keras

from alexnet_tf import budget, rundir


class DamagedBackup(Exception):
    """The backup cannot be restored, nor its previous copy."""


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' callback, also falling back to the previous copy when training_metadata.json is
    damaged.

    With double_checkpoint, Keras keeps the previous epoch's weights and metadata as `*.bkp`
    and restores them when the latest weights cannot be read (an OSError); a metadata file cut
    off mid-write (a kill, a full disk) is a JSON error instead, which Keras lets through.
    Here that restores the previous pair too: the epoch is trained again, none is lost.
    """

    def on_train_begin(self, logs=None):
        try:
            super().on_train_begin(logs)
        except (ValueError, KeyError, TypeError) as error:  # not JSON, or not Keras' JSON
            previous = (pathlib.Path(self._prev_weights_path),
                        pathlib.Path(self._prev_training_metadata_path))
            if not (self.double_checkpoint and all(p.is_file() for p in previous)):
                raise DamagedBackup(f"{self._training_metadata_path} is damaged ({error!r}) "
                                    "and there is no previous copy") from None
            for copy, latest in zip(previous, (self._weights_path,
                                               self._training_metadata_path)):
                copy.replace(latest)  # Keras copies; a rename is whole or not at all
            print(f"{self._training_metadata_path} was damaged: resuming from the backup of "
                  "the epoch before")
            try:
                self._load_model()
            except (OSError, ValueError, KeyError, TypeError) as again:
                raise DamagedBackup(f"{self.backup_dir} and its previous copy are damaged "
                                    f"({again!r})") from None


class ModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """Keras' ModelCheckpoint, with the file replaced whole.

    Keras' `model.save` writes the .keras zip in place, so a kill or a full disk during the
    save would leave neither the previous best nor the new one. Here the model is saved under
    a temporary name (ending in .keras, as `save` requires), and renamed over the previous
    file only once complete and on disk. Saves once per epoch only.
    """

    def __init__(self, filepath, **kwargs):
        super().__init__(filepath, **kwargs)
        if self.save_freq != "epoch":
            raise ValueError("this ModelCheckpoint saves once per epoch: save_freq='epoch'")
        self.final_path = pathlib.Path(self.filepath)
        # What Keras' own saving writes to; a hidden name, so no one takes it for the best.
        self.filepath = str(self.final_path.with_name(f".{self.final_path.stem}.partial.keras"))

    def on_epoch_end(self, epoch, logs=None):
        partial = pathlib.Path(self.filepath)
        partial.unlink(missing_ok=True)  # one a kill left behind
        try:
            super().on_epoch_end(epoch, logs)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        if partial.exists():  # saved: the epoch improved on the best
            rundir.replace_durably(partial, self.final_path)


class SwapEMAWeights(keras.callbacks.SwapEMAWeights):
    """Keras' callback, also right when training stops before its last epoch.

    With swap_on_epoch, Keras leaves the averaged weights in the model at the end of the last
    epoch and copies them into the average, so that fit's closing finalize_variable_values
    (average -> model) keeps them. It does so only when epoch == epochs - 1: a run stopped
    earlier (--time-budget, a NaN) would end with the raw weights it never validated.
    """

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self.model.stop_training and epoch != self.params["epochs"] - 1:
            self._finalize_ema_values()


def budget_marker(workdir):
    """Written by the clock when the time budget ends training; removed with the backup after
    the export. A resumed run that finds it trains no further than the epoch it names."""
    return pathlib.Path(workdir) / "backup" / "time_budget_reached"


def training_clock(cfg, workdir, schedule, steps_per_epoch):
    """The run's TrainingClock, continuing the count of a resumed run."""
    past = rundir.progress(workdir)
    return budget.TrainingClock(
        past.minutes, cfg.time_budget, epochs_before=past.epochs,
        schedule=schedule if isinstance(schedule, budget.FittedCosineDecay) else None,
        steps_per_epoch=steps_per_epoch, max_epochs=cfg.epochs, marker=budget_marker(workdir))


def for_run(cfg, workdir, clock):
    """The callbacks of a training run, in the order they must run."""
    workdir = pathlib.Path(workdir)
    plateau = [
        # Divide by 10 when validation accuracy stops improving, three times at most (section
        # 5). Ahead of the rest, so the backup holds a cut and the clock logs the rate the
        # next epoch uses.
        keras.callbacks.ReduceLROnPlateau(monitor="val_accuracy", mode="max", factor=0.1,
                                          patience=4, min_lr=cfg.lr * 1e-3)
    ] if cfg.schedule == "plateau" else []
    # Validation and the callbacks below it see the averaged weights; the backup above still
    # holds the raw ones, so a resumed run trains on from those. Any callback that stops
    # training must come above it (see SwapEMAWeights).
    ema = [SwapEMAWeights(swap_on_epoch=True)] if cfg.ema else []
    return [
        *plateau,
        clock,  # it adds `minutes` to the logs the ones below see
        # The same command continues at the next epoch. The backup outlives `fit` until the
        # export is written, so a crash in evaluation or export does not train again;
        # double_checkpoint keeps the previous epoch's copy for a kill mid-save.
        BackupAndRestore(str(workdir / "backup"), delete_checkpoint=False,
                         double_checkpoint=True),
        *ema,
        ModelCheckpoint(str(workdir / "best.keras"), monitor="val_accuracy", mode="max",
                        save_best_only=True,
                        initial_value_threshold=rundir.progress(workdir).best_val_accuracy),
        keras.callbacks.CSVLogger(str(workdir / "history.csv"), append=True),
        keras.callbacks.TensorBoard(str(workdir / "tensorboard")),
        keras.callbacks.TerminateOnNaN(),
    ]
