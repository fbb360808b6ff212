"""Multi-worker training with real processes: the launcher, chief-only outputs, resume after a
worker dies, and MirroredStrategy against one device."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import launch, multiworker, train
from helpers import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
RUN_FILES = {"config.json", "labels.txt", "metrics.json", "history.csv", "best.keras",
             "training_curves.png", "confusion_matrix.png", "tensorboard"}


def launcher(tmp_path, *train_args, workers=2):
    return [sys.executable, "-m", "alexnet_tf.launch", "--workers", str(workers), "--",
            "--data", "synthetic", "--variant", "cifar", "--image-size", "16", "--batch-size", "32",
            "--precision", "float32", "--verbose", "2", "--workdir", str(tmp_path / "run"),
            "--export-dir", str(tmp_path / "export"), *map(str, train_args)]


def worker_lines(output, index):
    return [line.removeprefix(f"[worker {index}] ") for line in output.splitlines()
            if line.startswith(f"[worker {index}] ")]


def history_epochs(path):
    with open(path) as f:
        return [row["epoch"] for row in csv.DictReader(f)]


@pytest.mark.slow
def test_two_workers_step_together_and_only_the_chief_writes(tmp_path):
    result = subprocess.run(launcher(tmp_path, "--limit", 128, "--epochs", 2), cwd=REPO,
                            env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]
    digests = {}
    for index in (0, 1):
        lines = worker_lines(result.stdout, index)
        assert "Strategy: MultiWorkerMirroredStrategy (2 replicas)." in "\n".join(lines)
        assert "Global batch 32 = 2 replicas x 16" in "\n".join(lines)
        assert sum(line.startswith("4/4 ") for line in lines) == 2  # 2 epochs of 4 global steps
        digests[index] = [line.split(": ")[1] for line in lines
                          if line.startswith("Final weights digest: ")]
    assert len(digests[0]) == 1 and digests[0] == digests[1]  # identical final weights

    # The chief's outputs are the run's; worker 1 wrote to its own scratch, then removed it.
    assert RUN_FILES <= {p.name for p in (tmp_path / "run").iterdir()}
    assert history_epochs(tmp_path / "run" / "history.csv") == ["0", "1"]
    scratch = re.search(r"scratch outputs in (\S+)", result.stdout).group(1)
    assert not scratch.startswith(str(tmp_path / "run")) and not os.path.exists(scratch)
    assert "Exported model" in "\n".join(worker_lines(result.stdout, 0))
    assert "Exported model" not in "\n".join(worker_lines(result.stdout, 1))
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["1"]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["epochs"] == 2

    # The export classifies.
    module = tf.saved_model.load(str(tmp_path / "export" / "1"))
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    out = module.signatures["serving_default"](images=tf.constant(images))
    assert out["probabilities"].shape == (3, 10)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(axis=1), 1.0, rtol=1e-5)
    assert all(c.startswith(b"pattern") for c in out["top_k_classes"].numpy().ravel())


@pytest.mark.slow
def test_a_killed_worker_stops_the_job_and_the_same_command_resumes(tmp_path):
    command = launcher(tmp_path, "--limit", 256, "--epochs", 3)
    first = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    output = []
    reader = threading.Thread(target=lambda: output.extend(first.stdout), daemon=True)
    reader.start()
    backup = tmp_path / "run" / "backup" / "training_metadata.json"  # the chief's, epoch 1
    deadline, killed = time.time() + 240, None
    while time.time() < deadline and first.poll() is None and killed is None:
        pids = dict(re.findall(r"\[launch\] worker (\d): pid (\d+)", "".join(output)))
        if backup.is_file() and "1" in pids:
            killed = int(pids["1"])
            os.kill(killed, signal.SIGKILL)  # worker 1 dies mid-run
        time.sleep(0.05)
    first.wait(timeout=60)
    reader.join(timeout=10)
    text = "".join(output)
    assert killed, "the run ended before a worker could be killed:\n" + text[-3000:]
    assert first.returncode == 128 + signal.SIGKILL, text[-3000:]
    assert "worker 1 exited with code -9: stopping the others" in text
    chief = int(re.search(r"\[launch\] worker 0: pid (\d+)", text).group(1))
    assert not _alive(chief)  # the launcher stopped the chief too
    assert not (tmp_path / "export").exists()

    second = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stdout[-4000:]
    for index in (0, 1):
        lines = "\n".join(worker_lines(second.stdout, index))
        assert "Resuming at epoch" in lines and "from the chief's backup" in lines
        assert "Epoch 1/3" not in lines and "Epoch 3/3" in lines
    assert "Resuming the run in" in "\n".join(worker_lines(second.stdout, 0))
    assert history_epochs(tmp_path / "run" / "history.csv") == ["0", "1", "2"]  # once each
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["1"]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"] == 3
    assert not (tmp_path / "run" / "backup").exists()


@pytest.mark.parametrize("flags", [
    # The default recipe (Nesterov SGD, cosine, label smoothing) without its warm-up, which
    # would make the first step's rate 0.
    ["--image-size", "16", "--warmup-epochs", "0"],
    ["--image-size", "32", "--schedule", "plateau", "--lr", "0.1"],  # a mirrored rate variable
    # PyTorch's Adam (fused kernel, moments on each replica) with its coupled decay.
    ["--image-size", "16", "--optimizer", "adam", "--lr", "1e-3", "--schedule", "constant",
     "--coupled-weight-decay", "1e-4", "--warmup-epochs", "0"],
])
@pytest.mark.slow
def test_mirrored_two_devices_step_like_one_device_with_the_same_global_batch(flags):
    """One optimiser step of the trainer's compiled model on the same global batch of 32:
    2 x 16 on two logical CPU devices against 32 on one. The replicas' weights must end where
    one device's do, to a few parts per million of how far the step moved them, whatever the
    CPU's kernels (measured at most 3.0e-6 with oneDNN limited to AVX2 or AVX-512, and on AMX).
    A rate halved or doubled on the replicas gives 0.5 or 1.0; a replica that skipped the
    all-reduce would step on half the batch. One step, not several: from the second on, a
    ReLU or max-pool decision flipped by a summation-order difference moves the gradient by
    far more than the difference itself (two steps gave 1.5e-3 once). `--dropout 0`: each
    replica draws its own dropout masks, so with dropout the two differ by design."""
    result = subprocess.run(
        [sys.executable, str(REPO / "tests" / "replica_step.py"), "--limit", "256",
         "--batch-size", "32", "--dropout", "0", *flags],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    step = json.loads(result.stdout.strip().splitlines()[-1])
    assert step["replicas"] == 2 and step["moved"] > 1e-3  # the step did move the weights
    assert step["relative_gap"] < 1e-3, step


@pytest.mark.parametrize("tf_config, message", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
     "TF_CONFIG task index 2 is not in 0..1"),
    ('{"cluster": {"ps": ["a:1"], "worker": ["b:2"]}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG cluster has ['ps'] jobs"),
])
def test_bad_tf_config_is_one_line_exit_2(tf_config, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    assert train.main(["--data", "synthetic", "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "w").exists()


def test_task_info_and_worker_dirs(tmp_path):
    def info(cluster, kind, index):
        return multiworker.task_info({"TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": kind, "index": index}})})

    assert multiworker.task_info({}) is None
    workers = {"worker": ["a:1", "b:1", "c:1"]}
    assert info(workers, "worker", 0) == ("worker", 0, 3, True)
    assert info(workers, "worker", 2).is_chief is False
    with_chief = {"chief": ["a:1"], "worker": ["b:1"]}
    assert info(with_chief, "chief", 0).is_chief and not info(with_chief, "worker", 0).is_chief
    assert multiworker.worker_dirs(tmp_path / "run", "exp", info(workers, "worker", 0)) == (
        tmp_path / "run", "exp")
    run1, export1 = multiworker.worker_dirs(tmp_path / "run", "exp", info(workers, "worker", 1))
    run2, _ = multiworker.worker_dirs(tmp_path / "run", "exp", info(workers, "worker", 2))
    assert run1 != run2 and tmp_path not in run1.parents  # outside the chief's workdir
    assert export1 == str(run1.parent / "export")


@pytest.mark.slow
def test_launcher_stops_with_the_first_failure(tmp_path):
    result = subprocess.run(launcher(tmp_path, "--variant", "vgg"), cwd=REPO, env=ENV,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout[-3000:]
    assert "Unknown variant 'vgg'" in result.stdout and "exit code 2" in result.stdout
    assert len(set(launch.free_ports(4))) == 4
    with pytest.raises(SystemExit):  # ports 65535 and 65536: the second doesn't exist
        launch.parse(["--port-base", "65535", "--workers", "2"])
    assert launch.parse(["--port-base", "65534", "--workers", "2"]).port_base == "65534"
    config = json.loads(launch.tf_config(["127.0.0.1:1", "127.0.0.1:2"], 1))
    assert config == {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                      "task": {"type": "worker", "index": 1}}


def test_launcher_stopped_by_sigterm_stops_its_workers_and_exits_143():
    # Workers that would run forever (a web server): only the launcher's stop ends them.
    launcher_process = subprocess.Popen(
        [sys.executable, "-m", "alexnet_tf.launch", "--module", "http.server", "--",
         "--bind", "127.0.0.1", "0"], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    output = []
    reader = threading.Thread(target=lambda: output.extend(launcher_process.stdout), daemon=True)
    reader.start()
    deadline = time.time() + 60
    while time.time() < deadline and len(re.findall(r"worker \d: pid", "".join(output))) < 2:
        time.sleep(0.05)
    pids = [int(pid) for pid in re.findall(r"\[launch\] worker \d: pid (\d+)", "".join(output))]
    assert len(pids) == 2, "".join(output)
    launcher_process.send_signal(signal.SIGTERM)
    assert launcher_process.wait(timeout=30) == 128 + signal.SIGTERM
    reader.join(timeout=10)
    assert "Traceback" not in "".join(output)
    assert not any(_alive(pid) for pid in pids)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (not reaped by the launcher, already dead) counts as stopped.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_the_loop_repeats_a_stream_shorter_than_steps_per_epoch():
    # steps_per_epoch is counted from the files; a streamed (--no-cache) split that skipped
    # unreadable ones has fewer batches. The loop must not fail with OutOfRange in the last step.
    import keras
    from alexnet_tf.model import build_model

    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = build_model("cifar", num_classes=2, image_size=16)
        model.compile(optimizer="sgd", loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    images = np.zeros((24, 16, 16, 3), np.float32)
    labels = np.tile(np.eye(2, dtype=np.float32), (12, 1))
    three_batches = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
    multiworker.fit(model, strategy, three_batches, None, epochs=2, steps_per_epoch=4,
                    callbacks=[], verbose=0)
    assert int(model.optimizer.iterations) == 8
