import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from alexnet_tf import augment
from helpers import preset


def image(size=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def both_ways(fn, *args):
    """Runs fn eagerly and inside tf.data; returns both results."""
    eager = fn(*[tf.constant(a) for a in args])
    ds = tf.data.Dataset.from_tensors(tuple(args)).map(fn)
    return np.asarray(eager), np.asarray(next(iter(ds)))


@pytest.mark.parametrize("crop, stored, size", [("pad", 32, 32), ("random", 73, 64), ("none", 50, 40)])
def test_train_preset_shapes_and_determinism(crop, stored, size):
    fn = preset(size, crop, lighting=0.1).image
    eager, in_data = both_ways(fn, image(stored), np.array([1, 2], np.int64))
    assert eager.shape == (size, size, 3) and eager.dtype == np.float32
    np.testing.assert_allclose(eager, in_data, atol=1e-4)
    other = fn(tf.constant(image(stored)), tf.constant([3, 4], tf.int64)).numpy()
    assert not np.allclose(eager, other)


def test_flip_really_flips():
    img = image(32)
    flips = [preset(32, "none").image(img, tf.constant([s, 0])).numpy() for s in range(20)]
    flipped = [f for f in flips if np.array_equal(f, img[:, ::-1].astype(np.float32))]
    kept = [f for f in flips if np.array_equal(f, img.astype(np.float32))]
    assert flipped and kept and len(flipped) + len(kept) == 20


def test_pca_lighting_statistics():
    flat = np.full((4, 4, 3), 128, np.uint8)
    shifts = np.stack([augment.lighting(flat, tf.constant([s, 7]))[0, 0].numpy() - 128
                       for s in range(3000)])
    eigvec, eigval = np.array(augment.IMAGENET_EIGVEC), np.array(augment.IMAGENET_EIGVAL)
    # Each channel's shift is a sum of independent normals: var_c = sum_j (v_cj * 0.1 * l_j * 255)^2.
    expected_std = np.sqrt(((eigvec * 0.1 * eigval * 255) ** 2).sum(axis=1))
    np.testing.assert_allclose(shifts.std(axis=0), expected_std, rtol=0.08)
    np.testing.assert_allclose(shifts.mean(axis=0), 0, atol=0.2)
    # The same alpha moves every pixel alike.
    mid = np.random.default_rng(0).integers(60, 190, (8, 8, 3)).astype(np.uint8)
    shift = augment.lighting(mid, tf.constant([1, 1])).numpy() - mid
    np.testing.assert_allclose(shift, np.broadcast_to(shift[0, 0], shift.shape), atol=1e-4)
    assert np.abs(shift[0, 0]).max() > 0.01


def test_pca_from_images_recovers_a_known_direction():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (20000, 1)).repeat(3, axis=1)  # variance only along (1, 1, 1)
    eigval, eigvec = augment.pca_from_images(grey.reshape(-1, 1, 1, 3))
    assert eigval[0] > 100 * max(eigval[1], 1e-12)
    np.testing.assert_allclose(np.abs(np.array(eigvec)[:, 0]), np.full(3, 3 ** -0.5), atol=1e-6)


def test_ten_crop():
    img = image(40)
    eager, in_data = both_ways(lambda x: augment.ten_crop(x, 32, crop="random"), img)
    assert eager.shape == (10, 32, 32, 3)
    np.testing.assert_array_equal(eager, in_data)
    np.testing.assert_array_equal(eager[0], img[:32, :32])  # top-left corner
    np.testing.assert_array_equal(eager[4], img[4:36, 4:36])  # centre
    np.testing.assert_array_equal(eager[5], eager[0][:, ::-1])  # its mirror
    padded = augment.ten_crop(image(32), 32, crop="pad").numpy()
    assert padded.shape == (10, 32, 32, 3) and np.all(padded[0, :4] == 0)


def test_resize_and_center_crop():
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, 10:30] = 200  # the centre square is bright
    out = augment.resize_and_center_crop(wide, 10).numpy()
    assert out.shape == (10, 10, 3) and out.mean() > 190
    batch = augment.resize_and_center_crop(np.stack([wide, wide]), 8, crop_fraction=0.5).numpy()
    assert batch.shape == (2, 8, 8, 3)
    # crop_fraction 0.5: short side 20 -> 16, then the centre 8x8 lies inside the bright band.
    assert batch.min() > 190
    same = augment.resize_and_center_crop(image(32), 32).numpy()
    np.testing.assert_allclose(same, image(32), atol=1e-3)


def test_lighting_and_resize_run_eagerly_and_in_tf_data():
    eager, in_data = both_ways(lambda x, s: augment.lighting(x, s), image(8), np.array([4, 2]))
    np.testing.assert_allclose(eager, in_data, atol=1e-4)
    eager, in_data = both_ways(lambda x: augment.resize_and_center_crop(x, 12, 0.75), image(30))
    assert eager.shape == (12, 12, 3)
    np.testing.assert_allclose(eager, in_data, atol=1e-3)


