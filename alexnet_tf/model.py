"""The AlexNet family as Keras 3 functional models.

Variants are plain configs; `build_model` turns one into a model whose layers carry the
paper's names (conv1..conv5, lrn1, lrn2, pool1, pool2, pool5, fc6..fc8).
"""

import math

import keras

from alexnet_tf.layers import LocalResponseNormalization

# One line per variant, for `--help`, the README and error messages.
VARIANTS = {
    "paper": "AlexNet as published: 227 px, 96-256-384-384-256 filters, LRN, two-tower groups=2, "
    "fc 4096-4096 (60,965,224 parameters at 1000 classes).",
    "torchvision": "The 'one weird trick' layout of torchvision/TF-Slim: 224 px, 64-192-384-256-256 "
    "filters, no LRN, adaptive average pooling to 6x6 (61,100,840 parameters).",
    "seed": "The classic CIFAR-10 tutorial model: torchvision features at 96 px, fc 4096-1024 "
    "(44,428,106 parameters at 10 classes).",
    "cifar": "AlexNet for native 32x32 images: five convolutions, LRN, overlapping max-pooling, "
    "dropout in fc6/fc7, no stride-4 stem; built to train fast on a CPU.",
    "cifar_wide": "cifar with torchvision's conv1/conv2 widths (64-192), conv5 256 and fc 2048-2048: "
    "1.5x the FLOPs, 3.2x the parameters, for longer runs.",
}

# Feature extractors as layer specs:
#   ("conv", name, filters, kernel, stride, padding, groups)  -- ReLU included
#   ("lrn", name)  ("pool", name, size, stride, padding)  ("pad", name, pixels)
_PAPER_FEATURES = [
    # Section 3.5; conv2, conv4 and conv5 only see their own GPU's maps (section 3.2) = groups=2.
    ("conv", "conv1", 96, 11, 4, "valid", 1),
    ("lrn", "lrn1"),
    ("pool", "pool1", 3, 2, "valid"),  # overlapping pooling, section 3.4
    ("conv", "conv2", 256, 5, 1, "same", 2),
    ("lrn", "lrn2"),
    ("pool", "pool2", 3, 2, "valid"),
    ("conv", "conv3", 384, 3, 1, "same", 1),
    ("conv", "conv4", 384, 3, 1, "same", 2),
    ("conv", "conv5", 256, 3, 1, "same", 2),
    ("pool", "pool5", 3, 2, "valid"),
]
_TORCHVISION_FEATURES = [
    ("pad", "pad1", 2),  # torchvision's Conv2d(3, 64, 11, stride=4, padding=2)
    ("conv", "conv1", 64, 11, 4, "valid", 1),
    ("pool", "pool1", 3, 2, "valid"),
    ("conv", "conv2", 192, 5, 1, "same", 1),
    ("pool", "pool2", 3, 2, "valid"),
    ("conv", "conv3", 384, 3, 1, "same", 1),
    ("conv", "conv4", 256, 3, 1, "same", 1),
    ("conv", "conv5", 256, 3, 1, "same", 1),
    ("pool", "pool5", 3, 2, "valid"),
]
_CIFAR_FEATURES = [
    # A 32 px image has no room for an 11x11/4 stem (it would leave 6x6 after conv1); a 5x5/1
    # conv1 keeps the full resolution, and the three overlapping 3x3/2 pools take 32 -> 16 -> 8 -> 4
    # as the paper's take 55 -> 27 -> 13 -> 6. Widths are roughly the paper's halved. No groups:
    # the two towers were a 3 GB-GPU memory workaround, and grouped convolutions run much slower
    # than dense ones on a CPU (docs/models.md).
    # LRN follows the pool, as in cuda-convnet's CIFAR-10 layers-18pct and TensorFlow's CIFAR-10
    # tutorial (pool1 -> norm1): on a quarter of the pixels it costs a quarter.
    ("conv", "conv1", 64, 5, 1, "same", 1),
    ("pool", "pool1", 3, 2, "same"),
    ("lrn", "lrn1"),
    ("conv", "conv2", 128, 5, 1, "same", 1),
    ("pool", "pool2", 3, 2, "same"),
    ("lrn", "lrn2"),
    ("conv", "conv3", 256, 3, 1, "same", 1),
    ("conv", "conv4", 256, 3, 1, "same", 1),
    ("conv", "conv5", 128, 3, 1, "same", 1),
    ("pool", "pool5", 3, 2, "same"),
]


