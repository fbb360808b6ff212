import json

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
