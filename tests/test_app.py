"""The Gradio app (ui/app.py): image decoding, classify/inside helpers, the CLI, a load test."""

import concurrent.futures
import http.server
import importlib.metadata
import os
import pathlib
import shutil
import socket
import struct
import threading
import time
import types
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image

from helpers import load_app

REPO = pathlib.Path(__file__).resolve().parents[1]
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# Gradio 6.31's queue calls pandas APIs that pandas 3 deprecates (warnings raised in a server
# thread, outside the tests' control): not this project's warnings.
pytestmark = [pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting'"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]

app = load_app()
gr = app.gr


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """A small untrained `cifar` model exported as the app expects (base dir with version 1)."""
    from alexnet_tf.export import export_model
    from alexnet_tf.model import build_model

    base = tmp_path_factory.mktemp("export") / "cifar_untrained"
    export_model(build_model("cifar", num_classes=10, image_size=32), base, class_names=CIFAR10)
    return base


@pytest.fixture(scope="module")
def classifier(export_dir):
    return app.Classifier(export_dir)


def _png_with_size(path, width, height):
    """A valid 1x1 PNG whose header claims width x height: a decompression bomb in 70 bytes."""
    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = struct.pack(">II", width, height) + data[24:29]
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One real file of every kind the app must cope with."""
    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (48, 64, 3), np.uint8))
    photo.save(d / "photo.jpg", quality=90)
    photo.save(d / "photo.png")
    photo.convert("L").save(d / "gray.png")
    Image.new("RGBA", (40, 30), (255, 0, 0, 0)).save(d / "transparent.png")  # fully see-through
    frames = [Image.new("RGB", (40, 30), c) for c in ("red", "lime", "blue")]
    frames[0].save(d / "animated.gif", save_all=True, append_images=frames[1:], duration=50,
                   loop=0)
    Image.new("RGB", (10_000, 10_000), (40, 90, 160)).save(d / "huge.png")  # ~300 KB on disk
    Image.new("RGB", (1, 1), (200, 30, 30)).save(d / "tiny.png")
    (d / "corrupt.jpg").write_bytes((d / "photo.jpg").read_bytes()[:200])
    (d / "notes.txt").write_text("this is not an image\n")
    _png_with_size(d / "bomb.png", 20_000, 20_000)  # past PIL's own error threshold
    _png_with_size(d / "big.png", 12_000, 12_000)  # 144 MP: PIL would only warn
    return d


def _check_answer(labels, view, text):
    assert len(labels) == 5 and set(labels) <= set(CIFAR10)
    values = list(labels.values())
    assert values == sorted(values, reverse=True)
    assert 0 < sum(values) <= 1 + 1e-5 and all(0 <= v <= 1 for v in values)
    assert view.dtype == np.uint8 and view.shape == (256, 256, 3)  # 32 px input, 8x nearest
    assert " ms** model time" in text


@pytest.mark.parametrize("name", ["photo.jpg", "photo.png", "gray.png", "transparent.png",
                                  "animated.gif", "huge.png", "tiny.png"])
def test_classify_answers_every_kind_of_image(classifier, files, name):
    _check_answer(*app.classify(str(files / name), classifier))


def test_classify_takes_what_gradio_and_numpy_callers_pass(classifier, files):
    _check_answer(*app.classify({"path": str(files / "photo.png"), "url": None}, classifier))
    _check_answer(*app.classify(np.asarray(Image.open(files / "photo.png")), classifier))
    _check_answer(*app.classify(np.zeros((20, 20), np.uint8), classifier))  # grayscale array


def test_top5_are_the_models_top5(classifier, files):
    labels, _, _ = app.classify(str(files / "photo.png"), classifier)
    probabilities = classifier.classify(app.load_image(str(files / "photo.png")))["probabilities"]
    assert probabilities.sum() == pytest.approx(1, abs=1e-4)
    best = [CIFAR10[i] for i in np.argsort(-probabilities)[:5]]
    assert list(labels) == best


def test_decoding_edge_cases(files):
    assert (app.load_image(str(files / "animated.gif"))[0, 0] == [255, 0, 0]).all()  # frame 1
    assert (app.load_image(str(files / "transparent.png")) == 255).all()  # on white paper
    gray = app.load_image(str(files / "gray.png"))
    assert gray.shape == (48, 64, 3) and (gray[..., 0] == gray[..., 2]).all()
    assert app.load_image(str(files / "tiny.png")).shape == (1, 1, 3)


def test_huge_image_is_downscaled_quickly(files):
    start = time.perf_counter()
    image = app.load_image(str(files / "huge.png"))
    assert image.shape == (1024, 1024, 3) and (image[512, 512] == [40, 90, 160]).all()
    assert time.perf_counter() - start < 15


@pytest.mark.parametrize("name, message", [
    ("corrupt.jpg", "Cannot read this file"),
    ("notes.txt", "Cannot read this file"),
    ("bomb.png", "Image too large"),
    ("big.png", "Image too large"),
])
def test_bad_files_get_a_clear_message(classifier, files, name, message):
    with pytest.raises(gr.Error, match=message):
        app.classify(str(files / name), classifier)


def test_no_image_and_no_model_get_a_clear_message(classifier, files):
    with pytest.raises(gr.Error, match="No image"):
        app.classify(None, classifier)
    with pytest.raises(gr.Error, match="No model loaded"):
        app.classify(str(files / "photo.png"), None)


def test_inside_shows_maps_gradcam_and_filters(classifier, files):
    for layer in app.LAYERS:
        maps, caption, cam, cam_caption = app.inside(str(files / "photo.jpg"), layer, classifier)
        assert maps.dtype == np.uint8 and maps.ndim == 3 and maps.shape[-1] == 3
        assert caption.startswith(f"`{layer}`") and "Grad-CAM" in cam_caption
        assert cam.shape == (256, 256, 3)
    # The first 32 channels as 4 rows x 8 columns of 64 px tiles with 2 px gaps.
    assert maps.shape == (4 * 66 - 2, 8 * 66 - 2, 3)
    assert app.inside(None, "conv1", classifier) == (None, "", None, "")
    filters = classifier.inspect(np.zeros((32, 32, 3), np.uint8))["conv1_filters"]
    grid = app.filter_grid(filters)  # 5x5x3x64 -> 8x8 tiles, upscaled 9x (48 // 5)
    assert grid.shape == (8 * 47 - 2, 8 * 47 - 2, 3) and grid.max() == 255 and grid.min() == 0


def test_model_card_handles_missing_and_present_metadata(classifier):
    bare = app.model_card(classifier)
    assert "**Dataset**: unknown" in bare and "**Test accuracy**: unknown" in bare
    assert "32×32 px" in bare and f"{classifier.metadata['parameters']:,}" in bare
    trained = types.SimpleNamespace(path="saved_models/x/3", class_names=CIFAR10, metadata={
        "image_size": 227, "crop_fraction": 0.875, "parameters": 60_965_224,
        "exported_at": "2026-01-02T03:04:05+00:00",
        "config": {"data": "imagenette", "variant": "paper", "recipe": "paper"},
        "metrics": {"top1": 0.8123, "top5": 0.9876, "split": "test", "num_examples": 3925}})
    card = app.model_card(trained)
    for text in ("imagenette", "paper", "227×227 px, centre crop 0.875", "60,965,224",
                 "Accuracy (test split, 3,925 images)**: top-1 81.2%, top-5 98.8%", "2026-01-02"):
        assert text in card
    assert "Ensemble" not in card and "Ensemble" not in bare
    trained.metadata["config"]["data"] = "/home/ada/photos/cifar10/train"  # a folder
    assert "**Dataset**: folder cifar10/train\n" in app.model_card(trained)
    assert "/home/ada" not in app.model_card(trained)
    for data, shown in (("/data", "folder data"), ("tfds:imagenette/320px", "tfds:imagenette/320px"),
                        ("./pictures", "folder pictures")):
        assert app.classify_tab.dataset_name(data) == shown
    trained.metadata["members"] = [{"model": "a/1"}, {"model": "b/1"}]
    assert "**Ensemble**: 2 models, their probabilities averaged" in app.model_card(trained)
    # An ensemble's card describes its members, not only the first one.
    trained.metadata["members"] = [
        {"model": "a/1", "config": {"data": "imagenette", "variant": "paper", "recipe": "paper"}},
        {"model": "b/1", "config": {"data": "imagenette", "variant": "torchvision",
                                    "recipe": "long"}}]
    card = app.model_card(trained)
    for text in ("**Dataset**: imagenette\n", "**Variant**: paper + torchvision",
                 "**Recipe**: paper + long"):
        assert text in card
    # A hand-edited metadata.json whose config or metrics is no object: "unknown", no crash.
    trained.metadata.update(members=None, config="synthetic", metrics=[0.5])
    card = app.model_card(trained)
    assert "**Dataset**: unknown" in card and "**Test accuracy**: unknown" in card
    assert "No model loaded" in app.model_card(None) and "Train tab" in app.model_card(None)
    assert "python -m alexnet_tf.train --data PATH/TO/FOLDER" in app.TRAIN_HINT


def test_shipped_examples_are_small_images_named_by_cifar10_class():
    drawings = sorted(app.EXAMPLES.glob("*.png"))
    assert drawings and all(p.stat().st_size < 20_000 for p in drawings)
    for path in drawings:
        assert app.load_image(str(path)).shape == (128, 128, 3)
    photos = sorted(app.EXAMPLES.glob("*.jpg"))
    assert photos and all(p.stat().st_size < 100_000 for p in photos)
    assert all(max(app.load_image(str(p)).shape) <= 512 for p in photos)
    assert {p.stem for p in drawings + photos} <= set(CIFAR10)  # "automobile", not "car"
    credits = (app.EXAMPLES / "CREDITS.md").read_text()
    assert all(p.name in credits for p in photos)  # each photograph's source and licence


def test_build_demo_without_a_model(tmp_path):
    with app.build_demo(None) as demo:
        assert isinstance(demo, gr.Blocks)
    assert "classify" in [d.api_name for d in demo.fns.values()]


def test_bad_model_path_is_one_line_and_exit_code_2(export_dir, tmp_path, capsys):
    assert app.main(["--model", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    # A version without its variables: TensorFlow's message runs over several lines.
    broken = tmp_path / "broken" / "1"
    shutil.copytree(export_dir / "1", broken)
    shutil.rmtree(broken / "variables")
    assert app.main(["--model", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: Cannot load {broken}") and "\n" not in err, err
    for port in ("70000", "-5", "0", "http"):
        with pytest.raises(SystemExit) as stop:  # argparse: usage, then one line
            app.main(["--model", str(export_dir), "--port", port])
        assert stop.value.code == 2
        assert "not a port number" in capsys.readouterr().err.strip().splitlines()[-1]


def test_a_new_image_given_while_one_is_classified_gets_its_own_answer(export_dir):
    """Gradio's default trigger for an event's later steps ("once") drops a step asked for
    while the same step is still running: the old image's answer then stayed beside the new
    image for good. The app chains them with "always_last"."""
    with app.build_demo(app.Classifier(export_dir)) as demo:
        pass
    new_image = [fn for fn in demo.fns.values() if fn.name == "on_new_image"]
    follow_up = [fn for fn in demo.fns.values()  # what runs once the new image's answer is in
                 if fn.name == "on_inside" and fn.trigger_after == new_image[0]._id]
    assert len(new_image) == len(follow_up) == 1
    assert new_image[0].trigger_mode == follow_up[0].trigger_mode == "always_last"


def test_old_output_files_vanishing_meanwhile_are_no_error(tmp_path):
    # Two requests clean up at once: one lists a file the other has already deleted (a
    # dangling link here, deterministically).
    (tmp_path / "gone.png").symlink_to(tmp_path / "deleted_by_another_request.png")
    path = app.as_file(np.zeros((4, 4, 3), np.uint8), tmp_path)
    assert pathlib.Path(path).is_file()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_twenty_concurrent_api_clients(classifier, files, tmp_path):
    from gradio_client import Client, handle_file

    demo = app.build_demo(classifier)
    port = _free_port()
    app.launch(demo, port=port, block=False)
    try:
        url = f"http://127.0.0.1:{port}/"
        # The safe defaults: loopback only, no analytics, a bounded queue and upload size.
        assert demo.server_name == "127.0.0.1" and not demo.share
        assert demo.analytics_enabled is False and demo.run_history is False
        assert demo.max_file_size == 10 * 1024 * 1024
        assert demo._queue.max_size == app.QUEUE_SIZE

        big = tmp_path / "noise.png"  # a valid image, but 12 MB > the 10 MB limit
        noise = np.random.default_rng(1).integers(0, 256, (2000, 2000, 3), np.uint8)
        Image.fromarray(noise).save(big, compress_level=0)
        with pytest.raises(ValueError, match="exceeds the maximum file size"):  # client-side
            Client(url, verbose=False).predict(handle_file(str(big)), api_name="/classify")
        with big.open("rb") as f:  # and the server refuses it too
            answer = httpx.post(f"{url}gradio_api/upload", files={"files": ("n.png", f)})
        assert answer.status_code == 413

        def ask(i):
            image = files / ("photo.jpg" if i % 2 else "gray.png")
            return Client(url, verbose=False).predict(handle_file(str(image)),
                                                      api_name="/classify")

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(ask, range(20)))
        for label, view, text in answers:
            assert len(label["confidences"]) == 5
            assert {c["label"] for c in label["confidences"]} <= set(CIFAR10)
            assert pathlib.Path(view).is_file() and "ms" in text
    finally:
        demo.close()


# --- The app as a network service (issue 43) ---------------------------------------------------

@pytest.fixture(scope="module")
def server(classifier):
    """The app launched as main launches it (no login), on a free loopback port."""
    demo = app.build_demo(classifier)
    port = _free_port()
    app.launch(demo, port=port, block=False)
    yield demo, f"http://127.0.0.1:{port}/"
    demo.close()


def test_only_the_documented_formats_are_decoded(classifier, files, tmp_path, monkeypatch):
    """An EPS upload must never reach Pillow's EPS plugin, whose load() runs Ghostscript."""
    from PIL import EpsImagePlugin

    opened = []
    real_open = EpsImagePlugin.EpsImageFile._open
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open",
                        lambda self: opened.append(1) or real_open(self))
    picture = Image.fromarray(np.random.default_rng(2).integers(0, 256, (24, 32, 3), np.uint8))
    picture.save(tmp_path / "upload.eps")
    with pytest.raises(gr.Error):
        app.classify(str(tmp_path / "upload.eps"), classifier)
    assert opened == []  # (with Ghostscript installed, today's load() would have run it)
    for name in ("upload.eps", "upload.tif", "upload.ico", "upload.tga"):
        picture.save(tmp_path / name)
        with pytest.raises(gr.Error, match=r"Cannot read this file \(not a supported image\)"):
            app.classify(str(tmp_path / name), classifier)
    for name in ("upload.bmp", "upload.webp"):  # the documented ones beside JPEG, PNG, GIF
        picture.save(tmp_path / name)
        _check_answer(*app.classify(str(tmp_path / name), classifier))


