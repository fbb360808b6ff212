import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
CIFAR_DIR = REPO.parent / "shared" / "data" / "cifar10" / "train"


@pytest.fixture
def cifar_dir():
    if not CIFAR_DIR.is_dir():
        pytest.skip(f"real CIFAR-10 images not found at {CIFAR_DIR}")
    return CIFAR_DIR
