"""explain.py's numbers against NumPy on tiny models: `cifar` at 32 px, `paper` at 67 px."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import augment, explain
from alexnet_tf.model import RGB_MEAN, RGB_STD, build_model


@pytest.fixture(scope="module")
def cifar():
    keras.utils.set_random_seed(1)
    return build_model("cifar", num_classes=10)


@pytest.fixture(scope="module")
def paper():
    keras.utils.set_random_seed(2)
    return build_model("paper", image_size=67, num_classes=10)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (40, 48, 3)).astype(np.uint8)


def numpy_conv(x, kernel, bias, pad, groups=1):
    """Stride-1 convolution of x [H, W, Cin] with zero padding, channels split into `groups`."""
    x = np.pad(x, [(pad, pad), (pad, pad), (0, 0)])
    size = kernel.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(x, (size, size), axis=(0, 1))
    cin, cout = kernel.shape[2], kernel.shape[3] // groups
    outs = [np.einsum("hwcij,ijco->hwo", windows[:, :, g * cin:(g + 1) * cin],
                      kernel[..., g * cout:(g + 1) * cout]) for g in range(groups)]
    return np.concatenate(outs, axis=-1) + bias


def test_architecture_marks_the_paper_towers_and_matches_the_maps(paper, cifar, image):
    rows = explain.architecture(paper)
    towers = {r["layer"]: r["tower"] for r in rows if r["tower"]}
    assert towers == {"conv1": "split", "conv2": "own", "conv3": "exchange", "conv4": "own",
                      "conv5": "own", "fc6": "exchange", "fc7": "exchange", "fc8": "exchange"}
    maps = explain.activation_maps(paper, image)
    assert {r["layer"]: r["output"] for r in rows[1:]} == {k: list(v.shape) for k, v in maps.items()}
    assert maps["conv1"].shape == (15, 15, 96) and maps["pool5"].shape == (1, 1, 256)
    assert not any(r["tower"] for r in explain.architecture(cifar))  # no groups, no towers


def test_relu_pre_activation_and_zero_fraction_match_numpy(cifar, image):
    x = explain.model_input(cifar, image)
    normalised = (x - np.array(RGB_MEAN)) / np.array(RGB_STD)
    kernel, bias = (w.numpy() for w in cifar.get_layer("conv1").weights)
    expected = numpy_conv(normalised, kernel, bias, pad=2)
    pre, post, zeros = explain.relu_maps(cifar, image, "conv1")
    np.testing.assert_allclose(pre, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(post, np.maximum(pre, 0))
    np.testing.assert_allclose(post, explain.activation_maps(cifar, image, ["conv1"])["conv1"],
                               atol=1e-5)
    assert zeros == pytest.approx(np.mean(expected <= 0), abs=3 / expected.size)
    assert 0.2 < zeros < 0.8


def test_relu_of_a_grouped_layer_keeps_the_towers_apart(paper, image):
    pool1 = explain.activation_maps(paper, image, ["pool1"])["pool1"]
    kernel, bias = (w.numpy() for w in paper.get_layer("conv2").weights)
    expected = numpy_conv(pool1, kernel, bias, pad=2, groups=2)
    pre, _, zeros = explain.relu_maps(paper, image, "conv2")
    np.testing.assert_allclose(pre, expected, rtol=1e-4, atol=1e-4)
    assert zeros == pytest.approx(np.mean(expected <= 0), abs=3 / expected.size)


def numpy_lrn(a, k=2.0, n=5, alpha=1e-4, beta=0.75):
    """Section 3.3's formula, summing over channels max(0, i - n/2) .. min(N - 1, i + n/2)."""
    channels = a.shape[-1]
    sums = np.stack([np.sum(a[..., max(0, i - n // 2):min(channels - 1, i + n // 2) + 1] ** 2, -1)
                     for i in range(channels)], -1)
    return a / (k + alpha * sums) ** beta


def test_lrn_follows_the_paper_formula_in_the_model_and_on_maps(paper, image):
    before, after = explain.lrn_maps(paper, image, "lrn1")
    assert before.shape == after.shape == (15, 15, 96)
    np.testing.assert_allclose(after, numpy_lrn(before), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(explain.local_response_norm(before), after, rtol=1e-5, atol=1e-6)
    in_model = explain.activation_maps(paper, image, ["lrn1"])["lrn1"]  # the layer's own output
    np.testing.assert_allclose(in_model, after, rtol=1e-5, atol=1e-6)
    assert explain.LRN_TF["depth_radius"] == explain.LRN_PAPER["n"] // 2
    assert explain.LRN_TF["bias"] == explain.LRN_PAPER["k"]


def test_lrn_damping_names_the_channels_with_strong_neighbours():
    rng = np.random.default_rng(3)
    maps = rng.uniform(0, 1, (6, 6, 16)).astype(np.float32)
    maps[..., 9] = 0  # a silent channel: ratio 1, never "most damped"
    maps[..., 4] *= 300  # strong: damps itself and channels 2..6 (its window of n=5)
    after = explain.local_response_norm(maps)
    ratio, damped = explain.lrn_damping(maps, after, top=5)
    np.testing.assert_allclose(ratio, np.where(maps.sum((0, 1)) > 0, after.sum((0, 1))
                                               / np.maximum(maps.sum((0, 1)), 1e-30), 1), rtol=1e-5)
    assert set(damped) == {2, 3, 4, 5, 6} and damped[0] == 4 and ratio[9] == 1
    assert ratio[12] == pytest.approx(2 ** -0.75, rel=1e-3)  # weak neighbourhood: just k^-beta


@pytest.mark.parametrize("side, sizes", [(55, (27, 27)), (13, (6, 6)), (8, (3, 4))])
def test_pooling_sizes_and_values_match_numpy(side, sizes):
    maps = np.random.default_rng(side).normal(size=(side, side, 4)).astype(np.float32)
    pooled = explain.compare_pooling(maps)
    for (name, out), size, window in zip(pooled.items(), sizes, (3, 2)):
        assert name == f"{window}x{window}/2" and out.shape == (size, size, 4)
        windows = np.lib.stride_tricks.sliding_window_view(maps, (window, window), axis=(0, 1))
        np.testing.assert_array_equal(out, windows[::2, ::2].max(axis=(-2, -1))[:size, :size])


def test_dropout_masks_are_the_only_randomness(image):
    keras.utils.set_random_seed(4)
    without = build_model("cifar", num_classes=10, dropout=0.0)
    sampled, test = explain.dropout_predictions(without, image, masks=2)
    np.testing.assert_allclose(sampled, np.stack([test, test]), atol=1e-6)
    with_dropout = build_model("cifar", num_classes=10, dropout=0.5)
    with_dropout.set_weights(without.get_weights())
    sampled, test = explain.dropout_predictions(with_dropout, image, masks=3)
    assert sampled.shape == (3, 10) and np.abs(sampled[0] - sampled[1]).max() > 1e-4
    np.testing.assert_allclose(test, explain.dropout_predictions(without, image, 1)[1], atol=1e-6)
    np.testing.assert_allclose(sampled.sum(axis=1), 1, atol=1e-5)


def test_ten_crops_are_the_padded_corners_and_mirrors(cifar, image):
    views, probabilities, average = explain.ten_crop_predictions(cifar, image)
    stored = explain.stored_image(image, 32).astype(np.float32)
    padded = np.pad(stored, [(4, 4), (4, 4), (0, 0)])  # the "pad" training crop's extremes
    np.testing.assert_array_equal(views[0], padded[:32, :32])
    np.testing.assert_array_equal(views[3], padded[8:, 8:])
    np.testing.assert_array_equal(views[4], stored)
    np.testing.assert_array_equal(views[5], views[0][:, ::-1])
    centre = tf.nn.softmax(cifar(stored[None], training=False))[0]
    np.testing.assert_allclose(probabilities[4], centre, atol=1e-5)
    np.testing.assert_allclose(average, probabilities.mean(axis=0))


def test_training_views_and_the_lighting_shift(image):
    views = explain.training_views(image, 32, count=3)
    assert views.shape == (3, 32, 32, 3) and views.min() >= 0 and views.max() <= 255
    assert np.abs(views[0] - views[1]).max() > 1
    grey = np.full((4, 4, 3), 128, np.float32)
    shifted = augment.lighting(grey, tf.constant([5, 6])).numpy()
    np.testing.assert_allclose(shifted - grey, np.broadcast_to(explain.lighting_shift([5, 6]),
                                                               (4, 4, 3)), atol=1e-3)


def test_parallelism_counts_the_paper_exchanges():
    plan = explain.parallelism(build_model("paper"), batch_size=128, replicas=4)
    assert plan["exchange_layers"] == ["conv3", "fc6", "fc7", "fc8"]
    crossing = 13 * 13 * 256 + 6 * 6 * 256 + 4096 + 4096  # the inputs of conv3, fc6, fc7, fc8
    assert plan["model_parallel_bytes"] == 2 * crossing * 128 * 4
    assert plan["data_parallel_bytes_per_replica"] == pytest.approx(1.5 * 60_965_224 * 4)


def test_figures_are_drawn_from_the_image(cifar, paper, image, tmp_path):
    from alexnet_tf import explain_figures

    paths = explain_figures.draw_all(cifar, image, tmp_path / "a", paper=paper)
    assert sorted(p.name for p in paths) == sorted(
        ["architecture.png", "relu.png", "lrn.png", "pooling.png", "dropout.png",
         "augmentation.png", "parallelism.png", "architecture_paper.png"])
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    other = explain_figures.draw_all(cifar, 255 - image, tmp_path / "b", paper=paper)
    changed = {p.name for p, q in zip(paths, other) if p.read_bytes() != q.read_bytes()}
    assert {"architecture.png", "relu.png", "lrn.png", "pooling.png"} <= changed


def test_explain_cli_bad_image_is_one_line(tmp_path, capsys):
    (tmp_path / "x.png").write_bytes(b"not an image")
    for path, message in [(tmp_path / "missing.png", "No such file"), (tmp_path / "x.png", "")]:
        assert explain.main(["--image", str(path), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_model_from_export_gives_the_exported_weights(cifar, image, tmp_path):
    from alexnet_tf import export

    version = export.export_model(cifar, tmp_path / "m", class_names=[str(i) for i in range(10)],
                                  metadata={"config": {"variant": "cifar"}})
    rebuilt = explain.model_from_export(version)
    for name in ("conv1", "lrn1", "fc8"):
        np.testing.assert_allclose(explain.activation_maps(rebuilt, image, [name])[name],
                                   explain.activation_maps(cifar, image, [name])[name], atol=1e-5)
    served = tf.saved_model.load(str(version)).signatures["inspect"](images=tf.constant(image[None]))
    np.testing.assert_allclose(explain.activation_maps(rebuilt, image, ["conv2"])["conv2"],
                               served["conv2"][0].numpy(), atol=1e-4)
    (version / "assets" / "metadata.json").write_text('{"image_size": 32}')
    with pytest.raises(ValueError, match="records no variant"):
        explain.model_from_export(version)
