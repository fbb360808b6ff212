"""The fused optimizers: PyTorchAdam against a NumPy transcription of torch.optim.Adam's
documented update rule, SGD against Keras' own."""

import keras
import numpy as np
import pytest

from alexnet_tf.optim import SGD, PyTorchAdam


def torch_adam_steps(p, grads, lr, weight_decay, betas=(0.9, 0.999), eps=1e-8):
    """torch.optim.Adam (amsgrad=False, maximize=False) as its documentation writes it."""
    p = p.astype(np.float64)
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        g = g + weight_decay * p
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


def keras_steps(optimizer, p, grads):
    variable = keras.Variable(p)
    for g in grads:
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(g), variable)])
    return keras.ops.convert_to_numpy(variable)


@pytest.mark.parametrize("steps", [1, 2])
def test_matches_pytorch_adam_with_coupled_decay(steps):
    rng = np.random.default_rng(0)
    # Large weights and tiny gradients: the decay dominates some entries, and gradients near
    # epsilon's scale make the epsilon placement show.
    p = rng.normal(0, 3, (4, 5)).astype(np.float32)
    grads = [(rng.normal(0, 1, p.shape) * 10.0 ** rng.integers(-9, 1, p.shape)).astype(np.float32)
             for _ in range(steps)]
    expected = torch_adam_steps(p, grads, lr=1e-3, weight_decay=1e-2)
    got = keras_steps(PyTorchAdam(1e-3, coupled_weight_decay=1e-2), p, grads)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    # Keras' own Adam with the same decoupled rate is not this rule: the test can tell.
    keras_adam = keras_steps(keras.optimizers.Adam(1e-3, weight_decay=1e-2), p, grads)
    assert np.abs(keras_adam - expected).max() > 1e-5


def test_epsilon_is_pytorchs():
    """Gradients of 1e-8 make the update depend on where epsilon goes (Keras: epsilon hat)."""
    p = np.zeros((3,), np.float32)
    grads = [np.full((3,), 1e-8, np.float32)]
    expected = torch_adam_steps(p, grads, lr=1e-3, weight_decay=0.0)
    np.testing.assert_allclose(keras_steps(PyTorchAdam(1e-3), p, grads), expected, rtol=1e-5)
    assert np.abs(keras_steps(keras.optimizers.Adam(1e-3, epsilon=1e-8), p, grads)
                  - expected).max() > 1e-5


def test_serializable_with_its_decay():
    optimizer = keras.optimizers.deserialize(keras.optimizers.serialize(
        PyTorchAdam(2e-3, coupled_weight_decay=1e-4)))
    assert isinstance(optimizer, PyTorchAdam)
    assert optimizer.coupled_weight_decay == 1e-4 and optimizer.epsilon == 1e-8
    with pytest.raises(ValueError, match="amsgrad"):
        PyTorchAdam(amsgrad=True)


@pytest.mark.parametrize("nesterov", [True, False])
def test_sgd_steps_like_keras_sgd(nesterov):
    """The fused kernel against Keras' own SGD, three steps, with decoupled decay, and the EMA
    weights the base class averages from what the kernel writes."""
    rng = np.random.default_rng(1)
    p = rng.normal(0, 1, (6, 7)).astype(np.float32)
    grads = [rng.normal(0, 1, p.shape).astype(np.float32) for _ in range(3)]
    kwargs = dict(learning_rate=0.1, momentum=0.9, nesterov=nesterov, weight_decay=0.01,
                  use_ema=True, ema_momentum=0.5)
    expected = sgd_steps(keras.optimizers.SGD(**kwargs), p, grads)
    for got, want in zip(sgd_steps(SGD(**kwargs), p, grads), expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert np.abs(expected[0] - p).mean() > 1e-2  # the steps moved the weights


def sgd_steps(optimizer, p, grads):
    """(the weights after the steps, their EMA)."""
    variable = keras.Variable(p)
    for g in grads:
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(g), variable)])
    weights = keras.ops.convert_to_numpy(variable)
    optimizer.finalize_variable_values([variable])  # the EMA replaces the weights
    return weights, keras.ops.convert_to_numpy(variable)


def test_sgd_serializable():
    optimizer = keras.optimizers.deserialize(keras.optimizers.serialize(
        SGD(0.05, momentum=0.9, nesterov=True)))
    assert isinstance(optimizer, SGD) and optimizer.nesterov and optimizer.momentum == 0.9
