import sys, time
sys.path.insert(0, "/work/main")
import numpy as np, tensorflow as tf
from alexnet_tf import bench, layers
R, B, A, BETA = 2, 2.0, 1e-4, 0.75
def band(c, s):
    i = np.arange(c); return tf.constant(s * (np.abs(i[:, None] - i[None, :]) <= R).astype("float32"))
def wsum(v, s):
    c = v.shape[-1]
    return tf.reshape(tf.reshape(v, [-1, c]) @ band(c, s), tf.shape(v))
@tf.function(jit_compile=True)
def fwd(x):
    xf = tf.cast(x, tf.float32)
    norm = B + wsum(xf * xf, A)
    root = tf.math.rsqrt(norm)
    return tf.cast(xf * root * tf.sqrt(root), x.dtype)
@tf.function(jit_compile=True)
def bwd(x, g):
    xf = tf.cast(x, tf.float32); gf = tf.cast(g, tf.float32)
    norm = B + wsum(xf * xf, A)
    root = tf.math.rsqrt(norm); scale = root * tf.sqrt(root)
    return tf.cast(gf * scale + xf * wsum(gf * xf * scale / norm, -2 * A * BETA), x.dtype)
@tf.custom_gradient
def lrn_xla(x):
    return fwd(x), lambda g: bwd(x, g)
orig = layers.LocalResponseNormalization.call
def xla_call(self, inputs):
    if self.compute_dtype == "float32": return orig(self, inputs)
    return lrn_xla(inputs)
size = 32
cfg, ds = bench.training_pipeline("cifar", None, size, 128)
for r in range(3):
    for name, call in (("current", orig), ("xla", xla_call)):
        layers.LocalResponseNormalization.call = call
        _, ips = bench.training_speed("cifar", size, 128, "mixed_bfloat16", False, 30, ds, cfg.label_smoothing)
        print(r, name, round(ips, 1), flush=True)
