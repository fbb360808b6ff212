"""The Inside AlexNet tab: conv1 filters, a layer's feature maps and Grad-CAM for the image of
the Classify tab."""

import functools

import gradio as gr
import numpy as np

from alexnet_tf.inference import CONVS
from ui.classify_tab import MODEL_CALL
from ui.images import load_image
from ui.models import ModelView
from ui.pictures import SHOWN_CHANNELS, feature_map_grid, filter_grid, gradcam_overlay

LAYERS = CONVS  # the feature maps the export's `inspect` returns


def inside(image, layer, classifier):
    """Feature-map grid, its caption, the Grad-CAM overlay and its caption for one image."""
    if image is None or classifier is None:
        return None, "", None, ""
    out = classifier.inspect(load_image(image))
    maps = out[layer]
    dead = int((maps.reshape(-1, maps.shape[-1]).max(axis=0) <= 0).sum())
    caption = (f"`{layer}`: {maps.shape[0]}×{maps.shape[1]} maps × {maps.shape[-1]} channels; "
               f"the first {min(SHOWN_CHANNELS, maps.shape[-1])}, each scaled to its own range "
               f"(yellow = strongest). {dead} of {maps.shape[-1]} channels are silent (ReLU = 0) "
               "for this image.")
    # An ensemble's map is its first model's, for that model's own top class.
    explained = out["gradcam_class"].decode()
    if "members" in classifier.metadata:
        cam_caption = (f"Grad-CAM of the ensemble's first model, for its own top class "
                       f"**{explained}**: red = regions that raise that model's score.")
    else:
        cam_caption = (f"Grad-CAM for the predicted class **{explained}** "
                       f"({out['top_k_probabilities'][0]:.1%}): red = regions that raise its "
                       "score.")
    return feature_map_grid(maps), caption, gradcam_overlay(out["model_input"], out["gradcam"]), \
        cam_caption


@functools.lru_cache(maxsize=1)  # drawn once for the current model, not per page or call
def conv1_filters(classifier):
    if classifier is None:
        return None
    size = classifier.image_size
    return filter_grid(classifier.inspect(np.zeros((size, size, 3), np.uint8))["conv1_filters"])


class InsideTab:
    """Builds the tab (inside a gr.Tab); its views follow each answer of the Classify tab."""

    def __init__(self, models, files, classify_tab):
        self.models, self.files = models, files
        with gr.Row():
            self.filters = gr.Image(
                conv1_filters(models.current), interactive=False, height=300,
                label="conv1 filters (each scaled to 0..1; cf. the paper's Figure 3)")
            with gr.Column():
                cam = gr.Image(label="Grad-CAM on the model's input", interactive=False,
                               height=256)
                cam_caption = gr.Markdown("Classify an image to see where the model looks.")
        layer = gr.Dropdown(list(LAYERS), value="conv1", label="Feature maps of layer")
        maps = gr.Image(label="Feature maps", interactive=False)
        maps_caption = gr.Markdown()
        outputs, image = [maps, maps_caption, cam, cam_caption], classify_tab.image
        private = dict(api_visibility="private", **MODEL_CALL)
        classify_tab.clicked.success(self.on_inside, [image, layer], outputs, **private)
        classify_tab.image.change(lambda: (None, "", None, ""), None, outputs, queue=False,
                                  show_progress="hidden", api_visibility="private")
        classify_tab.answered.success(self.on_inside, [image, layer], outputs,
                                      trigger_mode="always_last", **private)
        layer.change(self.on_inside, [image, layer], outputs, **private)
        self.model_view = ModelView([self.filters], lambda c: (self.files(conv1_filters(c))[0],))

    def on_inside(self, image, layer):
        return self.files(*inside(image, layer, self.models.current))
