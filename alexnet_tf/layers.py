"""Local response normalization (Krizhevsky et al. 2012, section 3.3) as a Keras layer."""

import keras
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

    The op has float32 kernels only on CPU (no bfloat16), so under a mixed-precision policy
    the layer computes in float32 and casts back to its compute dtype.
    """

    def __init__(self, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        self.depth_radius = depth_radius
        self.bias = bias
        self.alpha = alpha
        self.beta = beta

    def call(self, inputs):
        outputs = tf.nn.local_response_normalization(
            tf.cast(inputs, "float32"),
            depth_radius=self.depth_radius,
            bias=self.bias,
            alpha=self.alpha,
            beta=self.beta,
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
