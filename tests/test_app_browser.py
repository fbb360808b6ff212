"""The app in a real browser: `python ui/app.py` in a subprocess, driven by headless Chromium.

Also regenerates the README screenshots (not part of the test suite):

    python tests/test_app_browser.py --screenshots [--model DIR] [--image FILE]
"""

import contextlib
import os
import pathlib
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from PIL import Image

from helpers import load_app

REPO = pathlib.Path(__file__).resolve().parents[1]
CHROMIUM = pathlib.Path("/usr/bin/chromium")
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
pytestmark = pytest.mark.slow  # a real app and a real browser per test


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(log_path, *args, timeout=90, cwd=REPO, env=None):
    """`python ui/app.py ARGS --port P` (in `cwd`, with `env` added) until the block ends;
    yields its URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, str(REPO / "ui" / "app.py"), *args,
                                    "--port", str(port)], cwd=cwd, stdout=log,
                                   stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"app exited with {process.returncode}:\n"
                                   f"{pathlib.Path(log_path).read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"app did not answer within {timeout} s")
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def browser_page(width=1280, height=1000):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def open_app(page, url):
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("input[type=file]", state="attached", timeout=30_000)


def classify_file(page, path):
    """Upload `path` (the app classifies a new image by itself), press Classify once that answer
    is in, return the class names shown in the Top 5 label."""
    page.locator("input[type=file]").first.set_input_files(str(path))
    # Wait for the upload's own answer first: pressed before it, the button's answer could show
    # and then be wiped by the upload's chain (wipe, classify), and the labels read in between.
    shown_classes(page, expect=True)
    with page.expect_request(lambda r: r.method == "POST" and "queue/join" in r.url):
        page.get_by_role("button", name="Classify").click()  # the same image, asked again
    return shown_classes(page, expect=True)


def shown_classes(page, expect, timeout=20_000):
    top5 = page.locator("#top5")
    if expect:  # the label fills in asynchronously; wait until all five are there
        pattern = "|".join(CIFAR10)
        page.wait_for_function(
            f"() => (document.querySelector('#top5')?.innerText.match(/\\b({pattern})\\b/g) "
            "|| []).length >= 6", timeout=timeout)  # headline + five rows
    return [line for line in top5.inner_text().split("\n") if line.strip() in CIFAR10]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from alexnet_tf.export import export_model
    from alexnet_tf.model import build_model

    base = tmp_path_factory.mktemp("export") / "cifar_untrained"
    export_model(build_model("cifar", num_classes=10, image_size=32), base, class_names=CIFAR10)
    return base


def test_classify_reject_and_classify_again_in_chromium(exported, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    pytest.importorskip("playwright")
    photo = tmp_path / "photo.jpg"
    Image.effect_mandelbrot((96, 64), (-2, -1, 1, 1), 60).convert("RGB").save(photo)
    drawing = tmp_path / "drawing.png"
    Image.radial_gradient("L").convert("RGB").resize((80, 80)).save(drawing)
    (tmp_path / "notes.txt").write_text("not an image\n")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)

    with running_app(tmp_path / "app.log", "--model", str(exported)) as url, \
            browser_page() as page:
        open_app(page, url)
        first = classify_file(page, photo)
        assert len(first) == 6 and first[0] == first[1]  # headline = best of the five rows
        assert re.search(r"\d+\.\d ms", page.locator("#timing").inner_text())

        # A non-image: Gradio's upload widget refuses it in the browser, with a toast.
        page.locator("input[type=file]").first.set_input_files(str(tmp_path / "notes.txt"))
        page.get_by_text(re.compile("Invalid file type")).first.wait_for(timeout=10_000)

        # A broken PNG gets through the widget; the app's own message shows, old labels go.
        page.locator("input[type=file]").first.set_input_files(str(tmp_path / "broken.png"))
        page.get_by_text(re.compile("Cannot read this file")).first.wait_for(timeout=20_000)
        assert shown_classes(page, expect=False) == []

        again = classify_file(page, drawing)  # the app is still serving
        assert len(again) == 6
        assert "Traceback" not in (tmp_path / "app.log").read_text()


@pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting'")  # Gradio's, as in test_app
@pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")
def test_an_image_given_mid_classification_gets_its_own_answer(exported, tmp_path):
    """Two uploads in quick succession: the second is classified once the first is done. With
    Gradio's default trigger for an event's later steps ("once") it was dropped, and the first
    image's answer stayed beside the second image for good."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    pytest.importorskip("playwright")
    app = load_app()
    first_started = threading.Event()

    class SlowOnTheFirstImage:  # the real export; the 96x64 image takes 3 s more
        def __init__(self, classifier):
            self.classifier = classifier

        def __getattr__(self, name):
            return getattr(self.classifier, name)

        def inspect(self, image):
            if image.shape[:2] == (64, 96):
                first_started.set()
                time.sleep(3)
            return self.classifier.inspect(image)

    photo, drawing = tmp_path / "photo.png", tmp_path / "drawing.png"
    Image.new("RGB", (96, 64), (200, 40, 40)).save(photo)
    Image.new("RGB", (80, 80), (40, 40, 200)).save(drawing)
    demo = app.build_demo(SlowOnTheFirstImage(app.Classifier(exported)))
    port = _free_port()
    app.launch(demo, port=port, block=False)
    try:
        with browser_page() as page:
            open_app(page, f"http://127.0.0.1:{port}/")
            upload = page.locator("input[type=file]").first
            upload.set_input_files(str(photo))
            assert first_started.wait(30), "the first image was never classified"
            upload.set_input_files(str(drawing))  # while the first is being classified
            page.wait_for_function(  # the timing line names the image it answers for
                "() => document.querySelector('#timing')?.innerText.includes('80×80')",
                timeout=30_000)
            time.sleep(1)  # and nothing older arrives after it
            assert "80×80" in page.locator("#timing").inner_text()
            assert len(shown_classes(page, expect=True)) == 6
    finally:
        demo.close()


def take_screenshots(model=None, image=None, out=REPO / "docs"):
    """docs/app_classify.png and docs/app_inside.png from the running app."""
    out.mkdir(exist_ok=True)
    log = pathlib.Path("/tmp") / "alexnet_app_screenshots.log"
    args = ["--model", str(model)] if model else []
    with running_app(log, *args) as url, browser_page(1200, 900) as page:
        open_app(page, url)
        if image:
            classify_file(page, image)
        else:  # the first synthetic example
            page.locator(".gallery-item").first.click()
            shown_classes(page, expect=True)
        time.sleep(1)  # images fade in
        for name, tab in (("app_classify.png", None), ("app_inside.png", "Inside AlexNet")):
            if tab:
                page.get_by_role("tab", name=tab).click()
                page.get_by_label("Feature maps of layer").click()
                page.get_by_role("option", name="conv2").click()
                time.sleep(2)
            path = out / name
            page.screenshot(path=path, full_page=True)
            # Palette PNGs keep the screenshots small in git.
            Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)
            print(path, path.stat().st_size // 1024, "KB")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--screenshots", action="store_true", required=True)
    parser.add_argument("--model", help="default: the app's default (newest export)")
    parser.add_argument("--image", help="image to classify (default: the first example)")
    options = parser.parse_args()
    take_screenshots(options.model, options.image)
