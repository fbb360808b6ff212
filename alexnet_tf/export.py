"""Exporting a trained model as a TF Serving-ready, versioned SavedModel.

    python -m alexnet_tf.export --checkpoint runs/X/best.keras [--export-dir saved_models/NAME]

Layout: <export_dir>/<integer version>/ with signatures `serving_default` (uint8 images),
`serving_bytes` (encoded images), `serving_preprocessed` (float32 images already at the
model's size, e.g. 10-crop views) and `inspect` (what the app's "Inside AlexNet" tab shows),
`assets/labels.txt`, `assets/metadata.json` and `assets.extra/tf_serving_warmup_requests`.
"""

import argparse
import datetime
import json
import os
import pathlib
import shutil
import sys
import uuid
import zipfile

import keras
import numpy as np
import tensorflow as tf

from alexnet_tf import augment
from alexnet_tf.data import geometry_for
from alexnet_tf.model import count_flops

TOP_K = 5
WARMUP_RECORDS = 3
CONVS = ("conv1", "conv2", "conv3", "conv4", "conv5")  # the feature maps `inspect` returns


def export_model(model, export_dir, *, class_names, crop_fraction=None, metadata=None):
    """Writes the next version under `export_dir` atomically; returns its path.

    `crop_fraction` defaults to the one training and evaluation use at the model's size."""
    image_size = int(model.input.shape[1])
    if crop_fraction is None:
        crop_fraction = geometry_for(image_size).crop_fraction
    info = {
        "image_size": image_size,
        "crop_fraction": crop_fraction,
        "parameters": int(model.count_params()),
        "flops_per_image": int(count_flops(model)),
        **(metadata or {}),
    }
    archive = _build_archive(model, class_names, image_size, crop_fraction)
    return write_version(export_dir, lambda staging: archive.write_out(staging, verbose=False),
                         class_names=class_names, metadata=info)


def write_version(export_dir, write_saved_model, *, class_names, metadata):
    """The next integer version under `export_dir`: `write_saved_model(path)`, then labels.txt,
    metadata.json (with `class_names` and `exported_at` added) and the TF Serving warm-up, all in
    a staging directory renamed into place only when complete. Returns the version's path."""
    base = pathlib.Path(export_dir)
    base.mkdir(parents=True, exist_ok=True)
    # A dot-name is not an integer version: TF Serving ignores it until the final rename.
    staging = base / f".staging-{uuid.uuid4().hex}"
    try:
        write_saved_model(str(staging))
        (staging / "assets").mkdir(exist_ok=True)
        (staging / "assets" / "labels.txt").write_text("".join(f"{c}\n" for c in class_names))
        info = {
            "class_names": list(class_names),
            **metadata,
            "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        (staging / "assets" / "metadata.json").write_text(json.dumps(info, indent=2))
        _write_warmup(staging / "assets.extra" / "tf_serving_warmup_requests",
                      metadata["image_size"])
        while True:  # another exporter may take a number between our look and our rename
            version = base / str(_next_version(base))
            try:
                os.rename(staging, version)
                return version
            except OSError:
                if not version.exists():
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _next_version(base):
    versions = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def _build_archive(model, class_names, image_size, crop_fraction):
    labels = tf.constant(list(class_names))
    k = min(TOP_K, len(class_names))
    inside = keras.Model(model.input, [model.get_layer(n).output for n in CONVS] + [model.output])

    def preprocess(images):
        return augment.resize_and_center_crop(images, image_size, crop_fraction)

    def answer(logits):
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32))
        top = tf.math.top_k(probabilities, k)
        return {"probabilities": probabilities, "top_k_indices": top.indices,
                "top_k_classes": tf.gather(labels, top.indices), "top_k_probabilities": top.values}

    def serve_images(images):
        return answer(model(preprocess(images), training=False))

    def serve_preprocessed(images):  # float32 [N, S, S, 3], e.g. 10-crop views
        return answer(model(images, training=False))

    def serve_bytes(image_bytes):
        images = tf.map_fn(lambda b: preprocess(augment.decode_image(b)), image_bytes,
                           fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32))
        return answer(model(images, training=False))

    def inspect(images):
        """Model input, conv activations and a Grad-CAM map (Selvaraju et al. 2017) per image."""
        x = preprocess(images)
        with tf.GradientTape() as tape:
            *maps, logits = inside(x, training=False)
            top_logit = tf.reduce_max(tf.cast(logits, tf.float32), axis=-1)
        last = tf.cast(maps[-1], tf.float32)
        grads = tf.cast(tape.gradient(top_logit, maps[-1]), tf.float32)
        cam = tf.nn.relu(tf.reduce_sum(last * tf.reduce_mean(grads, axis=[1, 2], keepdims=True), -1))
        cam = tf.image.resize(cam[..., None], [image_size, image_size])[..., 0]
        cam = cam / (tf.reduce_max(cam, axis=[1, 2], keepdims=True) + 1e-8)
        kernel = tf.cast(model.get_layer("conv1").kernel, tf.float32)
        out = {"model_input": x, "gradcam": cam, "conv1_filters": kernel, **answer(logits)}
        out["gradcam_class"] = out["top_k_classes"][:, 0]  # the class the map explains
        out.update({name: tf.cast(m, tf.float32) for name, m in zip(CONVS, maps)})
        return out

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(inside)
    image_spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")
    archive.add_endpoint("serving_default", serve_images, input_signature=[image_spec])
    archive.add_endpoint("serving_bytes", serve_bytes,
                         input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    archive.add_endpoint("inspect", inspect, input_signature=[image_spec])
    archive.add_endpoint("serving_preprocessed", serve_preprocessed, input_signature=[
        tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name="images")])
    return archive


