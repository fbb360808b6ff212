"""The checks a training makes before it does any work, each refusing in one line (RunError).

They run before `rundir.start`, the first step that may delete anything (--overwrite), so a
refused command never costs the run it would replace.
"""

import pathlib

from alexnet_tf.model import check_image_size
from alexnet_tf.rundir import RunError


def check_command(cfg, task, export_dir):
    """What the flags alone decide: found now, not after the training."""
    if task is not None and cfg.time_budget:
        # Each worker would stop on its own clock (a resumed chief counts earlier sessions, the
        # others do not): one stopping alone leaves the rest waiting in an all-reduce forever.
        raise RunError("--time-budget is not supported with several workers (TF_CONFIG): "
                       "each would stop on its own clock; use --epochs")
    if pathlib.Path(export_dir).is_file():
        raise RunError(f"--export-dir {export_dir} is a file, not a folder")


def check_replicas(cfg, replicas):
    """The global batch splits evenly over the replicas, and XLA runs on one of them."""
    if cfg.batch_size < replicas:
        raise RunError(f"--batch-size {cfg.batch_size} is smaller than the {replicas} replicas")
    if cfg.batch_size % replicas:
        raise RunError(f"--batch-size {cfg.batch_size} (global) is not a multiple of the "
                       f"{replicas} replicas")
    if cfg.jit_compile and replicas > 1:
        # XLA compiles one step that reads every replica's variables, which TF refuses across
        # devices (XLA's known issue tfvariable_on_a_different_device).
        raise RunError(f"--jit-compile does not work across the {replicas} replicas: drop it")


def check_geometry(variant, image_size):
    """The variant's layers leave something to see at this input size."""
    try:
        check_image_size(variant, image_size)
    except ValueError as error:
        raise RunError(str(error)) from None


def check_data(cfg, data, replicas, multi_worker):
    """The loaded data can feed this training."""
    if cfg.lighting and cfg.pca == "data" and data.train.images is None:
        raise RunError("--pca data needs the training images in memory, and they are streamed "
                       + ("(drop --no-cache)" if not cfg.cache else
                          "(the split is over the in-memory cache limit): use --pca imagenet"))
    if data.train.size < cfg.batch_size:
        raise RunError(f"{data.train.size} training images make no batch of {cfg.batch_size}")
    if not multi_worker and replicas > 1 and data.val.size < cfg.batch_size:
        # Validation runs on whole batches under several replicas (see train.validation_data).
        raise RunError(f"{data.val.size} validation images make no whole batch of "
                       f"{cfg.batch_size} for the {replicas} replicas: lower --batch-size or "
                       "raise --val-fraction")
