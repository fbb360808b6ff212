"""alexnet_tf: AlexNet (Krizhevsky, Sutskever, Hinton, NIPS 2012) in Keras 3 / TensorFlow."""

import os

# TensorFlow's C++ INFO lines (oneDNN, CUDA probes) drown the progress bar on CPU machines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Registered with Keras here, so that loading a best.keras that names them needs no other import.
from alexnet_tf import budget, optim  # noqa: E402,F401
from alexnet_tf.layers import LocalResponseNormalization  # noqa: E402
from alexnet_tf.model import VARIANTS, build_model, count_flops  # noqa: E402

__all__ = ["VARIANTS", "LocalResponseNormalization", "build_model", "count_flops"]
__version__ = "0.1.0"
