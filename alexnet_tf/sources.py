"""Where images come from: tensorflow-datasets, a folder of class subfolders, or `synthetic`.

`load` reads a source into a `data.Data` of stored uint8 images, decoding each file once.
"""

import dataclasses
import os
import pathlib

import keras
import numpy as np
import tensorflow as tf

from alexnet_tf import augment
from alexnet_tf.augment import IMAGE_EXTENSIONS
from alexnet_tf.data import AUTOTUNE, SPLITS, Data, DataError, Split, geometry_for
from alexnet_tf.errors import one_line

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
# Above this many bytes of decoded images, stream from files instead of caching in memory
# (from_tensor_slices also embeds the array in the dataset graph, which must stay under 2 GB).
CACHE_LIMIT_BYTES = 1_500_000_000
SYNTHETIC_SIZES = {"train": 1024, "val": 256, "test": 256}
# Beside train/, a folder of one of these names is the validation split (not carved from train).
VAL_DIRS = ("val", "validation")
VAL_FRACTION, SPLIT_SEED = 0.1, 0  # train's --val-fraction and --split-seed defaults


def load(source, *, image_size, val_fraction=VAL_FRACTION, split_seed=SPLIT_SEED, limit=None,
         cache=True, data_dir=None, splits=SPLITS, crop=None):
    """Loads `source`: a tfds name (`cifar10`, `tfds:NAME`), a folder, or `synthetic`.

    Only the `splits` named are decoded (the others are None): evaluating on the 5,000 held-out
    images need not decode the 45,000 training ones. The held-out split is the same either way,
    and depends on `split_seed` alone (a folder's `val_fraction` share; synthetic images), which
    also orders a folder's training files, so it picks the ones `limit` keeps. Images are
    stored for `crop` (data.CROPS; None: the default for `image_size`).
    """
    geometry = geometry_for(image_size, crop)
    if unknown := set(splits) - set(SPLITS):
        raise ValueError(f"unknown splits {sorted(unknown)}; expected some of {SPLITS}")
    if source == "synthetic":
        data = _load_synthetic(geometry, split_seed, limit)
        return dataclasses.replace(data, **{s: None for s in SPLITS if s not in splits})
    if is_folder(source):
        return _load_folder(pathlib.Path(source), geometry, val_fraction, split_seed, limit,
                            cache, splits)
    return _load_tfds(source.removeprefix("tfds:"), geometry, val_fraction, limit, cache, data_dir,
                      splits)


def is_folder(source):
    """--data names a folder when it is a path (a separator, a leading dot) or an existing
    folder; otherwise it is a tensorflow-datasets name (or `synthetic`)."""
    return source != "synthetic" and not source.startswith("tfds:") and (
        os.sep in source or source.startswith(".") or os.path.isdir(source))


def folder_name(path):
    """The data folder's name, its parent's for a train/ folder (cifar10/train -> cifar10)."""
    path = pathlib.Path(path).resolve()
    return path.parent.name if path.name in ("train", "training") else path.name


def split_settings(source, *, val_fraction, split_seed):
    """What the held-out split of `source` depends on: runs that agree here hold out the same
    images. A folder's own val/ depends on neither, tfds' carved split on the fraction alone."""
    if is_folder(source):
        if _split_dirs(pathlib.Path(source))["val"] is not None:
            return {}
        return {"val_fraction": val_fraction, "split_seed": split_seed}
    if source == "synthetic":
        return {"split_seed": split_seed}
    return {"val_fraction": val_fraction}


def identity(source):
    """What `source` (a --data) names, the same from any directory: a folder's absolute path,
    else the tensorflow-datasets name (or `synthetic`)."""
    return str(pathlib.Path(source).resolve()) if is_folder(source) else source.removeprefix(
        "tfds:")


def trained_on(metadata):
    """The `identity` of the data an export's training run read (its metadata.json), from the
    absolute path training records for a folder; None when the metadata does not say."""
    if isinstance(metadata.get("data_path"), str):
        return str(pathlib.Path(metadata["data_path"]).resolve())
    data = trained_config(metadata).get("data")
    return identity(data) if isinstance(data, str) else None


def trained_split(metadata, *, val_fraction=None, split_seed=None):
    """The val_fraction and split_seed an export's training run drew its held-out split with,
    unless given here; train's defaults where its metadata.json is silent or hand-edited."""
    trained = trained_config(metadata)

    def recorded(key, kind, default):
        value = trained.get(key)
        return value if isinstance(value, kind) and not isinstance(value, bool) else default

    return {"val_fraction": recorded("val_fraction", (int, float), VAL_FRACTION)
            if val_fraction is None else val_fraction,
            "split_seed": recorded("split_seed", int, SPLIT_SEED)
            if split_seed is None else split_seed}


def held_out(metadata):
    """Which images an export's training run held out: (`trained_on`, `split_settings`).
    Exports that agree here were validated on the same images."""
    data = trained_on(metadata)
    split = trained_split(metadata)
    return data, split_settings(data, **split) if data is not None else split


