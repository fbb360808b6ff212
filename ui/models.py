"""The exports the app can show, and the one it shows now.

Every tab reads the current model from one `ModelHolder` at the start of each call, so a switch
(the picker, or a training that just finished) reaches all tabs without a restart, and a call
already running finishes with the model it started with.
"""

import dataclasses
import hashlib
import json
import pathlib
import threading
import typing

import numpy as np

from alexnet_tf.errors import one_line
from alexnet_tf.inference import Classifier, ModelNotFound


class ModelView(typing.NamedTuple):
    """What a tab shows of the current model: its components, and their values for a model
    (a Classifier, or None) in the same order."""
    outputs: list
    show: typing.Callable


@dataclasses.dataclass(frozen=True)
class ExportInfo:
    """One SavedModel version as the picker lists it, from its assets/metadata.json."""
    path: pathlib.Path
    name: str
    version: int
    variant: str
    accuracy: str
    date: str
    classes: int

    @property
    def key(self):
        """How the page names this export: `name/version`, never a path on the server."""
        return f"{self.name}/{self.version}"

    @property
    def label(self):
        return (f"{self.name} v{self.version} · {self.variant} · {self.accuracy} · "
                f"{self.classes} classes · {self.date}")


def find_exports(*roots):
    """Every version under the model base directories in `roots`, newest export first."""
    found, seen = [], set()
    for root in map(pathlib.Path, roots):
        bases = sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []
        for version in (v for base in bases for v in base.iterdir()
                        if v.name.isdigit() and (v / "saved_model.pb").is_file()):
            if version.resolve() not in seen:
                seen.add(version.resolve())
                found.append(describe(version))
    return sorted(found, key=lambda e: (e.date, e.name, e.version), reverse=True)


def describe(version):
    """ExportInfo of a version directory; "unknown" where its metadata is missing or odd."""
    version = pathlib.Path(version)
    try:
        meta = json.loads((version / "assets" / "metadata.json").read_text())
    except (OSError, ValueError):
        meta = {}
    meta = meta if isinstance(meta, dict) else {}
    config, metrics = (v if isinstance(v, dict) else {}
                       for v in (meta.get("config"), meta.get("metrics")))
    top1 = metrics.get("top1")
    accuracy = (f"{metrics.get('split', 'test')} {top1:.1%}" if isinstance(top1, (int, float))
                else "accuracy unknown")
    try:
        classes = len((version / "assets" / "labels.txt").read_text().splitlines())
    except OSError:
        classes = 0
    date = str(meta.get("exported_at", ""))[:16].replace("T", " ") or "date unknown"
    return ExportInfo(version, version.parent.name, int(version.name),
                      str(config.get("variant") or "variant unknown"), accuracy, date, classes)


def load_classifier(path):
    """An export, checked to be this project's and to run here; ModelNotFound (one line)
    otherwise."""
    try:
        classifier = Classifier(path)
        size = classifier.image_size
        classifier.inspect(np.zeros((size, size, 3), np.uint8))  # warms the graph up too
    except ModelNotFound:
        raise
    except Exception as error:  # e.g. an export this TensorFlow cannot run
        reason = f"{type(error).__name__}: {one_line(error, 200)}"
        raise ModelNotFound(f"{path} is not a usable alexnet_tf export ({reason})") from None
    return classifier


class ModelHolder:
    """The app's current model (a Classifier or None), switchable from any thread.

    `generation` counts the switches: a page compares it with the one it shows to know when
    to redraw what depends on the model."""

    def __init__(self, classifier=None, roots=()):
        self.roots = list(roots)  # where the picker looks for exports
        self._state = (0, classifier)  # one tuple, swapped whole: readers never see a mix
        self._switching = threading.Lock()

    @property
    def current(self):
        return self._state[1]

    @property
    def generation(self):
        return self._state[0]

    def snapshot(self):
        """(generation, classifier), consistent with each other."""
        return self._state

    def exports(self):
        """{key: ExportInfo} of the exports under the roots, plus the current model's if it
        lives elsewhere. The key is `name/version`; one found again in another models folder
        gets a short hash of its path after it, the same on every call."""
        found = find_exports(*self.roots)
        current = self.current
        if current is not None and all(e.path.resolve() != current.path.resolve()
                                       for e in found):
            found.insert(0, describe(current.path))
        by_key = {}
        for export in found:
            key = export.key
            if key in by_key:
                key += f" ({hashlib.sha1(str(export.path.resolve()).encode()).hexdigest()[:6]})"
            by_key[key] = export
        return by_key

    def switch(self, path):
        """Loads `path` and makes it current; returns the classifier. Raises ModelNotFound,
        keeping the current model, when it cannot be loaded."""
        with self._switching:  # one load at a time; the last asked for wins
            classifier = load_classifier(path)
            self._state = (self._state[0] + 1, classifier)
        return classifier
