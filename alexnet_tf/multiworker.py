"""Multi-machine training: TF_CONFIG, the chief, and a `fit` that works under
MultiWorkerMirroredStrategy.

Keras 3.15's own `model.fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585,
tensorflow/tensorflow#72388), so with TF_CONFIG set `train.py` calls `fit` below instead. It is
Keras' own epoch loop in a few lines: the model's compiled `train_step`/`test_step` (same loss,
regulariser, loss scaling across replicas, metrics) run through `strategy.run` on
`strategy.experimental_distribute_dataset` batches, and the SAME Keras callbacks are driven
through `keras.callbacks.CallbackList`, so checkpoints, backups, CSV and TensorBoard logs are
the single-machine ones.

Every worker runs every callback on the same global logs, so all take the same decisions
(TerminateOnNaN, ReduceLROnPlateau, which epoch ModelCheckpoint keeps), but only the chief's
directories are of record: `worker_dirs` gives the other workers a scratch directory of
their own (Keras 3's BackupAndRestore and ModelCheckpoint have no chief/worker logic; their
saves read mirrored variables locally, no collective, checked). On (re)start every worker
takes the chief's state (weights, optimiser, epoch), so the job resumes from the chief's
backup even when another worker's scratch is gone (a new machine or pod).
"""

import hashlib
import json
import os
import pathlib
import shutil
import signal
import tempfile
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf


class TFConfigError(Exception):
    """TF_CONFIG is unusable; reported as one line."""


class TaskInfo(NamedTuple):
    type: str  # "worker" or "chief"
    index: int
    num_workers: int  # all training tasks: chief + workers
    is_chief: bool


def task_info(environ=None):
    """This process's task from TF_CONFIG, or None when TF_CONFIG is not set.

    The chief is the `chief` task if the cluster has one, else worker 0 (Kubeflow's TFJob
    and Vertex AI set TF_CONFIG this way).
    """
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "")
    if not raw.strip():
        return None
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise TFConfigError(f"TF_CONFIG is not valid JSON ({error})") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise TFConfigError('TF_CONFIG needs "cluster" and "task", e.g. {"cluster": {"worker": '
                            '["host1:12345", "host2:12345"]}, "task": {"type": "worker", '
                            '"index": 0}}')
    unsupported = sorted(set(cluster) - {"chief", "worker"})
    if unsupported:
        raise TFConfigError(f"TF_CONFIG cluster has {unsupported} jobs; "
                            "MultiWorkerMirroredStrategy uses only 'chief' and 'worker'")
    kind, index = task.get("type"), task.get("index")
    if kind not in ("chief", "worker"):
        raise TFConfigError(f"TF_CONFIG task type must be 'worker' or 'chief', got {kind!r}")
    hosts = cluster.get(kind)
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) for h in hosts):
        raise TFConfigError(f"TF_CONFIG cluster['{kind}'] must be a non-empty list of "
                            "'host:port' strings")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(hosts):
        raise TFConfigError(f"TF_CONFIG task index {index!r} is not in 0..{len(hosts) - 1} "
                            f"for the {len(hosts)} '{kind}' task(s)")
    if len(cluster.get("chief", [])) > 1:
        raise TFConfigError("TF_CONFIG may have one 'chief' task at most")
    num_workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
    chief = kind == "chief" or ("chief" not in cluster and index == 0)
    return TaskInfo(kind, index, num_workers, chief)


def worker_dirs(workdir, export_dir, info=None):
    """(workdir, export_dir) for this process: the given ones on the chief; on any other
    worker a scratch directory of its own (outside the chief's workdir, so a chief's
    --overwrite never races with it), keyed by the run's workdir and the task."""
    info = info if info is not None else task_info()
    if info is None or info.is_chief:
        return pathlib.Path(workdir), export_dir
    key = hashlib.sha256(str(pathlib.Path(workdir).resolve()).encode()).hexdigest()[:10]
    scratch = pathlib.Path(tempfile.gettempdir()) / f"alexnet_tf-{key}-{info.type}{info.index}"
    return scratch / "run", str(scratch / "export")


def remove_scratch(workdir):
    """Deletes a non-chief worker's scratch directory (the parent of its run dir)."""
    shutil.rmtree(pathlib.Path(workdir).parent, ignore_errors=True)


