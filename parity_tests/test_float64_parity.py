"""In float64 one training step is the same in both frameworks to 1e-12: outputs, loss, gradients, the SGD update.

    python -m pytest parity_tests/test_float64_parity.py -q

Both models get the same canonical weights (float64 in Keras through its own
precision switch, keras.config.set_floatx; `net.to(torch.float64)` in torch)
and one real 1,000-row batch with experiment 5's class weight.  In float32
the two frameworks' sums round differently (about 1e-6 relative on a
gradient, parity_tests/test_structure_and_numerics.py); in float64 every
difference of arithmetic shows up as a difference above 1e-12 - which is
how torch's hardsigmoid backward was found to multiply by 1/6 rounded to
float32 even for float64 tensors (docs/differences.md, row 35).
"""

from __future__ import annotations

import numpy as np
import pytest

from keras_impl.precision import keras_float_type
from parity_tests.lockstep import KerasSide, LightningSide, Setting

TOLERANCE = 1e-12
ACTIVATIONS = ("hard_sigmoid", "hard_sigmoid_keras2", "sigmoid")


def keras_gradients(side: KerasSide, features, target, weight) -> dict[str, np.ndarray]:
    import tensorflow as tf

    from keras_impl.model import canonical_variables

    trainable = {name: variable for name, variable in canonical_variables(side.model).items() if variable.trainable}
    moving = [variable for variable in side.model.non_trainable_variables if "moving" in variable.path]
    saved = [variable.numpy() for variable in moving]
    inputs = side.inputs(features)
    with tf.GradientTape() as tape:
        probabilities = side.model(inputs, training=True)
        loss = side.model.compute_loss(x=inputs, y=target.reshape(-1, 1).astype("float64"), y_pred=probabilities,
                                       sample_weight=weight, training=True)
    gradients = tape.gradient(loss, [variable.value for variable in trainable.values()])
    for variable, value in zip(moving, saved):   # the tape's forward moved them; the update moves them once
        variable.assign(value)
    return {name: np.asarray(tf.convert_to_tensor(gradient)) for name, gradient in zip(trainable, gradients)}


def torch_gradients(side: LightningSide) -> dict[str, np.ndarray]:
    from data import COLUMNS

    net = side.net
    gradients = {}
    for column in COLUMNS:
        gradients[f"embedding.{column}"] = net.embeddings[column].weight.grad.numpy()
        gradients[f"batchnorm.{column}.gamma"] = net.batchnorms[column].weight.grad.numpy()
        gradients[f"batchnorm.{column}.beta"] = net.batchnorms[column].bias.grad.numpy()
    gradients["output.kernel"] = net.output.weight.grad.numpy().T
    gradients["output.bias"] = net.output.bias.grad.numpy()
    return gradients


@pytest.mark.real_data
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_one_float64_step_agrees_to_1e_12(prepared_dataset, activation):
    from keras_impl.model import canonical_variables
    from experiment.weights import shared_initial_weights

    dataset = prepared_dataset.sample(20_000, 42)
    features, target = dataset.split_arrays("train")
    features, target = features[:1000], target[:1000]
    one_weight = dataset.one_weight()
    weight = np.where(target > 0.5, one_weight, 1.0)
    setting = Setting(activation, 64, 0.001, 1000, {0: 1.0, 1: one_weight}, 42)
    initial = shared_initial_weights(dataset.vocab_sizes, 42)
    with keras_float_type(64):
        keras_side = KerasSide(setting, dataset.vocab_sizes, initial)
        torch_side = LightningSide(setting, dataset.vocab_sizes, initial)
        keras_logits, keras_loss = keras_side.logits_and_loss(features, target, weight)
        torch_logits, torch_loss = torch_side.logits_and_loss(features, target, weight)
        expected_gradients = keras_gradients(keras_side, features, target, weight)
        torch_side._pending.backward()
        actual_gradients = torch_gradients(torch_side)
        torch_side.optimizer.step()
        keras_side.update(features, target, weight)
        after_keras = {name: np.array(variable.numpy()) for name, variable in canonical_variables(keras_side.model).items()}

    assert np.max(np.abs(keras_logits - torch_logits)) <= TOLERANCE
    assert abs(keras_loss - torch_loss) <= TOLERANCE
    for name, expected in expected_gradients.items():
        assert np.max(np.abs(expected - actual_gradients[name])) <= TOLERANCE, name
    after_torch = _float64_weights(torch_side.net)
    for name, expected in after_keras.items():
        assert np.max(np.abs(expected - after_torch[name])) <= TOLERANCE, name


def _float64_weights(net) -> dict[str, np.ndarray]:
    """Canonical weights without the float32 cast of lightning_impl.model.get_canonical_weights."""
    from lightning_impl.model import canonical_targets

    return {name: tensor.detach().numpy() for name, tensor in canonical_targets(net).items()}


def test_the_float64_switch_holds_after_a_float32_model_was_built():
    """Keras keeps a global dtype policy once a layer exists; set_floatx alone would leave float32 layers."""
    import keras

    from keras_impl.precision import keras_float_type

    keras.layers.Dense(1).build((None, 2))                        # a float32 layer first, as in a long session
    with keras_float_type(64):
        layer = keras.layers.Dense(1)
        layer.build((None, 2))
        assert layer.kernel.dtype == "float64"
    after = keras.layers.Dense(1)
    after.build((None, 2))
    assert after.kernel.dtype == "float32" and keras.config.floatx() == "float32"