def test_cutout_blanks_one_square_of_its_size_and_keeps_the_rest():
    img = np.full((32, 32, 3), 200, np.uint8)
    fill = (1.0, 2.0, 3.0)
    sizes = []
    for s in range(20):
        seed = tf.constant([s, 7])
        out = preset(32, "none", flip=False, cutout=8, fill=fill).image(img, seed).numpy()
        blank = np.all(out == fill, axis=-1)
        assert np.all(out[~blank] == 200)
        rows, cols = np.nonzero(blank)
        # One axis-aligned rectangle, at most 8x8 (smaller where the border cuts it).
        assert blank.sum() == (np.ptp(rows) + 1) * (np.ptp(cols) + 1) and blank.sum() <= 64
        sizes.append(blank.sum())
        # Cutout takes its own seed: the rest of the augmentation is unchanged by it.
        plain = preset(32, "none", flip=False).image(img, seed).numpy()
        assert np.array_equal(plain[~blank], out[~blank])
    assert 64 in sizes and min(sizes) < 64  # whole squares, and some cut by the border


def test_cutout_keeps_the_crop_and_flip_of_a_seed():
    img = np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8)
    seed = tf.constant([3, 4])
    plain = preset(32, "pad").image(img, seed).numpy()
    cut = preset(32, "pad", cutout=8, fill=(-1.0, -1.0, -1.0)).image(img, seed).numpy()
    kept = ~np.all(cut == -1.0, axis=-1)
    assert kept.sum() < 32 * 32 and np.array_equal(plain[kept], cut[kept])


def torch_antialiased_bilinear_weights(in_size, out_size):
    """The [out, in] matrix of torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False, antialias=True) along one axis, transcribed from PyTorch's
    antialiased kernel (Pillow's resampling): a triangle filter widened by the scale when
    shrinking, weights normalised to sum to 1 at the borders."""
    scale = in_size / out_size
    support = scale if scale >= 1 else 1.0
    inv = 1 / scale if scale >= 1 else 1.0
    matrix = np.zeros((out_size, in_size))
    for i in range(out_size):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        w = np.maximum(0.0, 1 - np.abs((np.arange(lo, hi) - center + 0.5) * inv))
        matrix[i, lo:hi] = w / w.sum()
    return matrix


def torch_seed_input(images, size=96):
    """The tutorial's prep: F.interpolate(x / 255, 96, bilinear, antialias) then (x - .5) / .5."""
    rows = torch_antialiased_bilinear_weights(images.shape[1], size)
    cols = torch_antialiased_bilinear_weights(images.shape[2], size)
    resized = np.einsum("oh,nhwc,pw->nopc", rows, images.astype(np.float64) / 255.0, cols)
    return (resized - 0.5) / 0.5


def test_seed_preprocessing_matches_pytorchs_antialiased_bilinear():
    """32 -> 96 px as the tutorial does it: the export's in-graph resize and the model's
    normalisation give its input; the stored uint8 images round it to the nearest level."""
    from alexnet_tf import build_model
    from alexnet_tf.sources import _store

    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    expected = torch_seed_input(images)
    normalize = build_model("seed", num_classes=10, image_size=95).get_layer("normalize")
    exported = augment.resize_and_center_crop(images, 96, 1.0)  # export.py's preprocess
    np.testing.assert_allclose(normalize(exported).numpy(), expected, atol=1e-5)
    stored = np.stack([_store(tf.constant(image), 96).numpy() for image in images])
    assert stored.dtype == np.uint8
    assert np.abs(stored - ((expected + 1) * 127.5)).max() <= 0.5 + 1e-3
    # Pillow's own bilinear resize of float images (mode "F"), as an independent check.
    pil = np.stack([np.asarray(Image.fromarray(images[0, ..., c].astype(np.float32), "F")
                               .resize((96, 96), Image.BILINEAR)) for c in range(3)], -1)
    np.testing.assert_allclose(exported.numpy()[0], pil, atol=1e-3)


def test_jpeg_decodes_to_pillows_pixels(tmp_path):
    """The accurate IDCT: the pixels Pillow (and so PyTorch loaders and the app) decode."""
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(128, 60, (32, 32, 3)), 0, 255).astype(np.uint8)
    path = tmp_path / "x.jpg"
    Image.fromarray(image).save(path, quality=75)
    got = augment.decode_image(tf.io.read_file(str(path))).numpy()
    np.testing.assert_array_equal(got, np.asarray(Image.open(path).convert("RGB")))
    png = tmp_path / "x.png"
    Image.fromarray(image).save(png)
    np.testing.assert_array_equal(augment.decode_image(tf.io.read_file(str(png))).numpy(), image)
