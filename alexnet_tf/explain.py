"""AlexNet's ideas computed on one image: what the app's "How AlexNet works" tab and
docs/alexnet.md show.

    python -m alexnet_tf.explain --image IMG --out docs/alexnet/ [--checkpoint best.keras]

writes one figure per idea (see `draw_all`). Each function below is a pure computation on a Keras
model of this project (`model.build_model` or a loaded checkpoint) and an image, or on maps as
NumPy arrays ([H, W, C] for one image), and returns NumPy arrays and numbers.
Images are RGB, 0-255, any size: `model_input` brings them to the model's input as evaluation does.
"""

import argparse
import pathlib
import sys
import types

import keras
import numpy as np
import tensorflow as tf

from alexnet_tf import augment, errors
from alexnet_tf.data import geometry_for
from alexnet_tf.model import build_model
from alexnet_tf.summary import layer_table

# Section 3.3, and the arguments of tf.nn.local_response_normalization that give it.
LRN_PAPER = {"k": 2.0, "n": 5, "alpha": 1e-4, "beta": 0.75}
LRN_TF = {"depth_radius": 2, "bias": 2.0, "alpha": 1e-4, "beta": 0.75}
LRN_FORMULA = ("b_i = a_i / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a_j^2)^beta; "
               "TF: depth_radius = n // 2, bias = k, alpha and beta as they are")


def model_input(model, image):
    """One RGB image of any size -> float32 [S, S, 3] at the model's input size: the short side
    scaled and the centre crop evaluation, the export and the app take."""
    size = int(model.input.shape[1])
    return augment.resize_and_center_crop(image, size, geometry_for(size).crop_fraction).numpy()


def model_from_export(path):
    """The Keras model inside an export of this project (`export.py`'s SavedModel): rebuilt from
    its metadata (variant, image size, classes) and given the export's weights by layer name, so
    that the functions below also run on what the app has loaded. Raises inference.ModelNotFound
    (no readable export) or ValueError (an export without a variant or its weights)."""
    from alexnet_tf.inference import Classifier

    classifier = Classifier(path)
    config = classifier.metadata.get("config") or {}
    if not config.get("variant"):
        raise ValueError(f"{classifier.path} records no variant in assets/metadata.json")
    # The training's dropout rates: `dropout_predictions` samples the masks it trained with.
    model = build_model(config["variant"], num_classes=len(classifier.class_names),
                        image_size=classifier.image_size, dropout=config.get("dropout", 0.5),
                        conv_dropout=config.get("conv_dropout", 0.0))
    saved = {v.name.removesuffix(":0"): v for v in classifier.module.variables}
    missing = [w.path for w in model.weights if w.path not in saved]
    if missing:
        raise ValueError(f"{classifier.path} has no weights for {', '.join(missing[:3])}")
    for weight in model.weights:
        weight.assign(tf.cast(saved[weight.path], weight.dtype))
    return model


# ---- 1. Architecture (sections 3.2 and 3.5, Figure 2) ---------------------------------------

def architecture(model):
    """The layer table (`summary.layer_table`) with each layer's place in the paper's two towers.

    tower: "split" for the first convolution (each GPU has half its kernels, all see the image),
    "own" for groups=2 (a GPU sees only its own tower's maps: conv2, conv4, conv5 in `paper`),
    "exchange" for convolutions and dense layers that read both towers (conv3, fc6-fc8), "" for
    the rest and for models without groups (no towers)."""
    rows = layer_table(model)
    two_towers = any(row["groups"] == 2 for row in rows)
    first_conv = next((r["layer"] for r in rows if r["operation"].startswith("conv")), None)
    for row in rows:
        weighted = row["operation"].startswith(("conv", "fully"))
        row["tower"] = "" if not (two_towers and weighted) else (
            "split" if row["layer"] == first_conv else "own" if row["groups"] == 2 else "exchange")
    return rows


