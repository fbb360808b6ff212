"""Adam as PyTorch computes it, for recipes that reproduce PyTorch trainings step for step."""

import keras
from keras import ops


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
        correction_1 = 1 - ops.power(ops.cast(self.beta_1, dtype), step)
        correction_2 = 1 - ops.power(ops.cast(self.beta_2, dtype), step)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        denominator = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(correction_2)), self.epsilon)
        self.assign_sub(variable, ops.divide(ops.multiply(m, lr / correction_1), denominator))

    def get_config(self):
        return {**super().get_config(), "coupled_weight_decay": self.coupled_weight_decay}
