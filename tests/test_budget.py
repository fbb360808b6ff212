import keras
import pytest
import tensorflow as tf

from alexnet_tf import budget


def cosine(steps=100, warmup=10, peak=0.1):
    return budget.FittedCosineDecay(0.0, decay_steps=steps - warmup, warmup_target=peak,
                                    warmup_steps=warmup)


def test_fitted_cosine_matches_keras_until_moved_and_then_ends_at_the_new_end():
    schedule = cosine()
    reference = keras.optimizers.schedules.CosineDecay(0.0, 90, warmup_target=0.1,
                                                       warmup_steps=10)
    for step in (0, 5, 10, 40, 99, 100):
        assert float(schedule(step)) == pytest.approx(float(reference(step)), abs=1e-7)
    lr_at = tf.function(schedule)  # traced once: the new end must reach the graph anyway
    assert float(lr_at(tf.constant(50))) > 0.04
    schedule.fit_to(50)
    assert schedule.total_steps == 50
    assert float(lr_at(tf.constant(50))) == pytest.approx(0.0, abs=1e-7)
    assert float(lr_at(tf.constant(30))) == pytest.approx(0.05, abs=1e-6)  # halfway down
    assert float(lr_at(tf.constant(5))) == pytest.approx(0.05, abs=1e-6)  # warm-up unchanged


def test_a_plan_shorter_than_five_warmups_shortens_the_warmup_and_still_anneals():
    schedule = budget.FittedCosineDecay(0.0, decay_steps=50, warmup_target=1.0, warmup_steps=50)
    lr_at = tf.function(schedule)
    schedule.fit_to(30)  # the budget holds 30 steps: warm-up 6 (a fifth), decay 24
    assert schedule.total_steps == 30
    assert float(lr_at(tf.constant(3))) == pytest.approx(0.5, abs=1e-6)
    assert float(lr_at(tf.constant(29))) < 0.01
    schedule.fit_to(1000)  # a longer plan gets the whole warm-up back
    assert float(lr_at(tf.constant(25))) == pytest.approx(0.5, abs=1e-6)


def test_fitted_cosine_config_is_its_constructor_arguments_with_the_current_end():
    schedule = cosine()
    schedule.fit_to(60)
    restored = budget.FittedCosineDecay.from_config(schedule.get_config())
    assert restored.total_steps == 60
    assert float(restored(35)) == pytest.approx(float(schedule(35)))
    serialized = keras.saving.serialize_keras_object(schedule)
    assert keras.saving.deserialize_keras_object(serialized).total_steps == 60


def clock_with_model(**kwargs):
    clock = budget.TrainingClock(**kwargs)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(kwargs.get("schedule") or 0.1), loss="mse")
    clock.set_model(model)
    return clock


def pretend_minutes_passed(clock, minutes):
    clock.started -= minutes * 60
    clock.epoch_started -= minutes * 60


def run_epochs(clock, count, minutes_each):
    """Drives `count` epochs of `minutes_each` (a number, or one per epoch) or fewer, if the
    clock stops; returns how many."""
    clock.on_train_begin()
    for epoch in range(count):
        clock.on_epoch_begin(epoch)
        pretend_minutes_passed(clock, minutes_each[epoch] if isinstance(minutes_each, list)
                               else minutes_each)
        clock.on_epoch_end(epoch, {})
        if clock.model.stop_training:
            break
    return epoch + 1


def test_training_clock_continues_a_resumed_count_and_projects_the_budget():
    clock = clock_with_model(minutes_before=5.0, budget=5.5)
    clock.on_train_begin()
    clock.on_epoch_begin(0)
    logs = {}
    clock.on_epoch_end(0, logs)
    assert 5.0 <= logs["minutes"] < 5.1 and not clock.out_of_time  # 5 + a few ms < 5.5
    assert logs["learning_rate"] == pytest.approx(0.1)
    pretend_minutes_passed(clock, 1 / 3)  # the next epoch took 20 s: 5.33 min now, 5.67 projected
    clock.on_epoch_end(1, logs)
    assert 5.3 < logs["minutes"] < 5.4 and clock.out_of_time and clock.model.stop_training


def test_training_clock_marks_a_stop_before_the_epoch_is_backed_up(tmp_path):
    # Callbacks after the clock (BackupAndRestore) save the epoch: a kill from then on must
    # already find the mark, or the resumed run would train an epoch past its budget.
    marker = tmp_path / "backup" / "time_budget_reached"
    clock = clock_with_model(minutes_before=0.0, budget=2.5, marker=marker)
    assert run_epochs(clock, 1, minutes_each=1.0) == 1 and not marker.exists()
    clock.on_epoch_begin(1)
    pretend_minutes_passed(clock, 1.0)  # 2 minutes trained; a third epoch would end past 2.5
    clock.on_epoch_end(1, {})
    assert clock.model.stop_training and marker.read_text() == "2\n"


def test_a_resumed_clock_keeps_to_the_epoch_its_marker_names(tmp_path):
    marker = tmp_path / "time_budget_reached"
    marker.write_text("3\n")  # the budget ran out after epoch 3; the history may show only 2
    schedule = cosine(steps=27 * 10, warmup=10)
    clock = clock_with_model(minutes_before=4.0, budget=6.0, epochs_before=2, schedule=schedule,
                             steps_per_epoch=10, max_epochs=27, marker=marker)
    assert clock.budget_used_up_at == clock.planned_epochs == 3 and schedule.total_steps == 30
    clock.on_train_begin()
    clock.on_epoch_begin(2)  # epoch 3 again (killed before its backup): no replanning
    clock.on_epoch_end(2, {})
    assert schedule.total_steps == 30
    marker.write_text("")  # cut off while being written: as if there were none
    assert clock_with_model(minutes_before=0.0, marker=marker).budget_used_up_at is None


