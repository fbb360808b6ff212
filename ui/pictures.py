"""The app's pictures: model arrays -> uint8 RGB images (pure NumPy, PIL and matplotlib).

Kept apart from `app.py` so the drawing can be read and tested without Gradio.
"""

import matplotlib
import numpy as np
from PIL import Image

SHOWN_CHANNELS = 32  # feature maps drawn per layer: a 4x8 grid stays legible at 64 px tiles


def upscale(image, target=256):
    """Nearest-neighbour blow-up by an integer factor: a 32 px model input stays crisp pixels."""
    factor = max(1, target // max(image.shape[:2]))
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def grid(tiles, cols, gap=2, background=255):
    """Equal-size tiles [N, h, w(, 3)] in 0..255 -> one uint8 image, row-major, with gaps."""
    tiles = np.asarray(tiles)
    n, h, w = tiles.shape[:3]
    rows = -(-n // cols)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, *tiles.shape[3:]),
                  background, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = tile
    return out


def normalise(x, axes):
    """Min-max to 0..1 over `axes`; a constant (e.g. dead ReLU) map becomes all zeros."""
    low, high = x.min(axis=axes, keepdims=True), x.max(axis=axes, keepdims=True)
    return (x - low) / np.maximum(high - low, 1e-8)


def filter_grid(filters):
    """conv1 kernels [k, k, 3, F] -> an RGB grid like the paper's Figure 3."""
    tiles = normalise(np.moveaxis(filters, -1, 0), axes=(1, 2, 3)) * 255  # each filter 0..1
    factor = max(1, 48 // filters.shape[0])
    tiles = tiles.repeat(factor, axis=1).repeat(factor, axis=2)
    count = filters.shape[-1]
    cols = 12 if count % 12 == 0 else 8 if count % 8 == 0 else int(np.ceil(np.sqrt(count)))
    return grid(tiles, cols)


def feature_map_grid(maps, tile=64):
    """Feature maps [h, w, C] -> the first SHOWN_CHANNELS, each scaled to 0..1, viridis-coloured."""
    shown = np.moveaxis(maps[..., :SHOWN_CHANNELS], -1, 0)
    coloured = matplotlib.colormaps["viridis"](normalise(shown, axes=(1, 2)))[..., :3] * 255
    tiles = [np.asarray(Image.fromarray(t.astype(np.uint8)).resize((tile, tile), Image.NEAREST))
             for t in coloured]
    return grid(tiles, cols=8)


def gradcam_overlay(model_input, cam, size=256):
    """The Grad-CAM map (0..1) as a jet heat map blended over the model's input image."""
    base = np.asarray(Image.fromarray(np.clip(model_input, 0, 255).astype(np.uint8)).resize(
        (size, size), Image.NEAREST), np.float32)
    cam = np.clip(np.asarray(Image.fromarray(cam.astype(np.float32)).resize(
        (size, size), Image.BILINEAR)), 0, 1)
    heat = matplotlib.colormaps["jet"](cam)[..., :3] * 255
    alpha = 0.15 + 0.5 * cam[..., None]  # hot regions tinted most; cold ones stay visible
    return ((1 - alpha) * base + alpha * heat).astype(np.uint8)
