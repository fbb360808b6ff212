"""Measure training, inference and input-pipeline speed on this machine, in one process.

    python -m alexnet_tf.bench [--variant cifar] [--recipe R] [--image-size S] [--batch-size B]
        [--precision auto|float32|mixed_bfloat16|mixed_float16] [--jit] [--compare-float32] [--layers]
        [--compare-torch] [--json]

Every figure is measured after warm-up; the FLOP rate is set against a large matmul timed in
the same run (the machine's practical peak), so ratios stay meaningful on a noisy machine.
"""

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from alexnet_tf import config, data as data_lib, distribute, optim, sources, train
from alexnet_tf.export import export_model
from alexnet_tf.inference import Classifier
from alexnet_tf.model import VARIANTS, build_model, count_flops, default_image_size, layer_flops
from alexnet_tf.recipes import RECIPES


def matmul_peak(dtype, n=4096, repeats=10):
    """GFLOP/s of an n x n matmul chain, the practical peak of the machine for `dtype`."""
    a = tf.random.normal([n, n], dtype=tf.float32)
    a = tf.cast(a, dtype)
    step = tf.function(lambda x: tf.reduce_sum(tf.cast(tf.matmul(x, x), tf.float32)))
    step(a).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        step(a).numpy()
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


WARMUP_STEPS = 5  # tracing, oneDNN's kernels for each shape, the pipeline's buffers filling


class StepClock(keras.callbacks.Callback):
    """The time at the end of each training batch, so the steps are timed without what a `fit`
    call costs around them: building the input iterator, and tearing it down with its buffers
    at the end, which takes as long as many steps (docs/speed.md, "The step clock")."""

    def __init__(self):
        super().__init__()
        self.ends = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())


def _optimizer():
    """The step's optimizer, as bench_torch's: Nesterov SGD through the trainer's kernel."""
    return optim.SGD(0.01, momentum=0.9, nesterov=True)


def training_speed(variant, image_size, batch_size, precision, jit, steps, dataset,
                   label_smoothing=0.0):
    """Images/s of model.fit's steps on the real augmented pipeline (data included), after
    WARMUP_STEPS in the same call."""
    keras.mixed_precision.set_global_policy(precision)
    model = build_model(variant, num_classes=10, image_size=image_size)
    model.compile(optimizer=_optimizer(),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True,
                                                            label_smoothing=label_smoothing),
                  jit_compile=jit)
    clock = StepClock()
    model.fit(dataset, steps_per_epoch=WARMUP_STEPS + steps, epochs=1, verbose=0,
              callbacks=[clock])
    images_per_second = steps * batch_size / (clock.ends[-1] - clock.ends[WARMUP_STEPS - 1])
    return model, images_per_second


def layer_times(variant, image_size, batch_size, precision, repeats=10):
    """Milliseconds per batch of each layer's forward + backward pass, timed alone, and the
    GFLOP/s that implies for convolutions and dense layers.

    Answers "where does a training step go" without a profiler UI: every layer gets a random
    input of its real shape and dtype, and a tf.function computes its output and the gradients
    of its weights and of its input (except up to the first layer with weights: nothing before
    it has a gradient to receive).
    """
    keras.mixed_precision.set_global_policy(precision)
    model = build_model(variant, num_classes=10, image_size=image_size)
    times, gflops = {}, {}
    after_weights = False  # layers before the first weights need no input gradient
    for index, layer in enumerate(model.layers[1:]):
        shape = (batch_size, *layer.input.shape[1:])
        x = tf.cast(tf.random.uniform(shape, 0, 255 if index == 0 else 1), layer.input.dtype)
        times[layer.name] = _milliseconds(_layer_step(layer, after_weights), x, repeats)
        flops = layer_flops(layer)
        if flops:  # forward, weight grad, and input grad past the first weighted layer
            passes = 3 if after_weights else 2
            gflops[layer.name] = passes * flops * batch_size / times[layer.name] / 1e6
        after_weights = after_weights or bool(layer.trainable_weights)
    times["(optimizer update)"] = _optimizer_update_ms(model, repeats)
    return times, gflops


def _layer_step(layer, wants_input_grad):
    """A tf.function of one layer's forward pass and its gradients."""
    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.cast(layer(x, training=True), tf.float32))
        weights = [w.value for w in layer.trainable_weights]
        grads = tape.gradient(loss, weights + ([x] if wants_input_grad else []))
        return loss, [tf.reduce_sum(tf.cast(g, tf.float32)) for g in grads if g is not None]
    return step


def _milliseconds(function, x, repeats):
    """Milliseconds per call of `function(x)` after a first, tracing call."""
    function(x)
    start = time.perf_counter()
    for _ in range(repeats):
        tf.nest.map_structure(lambda t: t.numpy(), function(x))
    return 1000 * (time.perf_counter() - start) / repeats