def activation_maps(model, image, layers=None):
    """{layer name: its output for `image`} for `layers` (default: every layer after the input),
    from one sub-model over the functional graph."""
    names = layers or [layer.name for layer in model.layers[1:]]
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    outputs = probe(model_input(model, image)[None], training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return {n: np.asarray(tf.cast(o[0], tf.float32)) for n, o in zip(names, outputs)}


# ---- 2. ReLU (section 3.1) ------------------------------------------------------------------

def relu_maps(model, image, layer="conv1"):
    """(pre-activation, post-activation, fraction set to zero) of a convolution or dense layer.

    The layers apply their ReLU inside; the pre-activation is the same layer with a linear
    activation (its own kernel and bias) on the layer's own input."""
    target = model.get_layer(layer)
    inputs = keras.Model(model.input, target.input)(model_input(model, image)[None])
    linear = type(target).from_config({**target.get_config(), "activation": "linear"})
    linear.build(inputs.shape)
    linear.set_weights(target.get_weights())
    pre = np.asarray(tf.cast(linear(inputs)[0], tf.float32))
    post = np.maximum(pre, 0.0)
    return pre, post, zero_fraction(post)


def zero_fraction(maps):
    """The share of exactly-zero values: what a ReLU silenced (also for an export's maps)."""
    return float(np.mean(np.asarray(maps) == 0))


# ---- 3. Local response normalization (section 3.3) ------------------------------------------

def local_response_norm(maps):
    """The paper's LRN of maps [H, W, C] (or [N, H, W, C]) with its constants, through TF's op."""
    maps = np.asarray(maps, np.float32)
    batch = maps if maps.ndim == 4 else maps[None]
    out = tf.nn.local_response_normalization(batch, **LRN_TF).numpy()
    return out if maps.ndim == 4 else out[0]


def lrn_maps(model, image, layer="lrn1"):
    """(maps before, maps after) an LRN layer of the model for `image`.

    "After" is the layer's own op on "before" in float32: under mixed_bfloat16 the layer's
    output is rounded to bfloat16 (8 significant bits, ~0.4%), coarser than what the
    neighbours' damping changes on small activations."""
    target = model.get_layer(layer)
    before = layer_input_output(model, image, layer)[0]
    after = tf.nn.local_response_normalization(
        before[None], depth_radius=target.depth_radius, bias=target.bias, alpha=target.alpha,
        beta=target.beta)
    return before, after.numpy()[0]


def layer_input_output(model, image, layer):
    """(the layer's input, its output) for `image`, one image's arrays."""
    target = model.get_layer(layer)
    before, after = keras.Model(model.input, [target.input, target.output])(
        model_input(model, image)[None], training=False)
    return (np.asarray(tf.cast(before[0], tf.float32)), np.asarray(tf.cast(after[0], tf.float32)))


def lrn_damping(before, after, top=5):
    """Per channel, the ratio of total activity after / before LRN (1 for silent channels), and
    the `top` channels it damped most (lowest ratio first). Since k=2 the ratio is at most
    2^-0.75 = 0.59: LRN also scales everything down; strong neighbours damp further."""
    total_before = np.asarray(before).sum(axis=(0, 1))
    total_after = np.asarray(after).sum(axis=(0, 1))
    ratio = np.divide(total_after, total_before, out=np.ones_like(total_before),
                      where=total_before > 0)
    active = np.flatnonzero(total_before > 0)
    return ratio, active[np.argsort(ratio[active], kind="stable")][:top]


# ---- 4. Overlapping pooling (section 3.4) ---------------------------------------------------

def compare_pooling(maps, padding="valid"):
    """Max-pooling of maps [H, W, C] with the paper's overlapping 3x3 stride 2 and with the
    traditional 2x2 stride 2: {"3x3/2": output, "2x2/2": output}. On AlexNet's 55x55 conv1
    maps both give 27x27; the paper reports 0.4% lower top-1 and 0.3% lower top-5 error with
    the overlapping one, and slightly less overfitting."""
    maps = np.asarray(maps, np.float32)[None]
    return {f"{size}x{size}/2": keras.layers.MaxPooling2D(size, 2, padding=padding)(maps)
            .numpy()[0] for size in (3, 2)}


# ---- 5. Dropout (section 4.2) ---------------------------------------------------------------

def dropout_predictions(model, image, masks=4):
    """(softmax under `masks` random dropout masks [masks, classes], the test-time softmax
    [classes]). `training=True` changes nothing but the Dropout layers in these models (no batch
    normalisation), so the spread is dropout's alone. At test time every unit is kept; Keras scales
    the kept units by 1 / (1 - rate) in training, the paper's "multiply the outputs by 0.5" at
    test time turned around."""
    x = model_input(model, image)[None]
    sampled = [tf.nn.softmax(tf.cast(model(x, training=True), tf.float32))[0]
               for _ in range(masks)]
    test = tf.nn.softmax(tf.cast(model(x, training=False), tf.float32))[0]
    return np.stack(sampled), test.numpy()


# ---- 6. Data augmentation (section 4.1) -----------------------------------------------------

def stored_image(image, image_size):
    """The image as the data pipeline stores it for a model of `image_size` (256x256 for the
    paper's 224/227 crops; as is for 32 px)."""
    load_size = geometry_for(image_size).load_size
    stored = augment.resize_and_center_crop(image, load_size)
    return tf.cast(tf.clip_by_value(tf.round(stored), 0, 255), tf.uint8).numpy()


def training_views(image, image_size, count=4, lighting_std=augment.LIGHTING_STD, seed=0):
    """`count` draws of the training augmentation (random crop, horizontal flip, PCA lighting
    with augment's ImageNet eigenvalues) of one image: float32 [count, S, S, 3]."""
    geometry = geometry_for(image_size)
    stored = stored_image(image, image_size)
    preset = augment.train_preset(
        types.SimpleNamespace(crop=geometry.crop, flip=True, lighting=lighting_std, cutout=0,
                              mixup=0.0), image_size=image_size)
    return np.stack([preset.image(stored, tf.constant([seed, i])).numpy() for i in range(count)])


def lighting_shift(seed, std=augment.LIGHTING_STD):
    """The RGB offset (0-255 units) PCA lighting adds to every pixel for a seed:
    [p1 p2 p3][a1*l1, a2*l2, a3*l3]^T with a_i ~ N(0, std), the eigen pairs of augment."""
    alpha = tf.random.stateless_normal([3], tf.constant(seed), stddev=std).numpy()
    return np.asarray(augment.IMAGENET_EIGVEC) @ (alpha * np.asarray(augment.IMAGENET_EIGVAL)) * 255


def ten_crop_predictions(model, image):
    """(the ten test-time views [10, S, S, 3], softmax of each [10, classes], their average):
    four corners, the centre and their mirrors, as `evaluate --ten-crop` takes them."""
    size = int(model.input.shape[1])
    views = augment.ten_crop(stored_image(image, size), size, geometry_for(size).crop)
    probabilities = tf.nn.softmax(tf.cast(model(views, training=False), tf.float32)).numpy()
    return views.numpy(), probabilities, probabilities.mean(axis=0)


# ---- 7. Two GPUs then, many replicas now (section 3.2; docs/distributed.md) -----------------

def parallelism(model, batch_size=128, replicas=2):
    """Traffic per training step of the paper's model parallelism against data parallelism.

    Model parallel (two GPUs, each holding half of every layer): activations cross between the
    GPUs only at the "exchange" layers (`architecture`), forward and their gradients backward.
    Data parallel (MirroredStrategy / MultiWorkerMirroredStrategy): every replica holds all the
    weights and sees batch_size / replicas images; the gradients are all-reduced each step, a ring
    all-reduce sending 2 (R - 1) / R of them from each replica. float32 values, bytes."""
    rows = architecture(model)
    exchange = [model.get_layer(r["layer"]) for r in rows if r["tower"] == "exchange"]
    crossing = sum(int(np.prod(layer.input.shape[1:])) for layer in exchange)
    parameters = model.count_params()
    return {
        "exchange_layers": [layer.name for layer in exchange],
        "model_parallel_bytes": 2 * crossing * batch_size * 4,  # forward maps + backward grads
        "model_parallel_weights_per_device": parameters / 2,
        "data_parallel_bytes_per_replica": 2 * (replicas - 1) / replicas * parameters * 4,
        "data_parallel_weights_per_device": parameters,
        "batch_size": batch_size, "replicas": replicas,
    }


def replica_gradients(model, views, label):
    """What data parallelism all-reduces, on a batch of `views` [R, S, S, 3] shared out one image
    per replica: (each replica's loss [R], the norm of each replica's gradient [R], the norm of
    their average: the all-reduced gradient every replica applies). The loss is the
    cross-entropy against `label` (an int: the class the caller takes as the truth). Only a
    running sum of the gradients is kept, so memory stays two gradients' worth."""
    losses, norms, total = [], [], None
    for view in np.asarray(views, np.float32):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(view[None], training=False), tf.float32)
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits([label], logits)[0]
        grads = tape.gradient(loss, model.trainable_weights)
        flat = tf.concat([tf.reshape(tf.cast(g, tf.float32), [-1]) for g in grads], 0)
        losses.append(float(loss))
        norms.append(float(tf.norm(flat)))
        total = flat if total is None else total + flat
    return np.array(losses), np.array(norms), float(tf.norm(total / len(norms)))


