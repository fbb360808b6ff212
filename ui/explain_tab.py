"""The "How AlexNet works" tab (issue 46): the paper's seven ideas, each with its section and
formula and a picture computed on the user's image by `alexnet_tf.explain` (the numbers) and
`alexnet_tf.explain_figures` (the drawings), from the loaded export's Keras model and, for the
two GPU towers, the `paper` variant's.

The image is the Classify tab's when the tab is opened, or one given here. Everything is
computed for one image at the model's input size, figures rendered by matplotlib's Agg backend.
"""

import functools
import json
import pathlib
import threading

import gradio as gr
import numpy as np
import pandas as pd

from alexnet_tf import augment, explain, explain_figures
from alexnet_tf.errors import one_line
from alexnet_tf.model import build_model
from alexnet_tf.summary import totals
from ui.classify_tab import MODEL_CALL, example_images
from ui.images import load_image, refuse_urls
from ui.models import ModelView

FIGURE1 = pathlib.Path(__file__).resolve().parent.parent / "docs" / "figure1.png"
# Gradio's Markdown renders only $$...$$ by default; the sections also use inline $...$.
LATEX = [{"left": "$$", "right": "$$", "display": True},
         {"left": "$", "right": "$", "display": False}]
SECTIONS = ("architecture", "relu", "lrn", "pooling", "dropout", "augmentation", "parallelism")
# Display heights (px) of the pictures, about their drawn size: an image component without a
# height collapses when its tab is not the one shown at load.
HEIGHTS = {"architecture": 260, "towers": 440, "relu": 340, "lrn": 340, "pooling": 390,
           "dropout": 360, "augmentation": 680, "parallelism": 720}
TABLE_HEADERS = ["layer", "operation", "kernel/stride pad", "groups", "output", "parameters",
                 "MFLOPs"]
# pyplot keeps global state: one figure is drawn at a time, whatever the app's concurrency.
_DRAWING = threading.Lock()

INTRO = """## How AlexNet works
Krizhevsky, Sutskever & Hinton, *ImageNet Classification with Deep Convolutional Neural
Networks*, NIPS 2012. Seven ideas of the paper, each computed live on **your image** by this
project's code (`alexnet_tf/explain.py`) from the loaded model. The image is the Classify tab's
when you open this tab, or give one here. The same views, on one cat: `docs/alexnet.md`."""

TEXT = {
    "architecture": r"""### 1. Architecture (sections 3.2, 3.5, Figure 2)
Five convolutional layers and three fully connected ones turn the image into one score per
class; a softmax makes them probabilities. Each layer's output size follows from its kernel
$k$, stride $s$ and padding $p$: $o = \lfloor (i + 2p - k) / s \rfloor + 1$, e.g. the paper's
conv1, $(227 - 11)/4 + 1 = 55$. The paper split every layer over two GPUs: conv2, conv4 and
conv5 see only their own GPU's maps (`groups=2`), conv3 and fc6-fc8 read both.""",
    "relu": r"""### 2. ReLU (section 3.1, Figure 1)
Every layer is followed by $f(x) = \max(0, x)$ instead of the saturating $\tanh(x)$: its
gradient does not vanish for large inputs, and the paper found networks with it train several
times faster. What the ReLU sets to zero passes no gradient back: the code left is sparse.""",
    "lrn": r"""### 3. Local response normalization (section 3.3)
After the ReLU of the first layers, each activity is divided by the activity of its $n$
neighbouring channels at the same position (lateral inhibition):
$$b^i_{x,y} = a^i_{x,y} \Big/ \Big(k + \alpha \sum_{j=\max(0,\,i-n/2)}^{\min(N-1,\,i+n/2)}
(a^j_{x,y})^2\Big)^{\beta},\quad k=2,\ n=5,\ \alpha=10^{-4},\ \beta=0.75$$
In TensorFlow: `tf.nn.local_response_normalization(x, depth_radius=2, bias=2.0, alpha=1e-4,
beta=0.75)`: `depth_radius` $= n/2$ rounded down (TF's default, 5, is an 11-channel window),
`bias` $= k$, and neither divides $\alpha$ by $n$. Since $k = 2$, every activity is at least
scaled by $2^{-0.75} = 0.59$; strong neighbours damp it further.""",
    "pooling": r"""### 4. Overlapping pooling (section 3.4)
Max-pooling with windows $z$ wider than the stride $s$: AlexNet pools $3\times3$ windows with
stride 2 where the usual pooling took $2\times2$ with stride 2, so neighbouring windows
overlap. Output size $o = \lfloor (i - z)/s \rfloor + 1$ ('valid'), or $\lceil i/s \rceil$
('same'): about the same map, but each output sees more. The paper reports top-1 and top-5
error lower by **0.4%** and **0.3%**, and a network slightly harder to overfit.""",
    "dropout": r"""### 5. Dropout (section 4.2)
In training, each unit of fc6 and fc7 outputs zero with probability $p = 0.5$, so every image
trains a different thinned network and no unit can rely on particular others. At test time all
units are kept (Keras scales the kept ones by $1/(1-p)$ in training instead of halving them at
test): $\tilde h = m \odot h / (1 - p)$, $m_i \sim \mathrm{Bernoulli}(1 - p)$. The test-time
network approximates the average of the many thinned ones.""",
    "augmentation": r"""### 6. Data augmentation (section 4.1)
Training sees random crops and their horizontal mirrors, and PCA colour noise: to every pixel
add $[\mathbf p_1, \mathbf p_2, \mathbf p_3][\alpha_1\lambda_1, \alpha_2\lambda_2,
\alpha_3\lambda_3]^T$, $\alpha_i \sim N(0, 0.1)$ drawn once per image, where $\mathbf p_i,
\lambda_i$ are the eigenvectors and eigenvalues of the RGB covariance. At test time the
softmax is averaged over ten views: four corner crops, the centre and their mirrors.""",
    "parallelism": r"""### 7. Two GPUs then, many replicas now (section 3.2; `docs/distributed.md`)
In 2012 the network did not fit one 3 GB GPU: each GPU held half of every layer (model
parallelism) and the maps crossed only at conv3 and fc6-fc8. This project trains with data
parallelism (`MirroredStrategy`, `MultiWorkerMirroredStrategy`): every replica holds the whole
model and a share of the batch, and the gradients are all-reduced so all apply one update:
$w \leftarrow w - \eta \cdot \frac{1}{R}\sum_{r=1}^{R} g_r$.""",
}