def _widen(features, **filters):
    """`features` with the named convolutions' filter counts replaced."""
    names = {spec[1] for spec in features if spec[0] == "conv"}
    assert set(filters) <= names, f"no such convolution: {set(filters) - names}"
    return [("conv", spec[1], filters[spec[1]], *spec[3:]) if spec[1] in filters else spec
            for spec in features]


# More capacity where it is cheap on a CPU: conv2 192 and conv5 256 as in torchvision's
# 64-192-384-256-256; conv3 and conv4 stay at 256, and conv1 at 64, because the full-resolution
# convolutions dominate the step (docs/models.md).
_CIFAR_WIDE_FEATURES = _widen(_CIFAR_FEATURES, conv2=192, conv5=256)

_CONFIGS = {
    "paper": dict(image_size=227, features=_PAPER_FEATURES, adaptive_pool=None, fc=(4096, 4096)),
    "torchvision": dict(
        image_size=224, features=_TORCHVISION_FEATURES, adaptive_pool=6, fc=(4096, 4096)
    ),
    # The tutorial's own input scaling (ToTensor + Normalize(0.5, 0.5): (x / 255 - 0.5) / 0.5)
    # and its classifier, nn.Dropout ahead of each hidden nn.Linear as in torchvision's AlexNet.
    "seed": dict(image_size=96, features=_TORCHVISION_FEATURES, adaptive_pool=6, fc=(4096, 1024),
                 normalize=((127.5,) * 3, (127.5,) * 3), dropout_before_fc=True),
    "cifar": dict(image_size=32, features=_CIFAR_FEATURES, adaptive_pool=None, fc=(1024, 1024)),
    "cifar_wide": dict(
        image_size=32, features=_CIFAR_WIDE_FEATURES, adaptive_pool=None, fc=(2048, 2048)
    ),
}

# Per-channel RGB mean and standard deviation of ImageNet in 0-255 units: the paper subtracts
# the mean training image (section 2); a per-channel mean/std is the usual stand-in.
RGB_MEAN = (123.675, 116.28, 103.53)
RGB_STD = (58.395, 57.12, 57.375)

INITS = ("keras", "paper", "torch")
# Section 5: biases of conv2, conv4, conv5 and the hidden fully connected layers are 1.
_PAPER_UNIT_BIAS = {"conv2", "conv4", "conv5", "fc6", "fc7"}


def default_image_size(variant):
    return _config(variant)["image_size"]


def input_mean(variant):
    """The RGB colour (0-255) the variant's input normalisation maps to 0."""
    return _config(variant).get("normalize", (RGB_MEAN, RGB_STD))[0]


def min_image_size(variant):
    """The smallest square input that leaves the variant's features at least one pixel."""
    cfg = _config(variant)
    return next(size for size in range(1, 1024) if _feature_size(cfg["features"], size) >= 1)


def check_image_size(variant, image_size):
    """Raises ValueError when `variant` cannot take square inputs of `image_size`."""
    cfg = _config(variant)
    if _feature_size(cfg["features"], image_size) < 1:
        raise ValueError(
            f"Variant '{variant}' needs image_size >= {min_image_size(variant)}. "
            f"Received: image_size={image_size}"
        )


