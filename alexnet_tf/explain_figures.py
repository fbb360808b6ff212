"""The figures of docs/alexnet.md, drawn with matplotlib from `explain`'s computations.

    python -m alexnet_tf.explain --image IMG --out docs/alexnet/ [--checkpoint best.keras]
"""

import pathlib

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import patches  # noqa: E402

from alexnet_tf import explain  # noqa: E402
from alexnet_tf.model import build_model  # noqa: E402

# The overview's columns: what carries the computation (LRN, dropout and flatten keep shapes).
OVERVIEW_KINDS = ("convolution", "max-pool", "fully connected", "adaptive")


def draw_all(model, image, out_dir, class_names=None, paper=None):
    """Writes the seven figures under `out_dir`; returns their paths. `paper` (a `paper` model)
    draws the two towers and their traffic when `model` has none (default: built untrained)."""
    if not any(row["tower"] for row in explain.architecture(model)):
        paper = paper or build_model("paper")
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = class_names or [f"class {i}" for i in range(model.output.shape[-1])]
    figures = {
        "architecture.png": lambda: draw_architecture(model, image),
        "relu.png": lambda: draw_relu(model, image),
        "lrn.png": lambda: draw_lrn(model, image),
        "pooling.png": lambda: draw_pooling(model, image),
        "dropout.png": lambda: draw_dropout(model, image, names),
        "augmentation.png": lambda: draw_augmentation(model, image, names),
        "parallelism.png": lambda: draw_parallelism(paper or model),
    }
    if paper is not None:
        figures["architecture_paper.png"] = lambda: draw_architecture(paper, image)
    paths = []
    for name, draw in figures.items():
        fig = draw()
        fig.savefig(out_dir / name, dpi=100)
        plt.close(fig)
        paths.append(out_dir / name)
    return paths


def _thumbnail(values):
    """A map [H, W, C] as its strongest channel, a vector as a near-square image."""
    values = np.asarray(values)
    if values.ndim == 3:
        return values[..., int(values.sum(axis=(0, 1)).argmax())]
    side = int(np.ceil(np.sqrt(values.size)))
    return np.pad(values, (0, side * side - values.size)).reshape(side, side)


def _shape(row):
    return "x".join(map(str, row["output"]))


def draw_architecture(model, image, class_names=None):
    """The overview: each layer's name, output shape and thumbnail for the image; for two-tower
    models one row per tower, the arrows crossing only into the "exchange" layers. With
    `class_names`, a last column shows the softmax of the last layer: input to softmax."""
    rows = [r for r in explain.architecture(model) if r["operation"].startswith(OVERVIEW_KINDS)]
    maps = explain.activation_maps(model, image, [r["layer"] for r in rows])
    towers = 2 if any(r["tower"] for r in rows) else 1
    columns = len(rows) + 1 + (class_names is not None)
    fig, axes = plt.subplots(towers, columns, squeeze=False,
                             figsize=(1.6 * columns, 0.6 + 1.9 * towers))
    if class_names is not None:
        _draw_softmax(axes[:, -1], maps[rows[-1]["layer"]], class_names)
        axes = axes[:, :-1]
    for tower in range(towers):
        axes[tower, 0].imshow(np.clip(explain.model_input(model, image), 0, 255).astype(np.uint8))
        for column, row in enumerate(rows, start=1):
            values = maps[row["layer"]]
            if towers == 2 and row["layer"] != rows[-1]["layer"]:  # each GPU holds half
                half = values.shape[-1] // 2
                values = values[..., tower * half:(tower + 1) * half]
            axes[tower, column].imshow(_thumbnail(values), cmap="viridis")
            tag = {"own": "own tower"}.get(row["tower"], row["tower"])
            if tower == 0:
                axes[tower, column].set_title(f"{row['layer']}\n{_shape(row)}\n{tag}", fontsize=8)
    axes[0, 0].set_title(f"input\n{model.input.shape[1]}x{model.input.shape[2]}x3", fontsize=8)
    if towers == 2:
        for tower in range(2):
            axes[tower, 0].set_ylabel(f"GPU {tower + 1}")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if towers == 2:
        for column, row in enumerate(rows, start=1):
            if row["tower"] == "exchange":  # both towers' maps feed both halves
                for ax in axes[:, column]:
                    for side in ax.spines.values():
                        side.set(color="crimson", linewidth=2)
        fig.suptitle("Two towers (section 3.2): red layers read both GPUs' maps; the others only "
                     "their own GPU's", fontsize=9)
    fig.tight_layout()
    return fig