def figure1_caption(record_path=FIGURE1.with_suffix(".json")):
    """What the project's run of Figure 1 measured, from its record (docs/figure1.json)."""
    try:
        record = json.loads(pathlib.Path(record_path).read_text())
        settings, reached = record["settings"], record["epochs_to_error"]
        relu, tanh = reached["0.25"][:2]
    except (OSError, ValueError, KeyError, TypeError):
        return "The record of the Figure 1 run (docs/figure1.json) is missing."
    at_25 = (f"ReLU reached 25% training error at epoch {relu}, tanh "
             + (f"at epoch {tanh}" if tanh else f"not within {settings['epochs']} epochs"))
    ratios = [v[2] for v in reached.values() if v[2]]
    verdict = ("**The six times is not reproduced**" if record["speedup_tanh_over_relu"] < 5
               else "The paper's speed-up is about reproduced")
    levels = ", ".join(f"{float(e):.0%}: {r or '-'} / {t or '-'}"
                       for e, (r, t, *_) in reached.items())
    return (f"The paper: a four-layer network with ReLUs reaches 25% training error on CIFAR-10 "
            f"**six times faster** than with tanh. Run here (`python -m alexnet_tf.figure1`, "
            f"{settings['train_images']:,} images, {settings['epochs']} epochs): {at_25}; epochs "
            f"to each error, ReLU / tanh: {levels}. {verdict}: at 25% "
            f"the speed-up is {'at least ' if record.get('speedup_is_lower_bound') else ''}"
            f"{record['speedup_tanh_over_relu']:.1f}x, at the other levels "
            f"{min(ratios):.1f}-{max(ratios):.1f}x. docs/alexnet.md gives the choices and a "
            "second run.")


# The per-model caches hold the current model's only: every page shows the app's one current
# model (ui.models.ModelHolder), and an older one's memory is freed once it is switched away.
@functools.lru_cache(maxsize=1)
def keras_model(classifier):
    """The export's Keras model (`explain.model_from_export`), rebuilt once per loaded model."""
    return explain.model_from_export(classifier.path)


@functools.lru_cache(maxsize=1)
def paper_model():
    """The `paper` variant, untrained: its architecture and two towers, whatever is loaded."""
    return build_model("paper")


def explained_model(classifier):
    """(Keras model, class names, "") for the loaded export, or (None, None, why not)."""
    if classifier is None:
        return None, None, ("No model loaded: the architecture below is the `paper` variant's; "
                            "load or train a model for the views on your image.")
    try:
        return keras_model(classifier), list(classifier.class_names), ""
    except Exception as error:  # an ensemble, or an export this code cannot rebuild
        return None, None, f"This tab cannot rebuild the loaded model: {one_line(error)}"