def test_share_warns_and_auth_asks_for_a_login(export_dir, monkeypatch, capsys):
    launched = []
    monkeypatch.setattr(app, "launch", lambda demo, **kwargs: launched.append(kwargs))
    assert app.main(["--model", str(export_dir), "--share"]) == 0
    out = capsys.readouterr().out
    assert "warning: --share publishes a public link" in out and "--auth USER:PASSWORD" in out
    assert launched[-1]["share"] is True and launched[-1]["auth"] is None
    assert app.main(["--model", str(export_dir), "--share", "--auth", "ann:pass:word"]) == 0
    out = capsys.readouterr().out
    assert "warning: --share" in out and "--auth USER:PASSWORD" not in out
    assert launched[-1]["auth"] == ("ann", "pass:word")
    assert app.main(["--model", str(export_dir), "--auth", "ann:pw"]) == 0  # without --share
    assert launched[-1]["auth"] == ("ann", "pw") and launched[-1]["share"] is False
    for bad in ("ann", "ann:", ":pw"):
        with pytest.raises(SystemExit) as stop:
            app.main(["--model", str(export_dir), "--auth", bad])
        assert stop.value.code == 2
        assert "is not USER:PASSWORD" in capsys.readouterr().err.strip().splitlines()[-1]


def test_with_auth_strangers_get_nothing(files):
    demo = app.build_demo(None)
    port = _free_port()
    app.launch(demo, port=port, block=False, auth=("ann", "s3cret"))
    try:
        url = f"http://127.0.0.1:{port}/"
        upload = {"files": ("photo.png", (files / "photo.png").read_bytes())}
        assert httpx.post(f"{url}gradio_api/upload", files=upload).status_code == 401
        assert httpx.get(f"{url}gradio_api/info").status_code == 401
        with httpx.Client(base_url=url) as browser:
            wrong = browser.post("login", data={"username": "ann", "password": "guess"})
            assert wrong.status_code == 400
            assert browser.post("gradio_api/upload", files=upload).status_code == 401
            assert browser.post("login", data={"username": "ann", "password": "s3cret"}) \
                .status_code == 200
            assert browser.post("gradio_api/upload", files=upload).status_code == 200
    finally:
        demo.close()


