"""The paper's Figure 1: a four-layer convolutional network with ReLUs against tanh on CIFAR-10.

    python -m alexnet_tf.figure1 --data ../shared/data/cifar10/train [--epochs 20]
        [--out docs/figure1.png] [--json docs/figure1.json]
    python -m alexnet_tf.figure1 --replot --json docs/figure1.json --out docs/figure1.png

Section 3.1: "A four-layer convolutional neural network with ReLUs (solid line) reaches a 25%
training error rate on CIFAR-10 six times faster than an equivalent network with tanh neurons
(dashed line). The learning rates for each network were chosen independently to make training
as fast as possible. No regularization of any kind was employed."

The paper gives nothing else. What this reproduction chooses where it is silent:
- Network: cuda-convnet's CIFAR-10 layout (layers-18pct without its response normalisation),
  the authors' own code of the time: conv 32 5x5 -> max-pool 3x3/2 -> conv 32 5x5 -> max-pool
  3x3/2 -> conv 64 5x5 -> max-pool 3x3/2 -> dense 10 (softmax): four layers with weights. The
  activation (ReLU or tanh) follows each convolution; everything else is identical, including
  the initial weights (the same seed; Glorot-uniform, which suits tanh, or with `--init paper`
  N(0, 0.01) as section 5).
- Inputs: the 32x32 images as stored, per-channel standardised; no augmentation, no dropout, no
  weight decay ("no regularization of any kind").
- Optimiser: SGD with momentum 0.9 (section 5's), batch 128 (section 5's).
- Learning rate: "as fast as possible" is read as a sweep: for each activation, each rate of
  `--lrs` trains one epoch on the first `--sweep-images` training images from the same start,
  and the rate with the lowest training error wins; `--lr-relu`/`--lr-tanh` skip the sweep.
- Training error: the error rate over each epoch's batches as they are trained (what
  cuda-convnet printed), not a second pass over the data.
The speed-up is epochs to 25% training error, tanh / ReLU; when tanh does not get there within
`--epochs`, the record says so and gives a lower bound.
"""

import argparse
import json
import os
import pathlib
import sys
import time

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from alexnet_tf import optim, sources  # noqa: E402
from alexnet_tf.data import DataError  # noqa: E402

TARGET_ERROR = 0.25  # the paper's dashed horizontal line
ACTIVATIONS = ("relu", "tanh")
DEFAULT_LRS = (0.003, 0.01, 0.03, 0.1)
BATCH_SIZE = 128
MOMENTUM = 0.9
PAPER = ("A four-layer convolutional neural network with ReLUs reaches a 25% training error "
         "rate on CIFAR-10 six times faster than an equivalent network with tanh neurons "
         "(Krizhevsky et al. 2012, section 3.1, Figure 1)")


