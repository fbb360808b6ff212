"""Local response normalization (Krizhevsky et al. 2012, section 3.3) as a Keras layer."""

import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="alexnet_tf")
class LocalResponseNormalization(keras.layers.Layer):
    """Across-channel local response normalization over `tf.nn.local_response_normalization`.

    The paper (section 3.3) computes, for channel i of N at each position,

        b_i = a_i / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a_j^2) ** beta

    with k=2, n=5, alpha=1e-4, beta=0.75. TensorFlow's op computes the same sum over
    `[i - depth_radius, i + depth_radius]`, so the paper's values map to

        depth_radius = n // 2 = 2,  bias = k = 2.0,  alpha = alpha = 1e-4,  beta = 0.75.

    (TF's own default `depth_radius=5` is an 11-channel window, not AlexNet's 5.)
    Neither the paper nor TF divides alpha by n; PyTorch's `nn.LocalResponseNorm(size=5)`
    does (`alpha / n * sum`), so it needs `alpha = n * 1e-4 = 5e-4` to give this output.

    The op is the layer's definition and its float32 path. It has float32 kernels only on CPU
    (no bfloat16), and its gradient kernel (LRNGrad) loops over the window channel by channel;
    under a mixed-precision policy the layer computes the same function in float32 with
    vectorised ops instead (`_lrn_by_window_matmul`) and casts back to its compute dtype.
    """

    def __init__(self, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        self.depth_radius = depth_radius
        self.bias = bias
        self.alpha = alpha
        self.beta = beta

    def call(self, inputs):
        if self.compute_dtype == "float32":
            return tf.nn.local_response_normalization(
                inputs, depth_radius=self.depth_radius, bias=self.bias, alpha=self.alpha,
                beta=self.beta,
            )
        outputs = _lrn_by_window_matmul(
            tf.cast(inputs, "float32"), self.depth_radius, self.bias, self.alpha, self.beta
        )
        return tf.cast(outputs, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "depth_radius": self.depth_radius,
            "bias": self.bias,
            "alpha": self.alpha,
            "beta": self.beta,
        }


def _lrn_by_window_matmul(x, depth_radius, bias, alpha, beta):
    """`tf.nn.local_response_normalization` over the last axis of float32 `x`, as matmuls.

    The window sum over channels i-r..i+r is a matmul with a banded 0/1 [C, C] matrix, so
    forward and gradient are a few element-wise passes and two small matmuls. The gradient is
    written out (for y_i = x_i * n_i ** -beta, n_i = bias + alpha * sum_{|j-i|<=r} x_j ** 2):

        dx_j = g_j * n_j ** -beta - 2 * alpha * beta * x_j * sum_{|i-j|<=r} g_i * y_i / n_i

    which keeps no more than autodiff would and saves it several passes over the tensor.
    """
    channels = x.shape[-1]
    index = np.arange(channels)
    band = (np.abs(index[:, None] - index[None, :]) <= depth_radius).astype("float32")

    def window_sum(values, scale):
        flat = tf.reshape(values, [-1, channels])
        return tf.reshape(tf.matmul(flat, tf.constant(scale * band)), tf.shape(values))

    @tf.custom_gradient
    def lrn(x):
        norm = bias + window_sum(x * x, alpha)
        if beta == 0.75:  # the paper's beta: two cheap roots instead of pow's exp and log
            root = tf.math.rsqrt(norm)
            scale = root * tf.sqrt(root)
        else:
            scale = tf.pow(norm, -beta)
        y = x * scale

        def grad(g):
            return g * scale + x * window_sum(g * y / norm, -2.0 * alpha * beta)

        return y, grad

    return lrn(x)
