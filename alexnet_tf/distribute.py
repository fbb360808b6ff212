"""Choosing the tf.distribute strategy and the mixed-precision policy for this machine."""

import os
import pathlib

import tensorflow as tf


def cpu_has_avx512_bf16():
    try:
        return "avx512_bf16" in pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def choose_precision(requested="auto"):
    """Returns (policy name, why)."""
    if requested != "auto":
        return requested, "requested with --precision"
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16", "auto: a GPU is present (float16 tensor cores)"
    if cpu_has_avx512_bf16():
        return "mixed_bfloat16", "auto: this CPU has AVX-512 BF16 (about 2x float32 here)"
    return "float32", "auto: no GPU and no AVX-512 BF16 on this CPU"


def split_cpu(replicas):
    """Splits the CPU into `replicas` logical devices; must run before TF initialises."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)


def choose_strategy(cpu_replicas=0):
    """Returns (strategy, description), following TF's guide to distributed training.

    TF_CONFIG set: MultiWorkerMirroredStrategy. Two or more GPUs: MirroredStrategy over all.
    One GPU: that GPU. CPU only: the default strategy, or MirroredStrategy over
    `cpu_replicas` logical CPU devices (exercises the multi-GPU code path on a CPU), or
    with `cpu_replicas=1` a OneDeviceStrategy on the CPU (the one-replica baseline).
    """
    if os.environ.get("TF_CONFIG"):
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        return strategy, f"MultiWorkerMirroredStrategy ({strategy.num_replicas_in_sync} replicas)"
    if cpu_replicas > 1:
        split_cpu(cpu_replicas)
        devices = [f"/cpu:{i}" for i in range(cpu_replicas)]
        return tf.distribute.MirroredStrategy(devices), f"MirroredStrategy over {devices}"
    if cpu_replicas == 1:
        # One device, but under a strategy: Keras' fit then reads its data exactly as under
        # MirroredStrategy (it opens the dataset once more to build the model), so the two
        # can be compared batch for batch.
        return tf.distribute.OneDeviceStrategy("/cpu:0"), "OneDeviceStrategy on /cpu:0"
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) >= 2:
        strategy = tf.distribute.MirroredStrategy()
        return strategy, f"MirroredStrategy over {len(gpus)} GPUs"
    if len(gpus) == 1:
        return tf.distribute.OneDeviceStrategy("/gpu:0"), "one GPU (/gpu:0)"
    return tf.distribute.get_strategy(), "default strategy on the CPU"