def _draw_softmax(axes, logits, class_names, count=3):
    """The top classes of softmax(logits) as bars in the first axes; the others stay blank."""
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    top = _top_classes(probabilities, count)[::-1]
    axes[0].barh(range(len(top)), probabilities[top], color="steelblue")
    axes[0].set_yticks(range(len(top)), [class_names[c] for c in top], fontsize=7)
    axes[0].set_xlim(0, 1)
    axes[0].tick_params(axis="x", labelsize=6)
    axes[0].set_title("softmax\ntop classes", fontsize=8)
    for ax in axes[1:]:
        ax.axis("off")


def draw_relu(model, image, layer="conv1"):
    pre, post, zeros = explain.relu_maps(model, image, layer)
    channel = int(np.abs(pre).sum(axis=(0, 1)).argmax())
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    limit = np.abs(pre[..., channel]).max()
    axes[0].imshow(pre[..., channel], cmap="RdBu_r", vmin=-limit, vmax=limit)
    axes[0].set_title(f"{layer} channel {channel}, before ReLU")
    axes[1].imshow(post[..., channel], cmap="RdBu_r", vmin=-limit, vmax=limit)
    axes[1].set_title("after ReLU: max(0, x)")
    axes[2].hist(pre.ravel(), bins=80, color="grey")
    axes[2].axvline(0, color="crimson")
    axes[2].set_title(f"all {pre.size:,} values: {zeros:.0%} set to 0")
    for ax in axes[:2]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def draw_lrn(model, image, layer="lrn1"):
    before, after = explain.lrn_maps(model, image, layer)
    ratio, damped = explain.lrn_damping(before, after)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    channel = int(damped[0]) if len(damped) else 0
    for ax, values, title in [(axes[0], before, "before"), (axes[1], after, "after")]:
        ax.imshow(values[..., channel], cmap="viridis")
        ax.set_title(f"{layer} {title}, channel {channel}")
        ax.set_xticks([])
        ax.set_yticks([])
    # Every ratio is at most k^-beta = 2^-0.75 = 0.595; what neighbours add is the rest.
    extra = 100 * (1 - ratio / 2 ** -0.75)
    axes[2].bar(range(len(ratio)), extra, color="grey", width=1.0)
    axes[2].bar(damped, extra[damped], color="crimson", width=1.0)
    axes[2].set(title=f"damping beyond 2^-0.75 (max {extra.max():.2g}%)",
                xlabel="channel (red: most damped)", ylabel="% of activity")
    fig.tight_layout()
    return fig


def draw_pooling(model, image, padding="valid"):
    """The first max-pool's input, pooled 3x3/2 and 2x2/2 with `padding` (the app passes the
    layer's own)."""
    first_pool = next(r for r in explain.architecture(model) if r["operation"].startswith("max"))
    inputs = explain.layer_input_output(model, image, first_pool["layer"])[0]
    pooled = explain.compare_pooling(inputs, padding)
    channel = int(inputs.sum(axis=(0, 1)).argmax())
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.9))
    panels = [(f"{first_pool['layer']}'s input", inputs), *pooled.items()]
    for ax, (title, values) in zip(axes, panels):
        ax.imshow(values[..., channel], cmap="viridis")
        ax.set_title(f"{title}: {values.shape[0]}x{values.shape[1]}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Channel {channel}: overlapping 3x3 stride 2 (section 3.4) against 2x2 "
                 "stride 2", fontsize=9)
    fig.tight_layout()
    return fig


def _top_classes(probabilities, count=5):
    return list(np.argsort(probabilities)[::-1][:count])


def draw_dropout(model, image, class_names, masks=4):
    sampled, test = explain.dropout_predictions(model, image, masks)
    classes = _top_classes(test)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / (masks + 1)
    for index, probabilities in enumerate(sampled):
        ax.bar(np.arange(len(classes)) + index * width, probabilities[classes], width,
               color="lightgrey", edgecolor="grey", label="random masks" if index == 0 else None)
    ax.bar(np.arange(len(classes)) + masks * width, test[classes], width, color="black",
           label="test time (all units)")
    ax.set_xticks(np.arange(len(classes)) + 0.4 - width / 2, [class_names[c] for c in classes])
    ax.set(ylabel="softmax probability", title="Dropout 0.5 in fc6 and fc7 (section 4.2)")
    ax.legend()
    fig.tight_layout()
    return fig


