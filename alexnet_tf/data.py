"""Loaded data and the tf.data pipelines that turn it into batches for Keras.

`sources.load` reads a source into a `Data` of `Split`s of stored images (uint8, `load_size`
square, unbatched); `train_pipeline` and `eval_pipeline` batch a split for training and evaluation.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from alexnet_tf import augment

SPLITS = ("train", "val", "test")
AUTOTUNE = tf.data.AUTOTUNE


class DataError(Exception):
    """A problem with the user's data, reported to them as one line."""


@dataclasses.dataclass(frozen=True)
class Geometry:
    """How images are stored and cropped for a model input of `image_size`."""

    image_size: int
    load_size: int  # images are stored as load_size x load_size (short side scaled, centre crop)
    crop: str  # training crop: "pad", "random" or "none" (see CROPS)

    @property
    def crop_fraction(self):
        return self.image_size / self.load_size


CROPS = {
    "random": "random crops of images stored at 8/7 of the input size (the paper's 224 of 256)",
    "pad": "pad-4-and-crop of images stored at the input size (CIFAR)",
    "none": "the whole image, stored resized to the input size (no crop in training or test)",
}


def default_crop(image_size):
    """CIFAR-sized inputs pad-and-crop, larger ones crop a larger stored image."""
    return "pad" if image_size <= 64 else "random"


def geometry_for(image_size, crop=None):
    """How images are stored and cropped for `crop` (one of CROPS; None: `default_crop`)."""
    crop = crop or default_crop(image_size)
    if crop == "random":
        # Section 2 and 4.1: 256x256 images, random 224 (227) crops; other sizes keep the ratio.
        load_size = 256 if image_size in (224, 227) else round(image_size * 256 / 224)
        return Geometry(image_size, load_size, "random")
    if crop not in CROPS:
        raise ValueError(f"Unknown crop '{crop}'; expected one of {', '.join(CROPS)}.")
    return Geometry(image_size, image_size, crop)


@dataclasses.dataclass
class Split:
    dataset: tf.data.Dataset  # (uint8 [L, L, 3], int32 label), unbatched
    size: int
    images: np.ndarray | None = None  # the decoded images when cached in memory


@dataclasses.dataclass
class Data:
    name: str
    class_names: tuple
    train: Split | None  # None when not asked for (`sources.load(splits=...)`) or, for test, absent
    val: Split | None
    test: Split | None
    bad_files: list


def train_pipeline(split, preset, *, batch_size, num_classes, seed):
    """Shuffled, augmented, one-hot batches of `batch_size` (the global batch); `preset` (an
    augment.TrainPreset, built by `augment.train_preset` from the run's config) augments."""
    buffer = split.size if split.images is not None else min(split.size, 10_000)
    images = split.dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    # One stateless seed pair per image, new each epoch, the same for the same `seed`.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip(images, seeds).map(
        lambda example, pair: (preset.image(example[0], pair), example[1]),
        num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=True, num_parallel_calls=AUTOTUNE)
    ds = ds.map(lambda x, y: (x, tf.one_hot(y, num_classes)))
    if preset.per_batch:
        ds = tf.data.Dataset.zip(ds, seeds).map(lambda batch, pair: preset.batch(*batch, pair),
                                                num_parallel_calls=AUTOTUNE)
    return _finish(ds)


def eval_pipeline(split, geometry, *, batch_size, num_classes=None, ten_crop=False,
                  drop_remainder=False):
    """Centre-cropped batches (or [batch, 10, S, S, 3] views with `ten_crop`).

    Labels are one-hot when `num_classes` is given (for Keras metrics), else integers. With
    `ten_crop`, `batch_size` counts views (batches of batch_size // 10 images, at least one),
    so the model takes as many images per call, and as much memory, either way.
    """
    if ten_crop:
        batch_size = max(1, batch_size // 10)

        def views(image):
            return augment.ten_crop(image, geometry.image_size, geometry.crop)
    else:
        def views(image):
            return augment.resize_and_center_crop(image, geometry.image_size, geometry.crop_fraction)
    ds = split.dataset.map(lambda x, y: (views(x), y), num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if num_classes:
        ds = ds.map(lambda x, y: (x, tf.one_hot(y, num_classes)))
    return _finish(ds)


def _finish(ds):
    options = tf.data.Options()
    # Shard by element across workers: works for in-memory arrays and file lists alike.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(AUTOTUNE)
