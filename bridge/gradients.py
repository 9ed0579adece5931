"""One training step's gradients of each framework, by canonical weight name (Keras layouts).

    loss, keras_gradients = keras_loss_and_gradients(compiled_keras_model, features, target, sample_weight)
    lightning_gradients(net)       # after loss.backward() on a StreetcarNet

The parity suite compares the two mappings name by name
(parity_tests/test_structure_and_numerics.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from data.dataset import COLUMNS


def lightning_gradients(net: Any) -> dict[str, np.ndarray]:
    """{canonical name: .grad} of a StreetcarNet's trainable weights, in Keras layouts.

    Only trainable weights have gradients (the BatchNorm moving statistics
    are buffers in torch, non-trainable variables in Keras).  A weight that
    received no gradient (torch: .grad None; Keras's tape: None) is reported
    as zeros on both sides.
    """
    def grad(tensor: Any) -> np.ndarray:
        if tensor.grad is None:
            return np.zeros(tuple(tensor.shape), dtype=np.float32)
        return tensor.grad.detach().cpu().numpy().astype(np.float32)

    gradients: dict[str, np.ndarray] = {}
    for column in COLUMNS:
        gradients[f"embedding.{column}"] = grad(net.embeddings[column].weight)
        gradients[f"batchnorm.{column}.gamma"] = grad(net.batchnorms[column].weight)
        gradients[f"batchnorm.{column}.beta"] = grad(net.batchnorms[column].bias)
    # torch Linear weight (1, 70) -> Keras kernel (70, 1)
    gradients["output.kernel"] = grad(net.output.weight).T.copy()
    gradients["output.bias"] = grad(net.output.bias)
    return gradients


def keras_inputs(features: np.ndarray) -> dict[str, np.ndarray]:
    """int (n, 7) in COLUMNS order -> the named (n, 1) int32 inputs of a keras_impl model."""
    return {column: np.ascontiguousarray(features[:, j:j + 1]).astype(np.int32) for j, column in enumerate(COLUMNS)}


def keras_loss_and_gradients(keras_model: Any, features: np.ndarray, target: np.ndarray,
                             sample_weight: np.ndarray | None = None) -> tuple[float, dict[str, np.ndarray]]:
    """One training-mode forward of a *compiled* keras_impl model: (loss, {canonical name: gradient}).

    The loss is `model.compute_loss`, the function Keras 3's fit calls in its
    train step (binary_crossentropy, reduction sum(w * l) / N).  It runs inside
    a tf.function like fit's train step, so tensor attributes Keras relies on
    (a sigmoid output's cached logits) behave as they do in fit.  The forward
    runs with training=True: BatchNorm uses the batch statistics *and updates
    its moving statistics*, as one fit step would.
    """
    import tensorflow as tf

    from keras_impl.model import canonical_variables

    variables = canonical_variables(keras_model)
    trainable = {name: variable for name, variable in variables.items() if variable.trainable}
    inputs = keras_inputs(features)
    y = np.asarray(target, dtype=np.float32).reshape(-1, 1)
    weights = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float32).reshape(-1)

    @tf.function
    def step(inputs, y, weights):
        with tf.GradientTape() as tape:
            probabilities = keras_model(inputs, training=True)
            loss = keras_model.compute_loss(x=inputs, y=y, y_pred=probabilities, sample_weight=weights,
                                            training=True)
        return loss, tape.gradient(loss, list(trainable.values()))

    loss, gradients = step(inputs, y, weights)
    result = {}
    for (name, variable), gradient in zip(trainable.items(), gradients):
        # Embedding gradients arrive as IndexedSlices (only the looked-up rows).
        dense = np.zeros(tuple(variable.shape), np.float32) if gradient is None else \
            np.asarray(tf.convert_to_tensor(gradient)).astype(np.float32)
        result[name] = dense
    return float(loss), result
