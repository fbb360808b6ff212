"""The Classify tab: an image in, the top 5 classes, the model's view of it and a model card."""

import pathlib
import time

import gradio as gr
import numpy as np

from alexnet_tf import sources
from alexnet_tf.augment import IMAGE_EXTENSIONS
from ui.images import bad_input, load_image, refuse_urls
from ui.models import ModelView
from ui.pictures import upscale

EXAMPLES = pathlib.Path(__file__).resolve().parent / "examples"  # any images here are offered
# preprocess=False: load_image decodes the upload itself (GIF colours, huge images, clear
# messages); one concurrency_id so all model calls of every tab share the app's limit.
MODEL_CALL = dict(preprocess=False, concurrency_id="model")
NO_MODEL = ("No model loaded: train one in the Train tab, pick one above, or run "
            "`python -m alexnet_tf.train`.")


def classify(image, classifier):
    """image -> ({class: probability} for the top 5, the model's view (uint8), timing text)."""
    if classifier is None:
        raise bad_input(NO_MODEL)
    start = time.perf_counter()
    pixels = load_image(image)
    loaded = time.perf_counter()
    out = classifier.inspect(pixels)  # one call: probabilities and the model-input view
    done = time.perf_counter()
    labels = {name.decode(): float(p)
              for name, p in zip(out["top_k_classes"], out["top_k_probabilities"])}
    view = upscale(np.clip(out["model_input"], 0, 255).astype(np.uint8))
    size = out["model_input"].shape[0]
    text = (f"**{(done - loaded) * 1000:.1f} ms** model time (forward pass + Grad-CAM "
            f"gradients; +{(loaded - start) * 1000:.1f} ms decoding) · your image "
            f"{pixels.shape[1]}×{pixels.shape[0]} → model input {size}×{size}")
    return labels, view, text


def model_card(classifier):
    """Markdown facts about the export, "unknown" where its metadata is silent."""
    if classifier is None:
        return "### No model loaded\n\n" + NO_MODEL
    meta = classifier.metadata
    config, metrics = (value if isinstance(value, dict) else {}  # a hand-edited file, say
                       for value in (meta.get("config"), meta.get("metrics")))
    size, crop, params = meta.get("image_size"), meta.get("crop_fraction"), meta.get("parameters")
    members = meta.get("members")  # `python -m alexnet_tf.ensemble`
    ensemble = isinstance(members, list) and len(members) > 1
    configs = [m.get("config") if isinstance(m, dict) else None for m in members] if ensemble \
        else [config]

    def trained(key, shown=str):  # each member's value where an ensemble's members differ
        values = [c.get(key) if isinstance(c, dict) else None for c in configs]
        return " + ".join(dict.fromkeys(shown(v) if v else "unknown" for v in values))

    rows = {
        "Dataset": trained("data", dataset_name),
        "Variant": trained("variant"),
        "Recipe": trained("recipe"),
        "Input": f"{size}×{size} px" + (f", centre crop {crop:.3g}" if crop not in (None, 1, 1.0)
                                         else "") if size else "unknown",
        "Classes": len(classifier.class_names) or "unknown",
        "Parameters": f"{params:,}" if isinstance(params, int) else "unknown",
        **({"Ensemble": f"{len(members)} models, their probabilities averaged (section 6 of "
                        "the paper); Inside AlexNet shows the first alone"} if ensemble else {}),
        _accuracy_label(metrics): f"top-1 {_accuracy(metrics, 'top1')}, top-5 "
                                  f"{_accuracy(metrics, 'top5')}" if metrics else "unknown",
        "Exported": meta.get("exported_at", "unknown"),
        "Model": model_name(classifier.path),
    }
    return "### Model card\n\n" + "".join(f"- **{k}**: {v}\n" for k, v in rows.items())


def _accuracy(metrics, key):
    value = metrics.get(key)
    if not isinstance(value, (int, float)):
        return "unknown"
    return f"{value:.1%}" if value <= 1 else f"{value:.1f}%"  # fractions or percentages


def _accuracy_label(metrics):  # trainers say which split the numbers come from
    images = metrics.get("num_examples")
    detail = f", {images:,} images" if isinstance(images, int) else ""
    return f"Accuracy ({metrics['split']} split{detail})" if "split" in metrics else \
        "Test accuracy"


def dataset_name(data):
    """A tensorflow-datasets name as it is; a folder as its last two parts ("folder
    cifar10/train"), not its path on the server."""
    data = str(data)
    if not sources.is_folder(data):
        return data
    path = pathlib.PurePath(data)
    return "folder " + "/".join([part for part in path.parts if part != path.anchor][-2:])


def model_name(path):
    """`saved_models/NAME/3` -> "NAME, version 3": every visitor reads the card, and where the
    export lives on the server is none of their business."""
    path = pathlib.Path(path)
    return f"{path.parent.name}, version {path.name}" if path.name.isdigit() else path.name


def example_images():
    return sorted(str(p) for p in EXAMPLES.glob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)


class ClassifyTab:
    """Builds the tab's components (inside a gr.Tab) and its events. `answered` and `clicked`
    are the events other tabs chain their own steps to (see inside_tab)."""

    def __init__(self, models, files):
        self.models, self.files = models, files
        with gr.Row():
            with gr.Column():
                self.image = refuse_urls(gr.Image(
                    type="numpy", image_mode="RGB", label="Your image", height=320,
                    sources=["upload", "clipboard", "webcam"]))
                self.button = gr.Button("Classify", variant="primary")
                examples = example_images()
                if examples:
                    gr.Examples([[p] for p in examples], inputs=self.image, label="Examples",
                                example_labels=[pathlib.Path(p).stem for p in examples])
            with gr.Column():
                self.labels = gr.Label(num_top_classes=5, label="Top 5", elem_id="top5")
                self.timing = gr.Markdown(elem_id="timing")
                self.view = gr.Image(label="What the model sees (its input, resized and "
                                     "cropped)", interactive=False, height=256)
        self.card = gr.Markdown(model_card(models.current), elem_id="model-card")
        self.outputs = [self.labels, self.view, self.timing]
        self.clicked = self.button.click(self.on_classify, self.image, self.outputs,
                                         api_name="classify", **MODEL_CALL)
        # Any new image (upload, paste, webcam, example, clear) first wipes the old answer so a
        # failed upload never sits next to the previous image's labels, then classifies.
        # always_last: an image given while the previous one is still being classified is
        # classified after it (Gradio's default for these steps, "once", drops it, and the
        # previous image's answer would stay beside the new image).
        self.wiped = self.image.change(lambda: (None, None, ""), None, self.outputs, queue=False,
                                       show_progress="hidden", api_visibility="private")
        self.answered = self.wiped.then(self.on_new_image, self.image, self.outputs,
                                        trigger_mode="always_last", api_visibility="private",
                                        **MODEL_CALL)
        self.model_view = ModelView([self.card], lambda classifier: (model_card(classifier),))

    def on_classify(self, image):
        return self.files(*classify(image, self.models.current))

    def on_new_image(self, image):  # a cleared input is no error, just nothing to show
        return (None, None, "") if image is None else self.on_classify(image)
