"""Accuracy of a model on a data split: top-1, top-5, per class, confusion matrix.

    python -m alexnet_tf.evaluate --model saved_models/alexnet_cifar10 --data DATA [--split test]
        [--tta] [--json FILE]

Several --model exports are evaluated as an ensemble: their softmax outputs are averaged.
"""

import argparse
import json
import pathlib
import sys
import time

import numpy as np
import tensorflow as tf

from alexnet_tf import data as data_lib, plots, sources
from alexnet_tf.inference import Classifier, ModelNotFound


def predict_split(predict, dataset, ten_crop=False):
    """Runs `predict(images) -> probabilities` over (images, labels) batches.

    With `ten_crop` the batches hold [B, 10, S, S, 3] views whose softmax outputs are averaged
    (section 4.1 of the paper). Returns (probabilities [N, C], labels [N]).
    """
    probabilities, labels = [], []
    for images, batch_labels in dataset.as_numpy_iterator():
        if ten_crop:
            views = images.shape[1]
            out = np.asarray(predict(images.reshape(-1, *images.shape[2:])))
            out = out.reshape(len(images), views, -1).mean(axis=1)
        else:
            out = np.asarray(predict(images))
        probabilities.append(out)
        labels.append(batch_labels)
    return np.concatenate(probabilities), np.concatenate(labels)


