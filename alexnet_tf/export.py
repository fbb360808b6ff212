"""Exporting a trained model as a TF Serving-ready, versioned SavedModel.

    python -m alexnet_tf.export --checkpoint runs/X/best.keras [--export-dir saved_models/NAME]

Layout: <export_dir>/<integer version>/ with signatures `serving_default` (uint8 images),
`serving_bytes` (encoded images), `serving_preprocessed` (float32 images already at the
model's size, e.g. 10-crop views) and `inspect` (what the app's "Inside AlexNet" tab shows),
`assets/labels.txt`, `assets/metadata.json` and `assets.extra/tf_serving_warmup_requests`.

Bounded work per request: every image signature refuses, with InvalidArgument, an image of
more than MAX_PIXELS pixels (4096 x 4096) or with a side of 0; `serving_bytes` reads the size
from the file's header before it decodes, and accepts JPEG, PNG and BMP only (a GIF's frames
each have their own size, which no header bounds). The source pixels outside the centre crop
are cut away before resizing, so an extreme aspect ratio costs no more than a square image.
"""

import argparse
import contextlib
import datetime
import fcntl
import json
import os
import pathlib
import shutil
import sys
import time
import uuid
import zipfile

import keras
import numpy as np
import tensorflow as tf

from alexnet_tf import augment, errors
from alexnet_tf.data import geometry_for
from alexnet_tf.inference import CONVS
from alexnet_tf.model import count_flops

TOP_K = 5
WARMUP_RECORDS = 3
MAX_PIXELS = 4096 * 4096  # per image: a decoded image stays under 50 MB (uint8 RGB)
BYTES_FORMATS = "JPEG, PNG or BMP"
BYTES_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")  # the files `serving_bytes` reads
EXPORT_PRECISIONS = ("float32", "as-trained")
STAGING = ".staging-"  # a version being written: TF Serving only loads integer names
# A staging directory with no lock file (a lock lost to a crash between its steps) is a dead
# export's once nothing has been written in it for this long.
STALE_AFTER = 24 * 3600
JPEG, PNG, BMP = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM"  # what tf.io.decode_image looks for
IMAGES = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")
IMAGE_BYTES = tf.TensorSpec([None], tf.string, name="image_bytes")


def export_model(model, export_dir, *, class_names, crop_fraction=None, metadata=None,
                 precision="float32"):
    """Writes the next version under `export_dir` atomically; returns its path.

    `crop_fraction` defaults to the one training and evaluation use at the model's size.
    `precision` (EXPORT_PRECISIONS): "float32" computes in float32 whatever the training
    policy, the form every CPU runs (oneDNN has no bfloat16 convolution without AVX-512) and
    TFLite converts; "as-trained" keeps a mixed-precision model's bfloat16/float16 compute."""
    if precision not in EXPORT_PRECISIONS:
        raise ValueError(f"--export-precision must be one of {', '.join(EXPORT_PRECISIONS)}; "
                         f"got '{precision}'")
    if precision == "float32":
        model = in_float32(model)
    image_size = int(model.input.shape[1])
    if crop_fraction is None:
        crop_fraction = geometry_for(image_size).crop_fraction
    info = {
        "image_size": image_size,
        "crop_fraction": crop_fraction,
        "parameters": int(model.count_params()),
        "flops_per_image": int(count_flops(model)),
        "compute_dtype": model.get_layer("conv1").dtype_policy.compute_dtype,
        **(metadata or {}),
    }
    archive = _build_archive(model, class_names, image_size, crop_fraction)
    return write_version(export_dir, lambda staging: archive.write_out(staging, verbose=False),
                         class_names=class_names, metadata=info)


def in_float32(model):
    """`model` itself if it computes in float32, else a float32 copy with the same weights (a
    mixed policy keeps its variables in float32: nothing is rounded)."""
    if all(layer.dtype_policy.compute_dtype == "float32" for layer in model.layers):
        return model

    def float32_policies(config):
        if isinstance(config, dict):
            if config.get("class_name") == "DTypePolicy":
                return {**config, "config": {**config["config"], "name": "float32"}}
            return {key: float32_policies(value) for key, value in config.items()}
        if isinstance(config, list):
            return [float32_policies(item) for item in config]
        return config

    copy = model.__class__.from_config(float32_policies(model.get_config()))
    copy.set_weights(model.get_weights())
    return copy