def test_training_clock_fits_the_schedule_to_the_epochs_the_budget_holds():
    schedule = cosine(steps=27 * 10, warmup=10)
    clock = clock_with_model(minutes_before=0.0, budget=10.0, schedule=schedule,
                             steps_per_epoch=10, max_epochs=27)
    epochs = run_epochs(clock, 27, minutes_each=2.1)  # 4 epochs of 2.1 minutes fit in 10
    assert epochs == clock.planned_epochs == 4 and clock.out_of_time
    assert schedule.total_steps == 40 and float(schedule(40)) == pytest.approx(0.0, abs=1e-7)


def test_training_clock_leaves_room_for_a_slow_epoch_when_the_pace_swings():
    # A shared VM alternating 1.4 and 0.9 min/epoch: at the mean pace (1.15) five epochs fit in
    # 5.9 minutes, and the fifth, a slow one, would end at 6.0. Planned with room for a slow
    # last epoch, four fit, and the schedule anneals to 0 within the budget.
    schedule = cosine(steps=10 * 10, warmup=10)
    clock = clock_with_model(minutes_before=0.0, budget=5.9, schedule=schedule,
                             steps_per_epoch=10, max_epochs=10)
    epochs = run_epochs(clock, 10, minutes_each=[1.4, 0.9] * 5)
    assert epochs == clock.planned_epochs == 4 and clock.out_of_time
    assert schedule.total_steps == 40 and float(schedule(40)) == pytest.approx(0.0, abs=1e-7)
    assert clock.model.stop_training  # stopped at 4.6 minutes; a fifth epoch might need 1.4


def test_training_clock_replans_a_resumed_run_from_its_history():
    schedule = cosine(steps=27 * 10, warmup=10)
    clock = clock_with_model(minutes_before=6.0, budget=20.0, epochs_before=3,
                             schedule=schedule, steps_per_epoch=10, max_epochs=27)
    clock.on_train_begin()  # 2 minutes per epoch so far: 10 epochs fit in 20 minutes
    assert clock.planned_epochs == 10 and schedule.total_steps == 100
    clock.on_epoch_begin(3)
    pretend_minutes_passed(clock, 3.0)  # a slower epoch: 9 min for 4 epochs, 8 fit in 20
    logs = {}
    clock.on_epoch_end(3, logs)
    assert clock.planned_epochs == 8 and schedule.total_steps == 80
    assert logs["learning_rate"] == pytest.approx(float(schedule(clock.model.optimizer.iterations)))


def test_training_clock_keeps_the_schedule_when_every_epoch_fits():
    schedule = cosine(steps=5 * 10, warmup=10)
    clock = clock_with_model(minutes_before=0.0, budget=60.0, schedule=schedule,
                             steps_per_epoch=10, max_epochs=5)
    assert run_epochs(clock, 5, minutes_each=1.0) == 5
    assert schedule.total_steps == 50 and not clock.out_of_time
    assert not clock.model.stop_training  # fit ends by itself; a stop would read as a NaN stop


def test_the_first_epoch_prints_the_pace_and_when_the_run_ends(capsys):
    clock = clock_with_model(minutes_before=0.0, max_epochs=10)
    clock.on_train_begin()
    pretend_minutes_passed(clock, 2.0)
    clock.on_epoch_end(0, {})
    line = capsys.readouterr().out.strip()
    assert line.startswith("2.0 min per epoch: epoch 10 should end at about ")
    assert line.endswith("(in 18 min)")  # 9 epochs left at 2 minutes each
    clock.on_epoch_begin(1)
    clock.on_epoch_end(1, {})
    assert capsys.readouterr().out == ""  # once a session


def test_with_a_budget_it_says_how_many_epochs_fit(capsys):
    clock = clock_with_model(minutes_before=0.0, budget=7, max_epochs=10)
    clock.on_train_begin()
    pretend_minutes_passed(clock, 2.0)
    clock.on_epoch_end(0, {})
    assert "min per epoch; 3 of 10 epochs fit the 7-minute budget: epoch 3 should end" in (
        capsys.readouterr().out)


def test_the_warmup_rule_is_at_most_a_fifth_of_the_steps_when_built_and_when_fitted():
    assert budget.warmup_within(10, 100) == 10 and budget.warmup_within(50, 100) == 20
    assert budget.warmup_within(2.5, 100) == 2  # warmup epochs x steps may be fractional
    schedule = budget.FittedCosineDecay.linear_warmup(0.1, total_steps=100, warmup_steps=50)
    assert schedule.total_steps == 100 and int(schedule.warmup_steps.numpy()) == 20
    assert float(schedule(0)) == 0.0 and float(schedule(20)) == pytest.approx(0.1)
    schedule.fit_to(1000)  # a longer plan gets the whole planned warm-up
    assert int(schedule.warmup_steps.numpy()) == 20
    flat = budget.FittedCosineDecay.linear_warmup(0.1, total_steps=100, warmup_steps=0)
    assert float(flat(0)) == pytest.approx(0.1) and flat.total_steps == 100