def trained_config(metadata):
    """The run's config an export's metadata.json records; {} if it records none."""
    trained = metadata.get("config")
    return trained if isinstance(trained, dict) else {}


def write_bad_files(bad_files, path):
    """Reports skipped files once: a count on the console, the names in `path`."""
    path = pathlib.Path(path)
    # The list is this load's: one left by an earlier load (files fixed since) would mislead.
    path.unlink(missing_ok=True)
    if not bad_files:
        return
    path.write_text("".join(f"{name}\n" for name in bad_files))
    print(f"Skipped {len(bad_files)} unreadable image file(s); their names are in {path}")


def _store(image, load_size):
    """One decoded image -> uint8 load_size x load_size (short side scaled, centre crop)."""
    def resize():
        resized = augment.resize_and_center_crop(image, load_size)
        return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

    shape = tf.shape(image)
    already_stored = tf.logical_and(tf.equal(shape[0], load_size), tf.equal(shape[1], load_size))
    stored = tf.cond(already_stored, lambda: tf.cast(image, tf.uint8), resize)  # CIFAR: no resize
    return tf.ensure_shape(stored, [load_size, load_size, 3])


# ---- folders -------------------------------------------------------------------------------

def _split_dirs(root):
    """train/ with optional val/ (or validation/) and test/ beside it, or one folder of classes."""
    if not (root / "train").is_dir():
        return {"train": root, "val": None, "test": None}
    split_dirs = {"train": root / "train"}
    for name, candidates in {"val": VAL_DIRS, "test": ("test",)}.items():
        split_dirs[name] = next((root / c for c in candidates if (root / c).is_dir()), None)
    return split_dirs


def _load_folder(root, geometry, val_fraction, split_seed, limit, cache, wanted):
    if not root.is_dir():
        raise DataError(f"Data folder not found: {root}")
    split_dirs = _split_dirs(root)
    class_names, train_files = _scan(split_dirs["train"])
    rng = np.random.default_rng(split_seed)
    if split_dirs["val"] is None:
        if not 0 < val_fraction < 1:
            raise DataError(f"{root} has no val/ folder: --val-fraction must be in (0, 1), "
                            f"got {val_fraction}")
        order = rng.permutation(len(train_files))
        n_val = max(1, round(len(train_files) * val_fraction))
        val_files = [train_files[i] for i in order[:n_val]]
        train_files = [train_files[i] for i in order[n_val:]]
    else:
        val_files = _scan(split_dirs["val"], class_names)[1]
        train_files = [train_files[i] for i in rng.permutation(len(train_files))]
    if limit:
        train_files = train_files[:limit]
    test_files = _scan(split_dirs["test"], class_names)[1] if split_dirs["test"] else None
    bad = []
    splits = {name: _decode_files(files, geometry.load_size, cache, name, bad)
              for name, files in [("train", train_files), ("val", val_files), ("test", test_files)]
              if files is not None and name in wanted}
    return Data(folder_name(root), class_names, splits.get("train"), splits.get("val"),
                splits.get("test"), bad)


def _scan(folder, expected_classes=None):
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{folder} has no class subfolders (expected {folder}/<class>/<image>)")
    class_names = tuple(p.name for p in class_dirs)
    if expected_classes is not None and class_names != tuple(expected_classes):
        raise DataError(f"{folder} has classes {list(class_names)}, but the training classes are "
                        f"{list(expected_classes)}")
    files = []
    progress = keras.utils.Progbar(len(class_dirs), unit_name="class")
    print(f"Scanning {folder}")
    for label, class_dir in enumerate(class_dirs):
        images = sorted(e.path for e in os.scandir(class_dir)
                        if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))
        if not images:
            raise DataError(f"Class folder {class_dir} holds no {'/'.join(IMAGE_EXTENSIONS)} images")
        files += [(path, label) for path in images]
        progress.update(label + 1)
    return class_names, files


def _decode_files(files, load_size, cache, name, bad):
    paths = [path for path, _ in files]
    labels = np.array([label for _, label in files], np.int32)

    def read(path, label):
        return _store(augment.decode_image(tf.io.read_file(path)), load_size), label, path

    # Corrupt files raise in decode; ignore_errors drops them, and the surviving paths tell which.
    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    ds = ds.map(read, num_parallel_calls=AUTOTUNE).ignore_errors()
    if not cache or len(files) * load_size * load_size * 3 > CACHE_LIMIT_BYTES:
        print(f"{name}: streaming {len(files)} images from files (not cached in memory)")
        return Split(ds.map(lambda image, label, path: (image, label)), len(files))
    images = np.empty((len(files), load_size, load_size, 3), np.uint8)
    kept_labels, kept_paths, count = np.empty_like(labels), set(), 0
    print(f"Decoding {name} images into memory ({len(files)} files)")
    progress = keras.utils.Progbar(len(files), unit_name="image")
    for batch_images, batch_labels, batch_paths in ds.batch(512).as_numpy_iterator():
        images[count : count + len(batch_images)] = batch_images
        kept_labels[count : count + len(batch_images)] = batch_labels
        kept_paths.update(p.decode() for p in batch_paths)
        count += len(batch_images)
        progress.update(count)
    bad += [path for path in paths if path not in kept_paths]
    if count == 0:
        raise DataError(f"None of the {len(files)} {name} image files could be read")
    return _cached_split(images[:count], kept_labels[:count])


