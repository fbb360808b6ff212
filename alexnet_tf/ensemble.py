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
member.
"""

import argparse
import pathlib
import sys

import tensorflow as tf

from alexnet_tf import errors, export, sources
from alexnet_tf.data import geometry_for
from alexnet_tf.inference import Classifier, ModelNotFound


def export_ensemble(members, export_dir):
    """Writes the next version under `export_dir` from `members` (loaded `Classifier`s, the
    first one's class order and `inspect`); returns its path. ValueError if they disagree."""
    check_members(members, export_dir)
    first = members[0]
    crop_fraction = first.metadata.get("crop_fraction",
                                       geometry_for(first.image_size).crop_fraction)
    module = tf.Module()
    module.members = [m.module for m in members]  # tracked: their variables are saved again
    signatures = _signatures(members, crop_fraction)
    return export.write_version(
        export_dir, lambda staging: tf.saved_model.save(module, staging, signatures=signatures),
        class_names=first.class_names, metadata=_metadata(members, crop_fraction))


def check_members(members, export_dir):
    """ValueError unless `members` make one ensemble: the same classes and input, the same
    held-out split, none an ensemble itself or given twice, none living in `export_dir`."""
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
        if sources.held_out(other.metadata) != sources.held_out(first.metadata):
            raise ValueError(f"{other.path} and {first.path} held out different validation "
                             "splits: the ensemble would be scored on images a member trained on")


def _signatures(members, crop_fraction):
    """The ensemble's signatures: each image preprocessed once, then the members'
    `serving_preprocessed` probabilities averaged, in the first member's class order."""
    first, size = members[0], members[0].image_size
    classes = first.class_names
    # Columns in the first member's class order, whatever order each member lists them in.
    orders = [[m.class_names.index(c) for c in classes] for m in members]

    def mean(views):
        return tf.add_n([tf.gather(m.module.signatures["serving_preprocessed"](images=views)[
            "probabilities"], order, axis=-1) for m, order in zip(members, orders)]) / len(members)

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")])
    def serve_preprocessed(images):
        return export.answer(export.unless_empty(mean, images, len(classes)), classes)

    @tf.function(input_signature=[export.IMAGES])
    def serve_images(images):
        return serve_preprocessed(export.preprocess(images, size, crop_fraction))

    @tf.function(input_signature=[export.IMAGE_BYTES])
    def serve_bytes(image_bytes):
        return serve_preprocessed(export.views_from_bytes(image_bytes, size, crop_fraction))

    @tf.function(input_signature=[export.IMAGES])
    def inspect(images):
        """The first member's maps and Grad-CAM, which explains that member's own top class
        (`gradcam_class`), beside the ensemble's answer: the app's labels are the ensemble's."""
        out = dict(first.module.signatures["inspect"](images=export.bounded_images(images)))
        out.update(serve_images(images))
        return out

    return {"serving_default": serve_images, "serving_bytes": serve_bytes,
            "serving_preprocessed": serve_preprocessed, "inspect": inspect}


def _metadata(members, crop_fraction):
    first = members[0]
    return {
        "image_size": first.image_size,
        "crop_fraction": crop_fraction,  # the ensemble's own preprocessing
        "parameters": sum(m.metadata.get("parameters", 0) for m in members),
        "flops_per_image": sum(m.metadata.get("flops_per_image", 0) for m in members),
        # evaluate rebuilds the first member's split, which every member held out.
        **{key: first.metadata[key] for key in ("config", "data_path") if key in first.metadata},
        "members": [{"model": str(m.path), "config": m.metadata.get("config"),
                     "metrics": m.metadata.get("metrics")} for m in members],
    }


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
        return errors.report(error)
    print(f"Exported the ensemble of {len(members)} models to {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