def test_monitoring_and_ssr_are_off(server):
    demo, url = server
    # Gradio's default serves what the app has been asked to anyone at /monitoring/summary.
    assert httpx.get(f"{url}monitoring/summary").status_code == 403
    assert httpx.get(f"{url}monitoring").status_code == 403
    assert demo.enable_monitoring is False and demo.ssr_mode is False


class _BigFile(http.server.BaseHTTPRequestHandler):
    """50 MB of PNG-named bytes from 127.0.0.1; counts the requests it answers."""
    size, requests = 50 * 2**20, []

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(self.size))
        self.end_headers()
        chunk = b"\0" * 2**20
        for _ in range(self.size // len(chunk)):
            self.wfile.write(chunk)

    def log_message(self, *args):
        pass


def test_an_image_given_as_a_url_is_refused_not_fetched(server, monkeypatch):
    from gradio import processing_utils
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    _, url = server
    # As if 127.0.0.1 were a public host: Gradio's SSRF guard refuses loopback addresses (it
    # would ask dns.google first) but downloads from any public one, without a size limit.
    monkeypatch.setattr(processing_utils, "async_transport", httpx.AsyncHTTPTransport())
    remote = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BigFile)
    threading.Thread(target=remote.serve_forever, daemon=True).start()
    _BigFile.requests.clear()
    try:
        image_url = f"http://127.0.0.1:{remote.server_port}/big.png"
        with pytest.raises(AppError, match="Images given as URLs are not fetched"):
            Client(url, verbose=False).predict(handle_file(image_url), api_name="/classify")
        assert _BigFile.requests == []
    finally:
        remote.shutdown()
        remote.server_close()