def draw_augmentation(model, image, class_names):
    size = int(model.input.shape[1])
    train_views = explain.training_views(image, size, count=4)
    views, probabilities, average = explain.ten_crop_predictions(model, image)
    best = int(average.argmax())
    fig, axes = plt.subplots(3, 5, figsize=(10, 6.8))
    axes[0, 0].imshow(explain.stored_image(image, size))
    axes[0, 0].set_title("stored image", fontsize=8)
    for ax, view in zip(axes[0, 1:], train_views):
        ax.imshow(view.astype(np.uint8))
        ax.set_title("a training draw", fontsize=8)
    for ax, view, view_probabilities in zip(axes[1:].flat, views, probabilities):
        ax.imshow(view.astype(np.uint8))
        top = int(view_probabilities.argmax())
        ax.set_title(f"{class_names[top]} {view_probabilities[top]:.1%}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Top: training crops, flips and PCA lighting. Below: the 10 test views "
                 f"(section 4.1); their average: {class_names[best]} {average[best]:.1%}",
                 fontsize=9)
    fig.tight_layout()
    return fig


def draw_parallelism(model, replicas=4, batch_size=128):
    """The paper's two-GPU model parallelism against data parallelism, with the model's own
    traffic per training step."""
    plan = explain.parallelism(model, batch_size, replicas)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax in (left, right):
        ax.set(xlim=(0, 10), ylim=(0, 10))
        ax.axis("off")
    layers = [r["layer"] for r in explain.architecture(model)
              if r["operation"].startswith(("conv", "fully"))]
    exchange = set(plan["exchange_layers"])
    for gpu, y in enumerate((6.5, 2.0)):
        left.add_patch(patches.FancyBboxPatch((0.2, y - 0.4), 9.6, 2.6, boxstyle="round,pad=0.1",
                                              fill=False))
        left.text(0.3, y + 2.0, f"GPU {gpu + 1}: half of every layer", fontsize=8)
        for index, name in enumerate(layers):
            x = 0.5 + index * 9.0 / len(layers)
            left.add_patch(patches.Rectangle((x, y), 0.9, 1.2, color="crimson" if name in exchange
                                             else "steelblue", alpha=0.6))
            left.text(x + 0.45, y + 0.6, name, ha="center", va="center", fontsize=7, rotation=90)
    for index, name in enumerate(layers):
        if name in exchange:
            x = 0.5 + index * 9.0 / len(layers) + 0.45
            left.annotate("", (x, 6.5), (x, 3.2),
                          arrowprops=dict(arrowstyle="<->", color="crimson"))
    left.set_title(f"2012: model parallelism, {plan['model_parallel_weights_per_device']:,.0f} "
                   f"weights per GPU\nmaps cross at {', '.join(plan['exchange_layers'])}: "
                   f"{plan['model_parallel_bytes'] / 1e6:.0f} MB per batch of {batch_size}",
                   fontsize=9)
    for replica in range(replicas):
        angle = 2 * np.pi * replica / replicas
        x, y = 5 + 3 * np.cos(angle), 5 + 3 * np.sin(angle)
        right.add_patch(patches.FancyBboxPatch((x - 1.1, y - 0.6), 2.2, 1.2,
                                               boxstyle="round,pad=0.1", color="steelblue",
                                               alpha=0.6))
        right.text(x, y, f"replica {replica + 1}\nall layers\n{batch_size // replicas} images",
                   ha="center", va="center", fontsize=7)
        nxt = 2 * np.pi * (replica + 1) / replicas
        right.annotate("", (5 + 2.2 * np.cos(nxt), 5 + 2.2 * np.sin(nxt)),
                       (5 + 2.2 * np.cos(angle), 5 + 2.2 * np.sin(angle)),
                       arrowprops=dict(arrowstyle="->", color="crimson",
                                       connectionstyle="arc3,rad=0.3"))
    right.text(5, 5, "ring all-reduce\nof gradients", ha="center", va="center", fontsize=8,
               color="crimson")
    right.set_title(f"Now: data parallelism (MirroredStrategy / MultiWorkerMirroredStrategy)\n"
                    f"{plan['data_parallel_weights_per_device']:,} weights per replica; "
                    f"each replica sends {plan['data_parallel_bytes_per_replica'] / 1e6:.0f} MB "
                    f"of gradients per step", fontsize=9)
    fig.tight_layout()
    return fig


def render(fig):
    """A figure as uint8 RGB [H, W, 3] (Agg's own pixels), the figure closed."""
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return pixels


_KIND_COLOURS = {"convolution": "steelblue", "max-pool": "darkorange",
                 "fully connected": "seagreen", "adaptive": "darkorange"}