def _cached_split(images, labels):
    return Split(tf.data.Dataset.from_tensor_slices((images, labels)), len(images), images)


# ---- tensorflow-datasets -------------------------------------------------------------------

def _load_tfds(name, geometry, val_fraction, limit, cache, data_dir, wanted):
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.download import downloader

    try:
        tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # tfds raises DatasetNotFoundError with a long listing
        raise DataError(f"Unknown tensorflow-datasets dataset '{name}' ({type(error).__name__}). "
                        "Use --data cifar10, --data tfds:NAME or --data PATH/TO/FOLDER") from None
    # tfds retries a failed download 10 times with back-off; offline that is minutes of waiting.
    retries, downloader.MAX_RETRIES = downloader.MAX_RETRIES, 2
    try:
        train, info = tfds.load(name, split="train", as_supervised=True, with_info=True,
                                data_dir=data_dir)
    except Exception as error:
        raise DataError(
            f"Could not download or prepare tensorflow-datasets '{name}' "
            f"({type(error).__name__}: {one_line(error, 200)}). Without internet, train from a "
            f"folder of images instead: --data PATH/TO/FOLDER (one subfolder per class)") from None
    finally:
        downloader.MAX_RETRIES = retries
    label_feature = info.features[info.supervised_keys[1]]
    class_names = CIFAR10_CLASSES if name == "cifar10" else tuple(label_feature.names)
    others = {split: tfds.load(name, split=split, as_supervised=True, data_dir=data_dir)
              for split in ("validation", "test") if split in info.splits}
    val = others.get("validation")
    if val is None:  # no validation split: the last `val_fraction` of train
        n_train = int(train.cardinality())
        n_val = max(1, round(n_train * val_fraction))
        train, val = train.take(n_train - n_val), train.skip(n_train - n_val)
    if limit:
        train = train.take(limit)
    splits = {split: _tfds_split(ds, geometry.load_size, cache, split)
              for split, ds in [("train", train), ("val", val), ("test", others.get("test"))]
              if ds is not None and split in wanted}
    return Data(name, class_names, splits.get("train"), splits.get("val"), splits.get("test"), [])


def _tfds_split(ds, load_size, cache, split):
    size = int(ds.cardinality())  # tfds knows its split sizes, slices and `take` included
    channels = ds.element_spec[0].shape[-1]

    def rgb(image):  # grayscale (mnist) and RGBA datasets become RGB, as folders do
        return tf.image.grayscale_to_rgb(image) if channels == 1 else image[..., :3]

    ds = ds.map(lambda image, label: (_store(rgb(image), load_size), tf.cast(label, tf.int32)),
                num_parallel_calls=AUTOTUNE)
    if not cache or size * load_size * load_size * 3 > CACHE_LIMIT_BYTES:
        return Split(ds, size)
    print(f"Decoding {split} into memory")
    images, labels = [], []
    progress = keras.utils.Progbar(size, unit_name="image")
    for batch_images, batch_labels in ds.batch(1024).as_numpy_iterator():
        images.append(batch_images)
        labels.append(batch_labels)
        progress.add(len(batch_images))
    if not images:
        raise DataError(f"tensorflow-datasets split '{split}' is empty")
    return _cached_split(np.concatenate(images), np.concatenate(labels))


# ---- synthetic -----------------------------------------------------------------------------

def _load_synthetic(geometry, split_seed, limit):
    """Ten classes of coloured gratings at class-specific angles, with random phase and noise."""
    class_names = tuple(f"pattern{k}" for k in range(10))
    sizes = dict(SYNTHETIC_SIZES, train=limit or SYNTHETIC_SIZES["train"])
    size = geometry.load_size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    splits = {}
    for index, (name, count) in enumerate(sizes.items()):
        # A generator per split: val and test stay the same images whatever --limit is.
        rng = np.random.default_rng([split_seed, index])
        labels = rng.integers(0, 10, count).astype(np.int32)
        angle = labels * np.pi / 10 + rng.normal(0, 0.05, count)
        phase = rng.uniform(0, 2 * np.pi, count)
        wave = np.sin(2 * np.pi * 4 * (np.cos(angle)[:, None, None] * xx
                                       + np.sin(angle)[:, None, None] * yy) + phase[:, None, None])
        tint = np.stack([np.cos(labels), np.sin(labels), np.cos(2 * labels)], -1)[:, None, None]
        images = 128 + 60 * wave[..., None] * (0.6 + 0.4 * tint) + rng.normal(0, 20, (count, size, size, 3))
        splits[name] = _cached_split(np.clip(images, 0, 255).astype(np.uint8), labels)
    return Data("synthetic", class_names, splits["train"], splits["val"], splits["test"], [])
