import base64
import inspect
import io
import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import time
import types
import zipfile
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from alexnet_tf import export, inference
from alexnet_tf.model import build_model
from helpers import run_module, write_image_folder

CLASSES = ["cat", "dog", "ship"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small float32 model, exported once (version 1) for every test here."""
    keras.utils.set_random_seed(0)
    model = build_model("cifar", num_classes=3, image_size=32)
    base = tmp_path_factory.mktemp("export") / "alexnet_test"
    version = export.export_model(model, base, class_names=CLASSES,
                                  metadata={"metrics": {"top1": 0.5}})
    return model, version


def images(n=4, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_plain_savedmodel_matches_keras(exported):
    model, version = exported
    assert version.name == "1"
    module = tf.saved_model.load(str(version))  # no Keras, no project code needed
    x = images()
    out = module.signatures["serving_default"](images=tf.constant(x))
    expected = tf.nn.softmax(model(x.astype("float32"))).numpy()
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    top = out["top_k_indices"].numpy()
    assert top.shape == (4, 3) and (top[:, 0] == expected.argmax(1)).all()
    assert out["top_k_classes"].numpy()[0, 0].decode() == CLASSES[top[0, 0]]
    # Any size is resized in-graph.
    assert module.signatures["serving_default"](images=tf.zeros([1, 7, 90, 3], tf.uint8))[
        "probabilities"].shape == (1, 3)


def test_bytes_endpoint_agrees_with_tensor_endpoint(exported, tmp_path):
    _, version = exported
    module = tf.saved_model.load(str(version))
    x = images(2, size=48, seed=1)
    for fmt in ("PNG", "JPEG"):
        encoded = []
        for img in x:
            buffer = io.BytesIO()
            Image.fromarray(img).save(buffer, fmt)
            encoded.append(buffer.getvalue())
        decoded = np.stack([decode_in_graph(e).numpy() for e in encoded])
        if fmt == "PNG":
            np.testing.assert_array_equal(decoded, x)
        by_bytes = module.signatures["serving_bytes"](image_bytes=tf.constant(encoded))
        by_tensor = module.signatures["serving_default"](images=tf.constant(decoded))
        np.testing.assert_allclose(by_bytes["probabilities"], by_tensor["probabilities"],
                                   atol=1e-6)
    # TF Serving's REST API decodes {"b64": ...} before the graph: the graph sees raw bytes.
    assert base64.b64decode(base64.b64encode(encoded[0])) == encoded[0]


def test_export_contents(exported):
    _, version = exported
    assert (version / "assets" / "labels.txt").read_text() == "cat\ndog\nship\n"
    metadata = json.loads((version / "assets" / "metadata.json").read_text())
    assert metadata["class_names"] == CLASSES and metadata["image_size"] == 32
    assert metadata["metrics"] == {"top1": 0.5} and metadata["parameters"] > 1e6
    from tensorflow_serving.apis import prediction_log_pb2

    records = list(tf.data.TFRecordDataset(
        str(version / "assets.extra" / "tf_serving_warmup_requests")).as_numpy_iterator())
    assert 1 <= len(records) <= 1000
    log = prediction_log_pb2.PredictionLog.FromString(records[0])
    assert log.predict_log.request.model_spec.signature_name == "serving_default"
    assert tf.make_ndarray(log.predict_log.request.inputs["images"]).shape == (1, 32, 32, 3)


@pytest.mark.slow
def test_saved_model_cli_lists_signatures(exported):
    _, version = exported
    cli = shutil.which("saved_model_cli")
    if cli is None:
        pytest.skip("saved_model_cli is not on PATH")
    shown = subprocess.run([cli, "show", "--dir", str(version), "--all"], capture_output=True,
                           text=True, timeout=120).stdout
    for text in ("signature_def['serving_default']", "signature_def['serving_bytes']",
                 "inputs['images']", "inputs['image_bytes']", "outputs['probabilities']",
                 "outputs['top_k_classes']", "outputs['top_k_indices']",
                 "outputs['top_k_probabilities']"):
        assert text in shown


def test_versions_increase_and_failed_export_leaves_nothing(tmp_path, monkeypatch):
    model = build_model("cifar", num_classes=2, image_size=16)
    base = tmp_path / "m"
    assert export.export_model(model, base, class_names=["a", "b"]).name == "1"
    (base / "7").mkdir()  # an existing higher version
    (base / "7" / "saved_model.pb").write_bytes(b"")

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(export, "_write_warmup", broken)
    with pytest.raises(OSError, match="disk full"):
        export.export_model(model, base, class_names=["a", "b"])
    assert sorted(p.name for p in base.iterdir()) == ["1", "7"]  # nothing half-written
    monkeypatch.undo()
    assert export.export_model(model, base, class_names=["a", "b"]).name == "8"


def test_inspect_endpoint(exported):
    _, version = exported
    module = tf.saved_model.load(str(version))
    out = module.signatures["inspect"](images=tf.constant(images(1, size=40)))
    assert out["model_input"].shape == (1, 32, 32, 3)
    assert out["gradcam"].shape == (1, 32, 32) and float(tf.reduce_max(out["gradcam"])) <= 1.0
    assert out["conv1_filters"].shape == (5, 5, 3, 64) and out["conv5"].shape[-1] == 128
    assert out["gradcam_class"].numpy()[0] == out["top_k_classes"].numpy()[0, 0]  # explained


@pytest.mark.slow
def test_export_cli_from_checkpoint(tmp_path, capsys):
    model = build_model("cifar", num_classes=2, image_size=16)
    model.save(tmp_path / "best.keras")
    (tmp_path / "labels.txt").write_text("a\nb")  # no final newline: still two classes
    result = run_module("alexnet_tf.export", "--checkpoint", tmp_path / "best.keras",
                        "--export-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-2000:]
    assert inference.Classifier(tmp_path / "out").class_names == ["a", "b"]

    def refused(checkpoint):  # main() in-process: the command's exit code and its last line
        code = export.main(["--checkpoint", str(checkpoint), "--export-dir",
                            str(tmp_path / "out")])
        return code, capsys.readouterr().err.strip().splitlines()[-1]

    (tmp_path / "broken.keras").write_bytes(b"not a zip archive")
    code, line = refused(tmp_path / "broken.keras")
    assert code == 2 and line.startswith("error: ")
    code, line = refused(tmp_path / "nope.keras")
    assert code == 2 and line.startswith("error: checkpoint not found")
    # A model whose layers Keras cannot find (another project's), and a config.json that is
    # JSON but no object: one line each, not a traceback.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    with zipfile.ZipFile(tmp_path / "best.keras") as source, \
            zipfile.ZipFile(foreign / "best.keras", "w") as target:
        for item in source.infolist():
            content = source.read(item)
            if item.filename == "config.json":
                content = content.replace(b"LocalResponseNormalization", b"NoSuchLayer")
            target.writestr(item, content)
    (foreign / "labels.txt").write_text("a\nb\n")
    (tmp_path / "config.json").write_text("[1, 2]")
    for checkpoint in (foreign / "best.keras", tmp_path / "best.keras"):
        code, line = refused(checkpoint)
        assert code == 2 and line.startswith("error: "), line
    # Readable .keras files that are no AlexNet of this project's.
    (tmp_path / "config.json").unlink()
    rgb, any_size = keras.Input((8, 8, 3)), keras.Input((None, None, 3))
    others = {
        "sequential": (keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                                         keras.layers.Dense(2)]), "no functional model"),
        "two_outputs": (keras.Model(rgb, [keras.layers.Flatten()(rgb)] * 2), "2 outputs"),
        "any_size": (keras.Model(any_size, keras.layers.Dense(2)(
            keras.layers.GlobalAveragePooling2D()(any_size))), "not a fixed square RGB"),
        "vector": (keras.Model(vector := keras.Input((10,)), keras.layers.Dense(2)(vector)),
                   "its input is (10,), not a fixed square RGB"),
        "no_conv": (keras.Model(rgb, keras.layers.Dense(2)(keras.layers.Flatten()(rgb))),
                    "no layer conv1"),
    }
    for name, (model, reason) in others.items():
        model.save(tmp_path / f"{name}.keras")
        code, line = refused(tmp_path / f"{name}.keras")
        assert code == 2 and line.startswith("error: ") and reason in line, line
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["1"]  # nothing half-written


@pytest.mark.slow
def test_evaluate_rebuilds_the_training_runs_split(tmp_path, monkeypatch, capsys):
    """Another split seed or fraction would hold out images the model trained on."""
    from alexnet_tf import data as data_lib, evaluate, sources

    model = build_model("cifar", num_classes=3, image_size=16)
    seen = []

    def load(data, splits, **kwargs):  # records what evaluate asks for: no test split, then stop
        seen.append(kwargs)
        if splits == ("test",):
            return types.SimpleNamespace(test=None)
        raise data_lib.DataError("recorded")

    def evaluated(metadata, *flags, data="cifar10"):
        version = export.export_model(model, tmp_path / "m", class_names=CLASSES,
                                      metadata=metadata)
        assert evaluate.main(["--model", str(version), "--data", data, *flags]) == 2
        return seen[-1]["split_seed"], seen[-1]["val_fraction"]

    monkeypatch.setattr(sources, "load", load)
    trained = {"config": {"seed": 7, "split_seed": 1, "val_fraction": 0.2, "data": "cifar10"}}
    assert evaluated(trained) == (1, 0.2)
    assert evaluated(trained, "--split-seed", "3") == evaluated(trained, "--seed", "3") == (3, 0.2)
    assert evaluated({"config": {"seed": 1}}) == (0, 0.1)  # the split comes from split_seed
    assert evaluated(trained, "--val-fraction", "0.5") == (1, 0.5)
    assert "warning" not in capsys.readouterr().out
    for unusable in (None, {"config": [1]}, {"config": {"seed": "1", "val_fraction": True}}):
        assert evaluated(unusable) == (0, 0.1)  # hand-edited or absent: the defaults
    evaluated(trained, data=str(tmp_path))  # a folder's val split, for a tfds-trained model
    assert "warning: the model was trained on cifar10" in capsys.readouterr().out
    # A folder run records its absolute path: the same folder named from elsewhere is the
    # same source, another folder of the same name is not.
    (tmp_path / "a" / "cifar10").mkdir(parents=True)
    (tmp_path / "b" / "cifar10").mkdir(parents=True)
    folder_run = {"config": {"seed": 0, "val_fraction": 0.1, "data": "cifar10"},
                  "data_path": str(tmp_path / "a" / "cifar10")}
    monkeypatch.chdir(tmp_path / "a")
    evaluated(folder_run, data=str(tmp_path / "a" / "cifar10"))
    evaluated(folder_run, data="./cifar10")
    assert "warning" not in capsys.readouterr().out
    monkeypatch.chdir(tmp_path / "b")
    evaluated(folder_run, data="./cifar10")
    assert "warning: the model was trained on cifar10" in capsys.readouterr().out


@pytest.mark.slow
def test_evaluate_and_predict_commands(exported, tmp_path):
    _, version = exported
    folder = write_image_folder(tmp_path / "data", classes=("ship", "cat"), per_class=4)
    report = tmp_path / "reports" / "eval.json"  # folders made, not a traceback after the work
    result = run_module("alexnet_tf.evaluate", "--model", version.parent, "--data", folder,
                        "--split", "val", "--val-fraction", "0.5", "--json", report,
                        "--plot", tmp_path / "plots" / "cm.png", "--tta")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Decoding train" not in result.stdout  # only the split evaluated is decoded
    metrics = json.loads(report.read_text())
    assert {"model", "data", "split", "tta", "top1", "top5", "per_class_accuracy",
            "confusion_matrix", "num_examples"} <= set(metrics)
    assert metrics["num_examples"] == 4 and (tmp_path / "plots" / "cm.png").is_file()
    assert metrics["per_class_accuracy"]["dog"] is None  # matched by name, not position

    unknown = write_image_folder(tmp_path / "zoo", classes=("cat", "zebra"), per_class=2)
    bad = run_module("alexnet_tf.evaluate", "--model", version, "--data", unknown)
    assert bad.returncode == 2 and "zebra" in bad.stderr.strip().splitlines()[-1]
    assert run_module("alexnet_tf.evaluate", "--model", tmp_path / "none",
                      "--data", folder).returncode == 2

    (tmp_path / "notes.txt").write_text("not an image")
    (folder / "cat" / "anim.gif").write_bytes(encoded(np.zeros((8, 8, 3), np.uint8), "GIF"))
    files = [folder / "cat", tmp_path / "notes.txt", tmp_path / "missing.jpg"]
    result = run_module("alexnet_tf.predict", "--model", version, *files, "--json",
                        "--top-k", "2")
    assert result.returncode == 1
    output = json.loads(result.stdout)
    ok = [r for r in output["results"] if "predictions" in r]
    failed = {r["file"].rsplit("/", 1)[-1] for r in output["results"] if "error" in r}
    assert len(ok) == 4 and failed == {"notes.txt", "missing.jpg"}
    assert len(ok[0]["predictions"]) == 2 and set(ok[0]["predictions"][0]) == {"class",
                                                                                "probability"}
    table = run_module("alexnet_tf.predict", "--model", version, folder / "ship")
    assert table.returncode == 0 and len(table.stdout.strip().splitlines()) == 4


@pytest.mark.slow
def test_evaluate_averages_an_ensembles_probabilities(exported, tmp_path, monkeypatch,
                                                        capsys):
    """Section 6 of the paper: the members' softmax outputs averaged, matched by class name."""
    from alexnet_tf import evaluate, sources

    _, first = exported
    keras.utils.set_random_seed(5)
    reordered = ["ship", "cat", "dog"]  # another class order: columns must follow the names
    second = export.export_model(build_model("cifar", num_classes=3, image_size=32),
                                 tmp_path / "second", class_names=reordered)
    folder = write_image_folder(tmp_path / "data", classes=("ship", "cat"), per_class=4)
    captured = []
    real = evaluate.compute_metrics
    monkeypatch.setattr(evaluate, "compute_metrics",
                        lambda p, labels, names: captured.append(p) or real(p, labels, names))
    report = tmp_path / "ensemble.json"
    flags = ["--data", str(folder), "--split", "val", "--val-fraction", "0.5",
             "--plot", str(tmp_path / "cm.png"), "--json", str(report)]
    assert evaluate.main(["--model", str(first), str(second), *flags]) == 0

    d = sources.load(str(folder), image_size=32, splits=("val",), val_fraction=0.5)
    images = np.stack([x for x, _ in d.val.dataset])
    labels = np.array([CLASSES.index(d.class_names[y]) for _, y in d.val.dataset])
    own = inference.Classifier(first).classify(images)["probabilities"]
    other = inference.Classifier(second).classify(images)["probabilities"]
    other = other[:, [reordered.index(c) for c in CLASSES]]
    assert not np.allclose(own, other, atol=1e-3)  # two different members
    assert np.ptp(other, axis=1).min() > 1e-3  # not uniform: a wrong column order would show
    np.testing.assert_allclose(captured[-1], (own + other) / 2, atol=1e-5)
    metrics = json.loads(report.read_text())
    assert metrics["top1"] == float((((own + other) / 2).argmax(axis=1) == labels).mean())
    assert metrics["models"] == [str(first), str(second)] and "model" not in metrics
    assert [m["top1"] for m in metrics["members"]] == [
        float((p.argmax(axis=1) == labels).mean()) for p in (own, other)]
    assert "The ensemble of 2 models" in capsys.readouterr().out

    # Other classes, or validation splits that differ: refused in one line, before any work.
    strange = export.export_model(build_model("cifar", num_classes=3, image_size=32),
                                  tmp_path / "strange", class_names=["cat", "dog", "bird"])
    other_split = export.export_model(build_model("cifar", num_classes=3, image_size=32),
                                      tmp_path / "other_split", class_names=CLASSES,
                                      metadata={"config": {"split_seed": 1}})
    capsys.readouterr()
    for member, message in ((strange, "knows other classes"),
                            (other_split, "different validation splits")):
        assert evaluate.main(["--model", str(first), str(member), *flags[:2], "--split",
                              "val"]) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and message in error[0], error
    # Chosen by the flags, one split for both: allowed.
    assert evaluate.main(["--model", str(first), str(other_split), *flags,
                          "--split-seed", "0"]) == 0


@pytest.mark.slow
def test_evaluate_export_matches_keras_when_cropping(tmp_path):
    """At 72 px the stored images are 82 px and get centre-cropped once, as in training."""
    from alexnet_tf import data as data_lib, evaluate, sources
    from alexnet_tf.inference import Classifier

    keras.utils.set_random_seed(1)
    model = build_model("cifar", num_classes=10, image_size=72)
    geometry = data_lib.geometry_for(72)
    assert geometry.crop_fraction < 1
    # No crop_fraction given: export_model takes the one training uses at this size.
    version = export.export_model(model, tmp_path, class_names=[f"pattern{k}" for k in range(10)])
    d = sources.load("synthetic", image_size=72, limit=16)
    by_keras = evaluate.predict_split(
        lambda x: tf.nn.softmax(model(x)), data_lib.eval_pipeline(d.val, geometry, batch_size=64))
    metrics = evaluate.evaluate_export(Classifier(version), d.val, geometry, d.class_names)
    expected = evaluate.compute_metrics(*by_keras, d.class_names)
    assert metrics["confusion_matrix"] == expected["confusion_matrix"]
    classifier = Classifier(version)
    stored = next(iter(d.val.dataset.batch(8)))[0].numpy()
    np.testing.assert_allclose(classifier.classify(stored)["probabilities"], by_keras[0][:8],
                               atol=1e-5)


@pytest.mark.slow
def test_another_savedmodel_is_refused_in_one_line(tmp_path):
    module = tf.Module()
    module.double = tf.function(lambda x: {"y": 2 * x},
                                input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "other" / "1"),
                        signatures={"serving_default": module.double})
    with pytest.raises(inference.ModelNotFound, match="is not an alexnet_tf export"):
        inference.Classifier(tmp_path / "other")
    (tmp_path / "other" / "1" / "assets").mkdir(exist_ok=True)
    (tmp_path / "other" / "1" / "assets" / "metadata.json").write_text('{"image_size": 3')
    with pytest.raises(inference.ModelNotFound, match="metadata.json is unreadable"):
        inference.Classifier(tmp_path / "other")
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    for command in (["alexnet_tf.predict", "--model", tmp_path / "other", image],
                    ["alexnet_tf.evaluate", "--model", tmp_path / "other", "--data", tmp_path]):
        result = run_module(*command)
        assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith(
            "error: ") and "Traceback" not in result.stderr