def write_version(export_dir, write_saved_model, *, class_names, metadata):
    """The next integer version under `export_dir`: `write_saved_model(path)`, then labels.txt,
    metadata.json (with `class_names` and `exported_at` added) and the TF Serving warm-up, all in
    a staging directory flushed to disk and renamed into place only when complete. Returns the
    version's path. Removes what killed exports left behind first (`remove_stale_staging`)."""
    base = pathlib.Path(export_dir)
    base.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(base)
    # A dot-name is not an integer version: TF Serving ignores it until the final rename.
    staging = base / f"{STAGING}{uuid.uuid4().hex}"
    with _staging_lock(staging):
        try:
            write_saved_model(str(staging))
            (staging / "assets").mkdir(exist_ok=True)
            (staging / "assets" / "labels.txt").write_text("".join(f"{c}\n" for c in class_names))
            info = {
                "class_names": list(class_names),
                **metadata,
                "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds"),
            }
            (staging / "assets" / "metadata.json").write_text(json.dumps(info, indent=2))
            _write_warmup(staging / "assets.extra" / "tf_serving_warmup_requests",
                          metadata["image_size"])
            # Data before the rename, the rename before returning: else a power cut can leave
            # the final name with empty or missing files (fsync(2); ext4's delayed allocation).
            _fsync_tree(staging)
            version = _rename_to_next_version(staging, base)
            _fsync(base)
            _fsync(base.parent)  # `base` itself may be new
            return version
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _rename_to_next_version(staging, base):
    while True:  # another exporter may take a number between our look and our rename
        version = base / str(_next_version(base))
        try:
            os.rename(staging, version)
            return version
        except OSError:
            if not version.exists():
                raise


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)  # a directory too: its entries are what it flushes
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root):
    """Every file under `root`, then each directory after its contents."""
    for directory, _, files in os.walk(root, topdown=False):
        for name in files:
            _fsync(os.path.join(directory, name))
        _fsync(directory)


