"""Small shared test utilities."""

import importlib.util
import os
import pathlib
import subprocess
import sys
import types

import numpy as np
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]


def write_image_folder(root, classes=("cat", "dog", "ship"), per_class=24, size=32, seed=0):
    """Class folders of learnable PNG/JPEG images: each class has its own mean colour."""
    rng = np.random.default_rng(seed)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = np.array([60 + 70 * k, 200 - 60 * k, 40 + 50 * (k % 2)], np.float32)
            pixels = np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


def preset(image_size, crop="random", flip=True, lighting=0.0, cutout=0, mixup=0.0,
           fill=(0.0, 0.0, 0.0)):
    """augment.train_preset of these augmentations (named as a run's config names them)."""
    from alexnet_tf import augment

    options = types.SimpleNamespace(crop=crop, flip=flip, lighting=lighting, cutout=cutout,
                                    mixup=mixup)
    return augment.train_preset(options, image_size=image_size, fill=fill)


def run_module(module, *args, timeout=600, **kwargs):
    """Runs `python -m module args` from the repo root; returns the CompletedProcess."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def load_app():
    """ui/app.py (a script, not a package member) as a module, loaded once, under a name that
    cannot clash with the `ui` package it imports."""
    name = "alexnet_ui_app"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "ui" / "app.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]
