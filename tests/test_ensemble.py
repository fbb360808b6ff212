import io
import struct
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from alexnet_tf import ensemble, export
from alexnet_tf.inference import Classifier
from alexnet_tf.model import build_model

CLASSES = ["cat", "dog", "ship"]
REORDERED = ["ship", "cat", "dog"]  # another member's class order: columns follow the names


def member(path, class_names, seed, config=None, image_size=16, **metadata):
    keras.utils.set_random_seed(seed)
    return export.export_model(build_model("cifar", num_classes=3, image_size=image_size), path,
                               class_names=class_names,
                               metadata={"config": config or {"seed": seed, "split_seed": 0},
                                         "metrics": {"top1": 0.1 * seed}, **metadata})


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    base = tmp_path_factory.mktemp("members")
    return [member(base / "a", CLASSES, 1), member(base / "b", REORDERED, 2)]


def test_the_ensemble_export_averages_its_members(members, tmp_path):
    """Section 6 of the paper, as one export: every signature answers the members' mean."""
    assert ensemble.main(["--model", *map(str, members), "--export-dir", str(tmp_path)]) == 0
    joint = Classifier(tmp_path)  # every signature and asset an export has
    assert joint.path.name == "1" and joint.class_names == CLASSES
    a, b = (Classifier(m) for m in members)
    to_first = [REORDERED.index(c) for c in CLASSES]
    x = np.random.default_rng(0).integers(0, 256, (3, 24, 20, 3), dtype=np.uint8)
    own = a.classify(x)["probabilities"], b.classify(x)["probabilities"][:, to_first]
    assert not np.allclose(*own, atol=1e-3)  # two different members
    assert np.ptp(own[1], axis=1).min() > 1e-3  # not uniform: a wrong column order would show
    mean = (own[0] + own[1]) / 2
    out = joint.classify(x)
    np.testing.assert_allclose(out["probabilities"], mean, atol=1e-6)
    assert [[c.decode() for c in row] for row in out["top_k_classes"]] == [
        [CLASSES[i] for i in np.argsort(-row)] for row in mean]

    encoded = []
    for image in x:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "PNG")
        encoded.append(buffer.getvalue())
    np.testing.assert_allclose(joint.classify_bytes(encoded)["probabilities"], mean, atol=1e-6)
    views = np.random.default_rng(1).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(
        joint.classify_preprocessed(views)["probabilities"],
        (a.classify_preprocessed(views)["probabilities"]
         + b.classify_preprocessed(views)["probabilities"][:, to_first]) / 2, atol=1e-6)
    # inspect: the first member's insides and Grad-CAM (for its own top class), the ensemble's
    # answer (the app shows it beside them).
    inside, first = joint.inspect(x[0]), a.inspect(x[0])
    assert inside.keys() == first.keys()
    for key in ("gradcam", "conv5", "model_input"):
        np.testing.assert_allclose(inside[key], first[key], atol=1e-6)
    assert inside["gradcam_class"] == first["gradcam_class"] == first["top_k_classes"][0]
    np.testing.assert_allclose(inside["probabilities"], mean[0], atol=1e-6)
    assert list(inside["top_k_classes"]) == list(out["top_k_classes"][0])

    metadata = joint.metadata
    assert metadata["config"] == {"seed": 1, "split_seed": 0} and "metrics" not in metadata  # not measured yet
    assert [m["model"] for m in metadata["members"]] == [str(a.path), str(b.path)]
    assert [m["metrics"]["top1"] for m in metadata["members"]] == [0.1, 0.2]
    assert metadata["parameters"] == a.metadata["parameters"] + b.metadata["parameters"]
    assert (joint.path / "assets.extra" / "tf_serving_warmup_requests").is_file()


@pytest.mark.slow
def test_members_that_disagree_are_refused_in_one_line(members, tmp_path, capsys, monkeypatch):
    base = tmp_path / "others"
    other_classes = member(base / "birds", ["cat", "dog", "bird"], 3)
    other_split = member(base / "split", CLASSES, 4,  # tfds carves by the fraction alone
                         config={"seed": 4, "split_seed": 0, "val_fraction": 0.2})
    other_size = member(base / "size", CLASSES, 5, image_size=24)
    twice = member(base / "twice", ["cat", "cat", "ship"], 6)
    # Trained on `--data folder` (no separator) with two split seeds: told apart by the path
    # training recorded, also from a directory where no `folder` exists.
    folder = {"data": "folder", "val_fraction": 0.1}
    on_folder = [member(base / f"folder{seed}", CLASSES, 7 + seed,
                        config={**folder, "seed": seed, "split_seed": seed},
                        data_path=str(tmp_path / "folder")) for seed in (0, 5)]
    monkeypatch.chdir(base)
    nested = ensemble.export_ensemble([Classifier(m) for m in members], base / "nested")
    cases = [([members[0]], "two or more"), ([members[0], other_classes], "other classes"),
             ([members[0], other_split], "different validation splits"),
             (on_folder, "different validation splits"),
             ([members[0], other_size], "another image_size (24 and 16)"),
             ([members[0], twice], "names a class twice"),
             ([members[0], members[0].parent], "given twice"),
             ([members[1], nested], "an ensemble itself"),
             ([members[0], tmp_path / "nowhere"], "No model at")]
    for models, reason in cases:
        assert ensemble.main(["--model", *map(str, models), "--export-dir",
                              str(tmp_path / "refused")]) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and error[0].startswith("error: ") and reason in error[0], error
    assert not (tmp_path / "refused").exists()
    # Into a member's own base directory it would become that model's newest version.
    assert ensemble.main(["--model", *map(str, members), "--export-dir",
                          str(members[1].parent)]) == 2
    assert "where" in capsys.readouterr().err and sorted(
        p.name for p in members[1].parent.iterdir()) == ["1"]


@pytest.mark.slow
def test_the_ensemble_bounds_each_request_itself(members, tmp_path):
    """The ensemble decodes, bounds and crops once, itself (export's limits), so its members'
    own preprocessing never sees a huge image, whenever they were exported."""
    version = ensemble.export_ensemble([Classifier(m) for m in members], tmp_path)
    module = tf.saved_model.load(str(version))  # as TF Serving loads it
    header = struct.pack(">IIBBBBB", 60_000, 9_000, 8, 2, 0, 0, 0)
    claim = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + header
             + struct.pack(">I", zlib.crc32(b"IHDR" + header)))
    for signature, inputs in (("serving_bytes", {"image_bytes": tf.constant([claim])}),
                              ("serving_default", {"images": tf.zeros([1, 4097, 4096, 3],
                                                                      tf.uint8)}),
                              ("inspect", {"images": tf.zeros([1, 4097, 4096, 3], tf.uint8)})):
        with pytest.raises(tf.errors.InvalidArgumentError, match="more than 16777216 pixels"):
            module.signatures[signature](**inputs)
    with pytest.raises(tf.errors.InvalidArgumentError, match="accepts JPEG, PNG or BMP"):
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, "GIF")
        module.signatures["serving_bytes"](image_bytes=tf.constant([buffer.getvalue()]))
    empty = module.signatures["serving_default"](images=tf.zeros([0, 16, 16, 3], tf.uint8))
    assert empty["probabilities"].shape == (0, 3)
    strip = np.random.default_rng(2).integers(0, 256, (1, 1, 100_000, 3), dtype=np.uint8)
    answer = module.signatures["serving_default"](images=tf.constant(strip))["probabilities"]
    assert answer.shape == (1, 3) and np.isfinite(answer).all()  # cropped, then resized