# ---- figures --------------------------------------------------------------------------------

def draw_all(model, image, out_dir, class_names=None):
    """Writes the figures of docs/alexnet.md under `out_dir` (explain_figures); their paths."""
    from alexnet_tf import explain_figures  # matplotlib only where figures are drawn

    return explain_figures.draw_all(model, image, pathlib.Path(out_dir), class_names)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m alexnet_tf.explain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", required=True, help="an RGB image file (JPEG, PNG, BMP)")
    parser.add_argument("--out", default="docs/alexnet", help="folder for the figures")
    parser.add_argument("--checkpoint", help="a trained .keras model (default: `paper`, "
                                             "untrained, seed 0)")
    args = parser.parse_args(argv)
    try:
        image = augment.decode_image(pathlib.Path(args.image).read_bytes()).numpy()
        keras.utils.set_random_seed(0)  # the untrained `paper` model and the dropout masks
        class_names = None
        if args.checkpoint:
            model = keras.saving.load_model(args.checkpoint)
            labels = pathlib.Path(args.checkpoint).parent / "labels.txt"
            class_names = labels.read_text().splitlines() if labels.is_file() else None
        else:
            model = build_model("paper")
        paths = draw_all(model, image, args.out, class_names)
    except (OSError, ValueError, tf.errors.InvalidArgumentError) as error:
        return errors.report(error)
    print("Wrote " + ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
