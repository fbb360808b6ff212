"""The app's "How AlexNet works" tab (ui/explain_tab.py, issue 46) on a tiny `cifar` export:
the layer table, one picture per idea computed from the image, the captions' numbers against
the export's own graph and NumPy, and the tab without a model or without a variant."""

import gc
import math
import re
import types
import weakref

import numpy as np
import pytest
from PIL import Image

from helpers import load_app

pytestmark = [pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting'"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]

app = load_app()
from ui import explain_tab  # noqa: E402 (after the app: Gradio's environment)

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """An untrained `cifar` export that records its variant, as training writes it."""
    import keras

    from alexnet_tf.export import export_model
    from alexnet_tf.model import build_model

    keras.utils.set_random_seed(3)
    base = tmp_path_factory.mktemp("export") / "cifar_explained"
    export_model(build_model("cifar", num_classes=10, image_size=32), base,
                 class_names=CIFAR10, metadata={"config": {"variant": "cifar"}})
    return base


@pytest.fixture(scope="module")
def classifier(export_dir):
    return app.Classifier(export_dir)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    first, second = folder / "photo.jpg", folder / "drawing.png"
    Image.effect_mandelbrot((96, 64), (-2, -1, 1, 1), 60).convert("RGB").save(first)
    Image.radial_gradient("L").convert("RGB").resize((80, 80)).save(second)
    return str(first), str(second)


@pytest.fixture(scope="module")
def explained(classifier, images):
    return [explain_tab.explain_image(path, classifier) for path in images]


def test_the_layer_table_is_the_models_own(classifier):
    model = explain_tab.keras_model(classifier)
    assert explain_tab.keras_model(classifier) is model  # rebuilt once per loaded model
    table = explain_tab.layer_table(model)
    rows = dict(zip(table["layer"], table["output"]))
    for name in LAYERS:
        assert rows[name] == "x".join(map(str, model.get_layer(name).output.shape[1:]))
    assert rows["conv1"] == "32x32x64" and rows["fc8"] == "10"
    assert table["parameters"].iloc[-1] == f"{model.count_params():,}"


def test_every_section_has_a_picture_that_changes_with_the_image(explained):
    first, second = explained
    for key in explain_tab.SECTIONS:
        for views in (first, second):
            picture, caption = views[key]
            assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[-1] == 3
            assert caption
        assert not np.array_equal(first[key][0], second[key][0]), key
    # `cifar` has no towers: the paper's are drawn on the image too.
    assert first["towers"][0] is not None and "untrained" in first["towers"][1]
    assert first["architecture"][1].startswith("Your image (96×64)")


def test_captions_give_the_numbers_of_the_image(classifier, images, explained):
    served = classifier.inspect(app.load_image(images[0]))  # the export's own graph
    relu = explained[0]["relu"][1]
    assert f"conv1 {np.mean(served['conv1'] == 0):.0%}" in relu
    assert f"conv5 {np.mean(served['conv5'] == 0):.0%}" in relu
    # pool1 pools conv1's 32x32 maps with 'same' padding: ceil(32 / 2) either way.
    side = math.ceil(32 / 2)
    assert f"3x3/2 -> {side}x{side}, 2x2/2 -> {side}x{side}" in explained[0]["pooling"][1]
    assert "depth_radius=2, bias=2, alpha=0.0001, beta=0.75" in explained[0]["lrn"][1]
    assert f"k^-beta = {2 ** -0.75:.3f}" in explained[0]["lrn"][1]
    shapes = explained[0]["architecture"][1]
    for name in LAYERS:
        assert f"{name} " in shapes
    assert "conv3 8x8x256" in shapes and "fc6 1024" in shapes
    parallel = explained[0]["parallelism"][1]
    assert "60,965,224 gradients" in parallel and "conv3, fc6, fc7, fc8" in parallel


def test_replica_gradients_average_to_the_batch_gradient(classifier, images):
    import tensorflow as tf

    from alexnet_tf import explain

    model = explain_tab.keras_model(classifier)
    views = explain.training_views(app.load_image(images[0]), 32, count=3)
    losses, norms, mean_norm = explain.replica_gradients(model, views, label=3)
    with tf.GradientTape() as tape:  # one batch of the three, its mean loss
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            [3, 3, 3], model(views, training=False)))
    grads = tape.gradient(loss, model.trainable_weights)
    expected = np.sqrt(sum(float(tf.reduce_sum(g * g)) for g in grads))
    assert mean_norm == pytest.approx(expected, rel=1e-4)
    assert np.mean(losses) == pytest.approx(float(loss), rel=1e-5)
    assert mean_norm <= norms.mean() + 1e-6  # the triangle inequality: averaging cancels


