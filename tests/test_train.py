import csv
import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import callbacks, config, evaluate, inference, rundir, train
from helpers import REPO, run_module, write_image_folder

RUN_FILES = {"config.json", "labels.txt", "metrics.json", "history.csv", "best.keras",
             "training_curves.png", "confusion_matrix.png", "tensorboard"}
# Synthetic 16-px images: a quarter of the 32-px compute, the same code paths.
TINY = ["--data", "synthetic", "--image-size", "16"]
METRIC_KEYS = {"split", "top1", "top5", "per_class_accuracy", "confusion_matrix", "num_examples",
               "train_examples_per_second", "wall_seconds", "epochs", "precision"}


@pytest.fixture(autouse=True)
def reset_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.slow
def test_end_to_end_on_a_folder(tmp_path):
    folder = write_image_folder(tmp_path / "pets" / "train")
    write_image_folder(tmp_path / "pets" / "test", per_class=6, seed=1)
    code = train.main(["--data", str(tmp_path / "pets"), "--variant", "cifar", "--epochs", "2",
                       "--batch-size", "16", "--image-size", "16", "--workdir", str(tmp_path / "run"),
                       "--export-dir", str(tmp_path / "export"), "--verbose", "2", "--tta"])
    assert code == 0
    assert RUN_FILES <= {p.name for p in (tmp_path / "run").iterdir()}
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert METRIC_KEYS | {"top1_10crop"} <= set(metrics)
    assert metrics["split"] == "test" and metrics["num_examples"] == 18 and metrics["epochs"] == 2
    assert set(metrics["per_class_accuracy"]) == {"cat", "dog", "ship"}
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["recipe"] == "fast" and saved["data"] == str(tmp_path / "pets")
    version = tmp_path / "export" / "1"
    assert (version / "assets" / "labels.txt").read_text() == "cat\ndog\nship\n"
    metadata = json.loads((version / "assets" / "metadata.json").read_text())
    assert metadata["data_path"] == str((tmp_path / "pets").resolve())  # for evaluate's check
    module = tf.saved_model.load(str(version))
    out = module.signatures["serving_default"](images=tf.zeros([2, 50, 40, 3], tf.uint8))
    assert out["probabilities"].shape == (2, 3)
    assert folder.is_dir()


@pytest.mark.slow
def test_end_to_end_synthetic_and_workdir_guard(tmp_path, capsys):
    args = [*TINY, "--limit", "128", "--epochs", "1", "--batch-size", "32",
            "--workdir", str(tmp_path / "run"), "--export-dir", str(tmp_path / "export"),
            "--verbose", "2", "--precision", "float32"]
    assert train.main(args) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics) and metrics["num_examples"] == 256
    capsys.readouterr()
    assert train.main(args) == 2  # finished run: needs --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert train.main(args + ["--lr", "0.5"]) == 2
    assert "different config (lr 0.05, now 0.5): pass the saved values" in capsys.readouterr().err
    assert train.main(args + ["--overwrite"]) == 0
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["1", "2"]
    # An --overwrite that a later check refuses costs nothing: the old run stays whole.
    capsys.readouterr()
    assert train.main(args + ["--overwrite", "--batch-size", "4096"]) == 2
    assert "make no batch of 4096" in capsys.readouterr().err
    assert (tmp_path / "run" / "metrics.json").is_file()
    # That run's config.json, given back, is the same run (finished): --overwrite isn't in it.
    saved = tmp_path / "run" / "config.json"
    capsys.readouterr()
    assert train.main(["--config", str(saved)]) == 2 and "finished run" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["1", "2"]
    saved.write_text('{"lr": 0.')  # as a kill mid-write would have left it before
    assert train.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config.json is unreadable" in err[0]