def test_a_damaged_export_is_one_line(exported, tmp_path, capsys):
    from alexnet_tf import evaluate

    _, version = exported
    damaged = tmp_path / "damaged" / "1"  # an interrupted copy: the weights cut short
    shutil.copytree(version, damaged)
    weights = next((damaged / "variables").glob("variables.data-*"))
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(inference.ModelNotFound, match=f"Cannot load {damaged}"):
        inference.Classifier(damaged)
    with pytest.raises(SystemExit):  # argparse's usage line, exit code 2
        evaluate.main(["--model", str(version), "--data", "synthetic", "--batch-size", "0"])
    assert "--batch-size must be at least 1" in capsys.readouterr().err


def test_newest_export_looks_under_every_root(tmp_path):
    # The app looks in ./saved_models and the repo's: training exports where it ran.
    for root, age in (("here", 100), ("repo", 0)):
        pb = tmp_path / root / "saved_models" / f"alexnet_{root}" / "2" / "saved_model.pb"
        pb.parent.mkdir(parents=True)
        pb.write_bytes(b"")
        os.utime(pb, (1e9 - age, 1e9 - age))
    (tmp_path / "repo" / "saved_models" / "alexnet_repo" / "1").mkdir()  # older version
    here, repo = (tmp_path / r / "saved_models" for r in ("here", "repo"))
    assert inference.newest_export(here, repo) == repo / "alexnet_repo" / "2"
    assert inference.newest_export(here, tmp_path / "absent") == here / "alexnet_here" / "2"
    assert inference.newest_export(tmp_path / "absent") is None


