import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from alexnet_tf import sources
from alexnet_tf.data import DataError


def write_folder(root, classes=("cat", "dog"), per_class=6, size=20):
    rng = np.random.default_rng(0)
    formats = ["jpg", "png", "bmp", "gif"]
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.{formats[i % 4]}")
    return root


def test_folder_formats_grayscale_rgba_and_corrupt(tmp_path):
    root = write_folder(tmp_path / "pets")
    Image.fromarray(np.full((9, 9), 70, np.uint8), "L").save(root / "cat" / "grey.png")
    Image.fromarray(np.full((9, 9, 4), 90, np.uint8), "RGBA").save(root / "dog" / "rgba.png")
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (root / "dog" / "notes.txt").write_text("ignored: not an image extension")
    d = sources.load(str(root), image_size=16, val_fraction=0.25, split_seed=1)
    assert d.class_names == ("cat", "dog")
    assert d.train.size + d.val.size == 6 + 6 + 2  # the corrupt file is skipped
    assert [p.rsplit("/", 1)[-1] for p in d.bad_files] == ["broken.jpg"]
    images, labels = next(iter(d.train.dataset.batch(100)))
    assert images.dtype == tf.uint8 and images.shape[1:] == (16, 16, 3)
    assert set(labels.numpy()) <= {0, 1}
    log = tmp_path / "bad.txt"
    sources.write_bad_files(d.bad_files, log)
    assert log.read_text().strip().endswith("broken.jpg")
    sources.write_bad_files([], log)  # a later load with nothing unreadable: no stale list
    assert not log.exists()


def test_folder_split_is_seeded(tmp_path):
    root = write_folder(tmp_path / "pets", per_class=10)
    first = sources.load(str(root), image_size=16, val_fraction=0.3, split_seed=3)
    again = sources.load(str(root), image_size=16, val_fraction=0.3, split_seed=3)
    other = sources.load(str(root), image_size=16, val_fraction=0.3, split_seed=4)
    np.testing.assert_array_equal(first.val.images, again.val.images)
    assert first.val.size == 6 and not np.array_equal(first.val.images, other.val.images)


def test_split_settings_name_what_the_held_out_split_depends_on(tmp_path):
    """An ensemble's members must hold out the same images (evaluate compares these)."""
    settings = dict(val_fraction=0.2, split_seed=3)
    (tmp_path / "flat" / "cat").mkdir(parents=True)
    assert sources.split_settings(str(tmp_path / "flat"), **settings) == settings
    for name in ("train", "validation"):
        (tmp_path / "own" / name / "cat").mkdir(parents=True)
    assert sources.split_settings(str(tmp_path / "own"), **settings) == {}
    assert sources.split_settings("cifar10", **settings) == {"val_fraction": 0.2}
    assert sources.split_settings("synthetic", **settings) == {"split_seed": 3}


def test_only_the_splits_asked_for_are_decoded(tmp_path):
    root = write_folder(tmp_path / "pets", per_class=10)
    full = sources.load(str(root), image_size=16, val_fraction=0.3, split_seed=3)
    val_only = sources.load(str(root), image_size=16, val_fraction=0.3, split_seed=3,
                            splits=("val",))
    assert val_only.train is None and val_only.test is None
    np.testing.assert_array_equal(val_only.val.images, full.val.images)  # the same held-out images
    assert sources.load("synthetic", image_size=16, limit=8, splits=("test",)).val is None
    # evaluate loads synthetic data without the training run's --limit: the same val images.
    np.testing.assert_array_equal(sources.load("synthetic", image_size=16, limit=8).val.images,
                                  sources.load("synthetic", image_size=16).val.images)
    with pytest.raises(ValueError, match="validation"):
        sources.load(str(root), image_size=16, splits=("validation",))


def test_streaming_without_cache(tmp_path):
    root = write_folder(tmp_path / "pets")
    d = sources.load(str(root), image_size=16, val_fraction=0.25, cache=False)
    assert d.train.images is None
    assert sum(1 for _ in d.train.dataset) == d.train.size