def draw_layer_diagram(model):
    """The model's layers in order as boxes (name, output shape), drawn from the model itself,
    input to softmax. For two-tower models (Figure 2) one row of boxes per GPU, each with half
    the channels; arrows cross between the rows only into the "exchange" layers."""
    rows = [r for r in explain.architecture(model) if r["operation"].startswith(OVERVIEW_KINDS)]
    towers = 2 if any(r["tower"] for r in rows) else 1
    labels = [("input", "x".join(map(str, model.input.shape[1:])), "dimgrey", "")]
    for row in rows:
        shape = list(row["output"])
        if towers == 2 and row["layer"] != rows[-1]["layer"]:
            shape[-1] //= 2  # each GPU holds half the maps or units
        colour = next(c for k, c in _KIND_COLOURS.items() if row["operation"].startswith(k))
        labels.append((row["layer"], "x".join(map(str, shape)), colour, row["tower"]))
    labels.append(("softmax", str(rows[-1]["output"][-1]), "dimgrey", ""))
    fig, ax = plt.subplots(figsize=(1.05 * len(labels), 1.1 + 1.4 * towers))
    ax.set(xlim=(-0.1, len(labels) - 0.1), ylim=(-0.2, 1.6 * towers))
    ax.axis("off")
    for tower in range(towers):
        y = 1.6 * (towers - 1 - tower) + 0.2
        for x, (name, shape, colour, tag) in enumerate(labels):
            ax.add_patch(patches.FancyBboxPatch((x, y), 0.8, 0.9, boxstyle="round,pad=0.03",
                                                color=colour, alpha=0.25 if tag != "exchange"
                                                else 0.5))
            ax.text(x + 0.4, y + 0.45, f"{name}\n{shape}", ha="center", va="center", fontsize=7)
            if x:
                ax.annotate("", (x, y + 0.45), (x - 0.2, y + 0.45),
                            arrowprops=dict(arrowstyle="->", lw=0.8))
            if towers == 2 and tower == 0 and tag == "exchange":  # both GPUs' maps feed it
                ax.annotate("", (x + 0.1, 0.2 + 0.9), (x - 0.3, 1.8),
                            arrowprops=dict(arrowstyle="->", color="crimson", lw=0.8))
                ax.annotate("", (x + 0.1, 1.8), (x - 0.3, 1.1),
                            arrowprops=dict(arrowstyle="->", color="crimson", lw=0.8))
        if towers == 2:
            ax.text(-0.05, y + 1.0, f"GPU {tower + 1}", fontsize=8)
    title = ("Two towers (Figure 2): red arrows cross between the GPUs, only into conv3 and "
             "fc6-fc8" if towers == 2 else f"{model.name}: layers in order, output shapes")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def draw_data_parallel(model, tower_model, image, replicas=4):
    """Both kinds of parallelism on the image. Left: the paper's model parallelism, each GPU
    computing half of `tower_model`'s conv1 maps (its strongest map shown). Right: data
    parallelism on `model`, a batch of `replicas` training draws of the image, one per replica,
    each replica's loss and gradient norm, and the all-reduced gradient's norm."""
    size = int(model.input.shape[1])
    views = explain.training_views(image, size, count=replicas)
    # No label comes with the user's image: the model's own prediction stands in for it.
    label = int(np.argmax(model(explain.model_input(model, image)[None], training=False)))
    losses, norms, mean_norm = explain.replica_gradients(model, views, label)
    conv1 = explain.activation_maps(tower_model, image, ["conv1"])["conv1"]
    half = conv1.shape[-1] // 2
    fig, axes = plt.subplots(1, 2 + replicas, figsize=(1.9 * (2 + replicas), 3.0))
    for gpu, ax in enumerate(axes[:2]):
        ax.imshow(_thumbnail(conv1[..., gpu * half:(gpu + 1) * half]), cmap="viridis")
        ax.set_title(f"GPU {gpu + 1}: conv1 maps\n{gpu * half}-{(gpu + 1) * half - 1} "
                     f"({conv1.shape[0]}x{conv1.shape[1]})", fontsize=8)
    for replica, ax in enumerate(axes[2:]):
        ax.imshow(np.clip(views[replica], 0, 255).astype(np.uint8))
        ax.set_title(f"replica {replica + 1}: loss {losses[replica]:.2f}\n"
                     f"|gradient| {norms[replica]:.3g}", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Model parallel: one image, half the kernels per GPU.\nData parallel: one "
                 f"image per replica, all-reduce: mean gradient |g| = {mean_norm:.3g} "
                 f"(replicas' mean {norms.mean():.3g}), applied by every replica", fontsize=9)
    fig.tight_layout()
    return fig