def _optimizer_update_ms(model, repeats):
    """The update itself: float32 master weights, whatever the compute precision."""
    optimizer = _optimizer()
    grads = [tf.zeros_like(w.value) for w in model.trainable_weights]
    update = tf.function(lambda: optimizer.apply(grads, model.trainable_weights))
    update()
    start = time.perf_counter()
    for _ in range(repeats):
        update()
    model.trainable_weights[0].numpy()
    return 1000 * (time.perf_counter() - start) / repeats


def torch_speed(variant, image_size, batch_size, steps, label_smoothing):
    """{setting: images/s} of the same network and step in PyTorch (bench_torch.py, run in its
    own process), or {"torch": why not} when PyTorch is not installed."""
    script = pathlib.Path(__file__).with_name("bench_torch.py")
    result = subprocess.run(
        [sys.executable, str(script), "--variant", variant, "--image-size", str(image_size),
         "--batch-size", str(batch_size), "--steps", str(steps),
         "--label-smoothing", str(label_smoothing)],
        capture_output=True, text=True)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["failed"]
        return {"torch": lines[-1].removeprefix("error: ")}
    return json.loads(result.stdout.strip().splitlines()[-1])


def pipeline_speed(dataset, batch_size, batches):
    iterator = iter(dataset)
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def main(argv=None):
    args = _parser().parse_args(argv)
    image_size = args.image_size or default_image_size(args.variant)
    precision, why = distribute.choose_precision(args.precision)
    # The augmentation a training with this variant and recipe runs.
    cfg, train_ds = training_pipeline(args.variant, args.recipe, image_size, args.batch_size)
    geometry = data_lib.geometry_for(image_size, cfg.crop)
    results = {
        **_machine(), "variant": args.variant, "recipe": cfg.recipe,
        **{k: getattr(cfg, k) for k in ("lighting", "cutout", "mixup")},
        "image_size": image_size, "batch_size": args.batch_size,
        "precision": precision, "precision_reason": why, "jit": args.jit,
    }
    print("Timing matmul peaks ...", file=sys.stderr)
    results["peak_gflops_float32"] = matmul_peak(tf.float32, args.matmul_size)
    results["peak_gflops_bfloat16"] = matmul_peak(tf.bfloat16, args.matmul_size)
    print("Timing the input pipeline ...", file=sys.stderr)
    results["pipeline_images_per_second"] = pipeline_speed(train_ds, args.batch_size, 50)
    model = _time_training(args, cfg, image_size, precision, train_ds, results)
    if args.compare_torch:
        results.update(_compare_torch(args.variant, image_size, args.batch_size, args.steps,
                                      cfg.label_smoothing, results["train_images_per_second"]))
    if args.layers:
        results.update(_time_layers(args, image_size, precision))
    results.update(_time_inference(model, image_size, geometry.crop_fraction))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print_table(results, precision)
    return 0


def training_pipeline(variant, recipe, image_size, batch_size):
    """(the resolved config, endless batches of synthetic images) with the augmentation a
    training of `variant` and `recipe` (None: the variant's) runs."""
    cfg = config.resolve(config.Config(variant=variant, recipe=recipe, image_size=image_size))
    synthetic = sources.load("synthetic", image_size=image_size, limit=2048, crop=cfg.crop)
    dataset = data_lib.train_pipeline(
        synthetic.train, train.train_preset(cfg, image_size, synthetic), batch_size=batch_size,
        num_classes=10, seed=0).repeat()
    return cfg, dataset


def _parser():
    parser = argparse.ArgumentParser(prog="python -m alexnet_tf.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="cifar", choices=VARIANTS)
    parser.add_argument("--recipe", choices=RECIPES,
                        help="whose augmentation the pipeline runs (default: the variant's)")
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--precision", default="auto", choices=config.PRECISIONS)
    parser.add_argument("--jit", action="store_true", help="XLA-compile the training step")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--compare-float32", action="store_true",
                        help="also time float32 training, for the mixed-precision speed-up")
    parser.add_argument("--matmul-size", type=int, default=4096, help="n of the peak matmul")
    parser.add_argument("--layers", action="store_true",
                        help="also time each layer's forward + backward pass (and in float32 "
                             "with --compare-float32): where a training step goes")
    parser.add_argument("--compare-torch", action="store_true",
                        help="also time the same network and step in PyTorch when it is installed "
                             "(cifar and seed): float32, bf16 autocast, + channels_last, "
                             "+ torch.compile; prints TensorFlow's images/s over each")
    parser.add_argument("--json", action="store_true")
    return parser


