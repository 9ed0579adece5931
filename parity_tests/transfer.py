"""Copy a model between the frameworks by canonical weight name.

    from parity_tests.transfer import keras_to_lightning, lightning_to_keras
    net = keras_to_lightning(keras_model)      # a StreetcarNet with the Keras model's weights
    model = lightning_to_keras(net)            # a keras.Model with the net's weights

The bridge is experiment/weights.py: each side exports
{canonical name: float32 array in Keras layout} and imports the same mapping,
so nothing is matched by position.  Before anything is copied every key and
every shape is checked (experiment.weights.check_weights), and a mismatch is a
ValueError naming the weight and both shapes, e.g.

    keras model do not fit this model: embedding.Route: keras model has shape (15, 10), the model expects (14, 10)

The architecture settings travel with the weights: vocabulary sizes and
embedding width are read from the weights' shapes, the dropout rate from the
source's Dropout layers, and the output activation by name
("hard_sigmoid" Keras 3 = torch hardsigmoid, "hard_sigmoid_keras2", "sigmoid").

Used by parity_tests/test_structure_and_numerics.py and the trajectory tests;
lightning_impl/convert.py does the same through files (.keras <-> .ckpt).

    python -m pytest parity_tests/test_structure_and_numerics.py -q
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from data.dataset import COLUMNS
from experiment.weights import check_weights


def keras_output_activation(keras_model: Any) -> str:
    """The project's activation name of a keras_impl model's output layer.

    Keras stores a function; we compare it with the project's table
    (keras_impl.model.ACTIVATION_FUNCTIONS) by identity, then by name, because a
    .keras file reloaded in another process deserialises to the registered
    function objects.
    """
    from keras_impl.model import ACTIVATION_FUNCTIONS, OUTPUT_LAYER_NAME

    activation = keras_model.get_layer(OUTPUT_LAYER_NAME).activation
    for name, function in ACTIVATION_FUNCTIONS.items():
        if activation is function:
            return name
    function_name = getattr(activation, "__name__", repr(activation))
    for name, function in ACTIVATION_FUNCTIONS.items():
        if function_name == getattr(function, "__name__", None):
            return name
    raise ValueError(f"output activation {function_name!r} of Keras model {keras_model.name!r} has no "
                     f"Lightning equivalent; supported: {', '.join(ACTIVATION_FUNCTIONS)}")


def keras_architecture(keras_model: Any) -> dict[str, Any]:
    """vocab_sizes / embedding_dim / dropout_rate / output_activation of a keras_impl model."""
    from keras_impl.model import model_embedding_dim, model_vocab_sizes

    try:
        dropout_rates = {float(keras_model.get_layer(f"dropout_{column}").rate) for column in COLUMNS}
        vocab_sizes = model_vocab_sizes(keras_model)
        embedding_dim = model_embedding_dim(keras_model)
    except ValueError as error:  # get_layer: no such layer
        raise ValueError(f"Keras model {keras_model.name!r} is not this project's streetcar model "
                         f"(layers embedding_<column>, batchnorm_<column>, dropout_<column>, output): {error}") from None
    if len(dropout_rates) != 1:
        raise ValueError(f"Keras model {keras_model.name!r} has different dropout rates per column: {sorted(dropout_rates)}")
    return {"vocab_sizes": vocab_sizes, "embedding_dim": embedding_dim, "dropout_rate": dropout_rates.pop(),
            "output_activation": keras_output_activation(keras_model)}


def lightning_architecture(net: Any) -> dict[str, Any]:
    """The same four settings of a StreetcarNet (kept as attributes by lightning_impl.model)."""
    return {"vocab_sizes": dict(net.vocab_sizes), "embedding_dim": int(net.embedding_dim),
            "dropout_rate": float(net.dropout_rate), "output_activation": str(net.output_activation)}


def keras_to_lightning(keras_model: Any, net: Any | None = None) -> Any:
    """A StreetcarNet holding `keras_model`'s weights (a new one, or `net` filled in place).

    Every canonical key and shape is checked before anything is copied.  The
    result is in eval mode, like a freshly loaded Keras model's inference.
    """
    from keras_impl.model import get_canonical_weights as keras_weights
    from lightning_impl.model import StreetcarNet, set_canonical_weights

    architecture = keras_architecture(keras_model)
    weights = keras_weights(keras_model)
    if net is None:
        net = StreetcarNet(architecture["vocab_sizes"], embedding_dim=architecture["embedding_dim"],
                           dropout_rate=architecture["dropout_rate"],
                           output_activation=architecture["output_activation"])
    else:
        _check_same_activation(architecture, lightning_architecture(net))
    check_weights(weights, net.vocab_sizes, net.embedding_dim, source="keras model")
    set_canonical_weights(net, weights, source="keras model")
    net.eval()
    return net


def lightning_to_keras(net: Any, keras_model: Any | None = None) -> Any:
    """A keras_impl model holding `net`'s weights (a new one, or `keras_model` filled in place)."""
    from keras_impl.model import build_model, model_embedding_dim, model_vocab_sizes, set_canonical_weights
    from lightning_impl.model import get_canonical_weights as lightning_weights

    architecture = lightning_architecture(net)
    weights = lightning_weights(net)
    if keras_model is None:
        keras_model = build_model(architecture["vocab_sizes"], embedding_dim=architecture["embedding_dim"],
                                  dropout_rate=architecture["dropout_rate"],
                                  output_activation=architecture["output_activation"])
    else:
        _check_same_activation(architecture, keras_architecture(keras_model))
    check_weights(weights, model_vocab_sizes(keras_model), model_embedding_dim(keras_model), source="lightning model")
    set_canonical_weights(keras_model, weights, source="lightning model")
    return keras_model


def copy_weights(weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A deep copy of a canonical weight mapping (so a later training step cannot alias it)."""
    return {name: np.array(value, dtype=np.float32, copy=True) for name, value in weights.items()}


def _check_same_activation(source: Mapping[str, Any], target: Mapping[str, Any]) -> None:
    # Weights alone do not carry the activation; copying a Keras-2 hard_sigmoid
    # model into a Keras-3 hard_sigmoid one would silently change predictions.
    if source["output_activation"] != target["output_activation"]:
        raise ValueError(f"output activation differs: source {source['output_activation']!r}, "
                         f"target {target['output_activation']!r}; the copy would predict differently")


# --------------------------------------------------------------------------- gradients by canonical name


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
