"""PNG figures: training curves and the confusion matrix."""

import csv

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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