def test_train_val_test_layout_and_errors(tmp_path):
    write_folder(tmp_path / "set" / "train")
    write_folder(tmp_path / "set" / "validation")
    write_folder(tmp_path / "set" / "test")
    d = sources.load(str(tmp_path / "set"), image_size=16)
    assert (d.train.size, d.val.size, d.test.size) == (12, 12, 12)

    write_folder(tmp_path / "bad" / "train")
    write_folder(tmp_path / "bad" / "val", classes=("cat", "cow"))
    with pytest.raises(DataError, match=r"bad/val has classes \['cat', 'cow'\]"):
        sources.load(str(tmp_path / "bad"), image_size=16)

    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "x.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="flat has no class subfolders"):
        sources.load(str(tmp_path / "flat"), image_size=16)

    root = write_folder(tmp_path / "empty")
    (root / "zebra").mkdir()
    with pytest.raises(DataError, match="empty/zebra holds no"):
        sources.load(str(root), image_size=16)

    with pytest.raises(DataError, match="not found"):
        sources.load(str(tmp_path / "missing"), image_size=16)


def test_tfds_code_path_with_mock_data():
    with tfds.testing.mock_data(num_examples=40):
        d = sources.load("cifar10", image_size=32, limit=24)
    assert d.class_names == sources.CIFAR10_CLASSES  # mock data reports '0'..'9'
    assert d.train.size == 24 and d.val.size == 4  # mock data has no split metadata: no test
    images, labels = next(iter(d.train.dataset.batch(8)))
    assert images.shape == (8, 32, 32, 3) and labels.dtype == tf.int32


def test_tfds_download_failure_is_one_clear_line(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Failed to resolve host\nsecond line")

    monkeypatch.setattr(tfds, "load", offline)
    with pytest.raises(DataError) as error:
        sources.load("cifar10", image_size=32)
    message = str(error.value)
    assert "\n" not in message and "--data PATH/TO/FOLDER" in message and "cifar10" in message

    def long_error(*args, **kwargs):  # a real offline error runs to ~400 characters
        raise ConnectionError("Max retries exceeded " + "x" * 150 + " (host='example.org', port=443)")

    monkeypatch.setattr(tfds, "load", long_error)
    with pytest.raises(DataError) as error:
        sources.load("cifar10", image_size=32)
    assert "port=4" not in str(error.value) and "(host='example.org', ...)" in str(error.value)

    def one_long_word(*args, **kwargs):  # shorten() alone would leave just "..."
        raise ConnectionError("https://example.org/" + "a" * 300)

    monkeypatch.setattr(tfds, "load", one_long_word)
    with pytest.raises(DataError) as error:
        sources.load("cifar10", image_size=32)
    assert "ConnectionError: https://example.org/aaa" in str(error.value)
    with pytest.raises(DataError, match="Unknown tensorflow-datasets dataset 'nope_xyz'"):
        sources.load("tfds:nope_xyz", image_size=32)


def test_real_cifar_slice(cifar_dir, tmp_path):
    # A small real slice: link 20 images of three classes, read in place.
    for name in ("cat", "dog", "ship"):
        (tmp_path / name).mkdir()
        for src in sorted((cifar_dir / name).iterdir())[:20]:
            (tmp_path / name / src.name).symlink_to(src)
    d = sources.load(str(tmp_path), image_size=32, val_fraction=0.1)
    assert d.class_names == ("cat", "dog", "ship") and d.train.size + d.val.size == 60
    assert d.train.images.shape[1:] == (32, 32, 3) and d.train.images.std() > 20


def test_tfds_grayscale_dataset_becomes_rgb():
    with tfds.testing.mock_data(num_examples=20):
        d = sources.load("mnist", image_size=32)
    images, _ = next(iter(d.train.dataset.batch(4)))
    assert images.shape == (4, 32, 32, 3)


def test_tfds_names_with_a_slash_are_not_folders(monkeypatch):
    seen = []

    def offline(name, **kwargs):
        seen.append(name)
        raise ConnectionError("offline")

    monkeypatch.setattr(tfds, "load", offline)
    with pytest.raises(DataError, match="imagenette/320px-v2"):
        sources.load("tfds:imagenette/320px-v2", image_size=32)
    assert seen == ["imagenette/320px-v2"]
