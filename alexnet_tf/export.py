"""Exporting a trained model as a TF Serving-ready, versioned SavedModel.

    python -m alexnet_tf.export --checkpoint runs/X/best.keras [--export-dir saved_models/NAME]
    python -m alexnet_tf.export --checkpoint runs/A/best.keras runs/B/best.keras --export-dir DIR

Several checkpoints make one ensemble: the same signatures, their probabilities averaged.

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
from alexnet_tf.config import saved_value
from alexnet_tf.data import geometry_for
from alexnet_tf.model import count_flops

TOP_K = 5
WARMUP_RECORDS = 3


def export_model(model, export_dir, *, class_names, crop_fraction=None, metadata=None):
    """Writes the next version under `export_dir` atomically; returns its path.

    `model` is a Keras model, or a list of them exported as one ensemble (their softmax
    outputs averaged). `crop_fraction` defaults to the one training and evaluation use at
    the model's size."""
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    sizes = sorted({int(m.input.shape[1]) for m in models})
    outputs = sorted({int(m.output.shape[-1]) for m in models})
    if len(sizes) > 1:  # one serving input, one preprocessing
        raise ValueError(f"the models take different input sizes ({sizes} px)")
    if len(outputs) > 1 or outputs[0] != len(class_names):
        raise ValueError(f"{len(class_names)} class names for models of {outputs} outputs")
    base = pathlib.Path(export_dir)
    base.mkdir(parents=True, exist_ok=True)
    image_size = sizes[0]
    if crop_fraction is None:
        crop_fraction = geometry_for(image_size).crop_fraction
    # A dot-name is not an integer version: TF Serving ignores it until the final rename.
    staging = base / f".staging-{uuid.uuid4().hex}"
    try:
        _build_archive(models, class_names, image_size, crop_fraction).write_out(
            str(staging), verbose=False)
        (staging / "assets").mkdir(exist_ok=True)
        (staging / "assets" / "labels.txt").write_text("".join(f"{c}\n" for c in class_names))
        info = {
            "class_names": list(class_names),
            "image_size": image_size,
            "crop_fraction": crop_fraction,
            "parameters": sum(int(m.count_params()) for m in models),
            "flops_per_image": sum(int(count_flops(m)) for m in models),
            "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **(metadata or {}),
        }
        (staging / "assets" / "metadata.json").write_text(json.dumps(info, indent=2))
        _write_warmup(staging / "assets.extra" / "tf_serving_warmup_requests", image_size)
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


def _build_archive(models, class_names, image_size, crop_fraction):
    labels = tf.constant(list(class_names))
    k = min(TOP_K, len(class_names))
    convs = ("conv1", "conv2", "conv3", "conv4", "conv5")
    first = models[0]  # an ensemble's `inspect` looks inside its first member
    inside = keras.Model(first.input, [first.get_layer(n).output for n in convs] + [first.output])

    def preprocess(images):
        return augment.resize_and_center_crop(images, image_size, crop_fraction)

    def average(logits):
        # Section 6 of the paper: "averaging the predictions of five similar CNNs".
        return tf.add_n([tf.nn.softmax(tf.cast(x, tf.float32)) for x in logits]) / len(logits)

    def predict(x):
        return average([m(x, training=False) for m in models])

    def answer(probabilities):
        top = tf.math.top_k(probabilities, k)
        return {"probabilities": probabilities, "top_k_indices": top.indices,
                "top_k_classes": tf.gather(labels, top.indices), "top_k_probabilities": top.values}

    def serve_images(images):
        return answer(predict(preprocess(images)))

    def serve_preprocessed(images):  # float32 [N, S, S, 3], e.g. 10-crop views
        return answer(predict(images))

    def serve_bytes(image_bytes):
        images = tf.map_fn(lambda b: preprocess(augment.decode_image(b)), image_bytes,
                           fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32))
        return answer(predict(images))

    def inspect(images):
        """Model input, conv activations and a Grad-CAM map (Selvaraju et al. 2017) per image:
        the (first) model's score for the class the export answers."""
        x = preprocess(images)
        others = [m(x, training=False) for m in models[1:]]
        with tf.GradientTape() as tape:
            *maps, logits = inside(x, training=False)
            probabilities = average([logits, *others])
            answered = tf.argmax(probabilities, axis=-1)
            score = tf.gather(tf.cast(logits, tf.float32), answered, batch_dims=1)
        last = tf.cast(maps[-1], tf.float32)
        grads = tf.cast(tape.gradient(score, maps[-1]), tf.float32)
        cam = tf.nn.relu(tf.reduce_sum(last * tf.reduce_mean(grads, axis=[1, 2], keepdims=True), -1))
        cam = tf.image.resize(cam[..., None], [image_size, image_size])[..., 0]
        cam = cam / (tf.reduce_max(cam, axis=[1, 2], keepdims=True) + 1e-8)
        kernel = tf.cast(first.get_layer("conv1").kernel, tf.float32)
        out = {"model_input": x, "gradcam": cam, "conv1_filters": kernel, **answer(probabilities)}
        out.update({name: tf.cast(m, tf.float32) for name, m in zip(convs, maps)})
        return out

    archive = keras.export.ExportArchive()
    for model in models:
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