@pytest.mark.parametrize("argv, message", [
    (["--variant", "vgg"], "Unknown variant 'vgg'"),
    (["--recipe", "magic"], "Unknown recipe 'magic'"),
    (["--variant", "paper", "--image-size", "50"], "needs image_size >= 67. Received: image_size=50"),
    (["--precision", "fp8"], "--precision must be one of"),
    (["--data", "/no/such/folder"], "Data folder not found"),
    (["--ema", "1"], "--ema must be at least 0 and below 1"),
    (["--dropout", "1.5"], "--dropout must be at least 0 and below 1; got 1.5"),
    (["--lr", "0"], "--lr must be above 0"),
    (["--time-budget", "inf"], "--time-budget must be above 0; got inf"),
    (["--init", "he"], "--init must be one of keras, paper"),
    (["--verbose", "loud"], "--verbose must be one of auto, 0, 1, 2"),
    (["--recipe", "paper", "--warmup-epochs", "2"], "--warmup-epochs needs --schedule cosine"),
    (["--seed", str(2**32)], "--seed must be between 0 and 2**32 - 1"),  # NumPy's limit
    (["--split-seed", "-1"], "--split-seed must be between 0 and 2**32 - 1"),
])
def test_clear_errors(argv, message, capsys, tmp_path):
    code = train.main(argv + ["--workdir", str(tmp_path / "w"), "--data", "synthetic"][
        : 2 if "--data" in argv else 4])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_diverging_run_stops_with_one_line_and_no_export(tmp_path, capsys):
    # In the epoch its time budget runs out, too: a NaN is still a NaN, then and when resumed.
    args = [*TINY, "--limit", "64", "--epochs", "2", "--batch-size", "32",
            "--lr", "1e30", "--warmup-epochs", "0", "--workdir", str(tmp_path / "w"),
            "--export-dir", str(tmp_path / "export"), "--verbose", "0",
            "--precision", "float32", "--time-budget", "0.0001"]
    for _ in range(2):
        assert train.main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "NaN or infinite" in err[0] and "--overwrite" in err[0]
        assert not (tmp_path / "export").exists()
        assert not (tmp_path / "w" / "metrics.json").exists()


@pytest.mark.slow
def test_a_plateau_cut_is_in_the_row_of_the_epoch_that_made_it(tmp_path):
    # lr 1e-9 leaves the weights, so validation accuracy, unchanged: after 4 epochs without
    # improvement (epochs 2-5) the rate is cut, and history.csv shows the rate the next uses.
    assert train.main([*TINY, "--limit", "64", "--epochs", "5", "--batch-size",
                       "32", "--schedule", "plateau", "--lr", "1e-9", "--workdir",
                       str(tmp_path / "w"), "--export-dir", str(tmp_path / "export"),
                       "--verbose", "0", "--precision", "float32"]) == 0
    with open(tmp_path / "w" / "history.csv") as f:
        rates = [float(row["learning_rate"]) for row in csv.DictReader(f)]
    assert rates == pytest.approx([1e-9] * 4 + [1e-10])


def test_pca_data_needs_the_training_images_in_memory(tmp_path, monkeypatch, capsys):
    from alexnet_tf import sources

    folder = write_image_folder(tmp_path / "pets", per_class=4)
    args = ["--data", str(folder), "--lighting", "0.1", "--pca", "data",
            "--workdir", str(tmp_path / "w")]
    assert train.main(args + ["--no-cache"]) == 2
    assert "(drop --no-cache)" in capsys.readouterr().err
    monkeypatch.setattr(sources, "CACHE_LIMIT_BYTES", 0)  # as if the split were too large
    assert train.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "over the in-memory cache limit" in err[0]
    assert not (tmp_path / "w").exists()  # refused before the workdir is made


def test_a_run_that_never_started_does_not_block_the_corrected_command(capsys, tmp_path):
    base = ["--data", "synthetic", "--variant", "paper", "--workdir", str(tmp_path / "w")]
    assert train.main(base + ["--image-size", "50"]) == 2
    capsys.readouterr()
    # Its config.json is on disk, but no epoch finished: the next error is the real one.
    assert train.main(base + ["--image-size", "60"]) == 2
    assert "image_size=60" in capsys.readouterr().err