def build_net(activation, mean, std, seed=0, init="glorot"):
    """The four-layer network (see the module docstring); the same `seed` gives the same initial
    weights whatever the activation. init: "glorot" (Keras' default) or "paper" (kernels
    N(0, 0.01), biases 0: section 5's, without its unit biases, which would push tanh units
    towards saturation from the start)."""
    keras.utils.set_random_seed(seed)
    kernels = keras.initializers.RandomNormal(0.0, 0.01) if init == "paper" else "glorot_uniform"
    inputs = keras.Input((32, 32, 3), name="images")
    x = keras.layers.Normalization(mean=mean, variance=np.square(std), name="normalize")(inputs)
    for index, filters in enumerate((32, 32, 64), start=1):
        x = keras.layers.Conv2D(filters, 5, padding="same", activation=activation,
                                kernel_initializer=kernels, name=f"conv{index}")(x)
        x = keras.layers.MaxPooling2D(3, 2, padding="same", name=f"pool{index}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    logits = keras.layers.Dense(10, kernel_initializer=kernels, name="fc4")(x)
    return keras.Model(inputs, logits, name=f"figure1_{activation}")


def train(images, labels, activation, lr, epochs, seed=0, on_epoch=None, init="glorot"):
    """Trains one network; returns its training error rate after each epoch."""
    mean, std = images.mean(axis=(0, 1, 2)), images.std(axis=(0, 1, 2))
    model = build_net(activation, mean, std, seed, init)
    model.compile(optimizer=optim.SGD(lr, momentum=MOMENTUM),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    dataset = (tf.data.Dataset.from_tensor_slices((images, labels))
               .shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
               .batch(BATCH_SIZE).prefetch(tf.data.AUTOTUNE))
    errors = []
    for epoch in range(epochs):
        history = model.fit(dataset, epochs=epoch + 1, initial_epoch=epoch, verbose=0)
        errors.append(1.0 - float(history.history["accuracy"][-1]))
        if on_epoch:
            on_epoch(epoch + 1, errors[-1])
    return errors


def sweep_learning_rate(images, labels, activation, lrs, seed=0, init="glorot"):
    """The rate of `lrs` with the lowest training error after one epoch on `images`, and all
    the errors: the paper's "chosen independently to make training as fast as possible"."""
    errors = {lr: train(images, labels, activation, lr, 1, seed, init=init)[0] for lr in lrs}
    for lr, error in errors.items():
        print(f"  sweep {activation} lr={lr}: training error {error:.3f} after 1 epoch")
    finite = {lr: e for lr, e in errors.items() if np.isfinite(e)}
    return min(finite, key=finite.get), errors


def epochs_to(errors, target=TARGET_ERROR):
    """The first epoch (1-based) whose training error is at or under `target`, else None."""
    return next((epoch for epoch, error in enumerate(errors, 1) if error <= target), None)


def speedup(record):
    """Epochs to 25% error, tanh / ReLU, and whether it is only a lower bound."""
    relu, tanh = (record["runs"][a]["epochs_to_25"] for a in ACTIVATIONS)
    if relu is None:
        return None, False
    if tanh is None:  # tanh has not got there: it needs more than all the epochs run
        return len(record["runs"]["tanh"]["train_error"]) / relu, True
    return tanh / relu, False


def speedups_at(record, thresholds=(0.5, 0.4, 0.35, 0.3, TARGET_ERROR)):
    """{threshold: [epochs ReLU, epochs tanh, tanh / ReLU]} for each training error reached by
    ReLU: the speed-up along the curves, not at the 25% line alone (None where not reached)."""
    table = {}
    for threshold in thresholds:
        relu, tanh = (epochs_to(record["runs"][a]["train_error"], threshold) for a in ACTIVATIONS)
        table[f"{threshold:g}"] = [relu, tanh, round(tanh / relu, 2) if relu and tanh else None]
    return table


def _speedup_text(record):
    """Epochs to each training error for both networks, and the ratio (the paper: 6x at 25%)."""
    tanh_epochs = len(record["runs"]["tanh"]["train_error"])
    lines = ["error  ReLU  tanh  tanh/ReLU"]
    for threshold, (relu, tanh, ratio) in speedups_at(record).items():
        if relu:
            shown = f"{ratio:.1f}x" if ratio else f">{tanh_epochs / relu:.1f}x"
            lines.append(f"{float(threshold):>5.0%}  {relu:>4}  {tanh or f'>{tanh_epochs}':>4}  "
                         f"{shown:>9}")
    return "\n".join(lines + ["(paper: 6x at 25%)"])


def plot(record, path):
    """Training error rate against epochs with the 25% line, as the paper's Figure 1."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for activation, style in zip(ACTIVATIONS, ("-", "--")):
        run = record["runs"].get(activation)
        if run:
            errors = run["train_error"]
            ax.plot(range(1, len(errors) + 1), errors, style, color="black",
                    label=f"{'ReLU' if activation == 'relu' else 'tanh'} (lr {run['lr']})")
    ax.axhline(TARGET_ERROR, color="grey", linewidth=0.8, linestyle=":", label="25% error")
    ax.set(xlabel="Epochs", ylabel="Training error rate", ylim=(0, 0.8),
           title=f"Figure 1 reproduced: {record['settings']['train_images']:,} training images")
    if len(record["runs"]) == 2:
        ax.text(0.98, 0.55, _speedup_text(record), transform=ax.transAxes, ha="right",
                va="bottom", fontsize=8, family="monospace")
    ax.legend()
    fig.tight_layout()
    write_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def write_atomically(path, write):
    """`write(temporary path)`, then a rename: a killed run never leaves a half-written file."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def save(record, out, json_path):
    write_atomically(json_path, lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))
    plot(record, out)


def run(args):
    data = sources.load(args.data, image_size=32, splits=("train",), limit=args.limit)
    split = data.train
    if split.images is None or split.images.shape[1:] != (32, 32, 3):
        raise DataError(f"{args.data} is not 32x32 images held in memory (CIFAR-10 expected)")
    images = split.images.astype(np.float32)
    labels = np.concatenate(list(split.dataset.map(lambda x, y: y).batch(8192).as_numpy_iterator()))
    record = {"paper": PAPER, "settings": {
        "data": str(args.data), "train_images": len(images), "epochs": args.epochs,
        "batch_size": BATCH_SIZE, "optimizer": f"SGD momentum {MOMENTUM}",
        "network": "conv32 5x5 - pool 3/2 - conv32 5x5 - pool 3/2 - conv64 5x5 - pool 3/2 - fc10",
        "init": args.init, "sweep_lrs": list(args.lrs),
        "sweep_images": min(args.sweep_images, len(images))},
        "runs": {}}
    for activation in ACTIVATIONS:
        lr = getattr(args, f"lr_{activation}")
        sweep = None
        if lr is None:
            sweep_n = record["settings"]["sweep_images"]
            lr, sweep = sweep_learning_rate(images[:sweep_n], labels[:sweep_n], activation,
                                            args.lrs, args.seed, args.init)
        entry = {"lr": lr, "sweep_error": sweep and {str(k): v for k, v in sweep.items()},
                 "train_error": [], "epochs_to_25": None, "seconds": 0.0}
        record["runs"][activation] = entry
        start = time.time()

        def report(epoch, error, entry=entry, activation=activation, start=start):
            entry["train_error"].append(error)
            entry["epochs_to_25"] = epochs_to(entry["train_error"])
            entry["seconds"] = round(time.time() - start, 1)
            print(f"{activation} lr={entry['lr']} epoch {epoch}: training error {error:.4f}")
            save(record, args.out, args.json)

        train(images, labels, activation, lr, args.epochs, args.seed, on_epoch=report,
              init=args.init)
    return finish(record, args.out, args.json)


def finish(record, out, json_path):
    """Adds the speed-ups to a complete record, writes it and the figure; returns the record."""
    ratio, bound = speedup(record)
    record["speedup_tanh_over_relu"] = ratio and round(ratio, 2)
    record["speedup_is_lower_bound"] = bound
    record["epochs_to_error"] = speedups_at(record)
    save(record, out, json_path)
    return record


def replot(json_path, out):
    """The figure (and the speed-ups) again from a recorded run, without training."""
    try:
        record = json.loads(pathlib.Path(json_path).read_text())
        if set(record["runs"]) != set(ACTIVATIONS):
            raise KeyError("runs")
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{json_path} is not a complete figure1 record ({error})") from None
    return finish(record, out, json_path)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m alexnet_tf.figure1", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replot", action="store_true",
                        help="redraw --out from the record in --json, without training")
    parser.add_argument("--data",
                        help="CIFAR-10: a folder of class subfolders, cifar10 (tfds) or synthetic")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--limit", type=int, help="train on the first N training images only")
    parser.add_argument("--lrs", type=lambda s: tuple(float(v) for v in s.split(",")),
                        default=DEFAULT_LRS, help="learning rates swept (comma-separated)")
    parser.add_argument("--sweep-images", type=int, default=10_000)
    parser.add_argument("--lr-relu", type=float, help="skip the sweep for the ReLU network")
    parser.add_argument("--lr-tanh", type=float, help="skip the sweep for the tanh network")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", choices=("glorot", "paper"), default="glorot",
                        help="initial kernels: Glorot-uniform, or N(0, 0.01) as section 5")
    parser.add_argument("--out", default="figure1.png")
    parser.add_argument("--json", default="figure1.json")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse's own message is already one line on stderr
        return exit_.code
    try:
        if args.epochs < 1 or (args.limit is not None and args.limit < 1):
            raise ValueError("--epochs and --limit must be at least 1")
        if not args.lrs or any(lr <= 0 for lr in args.lrs):
            raise ValueError("--lrs must be positive learning rates")
        if args.replot:
            record = replot(args.json, args.out)
        elif not args.data:
            raise ValueError("--data is required (or --replot)")
        else:
            record = run(args)
    except (ValueError, DataError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    ratio, bound = record["speedup_tanh_over_relu"], record["speedup_is_lower_bound"]
    print(f"Epochs to 25% training error: ReLU {record['runs']['relu']['epochs_to_25']}, tanh "
          f"{record['runs']['tanh']['epochs_to_25']}; speed-up "
          f"{'>' if bound else ''}{ratio if ratio else 'n/a'} (paper: 6). Wrote {args.out}, "
          f"{args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
