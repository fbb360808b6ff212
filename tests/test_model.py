import numpy as np
import pytest
import tensorflow as tf
import keras

import alexnet_tf
from alexnet_tf import LocalResponseNormalization, build_model
from alexnet_tf.model import RGB_MEAN, RGB_STD, _adaptive_pool, _normalize, min_image_size


def lrn_reference(a, k=2.0, n=5, alpha=1e-4, beta=0.75):
    """Section 3.3 of the paper, written out over the channel axis."""
    channels = a.shape[-1]
    b = np.empty_like(a)
    for i in range(channels):
        lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
        b[..., i] = a[..., i] / (k + alpha * np.sum(a[..., lo : hi + 1] ** 2, axis=-1)) ** beta
    return b


@pytest.mark.parametrize(
    "variant, kwargs, expected",
    [
        ("paper", {}, 60_965_224),
        ("torchvision", {}, 61_100_840),
        ("seed", {"num_classes": 10, "image_size": 96}, 44_428_106),
        ("cifar", {"num_classes": 10}, 4_548_106),
        ("cifar_wide", {"num_classes": 10}, 14_542_538),
    ],
)
def test_parameter_counts(variant, kwargs, expected):
    assert build_model(variant, **kwargs).count_params() == expected


def test_lrn_matches_paper_formula_including_edge_channels():
    rng = np.random.default_rng(0)
    # Large activations make the alpha term matter; 7 channels put every window at an edge.
    a = rng.uniform(0, 60, size=(2, 3, 4, 7)).astype("float32")
    got = LocalResponseNormalization()(a).numpy()
    np.testing.assert_allclose(got, lrn_reference(a), atol=1e-5, rtol=1e-5)
    assert not np.allclose(got, a / 2.0**0.75, atol=1e-3)  # the sum really contributes


def test_lrn_config_round_trip():
    layer = LocalResponseNormalization(depth_radius=3, bias=1.0, alpha=2e-4, beta=0.5, name="x")
    config = layer.get_config()
    assert {k: config[k] for k in ("depth_radius", "bias", "alpha", "beta")} == {
        "depth_radius": 3, "bias": 1.0, "alpha": 2e-4, "beta": 0.5,
    }
    clone = LocalResponseNormalization.from_config(config)
    assert clone.get_config() == config
    defaults = LocalResponseNormalization().get_config()
    assert (defaults["depth_radius"], defaults["bias"], defaults["alpha"], defaults["beta"]) == (
        2, 2.0, 1e-4, 0.75,
    )


@pytest.mark.parametrize(
    "variant, size, classes",
    [("paper", 227, 7), ("paper", 224, 7), ("torchvision", 224, 5), ("torchvision", 96, 5),
     ("seed", 95, 10), ("seed", 96, 10), ("seed", 128, 10), ("cifar", 32, 10), ("cifar", 16, 3),
     ("cifar", 48, 3), ("cifar_wide", 32, 10), ("cifar_wide", 16, 3)],
)
def test_output_shapes(variant, size, classes):
    model = build_model(variant, num_classes=classes, image_size=size)
    x = np.random.default_rng(0).integers(0, 256, size=(2, size, size, 3), dtype="uint8")
    assert model(x).shape == (2, classes)


def test_layer_names_follow_the_paper():
    names = {layer.name for layer in build_model("paper").layers}
    expected = {"conv1", "conv2", "conv3", "conv4", "conv5", "lrn1", "lrn2", "pool1", "pool2",
                "pool5", "fc6", "fc7", "fc8"}
    assert expected <= names
    assert {"lrn1", "lrn2"} <= {layer.name for layer in build_model("cifar").layers}


