"""Keras callbacks of the training run that a kill or a full disk must not cost a saved file."""

import pathlib

import keras

from alexnet_tf import rundir


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