def weights_digest(model):
    """sha256 of the model's weights: equal on every worker when the replicas stepped together."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()[:16]


def fit(model, strategy, train_ds, val_ds, *, epochs, steps_per_epoch, callbacks,
        verbose=2):
    """`model.fit(train_ds, validation_data=val_ds, epochs=..., callbacks=...)` for
    MultiWorkerMirroredStrategy. `train_ds` yields global batches (sharded here by
    `strategy.experimental_distribute_dataset`). Returns the `keras.callbacks.History`."""
    # Repeated: steps_per_epoch is counted from the files, and a streamed split that skipped
    # unreadable ones runs short (fit stops such an epoch early; here that is OutOfRange). Each
    # epoch's new iterator starts a new pass, so a full-length split is read as before.
    train_dist = strategy.experimental_distribute_dataset(train_ds.repeat())
    val_dist = strategy.experimental_distribute_dataset(val_ds) if val_ds is not None else None
    with strategy.scope():
        # What fit does first: create the compiled loss/metric and optimiser variables
        # outside any tf.function (here from the dataset's spec; no batch is read).
        model._symbolic_build(data_batch=train_ds.element_spec)
    train_function, test_function = _step_functions(model, strategy, val_dist)
    callbacks = keras.callbacks.CallbackList(
        callbacks, add_history=True, add_progbar=verbose != 0, model=model, verbose=verbose,
        epochs=epochs, steps=steps_per_epoch)
    model.stop_training = False
    callbacks.on_train_begin()  # BackupAndRestore restores here (on the chief: of record)
    initial_epoch = _adopt_chief_state(model, strategy, model._initial_epoch or 0)
    if initial_epoch:
        print(f"Resuming at epoch {initial_epoch + 1}/{epochs} from the chief's backup")
    epoch_logs = {}
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        callbacks.on_epoch_begin(epoch)
        epoch_logs = _train_epoch(model, train_function, iter(train_dist), steps_per_epoch,
                                  callbacks)
        if val_dist is not None:
            epoch_logs.update(_validate(model, test_function, val_dist, callbacks))
        with _SigtermAfterwards():  # the backup, best.keras and history.csv row all or none
            callbacks.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    if epochs > 0:
        model.optimizer.finalize_variable_values(model.trainable_weights)  # as fit does (EMA)
    callbacks.on_train_end(logs=epoch_logs)
    print(f"Final weights digest: {weights_digest(model)}")
    return model.history


def _step_functions(model, strategy, val_dist):
    """The distributed train and test steps, each returning the metrics' global values."""

    @tf.function
    def train_function(iterator):
        strategy.run(model.train_step, args=(next(iterator),))
        # Metric variables are summed on read across replicas and workers: global values,
        # the same on every worker (so TerminateOnNaN stops all of them at the same step).
        return model.get_metrics_result()

    def test_step(batch):
        # The last validation batch may leave a replica with no examples, and TF's CPU
        # Conv2D fails on an empty batch: skip the step there (it adds nothing to the metrics).
        def step():
            model.test_step(batch)
            return tf.constant(True)

        return tf.cond(tf.shape(batch[0])[0] > 0, step, lambda: tf.constant(False))

    @tf.function(input_signature=[val_dist.element_spec] if val_dist is not None else None)
    def test_function(batch):  # traced once for any batch size
        strategy.run(test_step, args=(batch,))
        return model.get_metrics_result()

    return train_function, test_function


def _train_epoch(model, train_function, iterator, steps, callbacks):
    """One pass (a new iterator: reshuffled, new augmentation draws); its logs."""
    logs = {}
    for step in range(steps):
        callbacks.on_train_batch_begin(step)
        logs = train_function(iterator)
        callbacks.on_train_batch_end(step, logs)
        if model.stop_training:
            break
    return _floats(logs)


def _validate(model, test_function, val_dist, callbacks):
    """The validation logs, named val_*."""
    model.reset_metrics()
    callbacks.on_test_begin()
    logs = {}
    for step, batch in enumerate(val_dist):
        callbacks.on_test_batch_begin(step)
        logs = test_function(batch)
        callbacks.on_test_batch_end(step, logs)
    logs = _floats(logs)
    callbacks.on_test_end(logs)
    return {f"val_{name}": value for name, value in logs.items()}


class _SigtermAfterwards:
    """Holds back SIGTERM (the launcher stopping the job when a worker died, Kubernetes
    deleting a pod) until the block is done, then exits with 128 + 15. Elsewhere SIGTERM
    ends the process at once, also while it waits in a collective for a dead peer."""

    def __enter__(self):
        self.received = None
        try:
            self.previous = signal.signal(signal.SIGTERM, self._hold)
        except ValueError:  # not the main thread: nothing to hold back
            self.previous = None
        return self

    def _hold(self, signum, frame):
        self.received = signum

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        if self.received:
            raise SystemExit(128 + self.received)
        return False


def _floats(logs):
    return {name: float(value) for name, value in logs.items()}


def _adopt_chief_state(model, strategy, initial_epoch):
    """Every worker takes the chief's weights, optimiser state and epoch (a collective).

    The chief restored its backup; another worker may have restored an older one, or none
    (a new machine). A sum over replicas with zeros on all but replica 0 (the chief's first
    device: MultiWorkerMirroredStrategy numbers the chief's replicas first) broadcasts it.
    """
    variables = list(model.weights) + list(model.optimizer.variables)
    tf_vars = [getattr(v, "value", v) for v in variables]

    @tf.function
    def broadcast(epoch):
        def replica_fn():
            ctx = tf.distribute.get_replica_context()
            first = ctx.replica_id_in_sync_group == 0  # the chief's first device
            values = [tf.identity(v) for v in tf_vars] + [epoch]
            mine = [tf.where(first, x, tf.zeros_like(x)) for x in values]
            summed = list(mine)
            # One all-reduce per dtype (it concatenates), in the same order on every worker.
            for dtype in sorted({x.dtype for x in mine}, key=lambda d: d.name):
                where = [i for i, x in enumerate(mine) if x.dtype == dtype]
                for i, x in zip(where, ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                                                      [mine[i] for i in where])):
                    summed[i] = x
            return summed

        return strategy.experimental_local_results(strategy.run(replica_fn))[0]

    *values, epoch = broadcast(tf.constant(int(initial_epoch), tf.int64))
    for variable, value in zip(tf_vars, values):
        variable.assign(value)
    return int(epoch)