def test_config_file_values_are_type_checked(tmp_path):
    file = tmp_path / "c.json"
    file.write_text(json.dumps({"epochs": "10"}))
    with pytest.raises(config.ConfigError, match="'epochs' must be int; got '10'"):
        config.parse(["--config", str(file)])
    file.write_text(json.dumps({"epochs": 10.0, "lr": 1, "time_budget": None, "verbose": 2}))
    cfg = config.parse(["--config", str(file)])
    assert (cfg.epochs, cfg.lr, cfg.time_budget, cfg.verbose) == (10, 1, None, "2")
    assert type(cfg.epochs) is int
    file.write_text(json.dumps({"overwrite": True}))  # a flag only: a file cannot delete runs
    assert not config.parse(["--config", str(file)]).overwrite
    assert config.parse(["--config", str(file), "--overwrite"]).overwrite
    file.write_bytes(b"\xff\xfe\x00binary")  # not text: a one-line ConfigError too
    with pytest.raises(config.ConfigError, match="Cannot read config file"):
        config.parse(["--config", str(file)])
    # How data is kept and the step compiled doesn't make another run: resuming may change it.
    saved = json.loads(config.parse([]).to_json())
    assert config.differences(saved, config.parse(["--no-cache", "--jit-compile"])) == []
    assert config.differences(saved, config.parse(["--lr", "0.1"])) == ["lr"]


def test_cutout_and_mixup_are_recipe_parts():
    assert config.parse([]).cutout == 8  # cifar -> fast
    assert config.parse(["--recipe", "long"]).cutout == 8
    assert config.parse(["--variant", "seed"]).cutout == 0
    assert config.parse(["--variant", "paper"]).cutout == 0
    assert config.parse(["--cutout", "0"]).cutout == 0
    with pytest.raises(config.ConfigError, match="cutout"):
        config.parse(["--cutout", "-1"])
    assert config.parse([]).mixup == config.parse(["--recipe", "paper"]).mixup == 0.0
    with pytest.raises(config.ConfigError, match="mixup"):
        config.parse(["--mixup", "-0.2"])
    saved = json.loads(config.parse([]).to_json())
    assert config.differences(saved, config.parse(["--cutout", "0", "--mixup", "0.2"])) == [
        "cutout", "mixup"]


def test_conv_dropout_is_off_in_every_recipe():
    assert {config.parse(["--recipe", r]).conv_dropout for r in config.RECIPES} == {0.0}
    assert config.parse(["--recipe", "long", "--conv-dropout", "0.2"]).conv_dropout == 0.2
    with pytest.raises(config.ConfigError, match="--conv-dropout must be at least 0 and below 1"):
        config.parse(["--conv-dropout", "1"])
    saved = json.loads(config.parse([]).to_json())
    assert config.differences(saved, config.parse([])) == []
    assert config.differences(saved, config.parse(["--conv-dropout", "0.2"])) == ["conv_dropout"]


def test_the_validation_split_depends_on_split_seed_alone(tmp_path, monkeypatch):
    """Runs with another --seed validate on the same images."""
    from alexnet_tf import data as data_lib, sources

    asked = []

    def load(source, **kwargs):  # records the split seed train asks for, then stops the run
        asked.append(kwargs["split_seed"])
        raise data_lib.DataError("recorded")

    monkeypatch.setattr(sources, "load", load)
    for flags in ([], ["--seed", "7"], ["--seed", "7", "--split-seed", "3"]):
        assert train.main(["--data", "synthetic", "--workdir", str(tmp_path / "w"), *flags]) == 2
    assert asked == [0, 0, 3]
    saved = json.loads(config.parse(["--split-seed", "5"]).to_json())
    assert config.differences(saved, config.parse(["--seed", "5"])) == ["seed", "split_seed"]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text(json.dumps(saved))
    with pytest.raises(rundir.RunError, match="split_seed 5, now 0"):  # says what resumes it
        rundir.check(config.parse([]), tmp_path / "old")


@pytest.mark.slow
def test_conv_dropout_reaches_the_trained_model(tmp_path):
    assert train.main([*TINY, "--limit", "64", "--epochs", "1", "--batch-size",
                       "32", "--conv-dropout", "0.2", "--workdir", str(tmp_path / "w"),
                       "--export-dir", str(tmp_path / "export"), "--verbose", "0"]) == 0
    model = keras.models.load_model(tmp_path / "w" / "best.keras")
    assert [model.get_layer(f"drop{i}").rate for i in (1, 2, 5)] == [0.2] * 3


