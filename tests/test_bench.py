import json

from alexnet_tf.model import build_model, layer_flops
from helpers import run_module


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