def build_model(
    variant="paper",
    *,
    num_classes=1000,
    image_size=None,
    dropout=0.5,
    conv_dropout=0.0,
    init="keras",
    l2=0.0,
):
    """Builds an AlexNet variant as a Keras functional model.

    Args:
        variant: a key of `VARIANTS`.
        num_classes: width of fc8, which outputs float32 logits (also under mixed precision).
        image_size: square input size; None means the variant's native size.
        dropout: dropout rate after fc6 and fc7 (0.5 in the paper, section 4.2); `seed` drops
            the inputs of fc6 and fc7 instead, as the tutorial it reproduces does.
        conv_dropout: dropout rate at the end of each pooling stage (layers drop1, drop2,
            drop5, after pool1, pool2, pool5 and any LRN that follows them); 0, as in the
            paper, adds no layers.
        init: "keras" (Glorot-uniform kernels, zero biases), "paper" (kernels N(0, 0.01),
            biases 1 in conv2, conv4, conv5, fc6, fc7 and 0 elsewhere; section 5) or "torch"
            (PyTorch's default for Conv2d and Linear: weights and biases U(-b, b), b =
            1 / sqrt(fan_in)).
        l2: L2 penalty on every kernel. Keras adds `l2 * sum(w**2)`, so the paper's weight
            decay of 5e-4 inside the momentum update (section 5) is `l2=2.5e-4`.

    Inputs are RGB pixel values in 0-255 (uint8 or float); the model normalises them itself
    (ImageNet's mean and std; `seed`: to [-1, 1]).
    """
    cfg = _config(variant)
    image_size = image_size or cfg["image_size"]
    check_image_size(variant, image_size)
    if init not in INITS:
        raise ValueError(f"Unknown init '{init}'; expected one of {INITS}.")
    inputs = keras.Input(shape=(image_size, image_size, 3), name="images")
    x = _normalize(inputs, *cfg.get("normalize", (RGB_MEAN, RGB_STD)))
    x = _features(x, cfg["features"], conv_dropout, init, l2)
    if cfg["adaptive_pool"]:
        x = _adaptive_pool(x, cfg["adaptive_pool"])
    x = keras.layers.Flatten(name="flatten")(x)
    logits = _classifier(x, cfg, num_classes, dropout, init, l2)
    return keras.Model(inputs, logits, name=f"alexnet_{variant}")


def _normalize(x, mean, std):
    """(x - mean) / std per channel as one multiply-add, in float32 (bfloat16 cannot hold
    123.675 or 0-255 offsets precisely). A single scale and offset when the channels share
    them (`seed`'s [-1, 1]): a scalar multiply-add skips the per-channel broadcast, a visible
    share of a `seed` step (docs/speed.md)."""
    scale, offset = [1 / s for s in std], [-m / s for m, s in zip(mean, std)]
    if len(set(scale)) == 1 and len(set(offset)) == 1:
        scale, offset = scale[0], offset[0]
    return keras.layers.Rescaling(scale, offset, dtype="float32", name="normalize")(x)


