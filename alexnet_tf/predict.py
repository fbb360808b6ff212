"""Classify image files with an exported model.

    python -m alexnet_tf.predict --model saved_models/alexnet_cifar10 IMAGE_OR_FOLDER... [--top-k 5]
        [--json]

Exit code: 0 when every file was classified, 1 when some could not be read, 2 for a bad model.
"""

import argparse
import json
import pathlib
import sys

import numpy as np
import tensorflow as tf

from alexnet_tf.export import BYTES_EXTENSIONS, BYTES_FORMATS, MAX_PIXELS
from alexnet_tf.inference import Classifier, ModelNotFound


def expand(paths):
    """Files as given, folders as the image files an export reads (recursively, sorted)."""
    for path in map(pathlib.Path, paths):
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*")
                              if p.is_file() and p.suffix.lower() in BYTES_EXTENSIONS)
        else:
            yield path


def classify_file(classifier, path, top_k):
    """-> {"file", "predictions": [{"class", "probability"}]} or {"file", "error"}."""
    try:
        contents = path.read_bytes()
        probabilities = classifier.classify_bytes([contents])["probabilities"][0]
    except OSError as error:
        return {"file": str(path), "error": error.strerror or str(error)}
    except tf.errors.InvalidArgumentError:
        side = int(MAX_PIXELS ** 0.5)
        return {"file": str(path),
                "error": f"not a readable {BYTES_FORMATS} image of at most {side} x {side} pixels"}
    best = np.argsort(-probabilities)[:top_k]
    return {"file": str(path), "predictions": [
        {"class": classifier.class_names[i], "probability": float(probabilities[i])}
        for i in best]}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m alexnet_tf.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="export: version dir or model base dir")
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    try:
        classifier = Classifier(args.model)
    except ModelNotFound as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    top_k = max(1, min(args.top_k, len(classifier.class_names)))
    results = [classify_file(classifier, path, top_k) for path in expand(args.inputs)]
    if not results:
        print("error: no image files found in the given paths", file=sys.stderr)
        return 1
    failed = [r for r in results if "error" in r]
    if args.json:
        print(json.dumps({"model": str(classifier.path), "results": results}, indent=2))
    else:
        width = max(len(r["file"]) for r in results)
        for r in results:
            if "error" in r:
                print(f"{r['file']:<{width}}  error: {r['error']}", file=sys.stderr)
            else:
                print(f"{r['file']:<{width}}  " + "  ".join(
                    f"{p['class']} {p['probability']:.3f}" for p in r["predictions"]))
    if failed:
        print(f"{len(failed)} of {len(results)} file(s) could not be classified", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