def _stored_bytes(directory):
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(directory) for name in names)


def test_what_the_app_keeps_on_disk_is_bounded(server, files, monkeypatch):
    from gradio.utils import get_upload_folder
    from gradio_client import Client, handle_file

    demo, url = server
    cache = pathlib.Path(get_upload_folder())
    slack = 4 * (demo.max_file_size + 64 * 1024)  # room kept for 4 uploads being read
    monkeypatch.setattr(app.cache, "UPLOADS_AT_ONCE", 4)
    monkeypatch.setattr(app.cache, "MAX_CACHE_BYTES", slack + 2 * 2**20)
    abandoned = cache / "tmp_abandoned_upload"  # what a dropped connection leaves behind
    abandoned.write_bytes(b"\0" * 2**20)
    os.utime(abandoned, (1, 1))
    rng = np.random.default_rng(3)
    uploaded = []
    for i in range(30):  # 30 x 200 KB = 6 MB through Gradio's upload route
        blob = rng.integers(0, 256, 200 * 1024, np.uint8).tobytes()
        answer = httpx.post(f"{url}gradio_api/upload", files={"files": (f"{i}.png", blob)})
        assert answer.status_code == 200
        uploaded += answer.json()
    kept = [p for p in uploaded if os.path.exists(p)]
    assert sum(map(os.path.getsize, kept)) <= 2 * 2**20 + 200 * 1024
    assert uploaded[-1] in kept and uploaded[0] not in kept and not abandoned.exists()
    assert _stored_bytes(cache) <= app.cache.MAX_CACHE_BYTES
    # One request, one file: two files that each pass max_file_size are refused together.
    half = b"\0" * (demo.max_file_size * 2 // 3)
    answer = httpx.post(f"{url}gradio_api/upload",
                        files=[("files", ("a.png", half)), ("files", ("b.png", half))])
    assert answer.status_code == 413
    # The app still answers, and the page's own files (examples) survived the trimming.
    label, _, _ = Client(url, verbose=False).predict(handle_file(str(files / "photo.jpg")),
                                                     api_name="/classify")
    assert len(label["confidences"]) == 5
    page_files = set().union(*(getattr(b, "keep_in_cache", ()) for b in demo.blocks.values()))
    assert all(os.path.exists(p) for p in page_files)


def test_trimming_keeps_the_newest_files_within_both_bounds(tmp_path):
    for i in range(50):  # Gradio's layout: one directory per stored file
        (tmp_path / f"d{i}").mkdir()
        (tmp_path / f"d{i}" / "x.png").write_bytes(b"\0" * 100)
        os.utime(tmp_path / f"d{i}" / "x.png", (i + 1, i + 1))
    page_file = str(tmp_path / "d0" / "x.png")  # oldest, but the page's own
    assert app.trim_cache(tmp_path, 10**6, keep={page_file}, max_files=10) == 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["d0"] + [f"d{i}" for i in range(40, 50)])  # the emptied directories went too
    assert app.trim_cache(tmp_path, 450, keep={page_file}) == 400