def _write_warmup(path, image_size):
    """A few PredictionLog records TF Serving replays on load (its SavedModel warm-up)."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(WARMUP_RECORDS):
            images = np.full((1, image_size, image_size, 3), 40 * i, np.uint8)
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(signature_name="serving_default"))
            request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def _not_alexnet(model):
    """What keeps a loaded Keras model from exporting as this project's AlexNet, or None."""
    try:
        model.input, model.output  # what the export reads; a loaded Sequential has neither
    except AttributeError:
        return "no functional model with a defined input and output"
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return f"it has {len(model.inputs)} inputs and {len(model.outputs)} outputs, not one each"
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or shape[0] is None or shape[0] != shape[1] or shape[2] != 3:
        return f"its input is {shape}, not a fixed square RGB image"
    missing = [n for n in CONVS if n not in {layer.name for layer in model.layers}]
    return f"it has no layer {missing[0]}" if missing else None


def _load_error(error):
    """Keras' load errors run over many lines; the cause is in the last, before its config dump."""
    lines = [line for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    cause = lines[-1].removeprefix("Exception encountered: ").split(" Full object config")[0]
    return cause if len(cause) <= 300 else cause[:297] + "..."


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m alexnet_tf.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help=".keras file (e.g. runs/X/best.keras)")
    parser.add_argument("--export-dir", help="default: the run's export_dir from its config.json")
    parser.add_argument("--labels", help="class names, one per line (default: labels.txt "
                                         "beside the checkpoint)")
    args = parser.parse_args(argv)
    checkpoint = pathlib.Path(args.checkpoint)
    run_dir = checkpoint.parent
    try:
        if not checkpoint.is_file():
            raise ValueError(f"checkpoint not found: {checkpoint}")
        labels = pathlib.Path(args.labels or run_dir / "labels.txt")
        if not labels.is_file():
            raise ValueError(f"class names not found: {labels} (give --labels FILE)")
        class_names = labels.read_text().splitlines()  # the last line may lack its newline
        config = json.loads((run_dir / "config.json").read_text()) if (
            run_dir / "config.json").is_file() else {}
        if not isinstance(config, dict):
            raise ValueError(f"{run_dir / 'config.json'} is not a JSON object")
        config.pop("overwrite", None)  # older runs saved the flag; it is no part of a run
        export_dir = args.export_dir or config.get("export_dir")
        if not export_dir:
            raise ValueError("no --export-dir given and no config.json beside the checkpoint")
        try:
            model = keras.saving.load_model(checkpoint)
        # A layer Keras cannot find (a model from another project) is a TypeError.
        except (ValueError, KeyError, TypeError, zipfile.BadZipFile) as error:
            raise ValueError(f"{checkpoint} is not a readable .keras model "
                             f"({_load_error(error)})") from None
        problem = _not_alexnet(model)
        if problem:
            raise ValueError(f"{checkpoint} is not an alexnet_tf model: {problem}")
        if model.output.shape[-1] != len(class_names):
            raise ValueError(f"{labels} has {len(class_names)} classes, the model "
                             f"{model.output.shape[-1]} outputs")
        version = export_model(model, export_dir, class_names=class_names,
                               metadata={"config": config})
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Exported {checkpoint} to {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