def compute_metrics(probabilities, labels, class_names):
    """top1, top5, per-class accuracy and the confusion matrix (rows true, columns predicted)."""
    predicted = probabilities.argmax(axis=1)
    k = min(5, probabilities.shape[1])
    top5 = (np.argsort(-probabilities, axis=1)[:, :k] == labels[:, None]).any(axis=1)
    n = len(class_names)
    matrix = np.zeros((n, n), np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    per_class = {name: (float(matrix[i, i] / matrix[i].sum()) if matrix[i].sum() else None)
                 for i, name in enumerate(class_names)}
    return {
        "num_examples": int(len(labels)),
        "top1": float((predicted == labels).mean()),
        "top5": float(top5.mean()),
        "per_class_accuracy": per_class,
        "confusion_matrix": matrix.tolist(),
    }


def evaluate_model(model, split, geometry, class_names, *, batch_size, tta=False):
    """Metrics of a Keras model (logits out) on a split, with the images per second of the
    centre-crop pass; with `tta`, the 10-crop top-1 and top-5 too."""
    # No Python control flow to convert: autograph=False spares a warning about the lambda.
    predict = tf.function(lambda x: tf.nn.softmax(tf.cast(model(x, training=False), tf.float32)),
                          autograph=False)
    started = time.time()
    probabilities, labels = predict_split(
        predict, data_lib.eval_pipeline(split, geometry, batch_size=batch_size))
    metrics = compute_metrics(probabilities, labels, class_names)
    metrics["eval_examples_per_second"] = len(labels) / (time.time() - started)
    if tta:
        ten = compute_metrics(*predict_split(predict, data_lib.eval_pipeline(
            split, geometry, batch_size=batch_size, ten_crop=True), True), class_names)
        metrics.update(top1_10crop=ten["top1"], top5_10crop=ten["top5"])
    return metrics


def predict_export(classifier, dataset_split, geometry, data_classes, *, batch_size=256,
                   ten_crop=False):
    """(probabilities [N, C], labels [N]) of an export on a split whose labels index
    `data_classes`; both in the model's class order (`classifier.class_names`)."""
    model_classes = classifier.class_names
    unknown = [c for c in data_classes if c not in model_classes]
    if unknown:
        raise data_lib.DataError(f"The model does not know the data's classes {unknown}; "
                                 f"it knows {model_classes}")
    to_model = np.array([model_classes.index(c) for c in data_classes])
    if ten_crop:
        ds = data_lib.eval_pipeline(dataset_split, geometry, batch_size=batch_size, ten_crop=True)

        def predict(images):
            return classifier.classify_preprocessed(images)["probabilities"]
    else:
        # The stored uint8 images go to the serving signature, which crops them itself.
        ds = dataset_split.dataset.batch(batch_size)

        def predict(images):
            return classifier.classify(images)["probabilities"]
    probabilities, labels = predict_split(predict, ds, ten_crop)
    return probabilities, to_model[labels]


def evaluate_export(classifier, dataset_split, geometry, data_classes, *, batch_size=256,
                    ten_crop=False):
    """Metrics of an export on a split whose labels index `data_classes`."""
    return compute_metrics(*predict_export(classifier, dataset_split, geometry, data_classes,
                                           batch_size=batch_size, ten_crop=ten_crop),
                           classifier.class_names)


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, not {args.batch_size}")
    try:
        for out in filter(None, (args.plot, args.json)):  # before the work, not after it
            pathlib.Path(out).parent.mkdir(parents=True, exist_ok=True)
        members = _members(args.model)
        split, outputs, loads = _predict_members(members, args)
    except (ModelNotFound, data_lib.DataError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # Beside the (first) model's versions unless the user says where: never the cwd's files.
    args.plot = args.plot or members[0].path.parent / "confusion_matrix.png"
    _write_bad_files(sorted({f for d in loads.values() for f in d.bad_files}),
                     args.bad_files or members[0].path.parent / "bad_files.txt")
    metrics = _metrics(members, outputs, args, split)
    try:
        plots.confusion_matrix(metrics["confusion_matrix"], members[0].class_names, args.plot,
                               title=f"{args.data} ({split})")
        _report(metrics, args)
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _parser():
    parser = argparse.ArgumentParser(prog="python -m alexnet_tf.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, nargs="+",
                        help="export: version dir or model base dir; several: their ensemble "
                             "(softmax outputs averaged)")
    parser.add_argument("--data", required=True, help="as for train: cifar10, tfds:NAME, a folder")
    parser.add_argument("--split", default="test", choices=("test", "val", "train"),
                        help="default test; falls back to val when the data has no test split")
    parser.add_argument("--tta", action="store_true", help="10-crop test-time augmentation")
    parser.add_argument("--json", metavar="FILE", help="write the metrics as JSON")
    parser.add_argument("--plot", metavar="PNG",
                        help="confusion-matrix image (default: confusion_matrix.png beside the "
                             "(first) model's versions)")
    parser.add_argument("--bad-files", metavar="FILE",
                        help="where to list the data's unreadable image files, if any "
                             "(default: bad_files.txt beside the (first) model's versions)")
    # The held-out split is rebuilt from these: a different split seed or fraction than
    # training's would put trained-on images into it and inflate the figures.
    parser.add_argument("--val-fraction", type=float, default=None,
                        help="default: the training run's, from the export's metadata (else 0.1)")
    parser.add_argument("--split-seed", "--seed", type=int, default=None, dest="split_seed",
                        help="default: the training run's, from the export's metadata (else 0); "
                             "--seed is its older name")
    parser.add_argument("--batch-size", type=int, default=256)
    return parser


def _members(paths):
    """The exports to evaluate, checked to know the same classes."""
    members = [Classifier(path) for path in paths]
    reference = members[0].class_names
    for member in members:
        names = member.class_names
        if len(set(names)) < len(names):
            raise data_lib.DataError(f"{member.path}: labels.txt names a class twice")
        if set(names) != set(reference):
            raise data_lib.DataError(
                f"{member.path} knows other classes than {members[0].path}: "
                f"{sorted(set(names) - set(reference))} instead of "
                f"{sorted(set(reference) - set(names))}")
    return members


def _predict_members(members, args):
    """(the split evaluated, each member's (probabilities, labels) in the first member's class
    order, the loaded data by input size)."""
    splits = [sources.trained_split(m.metadata, val_fraction=args.val_fraction,
                                    split_seed=args.split_seed) for m in members]
    loads, split = {}, args.split

    def load(image_size):  # once per input size, not once per member
        if image_size not in loads:
            loads[image_size] = sources.load(args.data, image_size=image_size,
                                             splits=(split,), **splits[0])
        return loads[image_size]

    if split == "test" and load(members[0].image_size).test is None:
        print(f"{args.data} has no test split: evaluating on the validation split")
        split, loads = "val", {}
    held_out = [sources.split_settings(args.data, **s) for s in splits]
    if split != "test" and any(h != held_out[0] for h in held_out):
        raise data_lib.DataError(
            f"the models hold out different validation splits ({_describe(held_out)}): on "
            f"{split}, each would be scored on images another trained on; pass "
            "--split-seed and --val-fraction to evaluate them on one anyway")
    outputs = []
    for member in members:
        if split == "val":
            _warn_if_trained_elsewhere(member, args.data, len(members) > 1)
        outputs.append(_predict_member(member, load(member.image_size), split, args,
                                       members[0].class_names))
    if any(not np.array_equal(labels, outputs[0][1]) for _, labels in outputs):
        raise data_lib.DataError("the models were shown different images or labels")
    return split, outputs, loads


def _warn_if_trained_elsewhere(member, data, several):
    """Unless the export names the same --data (or none)."""
    trained_on = sources.trained_on(member.metadata)
    if trained_on not in (None, sources.identity(data)):
        name = member.path if several else "the model"
        # The --data as the run was given it, the name a user knows.
        given = sources.trained_config(member.metadata).get("data", trained_on)
        print(f"warning: {name} was trained on {given}: "
              f"a validation split carved from {data} may hold images it trained on")


def _predict_member(member, dataset, split, args, reference):
    probabilities, labels = predict_export(
        member, getattr(dataset, split), _geometry(member), dataset.class_names,
        batch_size=args.batch_size, ten_crop=args.tta)
    # Columns and labels in the first model's class order.
    order = [member.class_names.index(c) for c in reference]
    to_reference = np.array([reference.index(c) for c in member.class_names])
    return probabilities[:, order], to_reference[labels]


def _metrics(members, outputs, args, split):
    """The model's metrics, or the ensemble's (section 6 of the paper: "averaging the
    predictions of five similar CNNs") with each member's top-1 and top-5."""
    reference, labels = members[0].class_names, outputs[0][1]
    if len(members) == 1:
        metrics = {"model": str(members[0].path)}
    else:
        member_metrics = [compute_metrics(p, labels, reference) for p, _ in outputs]
        metrics = {"models": [str(m.path) for m in members],
                   "members": [{"model": str(m.path), "top1": x["top1"], "top5": x["top5"]}
                               for m, x in zip(members, member_metrics)]}
    return {**metrics, "data": args.data, "split": split, "tta": args.tta,
            **compute_metrics(np.mean([p for p, _ in outputs], axis=0), labels, reference)}


def _report(metrics, args):
    suffix = ", 10-crop" if args.tta else ""
    split = metrics["split"]
    for member in metrics.get("members", []):
        print(f"{split}: top-1 {member['top1']:.4f}  top-5 {member['top5']:.4f}  "
              f"{member['model']}{suffix}")
    if "members" in metrics:
        print(f"The ensemble of {len(metrics['members'])} models (their probabilities averaged):")
    print(f"{split}: top-1 {metrics['top1']:.4f}  top-5 {metrics['top5']:.4f}  "
          f"({metrics['num_examples']} images{suffix})")
    for name, accuracy in metrics["per_class_accuracy"].items():
        if accuracy is not None:
            print(f"  {name:>20s} {accuracy:.4f}")
    print(f"Confusion matrix: {args.plot}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(metrics, indent=2))
        print(f"Metrics: {args.json}")


def _write_bad_files(bad_files, path):
    """The list beside the model, not in whatever folder the command runs from (a file of the
    user's could be there); one that cannot be written costs a warning, not the results."""
    try:
        sources.write_bad_files(bad_files, path)
    except OSError as error:
        if bad_files:
            print(f"warning: cannot write the {len(bad_files)} unreadable file name(s) to "
                  f"{path}: {error.strerror}", file=sys.stderr)


def _describe(held_out):
    return " and ".join(sorted({", ".join(f"{k.replace('_', ' ')} {v}" for k, v in h.items())
                                for h in held_out}))


def _geometry(classifier):
    size = classifier.image_size
    return data_lib.Geometry(size, round(size / classifier.metadata.get("crop_fraction", 1.0)),
                             data_lib.geometry_for(size).crop)


if __name__ == "__main__":
    sys.exit(main())