def test_uploads_are_read_a_few_at_a_time(monkeypatch):
    import asyncio

    monkeypatch.setattr(app.cache, "trim_app_cache", lambda demo: 0)
    running, peak = 0, 0

    async def gradio(scope, receive, send):  # stands in for Gradio's upload route
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    bound = app.UploadBound(gradio, types.SimpleNamespace(max_file_size=1024, blocks={}))

    async def upload():
        async def receive():
            return {"type": "http.request", "body": b"x", "more_body": False}

        async def send(message):
            pass

        await bound({"type": "http", "method": "POST", "path": "/gradio_api/upload"},
                     receive, send)

    async def twelve_at_once():
        await asyncio.gather(*(upload() for _ in range(12)))

    asyncio.run(twelve_at_once())
    assert peak == app.cache.UPLOADS_AT_ONCE < 12


def test_the_apps_own_output_files_are_bounded(tmp_path):
    for _ in range(100):  # a burst: all within as_file's max_age
        app.as_file(np.zeros((4, 4, 3), np.uint8), tmp_path)
    assert len(list(tmp_path.glob("*.png"))) <= app.cache.MAX_OUTPUT_FILES


def test_model_card_names_the_model_not_where_it_lives(classifier):
    card = app.model_card(classifier)
    assert "**Model**: cifar_untrained, version 1" in card
    assert str(classifier.path.parent.parent) not in card and "/" not in card
    named = types.SimpleNamespace(path="/srv/secret/saved_models/x/3", class_names=CIFAR10,
                                  metadata={})
    card = app.model_card(named)
    assert "x, version 3" in card and "/srv" not in card and "saved_models" not in card


def test_dependency_floors_are_past_published_fixes():
    from packaging.requirements import Requirement
    from packaging.version import Version

    # Gradio: path traversals fixed in 6.7 (GHSA-39mp-8hj3-5c49, Windows) and 6.16
    # (CVE-2026-49119, FileExplorer); Pillow: CVE-2024-28219 fixed in 10.3, the heap
    # overflows and decompression bombs of CVE-2026-59197..59200 in 12.3.
    fixed = {"gradio": Version("6.16"), "pillow": Version("12.3")}
    lines = (REPO / "requirements.txt").read_text().splitlines()
    requirements = {r.name.lower(): r for r in map(Requirement, (
        line for line in lines if line.strip() and not line.startswith("#")))}
    for name, version in fixed.items():
        floors = [Version(s.version) for s in requirements[name].specifier
                  if s.operator == ">="]
        assert floors and min(floors) >= version, (name, floors)
        assert importlib.metadata.version(name) in requirements[name].specifier