def _load_error(error):
    """Keras' load errors run over many lines; the cause is in the last, before its config dump."""
    lines = [line for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    cause = lines[-1].removeprefix("Exception encountered: ").split(" Full object config")[0]
    return cause if len(cause) <= 300 else cause[:297] + "..."


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m alexnet_tf.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, nargs="+",
                        help=".keras file (e.g. runs/X/best.keras); several make an ensemble")
    parser.add_argument("--export-dir", help="default: the run's export_dir from its config.json "
                                             "(an ensemble needs one)")
    parser.add_argument("--labels", help="class names, one per line (default: labels.txt "
                                         "beside each checkpoint)")
    args = parser.parse_args(argv)
    try:
        members = [_read_checkpoint(pathlib.Path(c), args.labels) for c in args.checkpoint]
        (checkpoint, class_names, config, model), *others = members
        for other, names, other_config, _ in others:
            if names != class_names:
                raise ValueError(f"{other} and {checkpoint} name other classes, or in another "
                                 "order")
            if _held_out(other_config) != _held_out(config):
                raise ValueError(f"{other} and {checkpoint} held out different validation "
                                 "splits: the ensemble's could not be evaluated honestly")
        export_dir = args.export_dir or (None if others else config.get("export_dir"))
        if not export_dir:
            raise ValueError("an ensemble needs --export-dir" if others else
                             "no --export-dir given and no config.json beside the checkpoint")
        metadata = {"config": config}
        if others:
            metadata["members"] = [{"checkpoint": str(c), "config": cfg}
                                   for c, _, cfg, _ in members]
        version = export_model([m for *_, m in members] if others else model, export_dir,
                               class_names=class_names, metadata=metadata)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Exported {' + '.join(args.checkpoint)} to {version}")
    return 0


def _read_checkpoint(checkpoint, labels):
    """(checkpoint, class names, its run's config, model), or a ValueError that says why not."""
    run_dir = checkpoint.parent
    if not checkpoint.is_file():
        raise ValueError(f"checkpoint not found: {checkpoint}")
    labels = pathlib.Path(labels or run_dir / "labels.txt")
    if not labels.is_file():
        raise ValueError(f"class names not found: {labels} (give --labels FILE)")
    class_names = labels.read_text().splitlines()  # the last line may lack its newline
    config = json.loads((run_dir / "config.json").read_text()) if (
        run_dir / "config.json").is_file() else {}
    if not isinstance(config, dict):
        raise ValueError(f"{run_dir / 'config.json'} is not a JSON object")
    config.pop("overwrite", None)  # older runs saved the flag; it is no part of a run
    try:
        model = keras.saving.load_model(checkpoint)
    # A layer Keras cannot find (a model from another project) is a TypeError.
    except (ValueError, KeyError, TypeError, zipfile.BadZipFile) as error:
        raise ValueError(f"{checkpoint} is not a readable .keras model "
                         f"({_load_error(error)})") from None
    if model.output.shape[-1] != len(class_names):
        raise ValueError(f"{labels} has {len(class_names)} classes, the model "
                         f"{model.output.shape[-1]} outputs")
    return checkpoint, class_names, config, model


def _held_out(config):
    """What decides a run's validation images (evaluate rebuilds them from the first member's)."""
    return tuple(saved_value(config, key) for key in ("data", "val_fraction", "split_seed"))


if __name__ == "__main__":
    sys.exit(main())