def towers_model(model):
    """The model whose two towers section 1 and 7 draw: the loaded one if it has them."""
    if model is not None and any(r["tower"] for r in explain.architecture(model)):
        return model
    return paper_model()


def layer_table(model):
    """`alexnet_tf.summary`'s table of the model as a DataFrame, totals last."""
    rows = explain.architecture(model)
    total = totals(rows)
    body = [[r["layer"], r["operation"], r["kernel"], str(r["groups"]),
             "x".join(map(str, r["output"])), f"{r['parameters']:,}",
             f"{r['mflops']:,.1f}" if r["mflops"] else ""] for r in rows]
    body.append(["total", "", "", "", "", f"{total['parameters']:,}", f"{total['mflops']:,.1f}"])
    return pd.DataFrame(body, columns=TABLE_HEADERS)


def drawn(draw, *args, **kwargs):
    """A figure of explain_figures rendered to uint8 RGB, one at a time."""
    with _DRAWING:
        return explain_figures.render(draw(*args, **kwargs))


@functools.lru_cache(maxsize=1)  # the current model's (see keras_model)
def model_pictures(classifier):
    """What the tab shows of a model before any image: (note, its table, its diagram, whether
    the paper's towers are shown apart, their diagram, the paper's table)."""
    model, _, note = explained_model(classifier)
    paper = paper_model()
    apart = model is None or towers_model(model) is not model
    return (note, layer_table(model) if model is not None else None,
            drawn(explain_figures.draw_layer_diagram, model) if model is not None else None,
            apart, drawn(explain_figures.draw_layer_diagram, paper), layer_table(paper))


# ---- the views on one image: each (picture uint8 RGB, caption markdown) ----------------------

def architecture_view(model, image, class_names):
    picture = drawn(explain_figures.draw_architecture, model, image, class_names)
    maps = explain.activation_maps(model, image)
    weighted = [r["layer"] for r in explain.architecture(model)
                if r["operation"].startswith(("conv", "fully"))]
    shapes = ", ".join(f"{n} {'x'.join(map(str, maps[n].shape))}" for n in weighted)
    size = f"{image.shape[1]}×{image.shape[0]}"
    return picture, (f"Your image ({size}) through `{model.name}`, input to softmax: each "
                     "column is a layer's strongest map (vectors as squares). Output shapes: "
                     f"{shapes}.")


def towers_view(paper, image):
    picture = drawn(explain_figures.draw_architecture, paper, image)
    return picture, ("The `paper` variant's two towers on your image (each row is one GPU's "
                     "half of the maps; red: the layers that read both). This `paper` model is "
                     "untrained here, so its maps are random filters' responses.")


def relu_view(model, image, layer="conv1"):
    picture = drawn(explain_figures.draw_relu, model, image, layer)
    maps = explain.activation_maps(model, image)
    relu_layers = [r["layer"] for r in explain.architecture(model)
                   if r["operation"].endswith("+ relu")]
    zeros = ", ".join(f"{n} {explain.zero_fraction(maps[n]):.0%}" for n in relu_layers)
    return picture, (f"`{layer}` before and after its ReLU for your image. Share of values set "
                     f"to zero, per layer: {zeros}.")


def lrn_view(model, image):
    layers = [r["layer"] for r in explain.architecture(model)
              if r["operation"] == "local response norm"]
    if not layers:  # later AlexNets dropped LRN; the paper's layer shows what it did
        picture, caption = lrn_view(paper_model(), image)
        return picture, (f"`{model.name}` has no local response normalization: the untrained "
                         f"`paper` variant's. {caption}")
    picture = drawn(explain_figures.draw_lrn, model, image, layers[0])
    before, after = explain.lrn_maps(model, image, layers[0])
    ratio, damped = explain.lrn_damping(before, after)
    target = model.get_layer(layers[0])
    floor = target.bias ** -target.beta  # what k alone does to every activity
    most = ", ".join(f"{c} ({100 * (1 - ratio[c] / floor):.2g}% more)" for c in damped)
    return picture, (f"`{layers[0]}` (depth_radius={target.depth_radius}, bias={target.bias:g}, "
                     f"alpha={target.alpha:g}, beta={target.beta:g}) on your image. Every "
                     f"activity is scaled by k^-beta = {floor:.3f} at least; the channels its "
                     f"neighbours damped most beyond that: {most or 'none'}.")


