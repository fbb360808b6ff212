"""Where a training step's time goes: TensorFlow's profiler on `model.fit`, summed by op.

    python bench/profile_step.py [--variant seed] [--precision mixed_bfloat16] [--batch-size 128]
                                 [--steps 10] [--top 25]

Trains the bench's step (`alexnet_tf.bench.training_speed`: the recipe's augmentation on
synthetic images, SGD with Nesterov momentum) for a few warm-up steps, then profiles `--steps`
more and prints the ops' time per step, largest first, summed by op type and by layer
(forward and backward apart). Op time adds up past the wall time when ops run in parallel.
"""

import argparse
import collections
import pathlib
import re
import sys
import tempfile

import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alexnet_tf import bench, distribute  # noqa: E402
from alexnet_tf.model import default_image_size  # noqa: E402

OP = re.compile(r"^(?P<name>[^:]+):(?P<type>[A-Za-z0-9_]+)$")  # TF ops: "fc6/MatMul:MatMul"


def main(argv=None):
    args = parse_args(argv)
    precision, _ = distribute.choose_precision(args.precision)
    size = default_image_size(args.variant)
    cfg, dataset = bench.training_pipeline(args.variant, None, size, args.batch_size)
    model, warm = bench.training_speed(args.variant, size, args.batch_size, precision, False, 5,
                                       dataset, cfg.label_smoothing)
    clock = bench.StepClock()  # the steps alone, as bench times them
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        model.fit(dataset, steps_per_epoch=args.steps + 1, epochs=1, verbose=0,
                  callbacks=[clock])  # the first step's end starts the clock
        tf.profiler.experimental.stop()
        wall = (clock.ends[-1] - clock.ends[0]) / args.steps
        by_type, by_layer = op_times(next(pathlib.Path(logdir).rglob("*.xplane.pb")))
    print(f"{args.variant}, {precision}, batch {args.batch_size}: {1000 * wall:.0f} ms per step "
          f"profiled ({args.batch_size / wall:.0f} images/s; {warm:.0f} unprofiled)")
    total, profiled = sum(by_type.values()), args.steps + 1
    for title, table in (("op type", by_type), ("layer", by_layer)):
        print(f"\n{'ms/step':>8} {'share':>6}  by {title} (all ops: {total / profiled:.0f} ms)")
        for key, ps in sorted(table.items(), key=lambda kv: -kv[1])[:args.top]:
            print(f"{ps / profiled:8.1f} {ps / total:6.1%}  {key}")
    return 0


def op_times(path):
    """({op type: ms}, {layer: ms}) summed over the host's TensorFlow op events."""
    space = xplane_pb2.XSpace.FromString(pathlib.Path(path).read_bytes())
    by_type, by_layer = collections.Counter(), collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                match = OP.match(plane.event_metadata[event.metadata_id].name)
                if match:
                    ms = event.duration_ps / 1e9
                    by_type[match["type"]] += ms
                    by_layer[layer_of(match["name"])] += ms
    return by_type, by_layer


def layer_of(op_name):
    """"StatefulPartitionedCall/gradient_tape/alexnet_seed_1/fc6_1/MatMul/MatMul" ->
    "fc6 backward"; the optimizer's ops are its name's ("adam"), the input pipeline's their own."""
    parts = [p for p in op_name.split("/") if p != "StatefulPartitionedCall"]
    backward = parts[0] == "gradient_tape"
    parts = parts[1:] if backward else parts
    layer = parts[1] if parts[0].startswith("alexnet_") and len(parts) > 1 else parts[0]
    return re.sub(r"_\d+$", "", layer) + (" backward" if backward else "")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="seed")
    parser.add_argument("--precision", default="mixed_bfloat16")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--top", type=int, default=25)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