def _machine():
    return {
        "tensorflow": tf.__version__, "keras": keras.__version__,
        "cpu": _cpu_name(), "cores": os.cpu_count(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
    }


def _time_training(args, cfg, image_size, precision, train_ds, results):
    """Adds the training figures to `results` (float32's too with --compare-float32); returns
    the model trained in `precision`."""
    print(f"Timing training ({precision}) ...", file=sys.stderr)
    model, train_ips = training_speed(args.variant, image_size, args.batch_size, precision,
                                      args.jit, args.steps, train_ds, cfg.label_smoothing)
    flops = count_flops(model)
    peak = results["peak_gflops_bfloat16" if "bfloat16" in precision else "peak_gflops_float32"]
    results.update(
        forward_gflops_per_image=flops / 1e9,
        train_images_per_second=train_ips,
        train_gflops=3 * flops * train_ips / 1e9,  # forward + backward ~ 3x forward
    )
    results["train_percent_of_peak"] = 100 * results["train_gflops"] / peak
    results["pipeline_over_training"] = results["pipeline_images_per_second"] / train_ips
    if args.compare_float32 and precision != "float32":
        print("Timing training (float32) ...", file=sys.stderr)
        _, f32_ips = training_speed(args.variant, image_size, args.batch_size, "float32",
                                    args.jit, args.steps, train_ds, cfg.label_smoothing)
        results["train_images_per_second_float32"] = f32_ips
        results["mixed_over_float32"] = train_ips / f32_ips
        keras.mixed_precision.set_global_policy(precision)
    return model


def _time_layers(args, image_size, precision):
    print("Timing each layer ...", file=sys.stderr)
    precisions = [precision] + (["float32"] if args.compare_float32 and
                                precision != "float32" else [])
    ms, gflops = {}, {}
    for p in precisions:
        ms[p], gflops[p] = layer_times(args.variant, image_size, args.batch_size, p)
    keras.mixed_precision.set_global_policy(precision)
    return {"layer_ms_per_batch": _by_layer(ms), "layer_gflops": _by_layer(gflops)}


def _time_inference(model, image_size, crop_fraction):
    """Keras' predict throughput, and the latency of one image through the exported model."""
    print("Timing inference ...", file=sys.stderr)
    batch = np.random.default_rng(0).integers(0, 256, (512, image_size, image_size, 3), np.uint8)
    model.predict(batch[:64], verbose=0)
    start = time.perf_counter()
    model.predict(batch, batch_size=256, verbose=0)
    results = {"inference_images_per_second": len(batch) / (time.perf_counter() - start)}
    with tempfile.TemporaryDirectory() as tmp:
        classifier = Classifier(export_model(model, tmp, class_names=[str(i) for i in range(10)],
                                             crop_fraction=crop_fraction))
        latencies = []
        for i in range(220):
            start = time.perf_counter()
            classifier.classify(batch[i % len(batch)])
            latencies.append(1000 * (time.perf_counter() - start))
        latencies = np.array(latencies[20:])  # the first calls trace and warm up
    results["savedmodel_latency_ms_p50"] = float(np.percentile(latencies, 50))
    results["savedmodel_latency_ms_p99"] = float(np.percentile(latencies, 99))
    return results


def _print_table(results, precision):
    for key, value in results.items():
        if key == "layer_ms_per_batch":
            _print_layers(value, results["layer_gflops"], precision)
        elif key != "layer_gflops":
            digits = 2 if "_over_" in key else 1  # speed-up ratios need the second digit
            print(f"{key:36s} {value:.{digits}f}" if isinstance(value, float)
                  else f"{key:36s} {value}")


def _print_layers(ms_per_batch, gflops, precision):
    print(f"layer ms per batch (forward + backward), GFLOP/s: "
          f"{' / '.join(next(iter(ms_per_batch.values())))}")
    for name, per in ms_per_batch.items():
        ratio = (f"  ({per['float32'] / per[precision]:.2f}x)"
                 if "float32" in per and len(per) > 1 else "")
        rate = gflops.get(name)
        rate = f"  {' / '.join(f'{v:.0f}' for v in rate.values())} GFLOP/s" if rate else ""
        print(f"  {name:34s} {' / '.join(f'{v:.2f}' for v in per.values())}{ratio}{rate}")


def _compare_torch(variant, image_size, batch_size, steps, label_smoothing, train_ips):
    """PyTorch's images/s per setting and TensorFlow's training images/s over each."""
    if variant not in ("cifar", "seed"):
        return {"torch": f"no PyTorch replica of '{variant}' (cifar and seed have one)"}
    print("Timing PyTorch training ...", file=sys.stderr)
    speeds = torch_speed(variant, image_size, batch_size, steps, label_smoothing)
    results = {f"torch_{key}" if key != "torch" else key: value for key, value in speeds.items()}
    rates = {k: v for k, v in speeds.items() if isinstance(v, float)}
    for setting, rate in rates.items():
        results[f"tf_over_torch_{setting}"] = train_ips / rate
    if rates:
        best = max(rates, key=rates.get)
        results["torch_best_setting"] = best
        results["tf_over_torch_best"] = train_ips / rates[best]
    return results


def _by_layer(per_precision):
    """{precision: {layer: x}} -> {layer: {precision: x}}, layers in model order."""
    first = next(iter(per_precision.values()))
    return {name: {p: values[name] for p, values in per_precision.items()} for name in first}


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