def test_keras_save_and_reload_gives_identical_outputs(tmp_path):
    model = build_model("cifar", num_classes=4, image_size=32)
    x = np.random.default_rng(1).uniform(0, 255, size=(3, 32, 32, 3)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(model.predict(x, verbose=0), reloaded.predict(x, verbose=0))


def test_mixed_bfloat16_gives_float32_logits():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_model("cifar", num_classes=3, image_size=32)
        assert model.get_layer("conv1").compute_dtype == "bfloat16"
        out = model(np.zeros((1, 32, 32, 3), "float32"))
        assert out.dtype == tf.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_paper_init():
    model = build_model("paper", num_classes=10, init="paper")
    assert np.all(model.get_layer("conv2").bias.numpy() == 1.0)
    assert np.all(model.get_layer("conv3").bias.numpy() == 0.0)
    assert np.all(model.get_layer("fc7").bias.numpy() == 1.0)
    assert abs(float(np.std(model.get_layer("fc6").kernel.numpy())) - 0.01) < 5e-4


def test_l2_matches_paper_weight_decay():
    model = build_model("cifar", num_classes=3, l2=2.5e-4)
    kernels = [layer.kernel for layer in model.layers if hasattr(layer, "kernel")]
    assert len(model.losses) == len(kernels) == 8  # five conv and three dense kernels, no biases
    expected = 2.5e-4 * sum(float(np.sum(np.square(k.numpy()))) for k in kernels)
    np.testing.assert_allclose(float(sum(model.losses)), expected, rtol=1e-4)


def test_error_messages():
    with pytest.raises(ValueError, match=r"'paper'.*>= 67\. Received: image_size=64"):
        build_model("paper", image_size=64)
    # 63 px leaves 1x1 maps, which the adaptive pool copies (Keras' own fails on them in graph
    # mode: fit, export).
    assert min_image_size("seed") == min_image_size("torchvision") == 63
    model = build_model("seed", num_classes=3, image_size=63)
    assert tf.function(model)(np.zeros((2, 63, 63, 3), np.float32)).shape == (2, 3)
    with pytest.raises(ValueError, match=r"'seed' needs image_size >= 63\. Received: image_size=62"):
        build_model("seed", image_size=62)
    with pytest.raises(ValueError, match="known variants: paper, torchvision, seed, cifar, cifar_wide"):
        build_model("vgg")


def test_cifar_wide_is_cifar_with_wider_layers():
    def layout(variant):
        model = build_model(variant, num_classes=10)
        return [(type(layer).__name__, layer.name, layer.output.shape) for layer in model.layers]

    narrow, wide = layout("cifar"), layout("cifar_wide")
    assert [row[:2] for row in narrow] == [row[:2] for row in wide]  # same layers, same order
    changed = {n[1]: (n[2][-1], w[2][-1]) for n, w in zip(narrow, wide) if n[2] != w[2]}
    # conv2 feeds pool2/lrn2 and conv5 feeds pool5 and flatten: they widen with them.
    assert {k: v for k, v in changed.items() if k.startswith(("conv", "fc"))} == {
        "conv2": (128, 192), "conv5": (128, 256), "fc6": (1024, 2048), "fc7": (1024, 2048),
    }


def test_variants_listing():
    assert set(alexnet_tf.VARIANTS) == {"paper", "torchvision", "seed", "cifar", "cifar_wide"}
    assert all(isinstance(line, str) and "\n" not in line for line in alexnet_tf.VARIANTS.values())


@pytest.mark.parametrize("variant", list(alexnet_tf.VARIANTS))
def test_conv_dropout_ends_each_pooling_stage_and_only_trains(variant):
    size = min_image_size(variant)
    # dropout=0 in fc6/fc7: any difference in training below is the conv stages' dropout.
    plain = build_model(variant, num_classes=3, image_size=size, dropout=0.0)
    model = build_model(variant, num_classes=3, image_size=size, dropout=0.0, conv_dropout=0.3)
    names = [layer.name for layer in model.layers]
    # One dropout per pooling stage, right after its pool (after the LRN that follows a
    # `cifar` pool), before the next convolution, the adaptive pool or the flatten; no weights
    # added. Without the option: no such layers.
    stage_ends = {"drop1": ("pool1", "conv2"), "drop2": ("pool2", "conv3"),
                  "drop5": ("pool5", "avgpool" if "avgpool" in names else "flatten")}
    for drop, (pool, following) in stage_ends.items():
        at = names.index(drop)
        assert names[at + 1] == following
        assert names[at - 1] in (pool, pool.replace("pool", "lrn"))
    if variant.startswith("cifar"):
        assert names.index("lrn1") < names.index("drop1")
    assert model.get_layer("drop1").rate == 0.3
    assert not set(stage_ends) & {layer.name for layer in plain.layers}
    assert model.count_params() == plain.count_params()
    x = np.random.default_rng(0).integers(0, 256, size=(4, size, size, 3), dtype="uint8")
    model.set_weights(plain.get_weights())
    np.testing.assert_allclose(model(x, training=False), plain(x, training=False), rtol=1e-6)
    np.testing.assert_allclose(plain(x, training=True), plain(x, training=False), rtol=1e-6)
    assert not np.allclose(model(x, training=True), plain(x, training=True))


def test_torch_init_bounds_weights_and_biases_by_fan_in():
    """init="torch" is PyTorch's default: weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    keras.utils.set_random_seed(0)
    model = build_model("cifar", num_classes=10, image_size=16, init="torch")
    for layer in model.layers:
        if not hasattr(layer, "kernel"):
            continue
        kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
        bound = 1 / np.sqrt(np.prod(kernel.shape[:-1]))  # kh * kw * in (or in) = fan_in
        assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.95 * bound, layer.name
        assert np.abs(bias).max() <= bound and np.abs(bias).max() > 0.5 * bound, layer.name
        assert abs(kernel.std() - bound / np.sqrt(3)) < 0.05 * bound, layer.name  # uniform


def test_seed_scales_to_minus_one_one_and_drops_the_inputs_of_fc6_and_fc7():
    seed = build_model("seed", num_classes=10, image_size=95)
    pixels = np.array([0.0, 127.5, 255.0], np.float32)[:, None, None, None] * np.ones((1, 2, 2, 3))
    np.testing.assert_allclose(seed.get_layer("normalize")(pixels).numpy()[:, 0, 0, 0],
                               [-1.0, 0.0, 1.0], atol=1e-6)

    def input_of(model, name):
        return model.get_layer(name).input._keras_history[0].name

    assert [input_of(seed, n) for n in ("fc6", "fc7", "fc8")] == ["drop6", "drop7", "fc7"]
    assert input_of(seed, "drop6") == "flatten"
    cifar = build_model("cifar", num_classes=10, image_size=16)  # the paper's place: after
    assert [input_of(cifar, n) for n in ("drop6", "fc7", "fc8")] == ["fc6", "drop6", "drop7"]
    assert cifar.get_layer("normalize")(np.full((1, 2, 2, 3), 255.0)).numpy().max() > 2


@pytest.mark.parametrize("mean, std", [(RGB_MEAN, RGB_STD), ((127.5,) * 3, (127.5,) * 3)])
def test_normalize_is_mean_and_std_per_channel(mean, std):
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype(np.float32)
    inputs = keras.Input((4, 4, 3))
    layer = _normalize(inputs, mean, std)._keras_history[0]
    np.testing.assert_allclose(layer(pixels).numpy(), (pixels - mean) / np.array(std),
                               rtol=1e-5, atol=1e-5)
    assert np.ndim(layer.scale) == (0 if len(set(std)) == 1 else 1)  # seed's: one scalar


@pytest.mark.parametrize("cells, upsampled", [(1, True), (2, True), (3, True), (6, True),
                                              (4, False), (5, False), (7, False)])
def test_adaptive_pool_is_pytorchs_and_upsamples_where_that_is_exact(cells, upsampled):
    """PyTorch's AdaptiveAvgPool2d(6) averages the cells floor(i n / 6) .. ceil((i + 1) n / 6)
    - 1 of an n x n map; where 6 is a multiple of n that is one cell, and the layer copies it."""
    maps = np.random.default_rng(cells).normal(size=(2, cells, cells, 5)).astype(np.float32)
    windows = [range(i * cells // 6, -(-(i + 1) * cells // 6)) for i in range(6)]
    expected = np.stack([np.stack([maps[:, list(r)][:, :, list(c)].mean(axis=(1, 2))
                                   for c in windows], axis=1) for r in windows], axis=1)
    inputs = keras.Input(maps.shape[1:])
    pooled = keras.Model(inputs, _adaptive_pool(inputs, 6))
    assert isinstance(pooled.get_layer("avgpool"), keras.layers.UpSampling2D) == upsampled
    np.testing.assert_allclose(pooled(maps).numpy(), expected, rtol=1e-5, atol=1e-6)


def _lrn_and_input_gradient(layer, x, weights):
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tf.cast(layer(x), tf.float32) * weights)
    return layer(x), tape.gradient(loss, x)


@pytest.mark.parametrize("depth_radius, beta", [(2, 0.75), (3, 0.5)])
def test_lrn_mixed_precision_path_matches_the_op_on_values_and_gradients(depth_radius, beta):
    """Under mixed_bfloat16 the layer computes LRN with matmuls; it must be the op's function,
    forward and backward, up to bfloat16 rounding (8 bits of mantissa: 2**-8 relative)."""
    rng = np.random.default_rng(0)
    # Large activations make the alpha term matter; 7 channels put every window at an edge.
    a = rng.uniform(0, 60, size=(2, 3, 4, 7)).astype("float32")
    weights = tf.constant(rng.normal(size=a.shape).astype("float32"))
    args = dict(depth_radius=depth_radius, bias=2.0, alpha=1e-4, beta=beta)
    x32 = tf.constant(a)
    want, want_grad = _lrn_and_input_gradient(
        lambda x: tf.nn.local_response_normalization(x, **args), x32, weights)
    mixed = LocalResponseNormalization(**args, dtype="mixed_bfloat16")
    got, got_grad = _lrn_and_input_gradient(mixed, tf.cast(x32, tf.bfloat16), weights)
    assert got.dtype == tf.bfloat16 and got_grad.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(got, tf.float32), want, rtol=2**-7, atol=1e-6)
    np.testing.assert_allclose(tf.cast(got_grad, tf.float32), want_grad, rtol=2**-6,
                               atol=2**-7 * np.abs(want_grad).max())
    assert np.abs(want_grad - want_grad.numpy().mean()).max() > 1e-3  # the sum's gradient matters


def test_lrn_mixed_precision_runs_without_the_lrn_op():
    """The op's CPU gradient kernel (LRNGrad) is the slow part: the traced training graph
    under mixed precision has neither LRN nor LRNGrad; float32 keeps the op."""
    def op_types(dtype):
        layer = LocalResponseNormalization(dtype=dtype)

        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = tf.reduce_sum(tf.cast(layer(x), tf.float32))
            return tape.gradient(y, x)

        x = tf.zeros((1, 2, 2, 8), "bfloat16" if dtype.startswith("mixed") else "float32")
        graph = step.get_concrete_function(x).graph
        types = {op.type for op in graph.get_operations()}
        for function in graph._functions.values():  # the custom gradient's own graph
            types |= {node.op for node in function.cached_definition.node_def}
        return types

    assert not {"LRN", "LRNGrad"} & op_types("mixed_bfloat16")
    assert {"LRN", "LRNGrad"} <= op_types("float32")


def test_lrn_get_config_is_the_constructor_arguments_and_mixed_model_reloads(tmp_path):
    layer = LocalResponseNormalization(depth_radius=3, bias=1.0, alpha=2e-4, beta=0.5, name="n")
    config = layer.get_config()
    base = keras.layers.Layer(name="n").get_config()
    assert set(config) - set(base) == {"depth_radius", "bias", "alpha", "beta"}
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_model("cifar", num_classes=3, image_size=16)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    x = np.random.default_rng(1).uniform(0, 255, size=(2, 16, 16, 3)).astype("float32")
    model.save(tmp_path / "mixed.keras")
    reloaded = keras.saving.load_model(tmp_path / "mixed.keras")
    assert reloaded.get_layer("lrn1").compute_dtype == "bfloat16"
    np.testing.assert_array_equal(model.predict(x, verbose=0), reloaded.predict(x, verbose=0))
