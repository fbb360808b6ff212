"""PNG figures: training curves, accuracy against training time, the confusion matrix.

    python -m alexnet_tf.plots --out accuracy_vs_time.png RUN_DIR [RUN_DIR ...]

draws the validation accuracy of finished or running runs against their training minutes.
"""

import argparse
import csv
import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from alexnet_tf import errors  # noqa: E402


def training_curves(history_csv, path):
    """Loss and top-1/top-5 accuracy per epoch from Keras' CSVLogger file."""
    with open(history_csv) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for key, style in [("loss", "-"), ("val_loss", "--")]:
        if key in rows[0]:
            loss_ax.plot(epochs, [float(r[key]) for r in rows], style, label=key)
    for key in ("accuracy", "val_accuracy", "top5", "val_top5"):
        if key in rows[0]:
            acc_ax.plot(epochs, [float(r[key]) for r in rows], "--" if "val" in key else "-",
                        label=key)
    loss_ax.set(xlabel="epoch", title="loss")
    acc_ax.set(xlabel="epoch", title="accuracy", ylim=(0, 1))
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def accuracy_vs_time(runs, path, budget_minutes=None):
    """Validation top-1 against training minutes, one line per run directory.

    `runs` is a list of (label, run directory) pairs; each directory holds history.csv with the
    `minutes` column that training writes.
    """
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, run in runs:
        with open(pathlib.Path(run) / "history.csv") as f:
            rows = [r for r in csv.DictReader(f) if r.get("minutes")]
        if not rows:
            raise ValueError(f"{run}/history.csv has no 'minutes' column")
        minutes = [float(r["minutes"]) for r in rows]
        accuracy = [100 * float(r["val_accuracy"]) for r in rows]
        ax.plot(minutes, accuracy, marker=".", label=f"{label}: {accuracy[-1]:.1f}%")
    if budget_minutes:
        ax.axvline(budget_minutes, color="gray", linestyle=":", label=f"{budget_minutes:g} min")
    ax.set(xlabel="training minutes (validation included)", ylabel="validation top-1 (%)",
           ylim=(0, 100), title="validation accuracy against training time")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def confusion_matrix(matrix, class_names, path, title="confusion matrix"):
    """Rows are true classes, columns predictions; cells show counts, colour the row share."""
    matrix = np.asarray(matrix)
    n = len(class_names)
    size = max(5, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=90)
    ax.set_yticks(range(n), class_names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if shares[i, j] > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m alexnet_tf.plots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--budget", type=float, help="draw a line at this many minutes")
    args = parser.parse_args(argv)
    runs = []
    for run in args.runs:
        try:
            config = json.loads((pathlib.Path(run) / "config.json").read_text())
            label = f"{pathlib.Path(run).resolve().name} ({config['variant']} / {config['recipe']})"
            runs.append((label, run))
        except (OSError, ValueError, KeyError):
            print(f"error: {run} is not a run directory (no readable config.json)",
                  file=sys.stderr)
            return 2
    try:
        accuracy_vs_time(runs, args.out, args.budget)
    except (OSError, ValueError) as error:
        return errors.report(error)
    print(f"Wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
