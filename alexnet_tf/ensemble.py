"""One servable SavedModel from several exports, their softmax outputs averaged.

    python -m alexnet_tf.ensemble --model saved_models/A saved_models/B --export-dir saved_models/NAME

Section 6 of the paper: "averaging the predictions of five similar CNNs". The ensemble is what
`evaluate --model A B` measures, as one export with the members' signatures (`serving_default`,
`serving_bytes`, `serving_preprocessed`; `inspect` shows the first member's insides beside the
ensemble's answer), so TF Serving, `evaluate`, `predict` and the app use it like any other. It
is built from the exports, not from `best.keras`: a run exports its final weights, and the
epoch `best.keras` holds was chosen on the very validation images the ensemble is scored on.

The ensemble decodes, bounds and crops each image once, itself (`export.decode_bounded`,
`export.resize_and_center_crop`: the limits of `alexnet_tf.export`), and gives the members the
model-size views through their `serving_preprocessed`: an image is never decoded once per
member, and members exported before those limits existed are bounded too.
"""

import argparse
import pathlib
import sys

import tensorflow as tf

from alexnet_tf import export
from alexnet_tf.config import is_folder, saved_value
from alexnet_tf.data import geometry_for
from alexnet_tf.inference import Classifier, ModelNotFound
from alexnet_tf.sources import split_settings

IMAGES = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")
IMAGE_BYTES = tf.TensorSpec([None], tf.string, name="image_bytes")


def export_ensemble(members, export_dir):
    """Writes the next version under `export_dir` from `members` (loaded `Classifier`s, the
    first one's class order and `inspect`); returns its path. ValueError if they disagree."""
    first = members[0]
    for member in members:
        if "members" in member.metadata:  # its members would weigh less than the others
            raise ValueError(f"{member.path} is an ensemble itself: give its members instead")
        if len(set(member.class_names)) < len(member.class_names):
            raise ValueError(f"{member.path}: labels.txt names a class twice")
        if pathlib.Path(export_dir).resolve() == member.path.parent.resolve():
            raise ValueError(f"--export-dir {export_dir} is where {member.path} lives: the "
                             "ensemble would become that model's newest version")
    if len({m.path.resolve() for m in members}) < len(members):
        raise ValueError("a model is given twice: it would weigh double")
    for other in members[1:]:
        if sorted(other.class_names) != sorted(first.class_names):
            raise ValueError(f"{other.path} knows other classes than {first.path}")
        for key in ("image_size", "crop_fraction"):  # one input for `serving_preprocessed`
            if other.metadata.get(key) != first.metadata.get(key):
                raise ValueError(f"{other.path} and {first.path} have another {key} "
                                 f"({other.metadata.get(key)} and {first.metadata.get(key)})")
        if _held_out(other) != _held_out(first):
            raise ValueError(f"{other.path} and {first.path} held out different validation "
                             "splits: the ensemble would be scored on images a member trained on")
    size = first.image_size
    crop_fraction = first.metadata.get("crop_fraction", geometry_for(size).crop_fraction)
    module = tf.Module()
    module.members = [m.module for m in members]  # tracked: their variables are saved again
    labels = tf.constant(first.class_names)
    # Columns in the first member's class order, whatever order each member lists them in.
    orders = [[m.class_names.index(c) for c in first.class_names] for m in members]
    k = min(export.TOP_K, len(first.class_names))

    def average(signature, **inputs):
        # A batch of zero images skips the members (TF's grouped convolution fails on it).
        return tf.cond(tf.shape(next(iter(inputs.values())))[0] > 0,
                       lambda: members_mean(signature, **inputs),
                       lambda: tf.zeros([0, len(first.class_names)]))

    def members_mean(signature, **inputs):
        return tf.add_n([tf.gather(m.module.signatures[signature](**inputs)["probabilities"],
                                   order, axis=-1) for m, order in zip(members, orders)]
                        ) / len(members)

    def answer(probabilities):
        top = tf.math.top_k(probabilities, k)
        return {"probabilities": probabilities, "top_k_indices": top.indices,
                "top_k_classes": tf.gather(labels, top.indices), "top_k_probabilities": top.values}

    def preprocess(images):  # as each member's own serving_default does
        return export.resize_and_center_crop(export.bounded_images(images), size, crop_fraction)

    @tf.function(input_signature=[IMAGES])
    def serve_images(images):
        return answer(average("serving_preprocessed", images=preprocess(images)))

    @tf.function(input_signature=[IMAGE_BYTES])
    def serve_bytes(image_bytes):
        views = export.views_from_bytes(image_bytes, size, crop_fraction)
        return answer(average("serving_preprocessed", images=views))

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")])
    def serve_preprocessed(images):
        return answer(average("serving_preprocessed", images=images))

    @tf.function(input_signature=[IMAGES])
    def inspect(images):
        """The first member's maps and Grad-CAM, which explains that member's own top class
        (`gradcam_class`), beside the ensemble's answer: the app's labels are the ensemble's."""
        images = export.bounded_images(images)
        out = dict(first.module.signatures["inspect"](images=images))
        out["gradcam_class"] = out["top_k_classes"][:, 0]
        out.update(answer(average("serving_preprocessed", images=preprocess(images))))
        return out

    signatures = {"serving_default": serve_images, "serving_bytes": serve_bytes,
                  "serving_preprocessed": serve_preprocessed, "inspect": inspect}
    metadata = {
        "image_size": size,
        "crop_fraction": crop_fraction,  # the ensemble's own preprocessing
        "parameters": sum(m.metadata.get("parameters", 0) for m in members),
        "flops_per_image": sum(m.metadata.get("flops_per_image", 0) for m in members),
        # evaluate rebuilds the first member's split, which every member held out.
        **{key: first.metadata[key] for key in ("config", "data_path") if key in first.metadata},
        "members": [{"model": str(m.path), "config": m.metadata.get("config"),
                     "metrics": m.metadata.get("metrics")} for m in members],
    }
    return export.write_version(
        export_dir, lambda staging: tf.saved_model.save(module, staging, signatures=signatures),
        class_names=first.class_names, metadata=metadata)


def _held_out(member):
    """The training data and what its validation split depends on (the test `evaluate` makes
    of ensemble members); the defaults for an export that recorded no run."""
    trained = member.metadata.get("config")
    trained = trained if isinstance(trained, dict) else {}
    data = saved_value(trained, "data")
    recorded = member.metadata.get("data_path")  # a folder's absolute path, when training ran
    if isinstance(recorded, str) or is_folder(data):  # else a path from here, or a tfds name
        data = str(pathlib.Path(recorded if isinstance(recorded, str) else data).resolve())
    else:
        data = data.removeprefix("tfds:")
    return data, split_settings(data, val_fraction=saved_value(trained, "val_fraction"),
                                split_seed=saved_value(trained, "split_seed"))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m alexnet_tf.ensemble", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", required=True,
                        help="two or more exports (version or model base directories)")
    parser.add_argument("--export-dir", required=True, help="where the ensemble's versions go")
    args = parser.parse_args(argv)
    try:
        if len(args.model) < 2:
            raise ValueError("an ensemble needs two or more --model exports")
        members = [Classifier(path) for path in args.model]
        version = export_ensemble(members, args.export_dir)
    except (ModelNotFound, ValueError, OSError, tf.errors.OpError) as error:
        lines = str(error).strip().splitlines() or [type(error).__name__]  # TF's run long
        print(f"error: {lines[0]}", file=sys.stderr)
        return 2
    print(f"Exported the ensemble of {len(members)} models to {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