def test_without_a_model_the_paper_architecture_still_shows(images):
    note, table, diagram, apart, paper_diagram, paper_table = explain_tab.model_pictures(None)
    assert "No model loaded" in note and table is None and diagram is None and apart
    assert paper_diagram.dtype == np.uint8
    assert paper_table["parameters"].iloc[-1] == "60,965,224"
    groups = dict(zip(paper_table["layer"], paper_table["groups"]))
    assert [groups[n] for n in ("conv2", "conv3", "conv4", "conv5")] == ["2", "1", "2", "2"]
    views = explain_tab.explain_image(images[0], None)
    assert all(picture is None and "No model loaded" in caption
               for picture, caption in views.values())


def test_an_export_without_a_variant_gets_a_message(tmp_path, images):
    from alexnet_tf.export import export_model
    from alexnet_tf.model import build_model

    version = export_model(build_model("cifar", num_classes=10, image_size=32), tmp_path / "m",
                           class_names=CIFAR10)
    note = explain_tab.model_pictures(app.Classifier(version))[0]
    assert note.startswith("This tab cannot rebuild the loaded model") and "variant" in note


def test_figure1_caption_says_what_the_run_measured(tmp_path):
    caption = explain_tab.figure1_caption()
    assert "six times faster" in caption and "not reproduced" in caption
    assert "45,000 images, 25 epochs" in caption
    assert "missing" in explain_tab.figure1_caption(tmp_path / "none.json")


def test_the_tab_is_in_the_app_and_follows_model_switches(classifier, images):
    demo = app.build_demo(classifier)
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()}
    assert {f"explain-{key}" for key in explain_tab.SECTIONS} <= ids
    assert {"explain-table", "explain-figure1", "explain-towers"} <= ids
    gr = app.gr
    with gr.Blocks() as demo:
        files = app.cache.OutputFiles(demo)
        models = app.ModelHolder(classifier)
        classify = app.classify_tab.ClassifyTab(models, files)
        with gr.Tab("How AlexNet works") as tab:
            view = explain_tab.ExplainTab(models, files, classify, tab)
    answer = view.on_explain(images[1])
    sections = len(explain_tab.SECTIONS) + 1
    assert len(answer) == 2 * sections
    assert all(str(picture).endswith(".png") for picture in answer[:sections])
    assert "80×80" in answer[sections]  # the architecture caption names the image
    # A switch to no model: the paper's diagram and table stay, the image's pictures go.
    shown = view.model_view.show(None)
    assert len(shown) == len(view.model_view.outputs)
    note, table, paper_box, paper_table, *pictures = shown
    assert "No model loaded" in note and table is None and paper_box["visible"]
    assert pictures[0] is None  # no model of its own to draw
    assert pictures[1:len(explain_tab.SECTIONS)] == [None] * (len(explain_tab.SECTIONS) - 1)
    assert str(pictures[len(explain_tab.SECTIONS)]).endswith(".png")  # the paper's towers


SECTION_PICTURE = "#explain-{} img"


def _section_pictures(page):
    """{section: the PNG bytes its picture shows now}, fetched as the browser fetches them."""
    shown = {}
    for key in explain_tab.SECTIONS:
        src = page.locator(SECTION_PICTURE.format(key)).first.get_attribute("src")
        shown[key] = page.request.get(src).body()
    return shown


def _explained(page, image_text, timeout=60_000):
    """Waits until the tab's pictures are those of the image whose size is `image_text`."""
    page.wait_for_function(
        "(text) => document.querySelector('#explain-architecture-caption')?.innerText"
        ".includes(text) && [...document.querySelectorAll('[id^=explain-] img')].length >= 7",
        arg=image_text, timeout=timeout)


