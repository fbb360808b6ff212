import json
import os
import subprocess
import sys

import numpy as np
import pytest

from alexnet_tf.model import build_model, layer_flops
from helpers import REPO, run_module

pytestmark = pytest.mark.slow  # each runs the benchmark or PyTorch in a process of its own


def test_bench_reports_every_figure():
    """A smoke run: the figures exist and are positive (speed targets are checked by hand)."""
    result = run_module("alexnet_tf.bench", "--image-size", "16", "--batch-size", "16",
                        "--steps", "2", "--matmul-size", "256", "--precision", "float32",
                        "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout)
    for key in ("peak_gflops_float32", "peak_gflops_bfloat16", "pipeline_images_per_second",
                "train_images_per_second", "train_gflops", "train_percent_of_peak",
                "inference_images_per_second", "savedmodel_latency_ms_p50",
                "savedmodel_latency_ms_p99"):
        assert figures[key] > 0, key
    assert figures["precision"] == "float32" and figures["tensorflow"].startswith("2.")
    # The pipeline runs the variant's recipe augmentation: fast's Cutout 8, no lighting.
    assert (figures["recipe"], figures["cutout"], figures["lighting"]) == ("fast", 8, 0.0)


def test_layer_times_cover_every_layer_in_both_precisions():
    result = run_module("alexnet_tf.bench", "--image-size", "16", "--batch-size", "8",
                        "--steps", "2", "--matmul-size", "256", "--precision", "mixed_bfloat16",
                        "--compare-float32", "--layers", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    layers = json.loads(result.stdout)["layer_ms_per_batch"]
    assert {"conv1", "lrn1", "pool5", "fc6", "fc8", "(optimizer update)"} <= set(layers)
    for name, per_precision in layers.items():
        assert set(per_precision) == {"mixed_bfloat16", "float32"}, name
        assert all(ms > 0 for ms in per_precision.values()), name
    # GFLOP/s = passes x forward FLOPs x batch / time: conv1 has no input gradient (2 passes),
    # every later conv and dense layer has one (3 passes).
    rates = json.loads(result.stdout)["layer_gflops"]
    model = build_model("cifar", num_classes=10, image_size=16)
    assert set(rates) == {"conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"}
    for name, per_precision in rates.items():
        for precision, rate in per_precision.items():
            passes = rate * layers[name][precision] * 1e6 / (layer_flops(model.get_layer(name)) * 8)
            assert abs(passes - (2 if name == "conv1" else 3)) < 1e-6, (name, precision, passes)


def _torch():
    return pytest.importorskip("torch")


def test_compare_torch_without_pytorch_says_so_and_still_reports(tmp_path):
    """PyTorch is never a requirement: where it is missing, --compare-torch names that and
    the TensorFlow figures are all there."""
    (tmp_path / "torch.py").write_text("raise ImportError('no torch here')\n")  # hides any torch
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "alexnet_tf.bench", "--image-size", "16", "--batch-size", "8",
         "--steps", "1", "--matmul-size", "256", "--precision", "float32", "--compare-torch",
         "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout)
    assert figures["torch"] == "PyTorch is not installed in this environment"
    assert figures["train_images_per_second"] > 0
    assert not [key for key in figures if key.startswith("tf_over_torch")]


def test_torch_replica_is_the_cifar_network():
    """Same parameter count as the Keras `cifar` model, and PyTorch's LRN with alpha * n is
    TensorFlow's (PyTorch divides alpha by n)."""
    torch = _torch()
    import tensorflow as tf
    from alexnet_tf.bench_torch import cifar_net
    net = cifar_net(torch, 10)
    assert sum(p.numel() for p in net.parameters()) == build_model(
        "cifar", num_classes=10).count_params()
    lrn = next(m for m in net if isinstance(m, torch.nn.LocalResponseNorm))
    a = np.random.default_rng(0).uniform(0, 60, (2, 9, 3, 3)).astype("float32")  # NCHW
    want = tf.nn.local_response_normalization(a.transpose(0, 2, 3, 1), 2, 2.0, 1e-4, 0.75)
    np.testing.assert_allclose(lrn(torch.from_numpy(a)).numpy().transpose(0, 2, 3, 1), want,
                               rtol=1e-5)
    out = net(torch.rand(2, 3, 32, 32) * 255)
    assert tuple(out.shape) == (2, 10)


def test_bench_torch_times_every_setting():
    _torch()
    result = subprocess.run(
        [sys.executable, str(REPO / "alexnet_tf" / "bench_torch.py"), "--image-size", "32",
         "--batch-size", "4", "--steps", "1", "--no-compile"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    speeds = json.loads(result.stdout)
    assert {"float32", "bf16_autocast", "bf16_channels_last"} <= set(speeds)
    assert all(speeds[k] > 0 for k in ("float32", "bf16_autocast", "bf16_channels_last"))


def test_compare_seed_averages_each_epoch_over_the_seeds(capsys):
    sys.path.insert(0, str(REPO / "bench"))
    import compare_seed

    args = compare_seed.parse_args(["--seeds", "0", "1", "--epochs", "2",
                                    "--precisions", "float32"])
    top1 = {("pytorch", 0): [10, 20], ("pytorch", 1): [12, 24],
            ("keras", 0): [11, 21], ("keras", 1): [15, 25]}
    results = {(side, "float32", seed): [{"top1": t, "seconds": 1.0} for t in values]
               for (side, seed), values in top1.items()}
    compare_seed.report_seeds(results, args)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2].split() == ["1", "11.00", "±", "1.41", "13.00", "±", "2.83", "+2.00"]
    assert lines[-1].split() == ["2", "22.00", "±", "2.83", "23.00", "±", "2.83", "+1.00"]