@contextlib.contextmanager
def _staging_lock(staging):
    """Holds an advisory lock (flock) on `<staging>.lock` while `staging` is written. The OS
    drops it when the process ends, however it ends: a lock nobody holds marks the staging
    directory of a killed export."""
    path = pathlib.Path(f"{staging}.lock")
    while True:
        file = open(path, "a")
        fcntl.flock(file, fcntl.LOCK_EX)
        try:  # a cleaner may have taken the fresh file for a dead one's and removed it
            if os.stat(path).st_ino == os.fstat(file.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        file.close()
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        file.close()


def remove_stale_staging(base):
    """Removes the staging directories of exports that died (a kill, a power cut): those
    whose lock no process holds, and, without a lock file, those untouched for STALE_AFTER
    seconds. A running export's lock is held, so its staging stays, in any process."""
    for lock in base.glob(f"{STAGING}*.lock"):
        try:
            file = open(lock, "rb")  # never "a": that would recreate a lock just removed
        except OSError:
            continue  # removed meanwhile, or not ours to read
        with file:
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live export holds it
            shutil.rmtree(base / lock.name.removesuffix(".lock"), ignore_errors=True)
            lock.unlink(missing_ok=True)
    for staging in base.glob(f"{STAGING}*"):
        if (staging.is_dir() and not pathlib.Path(f"{staging}.lock").exists()
                and time.time() - staging.stat().st_mtime > STALE_AFTER):
            shutil.rmtree(staging, ignore_errors=True)


def _next_version(base):
    # Every integer name counts, a file too: skipping one would retry its number for ever.
    versions = [int(p.name) for p in base.iterdir() if p.name.isdigit()]
    return max(versions, default=0) + 1


def _refuse_unless_bounded(height, width, what):
    """InvalidArgument (TF Serving's answer to a bad request) unless 1 <= side and
    height * width <= MAX_PIXELS; returns the checks, for control dependencies."""
    height, width = tf.cast(height, tf.int64), tf.cast(width, tf.int64)
    return [
        tf.debugging.assert_positive(tf.minimum(height, width),
                                     message=f"{what} has a side of 0 pixels"),
        tf.debugging.assert_less_equal(height * width, tf.constant(MAX_PIXELS, tf.int64),
                                       message=f"{what} has more than {MAX_PIXELS} pixels "
                                               "(4096 x 4096)"),
    ]


def bounded_images(images):
    """`images` [N, H, W, C] once H * W is within MAX_PIXELS; InvalidArgument otherwise."""
    shape = tf.shape(images)
    with tf.control_dependencies(_refuse_unless_bounded(shape[1], shape[2], "the image")):
        return tf.identity(images)


def _starts(contents, magic):
    return tf.equal(tf.strings.substr(contents, 0, len(magic)), magic)


def _header_size(contents):
    """(height, width) from a JPEG, PNG or BMP header, read without decoding the pixels;
    (0, 0) for any other content."""
    # Zeros after the end: a header cut short reads as a side of 0, not out of range.
    head = tf.cast(tf.io.decode_raw(tf.strings.substr(contents + b"\0" * 32, 0, 32),
                                    tf.uint8), tf.int64)

    def number(first, order):  # four header bytes as an unsigned integer
        digits = head[first:first + 4] if order == "big" else head[first:first + 4][::-1]
        return tf.reduce_sum(digits * tf.constant([1 << 24, 1 << 16, 1 << 8, 1], tf.int64))

    def bmp():  # TF's BMP decoder reads int32s at 18 and 22; a negative height is top-down
        height = number(22, "little")
        return tf.stack([tf.abs(tf.where(height >= 1 << 31, height - (1 << 32), height)),
                         number(18, "little")])

    return tf.case([
        (_starts(contents, JPEG),
         lambda: tf.cast(tf.image.extract_jpeg_shape(contents)[:2], tf.int64)),
        # PNG's IHDR: width at bytes 16-19, height at 20-23, big-endian (PNG spec, 11.2.2).
        (_starts(contents, PNG), lambda: tf.stack([number(20, "big"), number(16, "big")])),
        (_starts(contents, BMP), bmp),
    ], default=lambda: tf.zeros([2], tf.int64), exclusive=False)


def decode_bounded(contents):
    """One encoded JPEG, PNG or BMP -> uint8 RGB [H, W, 3], decoded only once its header
    shows it within MAX_PIXELS; InvalidArgument for anything else."""
    known = tf.reduce_any([_starts(contents, magic) for magic in (JPEG, PNG, BMP)])
    checks = [tf.debugging.Assert(known, [f"serving_bytes accepts {BYTES_FORMATS} images"])]
    with tf.control_dependencies(checks):
        height, width = tf.unstack(_header_size(contents))
    with tf.control_dependencies(_refuse_unless_bounded(height, width, "the image")):
        return augment.decode_image(tf.identity(contents))


def views_from_bytes(image_bytes, size, crop_fraction):
    """Encoded images [N] -> float32 [N, size, size, 3], each decoded within the bounds of
    `decode_bounded`, then resized and centre-cropped."""
    return tf.map_fn(
        lambda b: resize_and_center_crop(decode_bounded(b)[None], size, crop_fraction)[0],
        image_bytes, fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
        parallel_iterations=1)  # one decoded image at a time: the bound holds per request


def resize_and_center_crop(images, size, crop_fraction):
    """`augment.resize_and_center_crop` of a batch [N, H, W, 3] (any dtype), computed from the
    source pixels the centre crop reads: the rest is cut away first, so an extreme aspect
    ratio never resizes its whole long side. The same antialiased triangle filter at the same
    scale and offset (`tf.image.resize`'s own op, ScaleAndTranslate), so the same answer."""
    shape = tf.shape(images)
    sides = tf.cast(shape[1:3], tf.float32)
    scale = tf.math.ceil(size / crop_fraction) / tf.reduce_min(sides)
    resized = tf.maximum(tf.cast(tf.round(sides * scale), tf.int32), size)
    offset = (resized - size) // 2  # the crop's top-left corner in the resized image
    scales = tf.cast(resized, tf.float32) / sides  # as tf.image.resize computes them
    # Antialiased, the triangle filter reaches max(1, 1 / scale) source pixels each side.
    reach = tf.cast(tf.math.ceil(tf.maximum(1.0, 1.0 / scales)), tf.int32) + 1
    first = tf.maximum(tf.cast(tf.floor(tf.cast(offset, tf.float32) / scales), tf.int32) - reach,
                       0)
    last = tf.minimum(tf.cast(tf.math.ceil(tf.cast(offset + size, tf.float32) / scales),
                              tf.int32) + reach, shape[1:3])
    window = images[:, first[0]:last[0], first[1]:last[1], :]
    # Output pixel i samples source (i + 0.5 - translation) / scale: shifted by the window.
    translation = tf.cast(first, tf.float32) * scales - tf.cast(offset, tf.float32)
    out = tf.raw_ops.ScaleAndTranslate(images=window, size=[size, size], scale=scales,
                                       translation=translation, kernel_type="triangle",
                                       antialias=True)
    return tf.ensure_shape(out, [images.shape[0], size, size, 3])


def preprocess(images, size, crop_fraction):
    """A batch of uint8 images of any size -> the model's float32 views, once bounded."""
    return resize_and_center_crop(bounded_images(images), size, crop_fraction)


def answer(probabilities, class_names):
    """What every classifying signature returns for `probabilities` [N, C]: them, and the
    TOP_K (all, when fewer) most probable classes' indices, names and probabilities."""
    top = tf.math.top_k(probabilities, min(TOP_K, len(class_names)))
    return {"probabilities": probabilities, "top_k_indices": top.indices,
            "top_k_classes": tf.gather(tf.constant(list(class_names)), top.indices),
            "top_k_probabilities": top.values}


def unless_empty(probabilities_of, views, num_classes):
    """`probabilities_of(views)`, or [0, num_classes] for a batch of zero images without
    running the model: TF's grouped convolution (conv2) fails on an empty batch."""
    return tf.cond(tf.shape(views)[0] > 0, lambda: probabilities_of(views),
                   lambda: tf.zeros([0, num_classes]))


def _build_archive(model, class_names, image_size, crop_fraction):
    """An ExportArchive of `model` with the signatures the module docstring lists."""
    inside = keras.Model(model.input, [model.get_layer(n).output for n in CONVS] + [model.output])

    def softmax(views):
        return tf.nn.softmax(tf.cast(model(views, training=False), tf.float32))

    def serve_preprocessed(images):  # float32 [N, S, S, 3], e.g. 10-crop views
        return answer(unless_empty(softmax, images, len(class_names)), class_names)

    def serve_images(images):
        return serve_preprocessed(preprocess(images, image_size, crop_fraction))

    def serve_bytes(image_bytes):
        return serve_preprocessed(views_from_bytes(image_bytes, image_size, crop_fraction))

    def inspect(images):
        checks = [tf.debugging.assert_positive(tf.shape(images)[0],
                                               message="inspect needs at least one image")]
        with tf.control_dependencies(checks):
            views = preprocess(images, image_size, crop_fraction)
        return _inspect(model, inside, views, class_names)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(inside)
    for name, function, spec in [
            ("serving_default", serve_images, IMAGES), ("serving_bytes", serve_bytes, IMAGE_BYTES),
            ("inspect", inspect, IMAGES), ("serving_preprocessed", serve_preprocessed,
                                           tf.TensorSpec([None, image_size, image_size, 3],
                                                         tf.float32, name="images"))]:
        archive.add_endpoint(name, function, input_signature=[spec])
    return archive


def _inspect(model, inside, views, class_names):
    """Model input, conv activations and a Grad-CAM map (Selvaraju et al. 2017) per image;
    `inside` is `model` with the conv layers' outputs before its own."""
    with tf.GradientTape() as tape:
        *maps, logits = inside(views, training=False)
        top_logit = tf.reduce_max(tf.cast(logits, tf.float32), axis=-1)
    last = tf.cast(maps[-1], tf.float32)
    grads = tf.cast(tape.gradient(top_logit, maps[-1]), tf.float32)
    cam = tf.nn.relu(tf.reduce_sum(last * tf.reduce_mean(grads, axis=[1, 2], keepdims=True), -1))
    size = views.shape[1]
    cam = tf.image.resize(cam[..., None], [size, size])[..., 0]
    cam = cam / (tf.reduce_max(cam, axis=[1, 2], keepdims=True) + 1e-8)
    kernel = tf.cast(model.get_layer("conv1").kernel, tf.float32)
    out = {"model_input": views, "gradcam": cam, "conv1_filters": kernel,
           **answer(tf.nn.softmax(tf.cast(logits, tf.float32)), class_names)}
    out["gradcam_class"] = out["top_k_classes"][:, 0]  # the class the map explains
    out.update({name: tf.cast(m, tf.float32) for name, m in zip(CONVS, maps)})
    return out


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
    return errors.one_line(lines[-1].removeprefix("Exception encountered: ").split(
        " Full object config")[0], 300)


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        checkpoint = pathlib.Path(args.checkpoint)
        labels, class_names, config = _run_files(checkpoint, args.labels)
        export_dir = args.export_dir or config.get("export_dir")
        if not export_dir:
            raise ValueError("no --export-dir given and no config.json beside the checkpoint")
        model = _load_model(checkpoint, labels, class_names)
        version = export_model(model, export_dir, class_names=class_names,
                               metadata={"config": config}, precision=args.export_precision)
    except (ValueError, OSError) as error:
        return errors.report(error)
    print(f"Exported {args.checkpoint} to {version}")
    return 0


def _parser():
    parser = argparse.ArgumentParser(prog="python -m alexnet_tf.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help=".keras file (e.g. runs/X/best.keras)")
    parser.add_argument("--export-dir", help="default: the run's export_dir from its config.json")
    parser.add_argument("--labels", help="class names, one per line (default: labels.txt "
                                         "beside the checkpoint)")
    parser.add_argument("--export-precision", choices=EXPORT_PRECISIONS, default="float32",
                        help="float32 (default: runs on any CPU, converts to TFLite) or "
                             "as-trained (bfloat16 compute after mixed_bfloat16 training)")
    return parser


def _run_files(checkpoint, labels=None):
    """(the labels file, its class names, the run's config.json or {}) of a checkpoint."""
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
    return labels, class_names, config


def _load_model(checkpoint, labels, class_names):
    """The checkpoint's Keras model; ValueError in one line unless it is this project's model
    with as many outputs as `labels` names classes."""
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
    return model


if __name__ == "__main__":
    sys.exit(main())