def test_a_workdir_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "w").write_text("")
    assert train.main(["--data", "synthetic", "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a file, not a folder" in err[0]


def _killed_in_evaluation(tmp_path, monkeypatch):
    """Trains 2 epochs and dies in evaluation, after both epochs' backups; returns the args
    that resume the run."""
    args = [*TINY, "--limit", "64", "--epochs", "2", "--batch-size", "32",
            "--workdir", str(tmp_path / "w"), "--export-dir", str(tmp_path / "export"),
            "--verbose", "0", "--precision", "float32"]

    def killed(*args, **kwargs):
        raise RuntimeError("killed in evaluation")

    monkeypatch.setattr(evaluate, "predict_split", killed)
    with pytest.raises(RuntimeError, match="killed in evaluation"):
        train.main(args)
    monkeypatch.undo()
    return args


@pytest.mark.slow
def test_a_backup_cut_off_mid_save_resumes_from_the_one_before(tmp_path, monkeypatch):
    args = _killed_in_evaluation(tmp_path, monkeypatch)
    backup = tmp_path / "w" / "backup" / "latest.weights.h5"
    backup.write_bytes(backup.read_bytes()[: backup.stat().st_size // 2])  # as a kill mid-save
    assert train.main(args) == 0  # from the previous copy: epoch 2 is trained again
    metrics = json.loads((tmp_path / "w" / "metrics.json").read_text())
    assert (metrics["epochs"], metrics["epochs_this_session"]) == (2, 1)


@pytest.mark.slow
def test_a_damaged_backup_is_one_line(tmp_path, monkeypatch, capsys):
    args = [*TINY, "--limit", "64", "--epochs", "1", "--batch-size", "32",
            "--workdir", str(tmp_path / "w"), "--export-dir", str(tmp_path / "export"),
            "--verbose", "0", "--precision", "float32"]

    def killed(*args, **kwargs):
        raise RuntimeError("killed in evaluation")

    monkeypatch.setattr(evaluate, "predict_split", killed)  # dies with its backup written
    with pytest.raises(RuntimeError, match="killed in evaluation"):
        train.main(args)
    monkeypatch.undo()
    capsys.readouterr()
    (tmp_path / "w" / "backup" / "training_metadata.json").write_text('{"epo')  # a full disk
    assert train.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "delete it to train again from the start" in err[0], err
    # An --export-dir that is a file is found before any training.
    (tmp_path / "file").write_text("")
    assert train.main([*TINY, "--workdir", str(tmp_path / "w2"),
                       "--export-dir", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--export-dir" in err[0] and "is a file" in err[0], err
    assert not (tmp_path / "w2").exists()


def test_bad_tf_config_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["localhost:1"]}}')  # no "task"
    assert train.main(["--data", "synthetic", "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert 'TF_CONFIG needs "cluster" and "task"' in err and len(err.strip().splitlines()) == 1
    # A time budget would stop each worker on its own clock, leaving the others hanging.
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["localhost:1"]},
                                                "task": {"type": "worker", "index": 0}}))
    assert train.main(["--data", "synthetic", "--time-budget", "5",
                       "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "--time-budget is not supported with several workers" in err
    assert len(err.strip().splitlines()) == 1


def test_config_flags_file_and_recipes(tmp_path):
    file = tmp_path / "c.json"
    file.write_text(json.dumps({"variant": "paper", "lr": 0.5}))
    cfg = config.parse(["--config", str(file), "--lr", "0.1", "--no-flip"])
    assert (cfg.variant, cfg.recipe, cfg.lr, cfg.flip, cfg.batch_size, cfg.l2) == (
        "paper", "paper", 0.1, False, 128, 2.5e-4)
    assert config.parse(["--variant", "seed"]).optimizer == "adam"
    # Every variant has a default recipe (a missing one would be a KeyError, not a message).
    assert set(config.DEFAULT_RECIPE) == set(config.VARIANTS)
    assert config.parse(["--variant", "cifar_wide"]).recipe == "fast"
    # The recipe's warm-up goes with its cosine; only an asked-for one with another is an error.
    assert config.parse(["--schedule", "plateau"]).warmup_epochs == 0
    long = config.parse(["--recipe", "long"])
    assert long.epochs == 90 and long == dataclasses.replace(
        config.parse([]), recipe="long", epochs=90)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0
    assert config.Config(data="../x/cifar10/train").dataset_name == "cifar10"
    assert config.Config(data=".").dataset_name == pathlib.Path.cwd().name
    assert config.Config(data="tfds:imagenette/320px-v2").dataset_name == "imagenette_320px-v2"
    assert config.default_workdir(config.parse(["--data", "../x/cifar10/train"])) == (
        "runs/alexnet_cifar10_cifar")  # the variant's own recipe, fast
    assert config.default_workdir(config.parse(["--recipe", "long"])) == (
        "runs/alexnet_cifar10_cifar_long")
    saved = json.loads(cfg.to_json())
    assert config.differences(saved, cfg) == []
    assert config.differences(saved, dataclasses.replace(cfg, ema=0.99)) == ["ema"]


@pytest.mark.slow
def test_batch_smaller_than_replicas(tmp_path):
    result = run_module("alexnet_tf.train", "--data", "synthetic", "--cpu-replicas", "2",
                        "--batch-size", "1", "--workdir", tmp_path / "w")
    assert result.returncode == 2
    assert "smaller than the 2 replicas" in result.stderr.strip().splitlines()[-1]
    # Under two replicas validation monitors whole batches only: 256 images make none of 512.
    # And XLA cannot compile a step across the replicas' devices.
    for flags, error in ((["--batch-size", "512"], "256 validation images make no whole batch"),
                         (["--jit-compile"], "--jit-compile does not work across the 2")):
        result = run_module("alexnet_tf.train", *TINY, "--cpu-replicas", "2", *flags,
                            "--workdir", tmp_path / "w")
        assert result.returncode == 2, result.stderr[-2000:]
        assert error in result.stderr.strip().splitlines()[-1]
        assert not (tmp_path / "w" / "config.json").exists()  # the corrected command may run


@pytest.mark.slow
def test_two_steps_under_mirrored_strategy_on_two_cpu_devices(tmp_path):
    result = run_module("alexnet_tf.train", *TINY, "--cpu-replicas", "2", "--limit", "64",
                        "--batch-size", "32", "--epochs", "1",
                        "--workdir", tmp_path / "run", "--export-dir", tmp_path / "export",
                        "--verbose", "2", "--mixup", "0.2")  # its per-batch map too
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MirroredStrategy over ['/cpu:0', '/cpu:1']" in result.stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["replicas"] == 2
    assert "2/2" in result.stdout  # two optimizer steps of the global batch of 32


@pytest.mark.slow
def test_resume_after_sigkill_continues_at_epoch_two(tmp_path, capsys):
    args = [sys.executable, "-m", "alexnet_tf.train", *TINY, "--limit", "512",
            "--batch-size", "32", "--epochs", "3", "--workdir", str(tmp_path / "run"),
            "--export-dir", str(tmp_path / "export"), "--verbose", "2",
            "--precision", "float32"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    history = tmp_path / "run" / "history.csv"
    first = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    refusal = None
    while time.time() < deadline and first.poll() is None:
        if history.is_file() and len(history.read_text().splitlines()) >= 2:  # header + epoch 1
            # The same command while it runs: refused at once, in one line, touching nothing.
            asked = time.time()
            code = train.main(args[3:])
            refusal = (code, time.time() - asked, capsys.readouterr().err.strip().splitlines())
            first.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    first.wait()
    assert first.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    code, seconds, err = refusal
    assert code == 2 and seconds < 2 and len(err) == 1, (code, seconds, err)
    assert "another training (process " in err[0] and "holds --workdir" in err[0]
    assert not (tmp_path / "export").exists()
    stale = tmp_path / "run" / "bad_files.txt"  # from an earlier start whose files were fixed
    stale.write_text("gone.jpg\n")
    # The kill left its lock file, but no lock: the same command resumes.
    second = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Resuming the run" in second.stdout
    assert "Epoch 1/3" not in second.stdout and "Epoch 2/3" in second.stdout
    with open(history) as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["0", "1", "2"]
    assert not stale.exists()
    minutes = [float(row["minutes"]) for row in rows]  # the training clock resumes its count
    assert 0 < minutes[0] < minutes[1] < minutes[2]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"] == 3
    assert not (tmp_path / "run" / "backup").exists()  # kept until the export, then removed


@pytest.mark.slow
def test_time_budget_stops_early_and_still_exports(tmp_path, capsys, monkeypatch):
    args = [*TINY, "--limit", "128", "--epochs", "4", "--batch-size", "32",
            "--workdir", str(tmp_path / "run"), "--export-dir", str(tmp_path / "export"),
            "--verbose", "2", "--precision", "float32", "--time-budget", "0.0001",
            "--ema", "0.9", "--cpu-replicas", "1"]  # a strategy scope of its own: OneDevice
    run = tmp_path / "run"
    with monkeypatch.context() as patch:  # the first two attempts die in the export
        patch.setattr(train, "export_model", lambda *a, **k: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            train.main(args)
        assert ("Time budget of 0.0001 minutes reached after 1 epoch(s) this session; the "
                "cosine schedule was fitted to 1 of 4 epochs") in capsys.readouterr().out
        # Resumed, it trains no further (that would overrun the budget).
        with pytest.raises(ZeroDivisionError):
            train.main(args)
        out = capsys.readouterr().out
        assert "budget ran out after epoch 1" in out and "Epoch " not in out
    # As if killed after the stop was marked but before epoch 1 was backed up and logged:
    # resumed, it trains epoch 1 again, and no epoch after it.
    for name in ("latest.weights.h5", "training_metadata.json"):
        (run / "backup" / name).unlink()
    history_lines = (run / "history.csv").read_text().splitlines(keepends=True)
    (run / "history.csv").write_text(history_lines[0])
    assert train.main(args) == 0
    out = capsys.readouterr().out
    assert "budget ran out after epoch 1" in out and "Epoch 2/" not in out
    assert len((run / "history.csv").read_text().splitlines()) == 2  # epoch 1, trained again
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["schedule_epochs"] == 1
    assert (tmp_path / "export" / "1" / "saved_model.pb").is_file()
    with open(tmp_path / "run" / "history.csv") as f:
        assert float(next(csv.DictReader(f))["learning_rate"]) == 0  # annealed at the stop
    # best.keras names the fitted schedule; importing alexnet_tf registers it for loading.
    best = keras.saving.load_model(tmp_path / "run" / "best.keras")
    optimizer = best.optimizer
    # Fitted to 1 epoch of 4 steps: a fifth is no step, so no warm-up (of 3 steps planned).
    assert optimizer._learning_rate.get_config()["decay_steps"] == 4
    assert optimizer._learning_rate.get_config()["warmup_steps"] == 0
    assert optimizer.use_ema and optimizer.ema_momentum == 0.9
    # best.keras and the export hold the same (averaged) weights: the checkpoint comes after
    # the swap, and the stop before epoch 4 keeps the average in the model.
    x = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    exported = inference.Classifier(tmp_path / "export" / "1").classify_preprocessed(x)
    np.testing.assert_allclose(exported["probabilities"], tf.nn.softmax(best(x)), atol=1e-5)


def _refused(capsys, argv):
    """train's exit code and stderr lines for `argv`."""
    code = train.main(argv)
    return code, capsys.readouterr().err.strip().splitlines()


def test_overwrite_deletes_only_a_run_of_this_project(tmp_path, monkeypatch, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    data = write_image_folder(tmp_path / "pets", per_class=2)
    runs = tmp_path / "runs"
    (runs / "a").mkdir(parents=True)
    (runs / "a" / "config.json").write_text(config.parse([]).to_json())
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"name": "another tool"}')
    monkeypatch.chdir(mine)
    cases = [(mine, "synthetic", "holds no run of this project"),
             (".", "synthetic", "holds no run of this project"),  # the current directory
             (runs, "synthetic", "holds no run of this project"),  # runs/, not a run in it
             (tmp_path / "other", "synthetic", "holds no run of this project"),
             (data, str(data), "would delete --data"),
             (tmp_path, str(data), "would delete --data")]
    for workdir, source, message in cases:
        before = sorted(str(p) for p in tmp_path.rglob("*"))
        code, err = _refused(capsys, ["--data", source, "--workdir", str(workdir), "--overwrite",
                                      "--export-dir", str(tmp_path / "export")])
        assert code == 2 and len(err) == 1 and message in err[0], (workdir, err)
        assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # not even a lock file
    assert (mine / "thesis.tex").read_text() == "years of work"
    # A run's exports inside its workdir are the user's too.
    code, err = _refused(capsys, ["--data", "synthetic", "--workdir", str(runs / "a"),
                                  "--overwrite", "--export-dir", str(runs / "a" / "export")])
    assert code == 2 and len(err) == 1 and "would delete --export-dir" in err[0], err
    assert rundir.holds_a_run(runs / "a") and not rundir.holds_a_run(mine)


@pytest.mark.slow
def test_overwrite_of_a_run_started_among_a_users_files_keeps_them(tmp_path):
    """A run may start in a folder that holds other files (`--workdir .`); --overwrite then
    deletes the run's outputs, never the rest."""
    mine = tmp_path / "mine"
    (mine / "src").mkdir(parents=True)
    (mine / "thesis.tex").write_text("years of work")
    (mine / "src" / "code.py").write_text("print(1)")
    args = [*TINY, "--limit", "64", "--epochs", "1", "--batch-size", "32", "--precision",
            "float32", "--verbose", "0", "--workdir", str(mine),
            "--export-dir", str(tmp_path / "export")]
    assert train.main(args) == 0
    assert (mine / "metrics.json").is_file()
    assert train.main([*args, "--overwrite"]) == 0
    assert (mine / "thesis.tex").read_text() == "years of work"
    assert (mine / "src" / "code.py").read_text() == "print(1)"
    assert (mine / "metrics.json").is_file()  # the new run's


@pytest.mark.slow
def test_the_overwrite_refusal_from_the_command_line(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    result = run_module("alexnet_tf.train", "--data", "synthetic", "--workdir", tmp_path / "x",
                        "--overwrite")
    lines = result.stderr.strip().splitlines()  # TF's start-up logs, then the refusal
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert [line for line in lines if line.startswith("error")] == lines[-1:]
    assert lines[-1].startswith("error: --workdir") and "holds no run" in lines[-1]
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["notes.txt"]


HOLD_A_LOCK = """
import fcntl, sys, time
f = open(sys.argv[1], "a+")
fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("held", flush=True)
time.sleep(120)
"""


def test_an_export_dir_another_training_holds_is_refused_at_once(tmp_path, capsys):
    export = tmp_path / "models" / "pets"  # not made yet: the first run has not exported
    export.parent.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_A_LOCK, str(rundir.export_lock(export))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        asked = time.time()
        code, err = _refused(capsys, [*TINY, "--workdir", str(tmp_path / "w"),
                                      "--export-dir", str(export)])
        assert time.time() - asked < 2
        assert code == 2 and len(err) == 1, err
        assert "another training holds --export-dir" in err[0] and "another --export-dir" in err[0]
        assert not (tmp_path / "w").exists() and not export.exists()
    finally:
        holder.kill()
        holder.wait()
    with rundir.Locks() as locks:  # the OS released the killed holder's lock
        locks.hold(rundir.export_lock(export), "--export-dir", export)
        # And one process holds it once: a second opener is refused (flock is per open file).
        with rundir.Locks() as other, pytest.raises(rundir.RunError, match="another training"):
            other.hold(rundir.export_lock(export), "--export-dir", export)


def test_a_save_cut_off_keeps_the_previous_best(tmp_path, monkeypatch, capsys):
    def disk_full(model, filepath, *args, **kwargs):
        pathlib.Path(filepath).write_bytes(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    # In a run: the first epoch's save fails; no truncated best.keras is left for anyone.
    with monkeypatch.context() as patch:
        patch.setattr(keras.Model, "save", disk_full)
        code, err = _refused(capsys, [*TINY, "--limit", "64", "--epochs", "1", "--batch-size",
                                      "32", "--workdir", str(tmp_path / "w"), "--export-dir",
                                      str(tmp_path / "export"), "--verbose", "0",
                                      "--precision", "float32"])
    assert code == 2 and len(err) == 1 and "No space left on device" in err[0], err
    assert [p.name for p in (tmp_path / "w").glob("*.keras")] == []
    assert [p.name for p in (tmp_path / "w").glob(".*.keras")] == []
    # With a best already saved: it survives a failed save whole.
    from alexnet_tf import callbacks

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", loss="mse")
    x, y = np.ones((8, 4), "float32"), np.zeros((8, 2), "float32")
    best = tmp_path / "best.keras"
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.ModelCheckpoint(str(best))])
    saved = best.read_bytes()
    monkeypatch.setattr(keras.Model, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.ModelCheckpoint(str(best))])
    assert best.read_bytes() == saved and sorted(p.name for p in tmp_path.glob("*best*")) == [
        "best.keras"]


@pytest.mark.slow
def test_a_damaged_training_metadata_resumes_from_the_copy_before(tmp_path, monkeypatch,
                                                                  capsys):
    args = _killed_in_evaluation(tmp_path, monkeypatch)
    (tmp_path / "w" / "backup" / "training_metadata.json").write_text('{"epo')  # a full disk
    assert train.main(args) == 0  # from the copy of epoch 1: epoch 2 is trained again
    assert "resuming from the backup of the epoch before" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "w" / "metrics.json").read_text())
    assert (metrics["epochs"], metrics["epochs_this_session"]) == (2, 1)


@pytest.mark.slow
def test_a_run_killed_after_its_export_does_not_export_again(tmp_path, monkeypatch, capsys):
    args = [*TINY, "--limit", "64", "--epochs", "1", "--batch-size", "32",
            "--workdir", str(tmp_path / "w"), "--export-dir", str(tmp_path / "export"),
            "--verbose", "0", "--precision", "float32"]
    real = rundir.write_atomically

    def killed_before_metrics(path, text):
        if path.name == "metrics.json":
            raise RuntimeError("killed before metrics.json")
        real(path, text)

    with monkeypatch.context() as patch:
        patch.setattr(rundir, "write_atomically", killed_before_metrics)
        with pytest.raises(RuntimeError, match="killed before metrics.json"):
            train.main(args)
    assert [p.name for p in (tmp_path / "export").iterdir()] == ["1"]
    capsys.readouterr()
    assert train.main(args) == 0
    assert "exported" in capsys.readouterr().out
    assert [p.name for p in (tmp_path / "export").iterdir()] == ["1"]  # no identical version 2
    assert (tmp_path / "w" / "metrics.json").is_file()
    # Its version removed meanwhile (or another --export-dir): the run exports again.
    (tmp_path / "w" / "metrics.json").unlink()
    import shutil
    shutil.rmtree(tmp_path / "export" / "1")
    assert train.main(args) == 0
    assert [p.name for p in (tmp_path / "export").iterdir()] == ["1"]


def _unwritable_folder(tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    if not os.access(folder, os.W_OK):
        return folder
    folder = pathlib.Path("/sys/fs")  # root ignores the mode bits: a read-only file system
    if not folder.is_dir() or os.access(folder, os.W_OK) and _writable(folder):
        pytest.skip("no unwritable folder here")
    return folder


def _writable(folder):
    try:
        (folder / ".alexnet_probe").touch()
    except OSError:
        return False
    (folder / ".alexnet_probe").unlink()
    return True


def test_an_unwritable_workdir_is_one_line(tmp_path, capsys):
    folder = _unwritable_folder(tmp_path)
    for workdir, message in ((folder, "cannot write in --workdir"),
                             (folder / "run", "cannot create --workdir")):
        code, err = _refused(capsys, [*TINY, "--limit", "64", "--batch-size", "32",
                                      "--workdir", str(workdir),
                                      "--export-dir", str(tmp_path / "export")])
        assert code == 2 and len(err) == 1 and message in err[0], err


def test_an_os_error_mid_run_is_one_line(monkeypatch, capsys):
    def disk_full(cfg, locks=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train, "train", disk_full)
    code, err = _refused(capsys, [*TINY])
    assert code == 2 and err == ["error: [Errno 28] No space left on device"]
