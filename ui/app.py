"""A browser demo of an exported AlexNet: classify an image and look inside the network.

    python ui/app.py [--model DIR] [--host 127.0.0.1] [--port 7860] [--share]
                     [--auth USER:PASSWORD]

DIR is a SavedModel version directory or a model base directory (its newest integer version);
the default is the newest export under saved_models/. The app only reads the export (through
`alexnet_tf.inference`, no Keras model code), so it runs what TF Serving would run.
"""

import argparse
import asyncio
import atexit
import os
import pathlib
import shutil
import signal
import sys
import tempfile
import time
import uuid
import warnings

# Before gradio is imported: it reads these at import time. No usage pings from a local demo.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Gradio stores every upload and answer under GRADIO_TEMP_DIR (default /tmp/gradio, shared by
# all Gradio apps of the machine, read on every request). A directory of this process's own
# lets the app bound, and at exit remove, exactly what it stored, abandoned uploads included.
CACHE_DIR = pathlib.Path(tempfile.mkdtemp(prefix="alexnet_app_cache_",
                                          dir=os.environ.get("GRADIO_TEMP_DIR")))
os.environ["GRADIO_TEMP_DIR"] = str(CACHE_DIR)
atexit.register(shutil.rmtree, CACHE_DIR, ignore_errors=True)

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from gradio_client.utils import is_http_url_like  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.requests import ClientDisconnect  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402
from PIL import Image, ImageOps, UnidentifiedImageError  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python ui/app.py` puts ui/, not the repo, on sys.path
    sys.path.insert(0, str(REPO))

from alexnet_tf.inference import Classifier, ModelNotFound, newest_export  # noqa: E402
from ui.pictures import (SHOWN_CHANNELS, feature_map_grid, filter_grid,  # noqa: E402
                         gradcam_overlay, upscale)

EXAMPLES = REPO / "ui" / "examples"  # any images put here are offered as examples
MAX_SIDE = 1024  # the model sees <= 227 px; a smaller copy keeps huge uploads fast and small
# 10000x10000 (100 MP) still opens; bigger images are refused from their header, before
# decoding. PIL's own guard (a warning up to twice its limit, an error beyond) stays as the
# backstop; its warning is silenced here once, since a per-call warnings filter is not
# thread-safe under CONCURRENCY.
MAX_PIXELS = 120_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# The formats the page promises. Image.open would otherwise try every decoder Pillow has,
# EPS included, whose load() runs Ghostscript (Pillow's security notes); "JPEG" also opens
# phones' multi-picture JPEGs (MPO).
FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")
MAX_FILE_SIZE = "10mb"
# What the app keeps on disk (uploads, answers, abandoned partial uploads), oldest deleted
# first; uploads are read at most UPLOADS_AT_ONCE at a time, each one request of one file.
MAX_CACHE_BYTES = 512 * 2**20
MAX_CACHE_FILES = 10_000  # a flood of tiny files would run out of inodes long before bytes
UPLOADS_AT_ONCE = 4
MAX_OUTPUT_FILES = 64  # the app's own PNGs awaiting Gradio's copy (at most 8 are in flight)
CONCURRENCY = 2  # model calls at once: a CPU box has few cores and each call uses all of them
QUEUE_SIZE = 64  # waiting requests beyond this are turned away instead of piling up
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
TRAIN_HINT = (
    "No trained model found under saved_models/. Train one (training ends by exporting it "
    "there), for example:\n\n"
    "    python -m alexnet_tf.train --data PATH/TO/FOLDER   # a folder of class subfolders\n"
    "    python -m alexnet_tf.train                         # CIFAR-10\n\n"
    "then restart the app (or pass --model saved_models/NAME).")


def bad_input(message):
    """A toast for the user (and an error for API clients); no server fault, no traceback."""
    return gr.Error(message, print_exception=False)


def load_image(image):
    """A file path, Gradio FileData dict, PIL image or array -> uint8 RGB [H, W, 3].

    Raises gr.Error with a one-line reason for anything that is not a usable image.
    """
    if isinstance(image, dict):  # Gradio's FileData, what it passes when preprocess=False
        image = image.get("path")
    if image is None:
        raise bad_input("No image: upload one, paste one or take a webcam photo first.")
    if isinstance(image, np.ndarray):
        image = _array_to_pil(image)
    if not isinstance(image, Image.Image):
        try:
            image = Image.open(image, formats=FORMATS)  # reads the header only
            too_large = image.width * image.height > MAX_PIXELS
            if not too_large:
                # JPEGs decode at 1/2..1/8 scale straight away (draft); others decode fully.
                image.draft("RGB", (MAX_SIDE, MAX_SIDE))
                image.load()  # animated GIF/WebP/APNG: frame 0 is what open() points at
        except Image.DecompressionBombError:
            too_large = True
        except FileNotFoundError:  # trimmed from the cache (see trim_cache) since its upload
            raise bad_input("This upload is no longer on the server: give the image again.") \
                from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
            reason = "not a supported image" if isinstance(error, UnidentifiedImageError) \
                else "corrupt"
            raise bad_input(f"Cannot read this file ({reason}): upload a JPEG, PNG, GIF, "
                            "BMP or WebP image.") from None
        if too_large:
            raise bad_input(f"Image too large: at most {MAX_PIXELS // 10**6} megapixels.")
    image = ImageOps.exif_transpose(image)  # phone photos are stored sideways + a rotate flag
    if image.mode in ("I", "I;16", "I;16B", "F"):  # 16-bit/float grayscale: stretch to 8 bits
        values = np.asarray(image, np.float32)
        span = max(float(values.max() - values.min()), 1e-6)
        image = Image.fromarray(((values - values.min()) / span * 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        # Transparent pixels hold arbitrary colours; the model should see them as white paper.
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    image = image.convert("RGB")
    if max(image.size) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return np.asarray(image, np.uint8)


def _array_to_pil(array):
    array = np.asarray(array)
    if array.dtype != np.uint8:
        array = np.clip(array * 255 if array.dtype.kind == "f" and array.max() <= 1 else array,
                        0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise bad_input(f"Expected an image array [H, W, 3], got shape {array.shape}.")
    return Image.fromarray(array)


def classify(image, classifier):
    """image -> ({class: probability} for the top 5, the model's view (uint8), timing text)."""
    if classifier is None:
        raise bad_input("No model loaded: train one first (see the top of the page).")
    start = time.perf_counter()
    pixels = load_image(image)
    loaded = time.perf_counter()
    out = classifier.inspect(pixels)  # one call: probabilities and the model-input view
    if "members" in classifier.metadata and "gradcam_class" not in out:
        out.update(classifier.classify(pixels))  # an older ensemble: inspect was its first model
    done = time.perf_counter()
    labels = {name.decode(): float(p)
              for name, p in zip(out["top_k_classes"], out["top_k_probabilities"])}
    view = upscale(np.clip(out["model_input"], 0, 255).astype(np.uint8))
    size = out["model_input"].shape[0]
    text = (f"**{(done - loaded) * 1000:.1f} ms** model time (forward pass + Grad-CAM "
            f"gradients; +{(loaded - start) * 1000:.1f} ms decoding) · your image "
            f"{pixels.shape[1]}×{pixels.shape[0]} → model input {size}×{size}")
    return labels, view, text


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
    # An ensemble's map is its first model's, for that model's own top class (older exports
    # have no gradcam_class: their map explains the top class).
    explained = out.get("gradcam_class", out["top_k_classes"][0]).decode()
    if "members" in classifier.metadata:
        cam_caption = (f"Grad-CAM of the ensemble's first model, for its own top class "
                       f"**{explained}**: red = regions that raise that model's score.")
    else:
        cam_caption = (f"Grad-CAM for the predicted class **{explained}** "
                       f"({out['top_k_probabilities'][0]:.1%}): red = regions that raise its "
                       "score.")
    return feature_map_grid(maps), caption, gradcam_overlay(out["model_input"], out["gradcam"]), \
        cam_caption


def model_card(classifier):
    """Markdown facts about the export, "unknown" where its metadata is silent."""
    if classifier is None:
        return "### No model loaded\n\n" + TRAIN_HINT
    meta = classifier.metadata
    config, metrics = (value if isinstance(value, dict) else {}  # a hand-edited file, say
                       for value in (meta.get("config"), meta.get("metrics")))

    def accuracy(key):
        value = metrics.get(key)
        if not isinstance(value, (int, float)):
            return "unknown"
        return f"{value:.1%}" if value <= 1 else f"{value:.1f}%"  # fractions or percentages

    def accuracy_label(metrics):  # trainers say which split the numbers come from
        images = metrics.get("num_examples")
        detail = f", {images:,} images" if isinstance(images, int) else ""
        return f"Accuracy ({metrics['split']} split{detail})" if "split" in metrics else \
            "Test accuracy"

    size = meta.get("image_size")
    crop = meta.get("crop_fraction")
    params = meta.get("parameters")
    members = meta.get("members")  # `python -m alexnet_tf.ensemble`
    ensemble = isinstance(members, list) and len(members) > 1
    configs = [m.get("config") if isinstance(m, dict) else None for m in members] if ensemble \
        else [config]

    def trained(key):  # each member's value where an ensemble's members differ
        values = [c.get(key) if isinstance(c, dict) else None for c in configs]
        return " + ".join(dict.fromkeys(str(v) if v else "unknown" for v in values))

    rows = {
        "Dataset": trained("data"),
        "Variant": trained("variant"),
        "Recipe": trained("recipe"),
        "Input": f"{size}×{size} px" + (f", centre crop {crop:.3g}" if crop not in (None, 1, 1.0)
                                         else "") if size else "unknown",
        "Classes": len(classifier.class_names) or "unknown",
        "Parameters": f"{params:,}" if isinstance(params, int) else "unknown",
        **({"Ensemble": f"{len(members)} models, their probabilities averaged (section 6 of "
                        "the paper); Inside AlexNet shows the first alone"} if ensemble else {}),
        accuracy_label(metrics): f"top-1 {accuracy('top1')}, top-5 {accuracy('top5')}"
        if metrics else "unknown",
        "Exported": meta.get("exported_at", "unknown"),
        "Model": model_name(classifier.path),
    }
    return "### Model card\n\n" + "".join(f"- **{k}**: {v}\n" for k, v in rows.items())


def model_name(path):
    """`saved_models/NAME/3` -> "NAME, version 3": every visitor reads the card, and where the
    export lives on the server is none of their business."""
    path = pathlib.Path(path)
    return f"{path.parent.name}, version {path.name}" if path.name.isdigit() else path.name


def as_file(image, directory, max_age=300, max_files=None):
    """uint8 image -> path of a PNG written atomically (temp name, then rename).

    Why not return the array: Gradio saves arrays to a content-addressed cache file by
    truncating and rewriting it, so two requests that produce the same picture at the same
    moment can serve a half-written file (truncated downloads under 20 concurrent clients).
    Files it copies into its cache atomically, so the app hands it finished files.
    """
    now = time.time()
    kept = []
    for old in directory.glob("*.png"):  # Gradio has its own copy within milliseconds
        try:
            mtime = old.stat().st_mtime
        except FileNotFoundError:  # another request's clean-up took it first
            continue
        if now - mtime > max_age:
            old.unlink(missing_ok=True)
        else:
            kept.append((mtime, old))
    # A burst of requests within max_age: the newest stay (those in flight among them).
    limit = MAX_OUTPUT_FILES if max_files is None else max_files
    for _, old in sorted(kept)[:max(0, len(kept) - limit + 1)]:
        old.unlink(missing_ok=True)
    path = directory / f"{uuid.uuid4().hex}.png"
    staging = directory / f".{path.name}.tmp"
    Image.fromarray(image).save(staging, format="PNG")
    os.replace(staging, path)
    return str(path)


def refuse_urls(component):
    """Makes `component` refuse a file given as a URL instead of fetching it; returns it.

    An API client may send {"path": "https://..."} where the browser uploads bytes; Gradio then
    downloads the URL before any app code runs, with no size limit (max_file_size bounds
    uploads only). The page documents uploads, pastes and webcam photos, which all arrive as
    uploads; the API takes the same. (An instance attribute, not a subclass: Gradio writes a
    .pyi stub beside the source of every Component subclass.)
    """
    fetch = component.async_move_resource_to_block_cache

    async def uploads_only(url_or_file_path):
        if url_or_file_path is not None and is_http_url_like(str(url_or_file_path)):
            raise bad_input("Images given as URLs are not fetched: upload the file itself "
                            "(gradio_client: handle_file with a local path).")
        return await fetch(url_or_file_path)

    component.async_move_resource_to_block_cache = uploads_only
    return component


def trim_cache(directory, max_bytes, keep=(), max_files=None):
    """Deletes the oldest files under `directory` until at most `max_bytes` in at most
    `max_files` files remain, sparing the paths in `keep`; returns the bytes that remain."""
    files = []
    for root, _, names in os.walk(directory):  # os.walk skips what vanishes meanwhile
        for name in names:
            path = os.path.join(root, name)
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            if path not in keep:
                files.append((info.st_mtime, info.st_size, path))
    total, count = sum(size for _, size, _ in files), len(files)
    for _, size, path in sorted(files):
        if total <= max_bytes and (max_files is None or count <= max_files):
            break
        try:
            os.unlink(path)
            if os.path.dirname(path) != os.fspath(directory):
                os.rmdir(os.path.dirname(path))  # Gradio's per-file directory, once empty
        except OSError:  # already gone, or the directory holds other files
            pass
        total, count = total - size, count - 1
    return total


def trim_app_cache(demo):
    """Trims CACHE_DIR so that its files plus the uploads being read fit MAX_CACHE_BYTES (and
    MAX_CACHE_FILES); the files Gradio keeps for the page itself (examples) are spared."""
    keep = set().union(*(getattr(block, "keep_in_cache", ()) for block in demo.blocks.values()))
    room = MAX_CACHE_BYTES - UPLOADS_AT_ONCE * _upload_limit(demo)
    return trim_cache(CACHE_DIR, room, keep, MAX_CACHE_FILES)


def _upload_limit(demo):
    return (demo.max_file_size or 0) + 64 * 1024  # the file and its form fields


class UploadBound:
    """ASGI middleware in front of Gradio's upload route, which bounds each file's size but
    not the files per request (up to 1000), the uploads read at once, or what stays stored
    (a client that drops the connection mid-upload leaves its partial file behind for good).

    Here every upload request is read only while one of UPLOADS_AT_ONCE slots is free, its
    body may hold one file of at most max_file_size (413 beyond), and before it is read the
    app's files are trimmed, oldest first, to leave room for it within MAX_CACHE_BYTES.
    """

    def __init__(self, app, demo):
        self.app, self.demo = app, demo
        self.slots = asyncio.Semaphore(UPLOADS_AT_ONCE)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" \
                or not scope["path"].endswith("/upload"):
            return await self.app(scope, receive, send)
        limit = _upload_limit(self.demo)
        received, started = 0, False

        async def bounded_receive():
            nonlocal received
            if received > limit:
                return {"type": "http.disconnect"}  # Gradio stops reading (ClientDisconnect)
            message = await receive()
            received += len(message.get("body", b""))
            return {"type": "http.disconnect"} if received > limit else message

        async def watched_send(message):
            nonlocal started
            started = True
            await send(message)

        async with self.slots:
            await asyncio.to_thread(trim_app_cache, self.demo)
            try:
                await self.app(scope, bounded_receive, watched_send)
            except ClientDisconnect:
                if received <= limit or started:
                    raise
            if received > limit and not started:
                await PlainTextResponse(f"An upload is one file of at most {MAX_FILE_SIZE}.",
                                        status_code=413)(scope, receive, send)


def build_demo(classifier):
    """The two-tab Blocks app around `classifier` (an inference.Classifier, or None)."""
    outdir = pathlib.Path(tempfile.mkdtemp(prefix="alexnet_app_"))  # never saved_models/
    atexit.register(shutil.rmtree, outdir, ignore_errors=True)
    examples = sorted(str(p) for p in EXAMPLES.glob("*")
                      if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".gif", ".webp"))
    filters = None
    if classifier is not None:  # constant per model: drawn once, also warms the graph up
        size = classifier.image_size
        blank = np.zeros((size, size, 3), np.uint8)
        filters = filter_grid(classifier.inspect(blank)["conv1_filters"])

    def files(*values):  # arrays -> finished PNG files (see as_file); text passes through
        if demo.is_running:  # answers count against the same bound as uploads (UploadBound)
            trim_app_cache(demo)
        return tuple(as_file(v, outdir) if isinstance(v, np.ndarray) else v for v in values)

    def on_classify(image):
        return files(*classify(image, classifier))

    def on_new_image(image):  # a cleared input is no error, just nothing to show
        return (None, None, "") if image is None else on_classify(image)

    def on_inside(image, layer):
        return files(*inside(image, layer, classifier))

    # delete_cache: Gradio keeps every upload and output; drop those older than an hour.
    with gr.Blocks(title="AlexNet", delete_cache=(1800, 3600)) as demo:
        gr.Markdown("# AlexNet\nClassify an image with an exported AlexNet "
                    "(Krizhevsky, Sutskever & Hinton, 2012) and look inside it.")
        if classifier is None:
            gr.Markdown(model_card(None), elem_id="no-model")
        with gr.Tab("Classify"):
            with gr.Row():
                with gr.Column():
                    image = refuse_urls(gr.Image(type="numpy", image_mode="RGB",
                                                 label="Your image", height=320,
                                                 sources=["upload", "clipboard", "webcam"]))
                    button = gr.Button("Classify", variant="primary")
                    if examples:
                        gr.Examples([[p] for p in examples], inputs=image, label="Examples")
                with gr.Column():
                    labels = gr.Label(num_top_classes=5, label="Top 5", elem_id="top5")
                    timing = gr.Markdown(elem_id="timing")
                    view = gr.Image(label="What the model sees (its input, resized and cropped)",
                                    interactive=False, height=256)
            if classifier is not None:
                gr.Markdown(model_card(classifier))
        with gr.Tab("Inside AlexNet"):
            with gr.Row():
                gr.Image(filters, label="conv1 filters (each scaled to 0..1; cf. the paper's "
                         "Figure 3)", interactive=False, height=300)
                with gr.Column():
                    cam = gr.Image(label="Grad-CAM on the model's input", interactive=False,
                                   height=256)
                    cam_caption = gr.Markdown("Classify an image to see where the model looks.")
            layer = gr.Dropdown(list(LAYERS), value="conv1", label="Feature maps of layer")
            maps = gr.Image(label="Feature maps", interactive=False)
            maps_caption = gr.Markdown()

        outputs, inside_outputs = [labels, view, timing], [maps, maps_caption, cam, cam_caption]
        # preprocess=False: load_image decodes the upload itself (GIF colours, huge images,
        # clear messages); one concurrency_id so all model calls share the CONCURRENCY limit.
        model_call = dict(preprocess=False, concurrency_id="model")
        private = dict(api_visibility="private", **model_call)
        button.click(on_classify, image, outputs, api_name="classify", **model_call).success(
            on_inside, [image, layer], inside_outputs, **private)
        # Any new image (upload, paste, webcam, example, clear) first wipes the old answer so a
        # failed upload never sits next to the previous image's labels, then classifies.
        # always_last: an image given while the previous one is still being classified is
        # classified after it (Gradio's default for these steps, "once", drops it, and the
        # previous image's answer would stay beside the new image).
        latest = dict(trigger_mode="always_last", **private)
        image.change(lambda: (None, None, "", None, "", None, ""), None, outputs + inside_outputs,
                     queue=False, show_progress="hidden", api_visibility="private").then(
            on_new_image, image, outputs, **latest).success(
            on_inside, [image, layer], inside_outputs, **latest)
        layer.change(on_inside, [image, layer], inside_outputs, **private)
    return demo


def launch(demo, host="127.0.0.1", port=7860, share=False, block=True, auth=None):
    """Queue and launch with the safe defaults (main and the tests share them).

    auth: (user, password) that every page and API call then needs (Gradio's login).
    """
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    # run_history=False: Gradio 6 otherwise keeps every image and answer in the browser and
    # offers to sync them to a Hugging Face bucket; a local demo has no use for either.
    # enable_monitoring=False: Gradio's /monitoring routes (on by default) tell any visitor
    # what the app has been asked; ssr_mode=False: no Node server in front of the app.
    return demo.launch(server_name=host, server_port=port, share=share, quiet=not block,
                       max_file_size=MAX_FILE_SIZE, prevent_thread_lock=not block,
                       run_history=False, enable_monitoring=False, ssr_mode=False, auth=auth,
                       app_kwargs={"middleware": [Middleware(UploadBound, demo=demo)]})


def _port(text):
    port = int(text) if text.isdigit() else 0  # 0 ("any free port"): Gradio's launch fails
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return port


def _login(text):
    user, colon, password = text.partition(":")
    if not (user and colon and password):
        raise argparse.ArgumentTypeError(f"{text!r} is not USER:PASSWORD")
    return user, password


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python ui/app.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", metavar="DIR", help="export version dir or model base dir "
                                        "(default: the newest under ./saved_models/ or the repo's)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=_port, default=7860, help="default 7860")
    parser.add_argument("--share", action="store_true",
                        help="also publish a public *.gradio.live link (off by default)")
    parser.add_argument("--auth", type=_login, metavar="USER:PASSWORD",
                        help="require this login for the page and the API (advised with "
                             "--share or a --host other than this machine)")
    args = parser.parse_args(argv)

    # Training exports to saved_models/ where it ran: here, or (the usual case) the repo.
    path = args.model or newest_export(pathlib.Path("saved_models"), REPO / "saved_models")
    classifier = None
    if path is None:
        print(TRAIN_HINT)
    else:
        try:
            classifier = Classifier(path)  # checks it is an alexnet_tf export
            size = classifier.image_size
            classifier.inspect(np.zeros((size, size, 3), np.uint8))  # and that it runs here
        except ModelNotFound as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except Exception as error:  # e.g. an export this TensorFlow cannot run
            reason = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            print(f"error: {path} is not a usable alexnet_tf export ({reason})", file=sys.stderr)
            return 2
        print(f"Model: {classifier.path} ({len(classifier.class_names)} classes, "
              f"{classifier.image_size} px)")
    # SIGTERM (kill, systemd, the browser test) ends like Ctrl+C, so atexit cleans the temp dir.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    login = "" if args.auth else " (add --auth USER:PASSWORD to require a login)"
    if args.share:
        print("warning: --share publishes a public link (Gradio keeps it up to a week): "
              f"anyone who has it can use the app{login}")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: binding {args.host}: anyone who can reach this machine can use the "
              f"app{login}")
    try:
        launch(build_demo(classifier), host=args.host, port=args.port, share=args.share,
               auth=args.auth)
    except OSError as error:  # e.g. the port is taken
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
