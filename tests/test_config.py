"""Recipes as resolved configs, --print-config, and the fields the seed recipe added."""

import json

import pytest

from alexnet_tf import config, train
from alexnet_tf.optim import PyTorchAdam


def printed(capsys, *flags):
    assert train.main(["--print-config", *flags]) == 0
    out = capsys.readouterr().out
    return json.loads(out)


def test_print_config_shows_the_tutorials_training_for_seed(capsys, tmp_path):
    # A --data that does not exist: printing must read no data (and create no run directory).
    shown = printed(capsys, "--variant", "seed", "--data", str(tmp_path / "missing"),
                    "--workdir", str(tmp_path / "run"))
    assert {k: shown[k] for k in ("recipe", "epochs", "batch_size", "optimizer", "lr",
                                  "schedule", "coupled_weight_decay", "weight_decay", "l2",
                                  "crop", "flip", "cutout", "mixup", "lighting",
                                  "label_smoothing", "init", "dropout")} == {
        "recipe": "seed", "epochs": 20, "batch_size": 500, "optimizer": "adam", "lr": 0.001,
        "schedule": "constant", "coupled_weight_decay": 1e-4, "weight_decay": 0.0, "l2": 0.0,
        "crop": "none", "flip": False, "cutout": 0, "mixup": 0.0, "lighting": 0.0,
        "label_smoothing": 0.0, "init": "torch", "dropout": 0.5}
    assert not (tmp_path / "run").exists()
    # Every field, resolved: only the ones left to train() (paths, the native size) are null.
    assert {k for k, v in shown.items() if v is None} <= {"workdir", "export_dir", "image_size",
                                                          "limit", "time_budget"}
    # Flags win, and the printed JSON is a config file that gives the same config back.
    again = printed(capsys, "--variant", "seed", "--epochs", "3", "--flip")
    assert again["epochs"] == 3 and again["flip"] is True
    path = tmp_path / "c.json"
    path.write_text(json.dumps(again))
    assert printed(capsys, "--config", str(path)) == again


def test_seed_plus_keeps_the_earlier_seed_training(capsys):
    shown = printed(capsys, "--variant", "seed", "--recipe", "seed_plus")
    assert (shown["epochs"], shown["weight_decay"], shown["coupled_weight_decay"]) == (30, 1e-4, 0)
    assert (shown["crop"], shown["flip"], shown["init"]) == ("random", True, "keras")


def test_crop_follows_the_input_size_unless_a_recipe_or_flag_sets_it():
    assert config.parse([]).crop == "pad"  # cifar, 32 px
    assert config.parse(["--variant", "paper"]).crop == "random"
    assert config.parse(["--variant", "paper", "--image-size", "64"]).crop == "pad"
    assert config.parse(["--variant", "paper", "--crop", "none"]).crop == "none"
    assert config.parse(["--variant", "seed", "--crop", "random"]).crop == "random"


@pytest.mark.parametrize("flags, message", [
    (["--coupled-weight-decay", "-1"], "--coupled-weight-decay must be at least 0"),
    (["--coupled-weight-decay", "nan"], "--coupled-weight-decay must be at least 0"),
    (["--variant", "seed", "--optimizer", "sgd"], "--coupled-weight-decay needs --optimizer adam"),
    (["--crop", "centre"], "--crop must be one of random, pad, none"),
])
def test_bad_values_are_one_line_errors(flags, message, capsys):
    assert train.main(["--print-config", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1


def test_a_saved_config_without_a_field_is_another_run():
    """A config.json lacking a field of the run resumes under no command: it names no value."""
    new = config.parse(["--variant", "seed"])
    old = {k: v for k, v in new.record().items() if k != "crop"}
    assert config.differences(new.record(), new) == []
    assert config.differences(old, new) == ["crop"]


def test_adam_is_pytorchs_with_the_recipes_decay():
    cfg = config.parse(["--variant", "seed"])
    optimizer = train.optimizer(cfg, cfg.lr)
    assert isinstance(optimizer, PyTorchAdam) and optimizer.coupled_weight_decay == 1e-4
    assert optimizer.weight_decay is None and optimizer.epsilon == 1e-8
    plus = train.optimizer(config.parse(["--variant", "seed", "--recipe", "seed_plus"]), 1e-3)
    assert plus.coupled_weight_decay == 0 and plus.weight_decay == 1e-4
