"""The layer table of an AlexNet variant, computed from the built Keras model.

    python -m alexnet_tf.summary paper [--image-size 227] [--num-classes 1000] [--json]

One row per layer, under the paper's names (conv1..conv5, lrn1, lrn2, pool1, pool2, pool5,
fc6..fc8): operation, kernel/stride/padding, groups (2 where the paper's two GPUs each see only
their own half of the maps, section 3.2), output shape, parameters and forward MFLOPs per image
(a multiply-add counts 2, as `model.count_flops`). The totals are `model.count_params()` and
`model.count_flops(model)`.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # a table, not TF's start-up log

import keras  # noqa: E402

from alexnet_tf.layers import LocalResponseNormalization  # noqa: E402
from alexnet_tf.model import VARIANTS, build_model, layer_flops  # noqa: E402

COLUMNS = ("layer", "operation", "kernel", "groups", "output", "parameters", "mflops")


def describe(layer):
    """(operation, kernel/stride/padding, groups) of one layer, in the paper's words."""
    if isinstance(layer, keras.layers.Conv2D):
        (kernel, _), (stride, _) = layer.kernel_size, layer.strides
        activation = layer.activation.__name__
        operation = "convolution" + (f" + {activation}" if activation != "linear" else "")
        return operation, f"{kernel}x{kernel}/{stride} {layer.padding}", layer.groups
    if isinstance(layer, keras.layers.Dense):
        activation = layer.activation.__name__
        return "fully connected" + (f" + {activation}" if activation != "linear" else ""), "", 1
    if isinstance(layer, keras.layers.MaxPooling2D):
        (size, _), (stride, _) = layer.pool_size, layer.strides
        overlap = " (overlapping)" if size > stride else ""
        return f"max-pool{overlap}", f"{size}x{size}/{stride} {layer.padding}", ""
    if isinstance(layer, LocalResponseNormalization):
        return "local response norm", f"n={2 * layer.depth_radius + 1}", ""
    if isinstance(layer, keras.layers.Dropout):
        return f"dropout {layer.rate:g}", "", ""
    if layer.name == "avgpool":  # an adaptive pool, as nearest upsampling where that is one
        return "adaptive avg-pool", "", ""
    names = {"InputLayer": "input", "Rescaling": "normalise RGB", "Normalization": "normalise RGB",
             "Flatten": "flatten", "ZeroPadding2D": "zero-pad"}
    return names.get(type(layer).__name__, type(layer).__name__), "", ""


def layer_table(model):
    """The model's layers in order, as dicts with the keys of COLUMNS (output: a shape list)."""
    rows = []
    for layer in model.layers:
        operation, kernel, groups = describe(layer)
        rows.append({"layer": layer.name, "operation": operation, "kernel": kernel,
                     "groups": groups, "output": list(layer.output.shape[1:]),
                     "parameters": layer.count_params(),
                     "mflops": layer_flops(layer) / 1e6})
    return rows


def totals(rows):
    return {"parameters": sum(r["parameters"] for r in rows),
            "mflops": sum(r["mflops"] for r in rows)}


def format_table(rows):
    """A fixed-width text table with a totals line."""
    def cells(row):
        return [row["layer"], row["operation"], row["kernel"], str(row["groups"]),
                "x".join(map(str, row["output"])), f"{row['parameters']:,}",
                f"{row['mflops']:,.1f}" if row["mflops"] else ""]

    header = ["layer", "operation", "kernel/stride pad", "groups", "output", "parameters",
              "MFLOPs"]
    total = totals(rows)
    body = [cells(r) for r in rows]
    footer = ["total", "", "", "", "", f"{total['parameters']:,}", f"{total['mflops']:,.1f}"]
    widths = [max(len(line[i]) for line in [header, *body, footer]) for i in range(len(header))]
    right = {3, 5, 6}  # numbers align right

    def line(values):
        return "  ".join(v.rjust(w) if i in right else v.ljust(w)
                         for i, (v, w) in enumerate(zip(values, widths))).rstrip()

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *map(line, body), rule, line(footer)])


def summary(variant, image_size=None, num_classes=1000):
    """The table of `variant` as a JSON-ready dict (raises ValueError on bad arguments)."""
    if num_classes < 1:
        raise ValueError(f"--num-classes must be at least 1, got {num_classes}")
    if image_size is not None and image_size < 1:
        raise ValueError(f"--image-size must be at least 1, got {image_size}")
    model = build_model(variant, num_classes=num_classes, image_size=image_size)
    rows = layer_table(model)
    return {"variant": variant, "image_size": int(model.input.shape[1]),
            "num_classes": num_classes, "layers": rows, "total": totals(rows)}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m alexnet_tf.summary", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variant", help=f"one of {', '.join(VARIANTS)}")
    parser.add_argument("--image-size", type=int, help="default: the variant's own size")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    args = parser.parse_args(argv)
    try:
        table = summary(args.variant, args.image_size, args.num_classes)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(table, indent=2))
    else:
        print(f"{table['variant']}: {table['image_size']}x{table['image_size']} RGB input, "
              f"{table['num_classes']} classes")
        print(format_table(table["layers"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
