import numpy as np
import tensorflow as tf

from alexnet_tf import data, sources
from helpers import preset


def test_pipelines_batches_and_determinism():
    d = sources.load("synthetic", image_size=32, limit=64)
    geometry = data.geometry_for(32)

    def first_batch(seed):
        ds = data.train_pipeline(d.train, preset(32, geometry.crop, lighting=0.1), batch_size=16,
                                 num_classes=10, seed=seed)
        return next(iter(ds))

    x, y = first_batch(5)
    assert x.shape == (16, 32, 32, 3) and x.dtype == tf.float32 and y.shape == (16, 10)
    np.testing.assert_array_equal(x, first_batch(5)[0])
    assert not np.array_equal(x, first_batch(6)[0])
    ds = data.train_pipeline(d.train, preset(32, geometry.crop), batch_size=16, num_classes=10,
                             seed=5)
    epochs = [next(iter(ds))[0].numpy() for _ in range(2)]
    assert not np.array_equal(*epochs)  # reshuffled and re-augmented each epoch
    # batch_size counts views: the model takes 40 images a call, as without ten_crop.
    views, labels = next(iter(data.eval_pipeline(d.val, geometry, batch_size=40, ten_crop=True)))
    assert views.shape == (4, 10, 32, 32, 3) and labels.dtype == tf.int32


def test_mixup_blends_images_and_labels_alike():
    d = sources.load("synthetic", image_size=32, limit=64)
    geometry = data.geometry_for(32)

    def first_batch(mixup):
        ds = data.train_pipeline(d.train, preset(32, geometry.crop, flip=False, mixup=mixup),
                                 batch_size=32, num_classes=10, seed=3)
        return [t.numpy() for t in next(iter(ds))]

    plain_x, plain_y = first_batch(0.0)
    x, y = first_batch(1.0)  # alpha 1: weights uniform on [0, 1], so no image is left alone
    assert x.dtype == np.float32 and y.dtype == np.float32
    np.testing.assert_array_equal(plain_y.max(axis=1), 1.0)  # off: one-hot as before
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    assert (np.sort(y, axis=1)[:, -2] > 0.01).sum() >= 16  # two classes in most labels
    # Each image is w * itself + (1 - w) * a partner, with w its own label's share.
    mine = (y * plain_y).sum(axis=1)
    w = mine[:, None, None, None]
    partner = (x - w * plain_x) / np.maximum(1 - w, 1e-6)
    blended = mine < 0.99
    distances = ((partner[blended][:, None] - plain_x[None]) ** 2).mean(axis=(2, 3, 4))
    assert distances.min(axis=1).max() < 1.0  # each partner is an image of the batch
    np.testing.assert_array_equal(x, first_batch(1.0)[0])  # seeded: the same batches again

    # The next epoch's batches don't depend on how far the last iterator read ahead (fit's
    # prefetching to build a model reads a timing-dependent count).
    def next_epoch_after_reading(batches):
        ds = data.train_pipeline(d.train, preset(32, geometry.crop, mixup=1.0), batch_size=16,
                                 num_classes=10, seed=3)
        for _ in zip(range(batches), ds):
            pass
        return next(iter(ds))[1].numpy()

    np.testing.assert_array_equal(next_epoch_after_reading(1), next_epoch_after_reading(3))
    x, y = first_batch(0.01)  # Gamma(0.01) draws are mostly below 1e-30
    assert np.isfinite(x).all() and np.isfinite(y).all()
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


def test_geometry():
    assert data.geometry_for(32) == data.Geometry(32, 32, "pad")
    assert data.geometry_for(227) == data.Geometry(227, 256, "random")
    assert data.geometry_for(96).load_size == 110
    # crop="none" (the seed recipe): stored at the input size, used whole, crop_fraction 1.
    assert data.geometry_for(96, "none") == data.Geometry(96, 96, "none")
    assert data.geometry_for(96, "none").crop_fraction == 1.0
    assert data.geometry_for(96, "pad") == data.Geometry(96, 96, "pad")


def test_no_crop_no_flip_trains_on_the_stored_images_as_they_are():
    """The seed recipe's pipeline: every training and validation image is the stored one (the
    32 px image resized whole to the input size), nothing random but the order."""
    d = sources.load("synthetic", image_size=48, limit=32, crop="none")
    assert d.train.images.shape == (32, 48, 48, 3)
    geometry = data.geometry_for(48, "none")
    x, y = next(iter(data.train_pipeline(d.train, preset(48, "none", flip=False), batch_size=32,
                                         num_classes=10, seed=0)))
    stored = {image.tobytes(): label for image, label in zip(d.train.images, d.train.dataset.map(
        lambda _, label: label).as_numpy_iterator())}
    batch = x.numpy().astype(np.uint8)
    assert np.array_equal(x.numpy(), batch)  # whole pixel values: no resampling on the way
    assert sorted(image.tobytes() for image in batch) == sorted(stored)
    assert all(stored[image.tobytes()] == label for image, label in zip(batch, y.numpy().argmax(1)))
    val, _ = next(iter(data.eval_pipeline(d.val, geometry, batch_size=8)))
    np.testing.assert_array_equal(val.numpy(), d.val.images[:8])


def test_cutout_fills_with_the_colour_the_model_maps_to_zero():
    d = sources.load("synthetic", image_size=32, limit=16)
    x, _ = next(iter(data.train_pipeline(d.train, preset(32, "pad", cutout=32, fill=(127.5,) * 3),
                                         batch_size=16, num_classes=10, seed=0)))
    assert (np.isclose(x.numpy(), 127.5).all(axis=-1)).mean() > 0.2