def pooling_view(model, image):
    pools = [r for r in explain.architecture(model) if r["operation"].startswith("max")]
    if not pools:
        return None, f"`{model.name}` has no max-pooling layer."
    padding = model.get_layer(pools[0]["layer"]).padding
    picture = drawn(explain_figures.draw_pooling, model, image, padding)
    inputs = explain.layer_input_output(model, image, pools[0]["layer"])[0]
    pooled = explain.compare_pooling(inputs, padding)
    sizes = ", ".join(f"{k} -> {v.shape[0]}x{v.shape[1]}" for k, v in pooled.items())
    return picture, (f"`{pools[0]['layer']}`'s input for your image, {inputs.shape[0]}x"
                     f"{inputs.shape[1]}x{inputs.shape[2]}, pooled with the layer's '{padding}' "
                     f"padding: {sizes}.")


def dropout_view(model, image, class_names, masks=4):
    rates = [model.get_layer(r["layer"]).rate for r in explain.architecture(model)
             if r["operation"].startswith("dropout")]
    if not rates:
        return None, f"`{model.name}` has no dropout layer."
    picture = drawn(explain_figures.draw_dropout, model, image, class_names, masks)
    sampled, test = explain.dropout_predictions(model, image, masks)
    best = int(test.argmax())
    return picture, (f"Your image under {masks} random masks (dropout {rates[0]:g}) and at test "
                     f"time: **{class_names[best]}** gets {sampled[:, best].min():.1%} to "
                     f"{sampled[:, best].max():.1%} under the masks, {test[best]:.1%} with all "
                     "units. The masks are drawn anew each time.")


def augmentation_view(model, image, class_names):
    picture = drawn(explain_figures.draw_augmentation, model, image, class_names)
    _, probabilities, average = explain.ten_crop_predictions(model, image)
    best = int(average.argmax())
    agree = int((probabilities.argmax(axis=1) == best).sum())
    eigenvalues = ", ".join(f"{v:g}" for v in augment.IMAGENET_EIGVAL)
    return picture, (f"PCA lighting with eigenvalues {eigenvalues} (fb.resnet.torch's ImageNet "
                     "ones, pixels in [0, 1]; the paper prints none) and alpha ~ N(0, "
                     f"{augment.LIGHTING_STD:g}). Ten views: {agree} of 10 say "
                     f"**{class_names[best]}**, their average {average[best]:.1%}.")


def parallelism_view(model, image, replicas=4):
    towers = towers_model(model)
    plan = explain.parallelism(towers, batch_size=128, replicas=replicas)
    diagram = drawn(explain_figures.draw_parallelism, towers, replicas)
    live = drawn(explain_figures.draw_data_parallel, model, towers, image, replicas)
    return stack(diagram, live), (
        f"`paper`, batch 128: the towers exchange "
        f"{plan['model_parallel_bytes'] / 1e6:.0f} MB per step at "
        f"{', '.join(plan['exchange_layers'])}; data parallelism all-reduces all "
        f"{towers.count_params():,} gradients, "
        f"{plan['data_parallel_bytes_per_replica'] / 1e6:.0f} MB per replica per step with "
        f"{replicas} replicas. Below: your image's training draws as a batch of {replicas}, one "
        f"per replica of the loaded `{model.name}`, and the gradients all-reduce averages.")


