"""What the app accepts as an image: decoding uploads itself, with a one-line reason for
anything it refuses (never a traceback)."""

import warnings

from ui import cache  # noqa: F401 (before gradio: the app's temp dir, no analytics)

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from gradio_client.utils import is_http_url_like  # noqa: E402
from PIL import Image, ImageOps, UnidentifiedImageError  # noqa: E402

MAX_SIDE = 1024  # the model sees <= 227 px; a smaller copy keeps huge uploads fast and small
# 10000x10000 (100 MP) still opens; bigger images are refused from their header, before
# decoding. PIL's own guard (a warning up to twice its limit, an error beyond) stays as the
# backstop; its warning is silenced here once, since a per-call warnings filter is not
# thread-safe under concurrent calls.
MAX_PIXELS = 120_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# The formats the page promises. Image.open would otherwise try every decoder Pillow has,
# EPS included, whose load() runs Ghostscript (Pillow's security notes); "JPEG" also opens
# phones' multi-picture JPEGs (MPO).
FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")


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
        image = _open(image)
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


def _open(path):
    """Opens and decodes a file of one of FORMATS, refusing huge ones from the header."""
    try:
        image = Image.open(path, formats=FORMATS)  # reads the header only
        too_large = image.width * image.height > MAX_PIXELS
        if not too_large:
            # JPEGs decode at 1/2..1/8 scale straight away (draft); others decode fully.
            image.draft("RGB", (MAX_SIDE, MAX_SIDE))
            image.load()  # animated GIF/WebP/APNG: frame 0 is what open() points at
    except Image.DecompressionBombError:
        too_large = True
    except FileNotFoundError:  # trimmed from the cache (see cache.trim_cache) since its upload
        raise bad_input("This upload is no longer on the server: give the image again.") \
            from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        reason = "not a supported image" if isinstance(error, UnidentifiedImageError) \
            else "corrupt"
        raise bad_input(f"Cannot read this file ({reason}): upload a JPEG, PNG, GIF, "
                        "BMP or WebP image.") from None
    if too_large:
        raise bad_input(f"Image too large: at most {MAX_PIXELS // 10**6} megapixels.")
    return image


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