# --- Bounded work per request (issue 43): what TF Serving would run, via plain tf.saved_model.load.

def png_bytes(width, height, pixels=None, color_type=2):
    """A PNG written chunk by chunk: a header that may claim any size, and rows of zeros
    compressed as they are made (a 200 MB image is a few hundred KB)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0))
    if pixels == "none":  # the header alone, as a lying client sends it
        return b"\x89PNG\r\n\x1a\n" + header
    channels = {0: 1, 2: 3, 6: 4}[color_type]
    packer, row = zlib.compressobj(), b"\0" * (1 + width * channels)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def encoded(image, fmt, **options):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, fmt, **options)
    return buffer.getvalue()


def claiming(fmt, height, width):
    """A small real JPEG or BMP whose header is patched to claim height x width."""
    data = bytearray(encoded(np.zeros((8, 8, 3), np.uint8), fmt))
    if fmt == "JPEG":
        sof = data.index(b"\xff\xc0")  # baseline frame header: length, precision, height, width
        data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    else:  # BMP info header: width, height as little-endian int32 at 18 and 22
        data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def decode_in_graph(contents):
    """As the signatures decode (JPEG with libjpeg's accurate IDCT; tf.io.decode_image's
    default, the fast one, gives pixels a few levels off)."""
    from alexnet_tf import augment

    return augment.decode_image(tf.constant(contents))


def test_image_signatures_refuse_what_they_cannot_bound(exported):
    _, version = exported
    module = tf.saved_model.load(str(version))
    by_bytes, by_tensor = module.signatures["serving_bytes"], module.signatures["serving_default"]

    def refused(signature, match, **inputs):
        with pytest.raises(tf.errors.InvalidArgumentError, match=match):
            signature(**inputs)

    too_big = "more than 16777216 pixels"
    for claim in (png_bytes(60_000, 9_000, pixels="none"), claiming("JPEG", 9_000, 60_000),
                  claiming("BMP", 9_000, 60_000), claiming("BMP", -9_000, 60_000)):
        refused(by_bytes, too_big, image_bytes=tf.constant([claim]))
    refused(by_tensor, too_big, images=tf.zeros([1, 4097, 4096, 3], tf.uint8))
    refused(module.signatures["inspect"], too_big, images=tf.zeros([1, 4097, 4096, 3], tf.uint8))
    for zero_sized in (png_bytes(0, 5, pixels="none"), claiming("BMP", 0, 8)):
        refused(by_bytes, "side of 0", image_bytes=tf.constant([zero_sized]))
    refused(by_tensor, "side of 0", images=tf.zeros([1, 0, 5, 3], tf.uint8))
    refused(by_tensor, "side of 0", images=tf.zeros([0, 0, 0, 3], tf.uint8))
    gif = encoded(np.zeros((8, 8, 3), np.uint8), "GIF")  # each frame sized apart: no bound
    for malformed in (b"", b"not an image", b"\x89PNG\r\n\x1a\n", gif, b"\xff\xd8\xff" + b"\0" * 40,
                      png_bytes(8, 8)[:60]):
        refused(by_bytes, None, image_bytes=tf.constant([malformed]))
    refused(by_bytes, "accepts JPEG, PNG or BMP", image_bytes=tf.constant([gif]))
    # A batch of zero images is an empty answer.
    assert by_tensor(images=tf.zeros([0, 32, 32, 3], tf.uint8))["probabilities"].shape == (0, 3)
    assert by_bytes(image_bytes=tf.constant([], tf.string))["probabilities"].shape == (0, 3)
    # Only RGB tensors enter serving_default; encoded gray and RGBA images become RGB.
    for channels in (1, 4):
        with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError)):
            by_tensor(images=tf.zeros([1, 8, 8, channels], tf.uint8))
    rgb = images(1, size=40, seed=3)[0]
    gray = rgb[..., 0]
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])
    for image, as_rgb in ((gray, np.dstack([gray] * 3)), (rgba, rgb)):
        for fmt in ("PNG", "BMP"):
            np.testing.assert_allclose(
                by_bytes(image_bytes=tf.constant([encoded(image, fmt)]))["probabilities"],
                by_tensor(images=tf.constant(as_rgb[None]))["probabilities"], atol=1e-6)
    gray_jpeg = encoded(gray, "JPEG")
    np.testing.assert_allclose(
        by_bytes(image_bytes=tf.constant([gray_jpeg]))["probabilities"],
        by_tensor(images=decode_in_graph(gray_jpeg)[None])["probabilities"],
        atol=1e-6)


def test_normal_images_answer_as_before(tmp_path):
    """The bounded, crop-first preprocessing gives the answer of the shared one (training's and
    evaluation's `augment.resize_and_center_crop`), at the paper's crop fraction too."""
    from alexnet_tf import augment

    keras.utils.set_random_seed(2)
    model = build_model("cifar", num_classes=3, image_size=32)
    version = export.export_model(model, tmp_path, class_names=CLASSES, crop_fraction=0.875)
    module = tf.saved_model.load(str(version))
    for height, width in ((32, 32), (48, 40), (7, 90), (300, 200), (1000, 37), (1, 1)):
        x = np.random.default_rng(height).integers(0, 256, (2, height, width, 3), np.uint8)
        views = augment.resize_and_center_crop(x, 32, 0.875)
        expected = tf.nn.softmax(model(views)).numpy()
        np.testing.assert_allclose(module.signatures["serving_default"](
            images=tf.constant(x))["probabilities"], expected, atol=1e-5)
        inside = module.signatures["inspect"](images=tf.constant(x))
        np.testing.assert_allclose(inside["model_input"], views, atol=0.05)  # of 255
        for fmt in ("PNG", "JPEG"):
            files = [encoded(image, fmt, quality=95) if fmt == "JPEG" else encoded(image, fmt)
                     for image in x]
            decoded = np.stack([decode_in_graph(f).numpy() for f in files])
            by_bytes = module.signatures["serving_bytes"](image_bytes=tf.constant(files))
            np.testing.assert_allclose(by_bytes["probabilities"], tf.nn.softmax(model(
                augment.resize_and_center_crop(decoded, 32, 0.875))), atol=1e-5)


HUGE_IMAGES = """
import json, resource, struct, zlib
import numpy as np, tensorflow as tf
{png_bytes}

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

module = tf.saved_model.load({version!r})
by_bytes, by_tensor = module.signatures["serving_bytes"], module.signatures["serving_default"]
by_bytes(image_bytes=tf.constant([png_bytes(8, 8)]))  # warm: the graph and its kernels
by_tensor(images=tf.zeros([1, 8, 8, 3], tf.uint8))
cases = {{"png 1 x 20000": png_bytes(20_000, 1), "png 20000 x 1": png_bytes(1, 20_000),
         "png 1 x 300000": png_bytes(300_000, 1), "png bomb 8192 x 8192": png_bytes(8192, 8192),
         "tensor 1 x 300000": np.zeros([1, 1, 300_000, 3], np.uint8)}}
start, outcomes = peak_mb(), {{}}
for name, data in cases.items():
    try:
        if isinstance(data, bytes):
            by_bytes(image_bytes=tf.constant([data]))
        else:
            by_tensor(images=tf.constant(data))
        outcomes[name] = "answer"
    except tf.errors.InvalidArgumentError:
        outcomes[name] = "InvalidArgument"
print(json.dumps({{"growth_mb": peak_mb() - start, "outcomes": outcomes}}))
"""


@pytest.mark.slow
def test_huge_images_take_bounded_memory(exported, tmp_path):
    """A tiny PNG of 1 x 300,000 pixels or 8192 x 8192 zeros must not take gigabytes (TF
    Serving runs every model in one process: an OOM kill takes them all down)."""
    _, version = exported
    script = tmp_path / "huge.py"
    script.write_text(HUGE_IMAGES.format(png_bytes=inspect.getsource(png_bytes),
                                         version=str(version)))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["growth_mb"] < 500, measured
    assert measured["outcomes"] == {
        "png 1 x 20000": "answer", "png 20000 x 1": "answer", "png 1 x 300000": "answer",
        "png bomb 8192 x 8192": "InvalidArgument", "tensor 1 x 300000": "answer"}


def test_evaluate_lists_bad_files_beside_the_model_not_in_the_cwd(exported, tmp_path,
                                                                  monkeypatch, capsys):
    from alexnet_tf import evaluate

    _, version = exported
    data = tmp_path / "data"
    write_image_folder(data / "train", classes=("ship", "cat"), per_class=2)
    write_image_folder(data / "test", classes=("ship", "cat"), per_class=2)
    (data / "test" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    here = tmp_path / "here"
    here.mkdir()
    (here / "bad_files.txt").write_text("the user's own notes\n")
    monkeypatch.chdir(here)
    flags = ["--data", str(data), "--plot", str(tmp_path / "cm.png")]
    assert evaluate.main(["--model", str(version), *flags]) == 0
    beside = version.parent / "bad_files.txt"
    assert beside.read_text().strip().endswith("broken.jpg")
    assert str(beside) in capsys.readouterr().out  # said where, not silent
    assert (here / "bad_files.txt").read_text() == "the user's own notes\n"
    # Or where the user says.
    assert evaluate.main(["--model", str(version), *flags,
                          "--bad-files", str(tmp_path / "list.txt")]) == 0
    assert (tmp_path / "list.txt").read_text().strip().endswith("broken.jpg")
    assert (here / "bad_files.txt").read_text() == "the user's own notes\n"


@pytest.mark.slow
def test_evaluate_plots_beside_the_model_not_in_the_cwd(exported, tmp_path, monkeypatch):
    from alexnet_tf import evaluate

    _, version = exported
    data = tmp_path / "data"
    write_image_folder(data / "train", classes=("ship", "cat"), per_class=2)
    write_image_folder(data / "test", classes=("ship", "cat"), per_class=2)
    here = tmp_path / "here"
    here.mkdir()
    (here / "confusion_matrix.png").write_bytes(b"the user's own picture")
    monkeypatch.chdir(here)
    assert evaluate.main(["--model", str(version), "--data", str(data)]) == 0
    assert (version.parent / "confusion_matrix.png").read_bytes().startswith(b"\x89PNG")
    assert (here / "confusion_matrix.png").read_bytes() == b"the user's own picture"


def test_a_version_is_on_disk_before_its_name(tmp_path, monkeypatch):
    """Every file of the version and its directories are fsync'd before the rename, and the
    export directory after it: a power cut leaves the old state or the whole new version."""
    events, real_fsync, real_rename = [], os.fsync, os.rename

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(source, target):
        events.append(("rename", str(target)))
        real_rename(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    version = export.export_model(build_model("cifar", num_classes=2, image_size=16),
                                  tmp_path / "m", class_names=["a", "b"])
    renamed = events.index(("rename", str(version)))
    flushed = [pathlib.Path(path) for kind, path in events[:renamed] if kind == "fsync"]
    assert flushed, "nothing was flushed to disk before the rename"
    staging = flushed[-1]  # a directory after its contents, the staging directory last
    assert staging.parent == tmp_path / "m" and staging.name.startswith(".staging-")
    assert {path.relative_to(staging) for path in flushed} == {
        path.relative_to(version) for path in version.rglob("*")} | {pathlib.Path()}
    assert ("fsync", str(tmp_path / "m")) in events[renamed:]


def test_a_killed_exports_staging_is_removed_by_the_next(tmp_path):
    """A kill leaves `.staging-*` (and its unheld lock): the next export removes it, but never
    the staging of an export running now (its lock is held), in this process or another."""
    import fcntl

    base = tmp_path / "m"
    for name in ("dead", "live", "legacy", "young"):  # legacy: written before locks existed
        (base / f".staging-{name}" / "variables").mkdir(parents=True)
        (base / f".staging-{name}" / "saved_model.pb").write_bytes(b"partial")
    for name in ("dead", "live"):
        (base / f".staging-{name}.lock").touch()
    two_days_ago = time.time() - 2 * 24 * 3600  # the threshold is a day
    os.utime(base / ".staging-legacy", (two_days_ago, two_days_ago))
    model = build_model("cifar", num_classes=2, image_size=16)
    with open(base / ".staging-live.lock", "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        export.export_model(model, base, class_names=["a", "b"])
        assert sorted(p.name for p in base.iterdir()) == [
            ".staging-live", ".staging-live.lock", ".staging-young", "1"]
    export.export_model(model, base, class_names=["a", "b"])  # its writer has gone now
    assert sorted(p.name for p in base.iterdir()) == [".staging-young", "1", "2"]


@pytest.mark.slow
def test_a_mixed_precision_model_exports_in_float32_and_converts_to_tflite(tmp_path):
    """bfloat16 compute needs AVX-512 (oneDNN refuses the convolution on an AVX2 server) and
    TFLite: the export computes in float32 unless asked otherwise, with the same weights."""
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(4)
        model = build_model("cifar", num_classes=3, image_size=16)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    portable = export.export_model(model, tmp_path / "m", class_names=CLASSES)
    as_trained = export.export_model(model, tmp_path / "m", class_names=CLASSES,
                                     precision="as-trained")
    compute = [json.loads((v / "assets" / "metadata.json").read_text())["compute_dtype"]
               for v in (portable, as_trained)]
    assert compute == ["float32", "bfloat16"]
    views = np.random.default_rng(5).uniform(0, 255, (100, 16, 16, 3)).astype("float32")
    float32_model = export.in_float32(model)
    expected = tf.nn.softmax(float32_model(views)).numpy()
    served = tf.saved_model.load(str(portable)).signatures["serving_preprocessed"]
    np.testing.assert_allclose(served(images=tf.constant(views))["probabilities"], expected,
                               atol=1e-6)
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(portable), signature_keys=["serving_preprocessed"])
    lite = tf.lite.Interpreter(model_content=converter.convert())
    answer = lite.get_signature_runner("serving_preprocessed")(images=views)
    np.testing.assert_allclose(answer["probabilities"], expected, atol=1e-5)
    assert (answer["probabilities"].argmax(1) == expected.argmax(1)).all()  # same top-1
    with pytest.raises(ValueError, match="--export-precision must be one of"):
        export.export_model(model, tmp_path / "m", class_names=CLASSES, precision="bfloat16")


def test_a_file_with_a_version_number_for_a_name_is_counted(tmp_path):
    # A stray file "1" beside the versions: skipping it, the rename to 1 would fail for ever.
    (tmp_path / "1").write_text("not a model")
    assert export._next_version(tmp_path) == 2