@pytest.mark.slow
def test_the_tab_in_chromium_shows_the_table_and_pictures_of_the_image(export_dir, tmp_path):
    from test_app_browser import CHROMIUM, browser_page, open_app, running_app, shown_classes

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    pytest.importorskip("playwright")
    photo, drawing = tmp_path / "photo.jpg", tmp_path / "drawing.png"
    Image.effect_mandelbrot((96, 64), (-2, -1, 1, 1), 60).convert("RGB").save(photo)
    Image.radial_gradient("L").convert("RGB").resize((80, 80)).save(drawing)
    with running_app(tmp_path / "app.log", "--model", str(export_dir)) as url, \
            browser_page() as page:
        open_app(page, url)
        page.get_by_role("tab", name="How AlexNet works").click()
        table = page.locator("#explain-table")
        table.get_by_text("fc8", exact=True).first.wait_for(timeout=20_000)
        text = table.inner_text()
        for name, shape in [("conv1", "32x32x64"), ("conv2", "16x16x128"), ("conv3", "8x8x256"),
                            ("conv4", "8x8x256"), ("conv5", "8x8x128"), ("fc6", "1024"),
                            ("fc7", "1024"), ("fc8", "10")]:
            assert re.search(rf"\b{name}\b[\s\S]*?\b{shape}\b", text), (name, shape)

        # The Classify tab's image is the one explained when the tab is opened.
        page.get_by_role("tab", name="Classify").click()
        page.locator("input[type=file]").first.set_input_files(str(photo))
        shown_classes(page, expect=True)
        page.get_by_role("tab", name="How AlexNet works").click()
        _explained(page, "96×64")
        first = _section_pictures(page)

        # An image given in this tab replaces it: every section's picture changes.
        page.locator("#explain-image input[type=file]").set_input_files(str(drawing))
        _explained(page, "80×80")
        second = _section_pictures(page)
        for key in explain_tab.SECTIONS:
            assert first[key][:8] == b"\x89PNG\r\n\x1a\n" and second[key][:8] == first[key][:8]
            assert first[key] != second[key], f"section {key}: the same picture for both images"
        assert "Traceback" not in (tmp_path / "app.log").read_text()


def test_a_model_without_lrn_shows_the_papers(images):
    from alexnet_tf.model import build_model, min_image_size

    model = build_model("torchvision", num_classes=5, image_size=min_image_size("torchvision"))
    picture, caption = explain_tab.lrn_view(model, app.load_image(images[0]))
    assert picture.dtype == np.uint8 and "no local response normalization" in caption
    assert "`lrn1` (depth_radius=2, bias=2, alpha=0.0001, beta=0.75)" in caption


def test_a_model_the_tab_cannot_rebuild_is_a_note_not_a_crash(monkeypatch):
    # An ensemble export, say: its module has no single model's variables to rebuild from.
    def cannot(path):
        raise AttributeError("'_UserObject' object has no attribute 'variables'")

    monkeypatch.setattr(explain_tab.explain, "model_from_export", cannot)
    ensemble = types.SimpleNamespace(path="saved_models/ensemble/1", class_names=["a", "b"])
    model, names, note = explain_tab.explained_model(ensemble)
    assert model is None and names is None
    assert note.startswith("This tab cannot rebuild the loaded model:") and "\n" not in note


def test_a_model_switched_away_is_not_kept_by_the_tabs_caches(monkeypatch):
    class Model:  # a loaded export, as far as the caches see it
        path, image_size = "saved_models/m/1", 8

        def inspect(self, image):
            return {"conv1_filters": np.ones((3, 3, 3, 4), np.float32)}

    monkeypatch.setattr(explain_tab.explain, "model_from_export", lambda path: Model())
    old, new = Model(), Model()
    for cached in (explain_tab.keras_model, app.inside_tab.conv1_filters):
        cached(old)
        cached(new)
    gone = weakref.ref(old)
    del old
    gc.collect()
    assert gone() is None
