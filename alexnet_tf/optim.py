"""The trainer's optimizers: Keras' SGD and PyTorch's Adam, each update one TensorFlow kernel.

Keras 3 writes an update as separate element-wise ops, each a pass over every weight; the
update is memory-bound (`seed`'s 44 million float32 weights), so TensorFlow's fused training
kernels, which tf.keras' optimizers ran up to TF 2.10, compute the same rule in one pass over
each weight tensor (docs/speed.md).
"""

import keras
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="alexnet_tf")
class SGD(keras.optimizers.SGD):
    """Keras' SGD, its momentum update in TensorFlow's `ResourceApplyKerasMomentum` kernel.

    The kernel computes Keras' rule, `accum <- momentum * accum - lr * g`, then
    `var <- var + momentum * accum - lr * g` with Nesterov momentum, `var <- var + accum`
    without (tf.raw_ops.ResourceApplyKerasMomentum).
    """

    def update_step(self, gradient, variable, learning_rate):
        if self.momentum == 0:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        momentum = self.momentums[self._get_variable_index(variable)]
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle, accum=_handle(momentum), lr=ops.cast(learning_rate, dtype),
            grad=ops.cast(gradient, dtype), momentum=ops.cast(self.momentum, dtype),
            use_nesterov=self.nesterov,
        )


@keras.saving.register_keras_serializable(package="alexnet_tf")
class PyTorchAdam(keras.optimizers.Adam):
    """Keras' Adam with `torch.optim.Adam`'s update rule and its coupled weight decay.

    PyTorch's documented algorithm (torch.optim.Adam), per parameter p at step t:

        g <- g + coupled_weight_decay * p        (every parameter, biases included)
        m <- b1 * m + (1 - b1) * g;   v <- b2 * v + (1 - b2) * g^2
        p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + epsilon),  epsilon = 1e-8

    Keras' Adam differs in two ways that change the numbers: its epsilon is Kingma and Ba's
    "epsilon hat", added to the un-corrected sqrt(v) (1e-7 by default), and Keras has no
    coupled decay: its `weight_decay` is decoupled (AdamW), and L2 regularisers reach kernels
    only. Here the decay enters the gradient before the moments, so it is scaled by Adam's
    per-weight step like the loss gradient, exactly as PyTorch's `Adam(weight_decay=...)`.
    `weight_decay` (decoupled, applied by Keras' base class) still works alongside.

    TensorFlow's `ResourceApplyAdam` kernel computes `var <- var - lr * sqrt(1 - b2^t) /
    (1 - b1^t) * m / (sqrt(v) + epsilon_hat)`, which is PyTorch's rule with
    `epsilon_hat = epsilon * sqrt(1 - b2^t)`.
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 coupled_weight_decay=0.0, **kwargs):
        if kwargs.get("amsgrad"):
            raise ValueError("PyTorchAdam does not implement amsgrad")
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
                         epsilon=epsilon, **kwargs)
        self.coupled_weight_decay = coupled_weight_decay

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        if self.coupled_weight_decay:
            gradient = gradient + ops.cast(self.coupled_weight_decay, dtype) * variable
        step = ops.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)
        beta_1_power, beta_2_power = ops.power(beta_1, step), ops.power(beta_2, step)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=_handle(self._momentums[index]),
            v=_handle(self._velocities[index]), beta1_power=beta_1_power,
            beta2_power=beta_2_power, lr=lr, beta1=beta_1, beta2=beta_2,
            epsilon=ops.cast(self.epsilon, dtype) * ops.sqrt(1 - beta_2_power), grad=gradient,
        )

    def get_config(self):
        return {**super().get_config(), "coupled_weight_decay": self.coupled_weight_decay}


def _handle(slot):
    """The resource handle of an optimizer variable; under a tf.distribute update, the copy on
    the device being updated."""
    return slot.value.handle
