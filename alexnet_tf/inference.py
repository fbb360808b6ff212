"""Loading an export of this product and classifying images with it.

Works from the SavedModel alone (plain `tf.saved_model.load`, no Keras model code): the
preprocessing runs inside the export's signatures, the same graph TF Serving runs.
"""

import json
import pathlib

import numpy as np
import tensorflow as tf

from alexnet_tf.errors import one_line

SIGNATURES = ("serving_default", "serving_bytes", "serving_preprocessed", "inspect")
CONVS = ("conv1", "conv2", "conv3", "conv4", "conv5")  # the feature maps `inspect` returns


class ModelNotFound(Exception):
    """No usable export at the given path, reported as one line."""


def resolve_version(path):
    """A version directory itself, or the newest integer version under a model base directory."""
    path = pathlib.Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    if not path.is_dir():
        raise ModelNotFound(f"No model at {path}")
    versions = [p for p in path.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()]
    if not versions:
        raise ModelNotFound(f"{path} holds no SavedModel version (expected {path}/<integer>/)")
    return max(versions, key=lambda p: int(p.name))


def newest_export(*roots):
    """The newest version of the most recently exported model under any of `roots`, or None."""
    candidates = []
    for base in (p for root in roots for p in pathlib.Path(root).glob("*") if p.is_dir()):
        try:
            candidates.append(resolve_version(base))
        except ModelNotFound:
            continue
    return max(candidates, key=lambda p: (p / "saved_model.pb").stat().st_mtime, default=None)


class Classifier:
    """An exported model: `classify` (uint8 arrays), `classify_bytes` (encoded files), `inspect`."""

    def __init__(self, path):
        self.path = resolve_version(path)
        try:
            self.module = tf.saved_model.load(str(self.path))  # what the signatures belong to
        # Any failure here means no loadable model: a truncated variables file, say, is an
        # IndexError ("Read less bytes than requested").
        except Exception as error:  # noqa: BLE001
            raise ModelNotFound(f"Cannot load {self.path}: {one_line(error)}") from None
        self._signatures = self.module.signatures
        metadata = self.path / "assets" / "metadata.json"
        try:
            self.metadata = json.loads(metadata.read_text()) if metadata.is_file() else {}
        except ValueError as error:
            raise ModelNotFound(f"{metadata} is unreadable: {error}") from None
        if not isinstance(self.metadata, dict):
            raise ModelNotFound(f"{metadata} is unreadable: not a JSON object")
        labels = self.path / "assets" / "labels.txt"
        self.class_names = labels.read_text().splitlines() if labels.is_file() else []
        self.image_size = self.metadata.get("image_size")
        # Another SavedModel would fail later, mid-call, with a KeyError or TypeError.
        missing = [s for s in SIGNATURES if s not in self._signatures]
        missing += [f"assets/{n}" for n, ok in [("labels.txt", self.class_names),
                                                ("metadata.json", self.image_size)] if not ok]
        if missing:
            raise ModelNotFound(f"{self.path} is not an alexnet_tf export (no {', '.join(missing)})")

    def classify(self, images):
        """uint8 images [N, H, W, 3] (or one [H, W, 3]) -> dict of NumPy arrays."""
        images = np.asarray(images, np.uint8)
        single = images.ndim == 3
        out = self._call("serving_default", images=tf.constant(images[None] if single else images))
        return {k: v[0] for k, v in out.items()} if single else out

    def classify_bytes(self, contents):
        """Encoded JPEG/PNG/BMP files (a list of bytes) -> dict of NumPy arrays; InvalidArgument
        for other formats and for images over `export.MAX_PIXELS`."""
        return self._call("serving_bytes", image_bytes=tf.constant(list(contents), tf.string))

    def classify_preprocessed(self, images):
        """float32 [N, S, S, 3] at the model's size (no resizing or cropping)."""
        return self._call("serving_preprocessed", images=tf.constant(images, tf.float32))

    def inspect(self, image):
        """One uint8 image [H, W, 3] -> model input, conv1..conv5 maps, Grad-CAM, filters."""
        out = self._call("inspect", images=tf.constant(np.asarray(image, np.uint8)[None]))
        return {k: (v if k == "conv1_filters" else v[0]) for k, v in out.items()}

    def _call(self, signature, **inputs):
        out = self._signatures[signature](**inputs)
        return {k: v.numpy() for k, v in out.items()}