def stack(top, bottom):
    """Two pictures one above the other, centred, on white."""
    width = max(top.shape[1], bottom.shape[1])
    pad = [np.pad(p, [(0, 0), ((width - p.shape[1]) // 2, (width - p.shape[1] + 1) // 2),
                      (0, 0)], constant_values=255) for p in (top, bottom)]
    return np.concatenate(pad, axis=0)


def explain_image(image, classifier):
    """{section: (picture, caption)} for the seven sections and "towers" (the paper's two towers
    on the image, None when the loaded model has them itself). Raises gr.Error for an unusable
    image; no model: every picture None and the reason as caption."""
    model, class_names, note = explained_model(classifier)
    if image is None or model is None:
        return {key: (None, note) for key in (*SECTIONS, "towers")}
    pixels = load_image(image)
    towers = towers_model(model)
    views = {
        "architecture": architecture_view(model, pixels, class_names),
        "towers": towers_view(towers, pixels) if towers is not model else (None, ""),
        "relu": relu_view(model, pixels),
        "lrn": lrn_view(model, pixels),
        "pooling": pooling_view(model, pixels),
        "dropout": dropout_view(model, pixels, class_names),
        "augmentation": augmentation_view(model, pixels, class_names),
        "parallelism": parallelism_view(model, pixels),
    }
    return views


class ExplainTab:
    """Builds the tab (inside a gr.Tab, given as `tab`); follows the Classify tab's image when
    the tab is opened."""

    def __init__(self, models, files, classify_tab, tab):
        self.models, self.files = models, files
        note, table, diagram, apart, paper_diagram, paper_table = model_pictures(models.current)
        gr.Markdown(INTRO)
        with gr.Row():
            self.image = refuse_urls(gr.Image(
                type="numpy", image_mode="RGB", label="Your image", height=240,
                sources=["upload", "clipboard", "webcam"], elem_id="explain-image"))
            with gr.Column():
                self.note = gr.Markdown(note, elem_id="explain-note")
                self.button = gr.Button("Explain this image", variant="primary")
                examples = example_images()
                if examples:
                    gr.Examples([[p] for p in examples], inputs=self.image, label="Examples",
                                example_labels=[pathlib.Path(p).stem for p in examples])
        self.pictures, self.captions = {}, {}
        self._section("architecture", diagram)
        self.table = gr.Dataframe(table, headers=TABLE_HEADERS, interactive=False,
                                  label="python -m alexnet_tf.summary", elem_id="explain-table",
                                  max_height=1000, wrap=True)
        with gr.Column(visible=apart) as self.paper_box:
            gr.Markdown("#### The `paper` variant's two towers (Figure 2)")
            self.towers = gr.Image(paper_diagram, interactive=False, show_label=False,
                                   height=HEIGHTS["towers"],
                                   elem_id="explain-towers")
            self.captions["towers"] = gr.Markdown()
            self.paper_table = gr.Dataframe(paper_table, headers=TABLE_HEADERS,
                                            interactive=False, label="the `paper` variant",
                                            elem_id="explain-paper-table", max_height=1000)
        self.pictures["towers"] = self.towers
        for key in SECTIONS[1:]:
            self._section(key)
            if key == "relu":
                gr.Image(str(FIGURE1), interactive=False, elem_id="explain-figure1", height=420,
                         label="The paper's Figure 1 run by this project (docs/figure1.png)")
                gr.Markdown(figure1_caption(), elem_id="explain-figure1-caption")
        self._events(classify_tab, tab)
        self.model_view = ModelView(
            [self.note, self.table, self.paper_box, self.paper_table, *self._outputs()],
            self.show)

    def _section(self, key, picture=None):
        gr.Markdown(TEXT[key], latex_delimiters=LATEX)
        self.pictures[key] = gr.Image(picture, interactive=False, show_label=False,
                                      height=HEIGHTS[key],
                                      elem_id=f"explain-{key}")
        self.captions[key] = gr.Markdown(elem_id=f"explain-{key}-caption")

    def _outputs(self):
        keys = (*SECTIONS, "towers")
        return [*(self.pictures[k] for k in keys), *(self.captions[k] for k in keys)]

    def _events(self, classify_tab, tab):
        copied = gr.State(None)  # the Classify tab's image this tab last took

        def take_classify_image(image, last):
            path = image.get("path") if isinstance(image, dict) else None
            return (gr.skip(), gr.skip()) if path is None or path == last else (path, path)

        quick = dict(queue=False, show_progress="hidden", api_visibility="private")
        tab.select(take_classify_image, [classify_tab.image, copied], [self.image, copied],
                   preprocess=False, **quick)
        private = dict(api_visibility="private", **MODEL_CALL)
        self.image.change(lambda: self.cleared(self.models.current), None, self._outputs(),
                          **quick).then(
            self.on_explain, self.image, self._outputs(), trigger_mode="always_last", **private)
        self.button.click(self.on_explain, self.image, self._outputs(), **private)

    def cleared(self, classifier):
        """The pictures of the previous image gone, the diagrams of `classifier`'s model back."""
        pictures_of_model = model_pictures(classifier)
        diagram, towers = pictures_of_model[2], pictures_of_model[4]
        keys = (*SECTIONS, "towers")
        pictures = [diagram if k == "architecture" else towers if k == "towers" else None
                    for k in keys]
        return self.files(*pictures, *([""] * len(keys)))

    def on_explain(self, image):
        classifier = self.models.current  # one model for the whole answer, even mid-switch
        if image is None:
            return self.cleared(classifier)
        views = explain_image(image, classifier)
        keys = (*SECTIONS, "towers")
        pictures = [views[k][0] for k in keys]
        if pictures[-1] is None:  # the model has its own towers: the structure stays
            pictures[-1] = model_pictures(classifier)[4]
        return self.files(*pictures, *(views[k][1] for k in keys))

    def show(self, classifier):
        note, table, _, apart, _, paper_table = model_pictures(classifier)
        cleared = list(self.cleared(classifier))
        return (note or "Give an image, or press **Explain this image**.", table,
                gr.update(visible=apart), paper_table, *cleared)