def _adaptive_pool(x, size):
    """PyTorch's AdaptiveAvgPool2d(size). On an n x n map with `size` a multiple of n, each of
    its windows is a single cell, so it copies each cell to (size / n)^2 outputs: nearest
    upsampling, whose gradient is far cheaper than that of Keras' general adaptive pool (two
    pools and a gather per axis; docs/speed.md). Upsampling also takes the 1x1 maps on which
    Keras' layer fails inside a tf.function (TF 2.21)."""
    cells = x.shape[1]
    if size % cells == 0:
        return keras.layers.UpSampling2D(size // cells, name="avgpool")(x)
    return keras.layers.AdaptiveAveragePooling2D(size, name="avgpool")(x)


def _weight_args(name, fan_in, init, l2):
    """The initialisers and regulariser of the layer `name` for `init` and `l2`."""
    args = {"kernel_regularizer": keras.regularizers.L2(l2) if l2 else None}
    if init == "paper":
        args["kernel_initializer"] = keras.initializers.RandomNormal(0.0, 0.01)
        args["bias_initializer"] = "ones" if name in _PAPER_UNIT_BIAS else "zeros"
    elif init == "torch":
        args.update(_torch_init(fan_in))
    return args


def _features(x, specs, conv_dropout, init, l2):
    """The feature extractor's layers on `x`, from their specs.

    Dropout on pooled conv features, as Network in Network and All-CNN (Springenberg et al.
    2014) regularise their no-BN CIFAR-10 nets, goes where a stage ends, so the LRN after a
    `cifar` pool still normalises undropped responses."""
    stage_end = None  # the name of the dropout owed before the next convolution
    for spec in specs:
        kind, name = spec[:2]
        if kind == "conv":
            if stage_end:
                x = keras.layers.Dropout(conv_dropout, name=stage_end)(x)
                stage_end = None
            filters, kernel, stride, padding, groups = spec[2:]
            x = keras.layers.Conv2D(
                filters, kernel, strides=stride, padding=padding, groups=groups,
                activation="relu", name=name,
                **_weight_args(name, kernel * kernel * x.shape[-1] // groups, init, l2),
            )(x)
        elif kind == "lrn":
            x = LocalResponseNormalization(name=name)(x)
        elif kind == "pool":
            size, stride, padding = spec[2:]
            x = keras.layers.MaxPooling2D(size, stride, padding=padding, name=name)(x)
            stage_end = name.replace("pool", "drop") if conv_dropout else None
        elif kind == "pad":
            x = keras.layers.ZeroPadding2D(spec[2], name=name)(x)
    if stage_end:  # before an adaptive pool, which may copy each cell to several outputs
        x = keras.layers.Dropout(conv_dropout, name=stage_end)(x)
    return x


def _classifier(x, cfg, num_classes, dropout, init, l2):
    """fc6, fc7 (with their dropout, after them or, in `seed`, before them) and fc8's float32
    logits."""
    before = cfg.get("dropout_before_fc", False)
    for index, units in enumerate(cfg["fc"], start=6):
        if before:
            x = keras.layers.Dropout(dropout, name=f"drop{index}")(x)
        x = keras.layers.Dense(units, activation="relu", name=f"fc{index}",
                               **_weight_args(f"fc{index}", x.shape[-1], init, l2))(x)
        if not before:
            x = keras.layers.Dropout(dropout, name=f"drop{index}")(x)
    return keras.layers.Dense(num_classes, dtype="float32", name="fc8",
                              **_weight_args("fc8", x.shape[-1], init, l2))(x)


def _torch_init(fan_in):
    """PyTorch's default initialisation of Conv2d and Linear (their reset_parameters):
    kaiming_uniform_(a=sqrt(5)) has bound sqrt(6 / ((1 + 5) * fan_in)) = 1 / sqrt(fan_in), which
    is Keras' VarianceScaling(1/3, fan_in, uniform) (limit sqrt(3 * scale / fan_in)); biases are
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Keras' Glorot bound also counts fan_out: in `seed` it is
    0.5x PyTorch's in conv1 and 1.2-2.4x in the other layers, and its biases are 0, so a training
    meant to match PyTorch's would start elsewhere."""
    bound = 1.0 / math.sqrt(fan_in)
    return {"kernel_initializer": keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform"),
            "bias_initializer": keras.initializers.RandomUniform(-bound, bound)}


def count_flops(model):
    """Forward-pass FLOPs per image (a multiply-add counts 2) of convolutions and dense layers."""
    return sum(layer_flops(layer) for layer in model.layers)


def layer_flops(layer):
    """Forward-pass FLOPs per image of one layer; 0 for layers without a convolution or matmul."""
    if isinstance(layer, keras.layers.Conv2D):
        _, height, width, out_channels = layer.output.shape
        kernel_h, kernel_w, in_per_group, _ = layer.kernel.shape
        return 2 * height * width * out_channels * kernel_h * kernel_w * in_per_group
    if isinstance(layer, keras.layers.Dense):
        return 2 * math.prod(layer.kernel.shape)
    return 0


def _config(variant):
    if variant not in _CONFIGS:
        raise ValueError(f"Unknown variant '{variant}'; known variants: {', '.join(_CONFIGS)}.")
    return _CONFIGS[variant]


def _feature_size(features, size):
    """Spatial size after the feature extractor, or 0 when a layer has nothing left to see."""
    for spec in features:
        kind = spec[0]
        if kind == "pad":
            size += 2 * spec[2]
        elif kind in ("conv", "pool"):
            kernel, stride, padding = (spec[3], spec[4], spec[5]) if kind == "conv" else spec[2:5]
            size = math.ceil(size / stride) if padding == "same" else (size - kernel) // stride + 1
        if size < 1:
            return 0
    return size
