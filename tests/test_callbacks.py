import keras
import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import budget, callbacks, config


def test_ema_run_stopped_early_keeps_the_weights_it_validated():
    # Keras' own SwapEMAWeights ends such a run with the raw weights (fit's last step copies
    # the average, which then holds the raw ones, into the model); this one keeps the average.
    keras.utils.set_random_seed(0)
    x = tf.random.normal((64, 8), seed=0)
    y = tf.cast(x[:, :1] > 0, tf.float32)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.2, use_ema=True, ema_momentum=0.5), loss="mse")
    stop = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: setattr(model, "stop_training", epoch == 1))
    history = model.fit(x, y, validation_data=(x, y), epochs=5, batch_size=8, verbose=0,
                        callbacks=[stop, callbacks.SwapEMAWeights(swap_on_epoch=True)])
    assert len(history.history["loss"]) == 2
    assert model.evaluate(x, y, verbose=0) == pytest.approx(history.history["val_loss"][-1],
                                                            rel=1e-5)


def kinds(cfg, workdir):
    clock = callbacks.training_clock(cfg, workdir, train_schedule(cfg), steps_per_epoch=10)
    return [type(c).__name__ for c in callbacks.for_run(cfg, workdir, clock)], clock


def train_schedule(cfg):
    from alexnet_tf import train

    return train.learning_rate(cfg, 10)


def test_the_callbacks_run_in_the_order_their_duties_need(tmp_path):
    names, clock = kinds(config.parse(["--recipe", "paper", "--ema", "0.9"]), tmp_path)
    # The plateau cut before the clock logs the rate and the backup saves it; validation and
    # best.keras see the averaged weights, the backup the raw ones.
    assert names == ["ReduceLROnPlateau", "TrainingClock", "BackupAndRestore", "SwapEMAWeights",
                     "ModelCheckpoint", "CSVLogger", "TensorBoard", "TerminateOnNaN"]
    assert clock.schedule is None
    names, _ = kinds(config.parse([]), tmp_path)  # fast: cosine, no EMA
    assert names == ["TrainingClock", "BackupAndRestore", "ModelCheckpoint", "CSVLogger",
                     "TensorBoard", "TerminateOnNaN"]


def test_the_clock_fits_the_cosine_only_under_a_time_budget(tmp_path):
    _, clock = kinds(config.parse(["--time-budget", "30"]), tmp_path)
    assert isinstance(clock.schedule, budget.FittedCosineDecay) and clock.budget == 30
    assert clock.marker == callbacks.budget_marker(tmp_path)
    _, clock = kinds(config.parse([]), tmp_path)
    assert clock.schedule is None


def test_a_resumed_run_continues_its_minutes_and_keeps_its_best(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,minutes,val_accuracy\n0,2.0,0.7\n1,4.0,0.6\n")
    cfg = config.parse([])
    names, clock = kinds(cfg, tmp_path)
    assert (clock.minutes_before, clock.epochs_done) == (4.0, 2)
    checkpoint = next(c for c in callbacks.for_run(cfg, tmp_path, clock)
                      if isinstance(c, callbacks.ModelCheckpoint))
    assert checkpoint.best == 0.7
    assert np.isfinite(checkpoint.best)
