"""The four settings that travel with a model's weights, read from a Keras model or a StreetcarNet.

Weights alone give the vocabulary sizes and the embedding width (their
shapes); the dropout rate comes from the Dropout layers and the output
activation from the output layer, by the project's name for it
("hard_sigmoid" = Keras 3's and torch's hardsigmoid, "hard_sigmoid_keras2",
"sigmoid"; keras_impl.model.ACTIVATION_FUNCTIONS).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from data.dataset import COLUMNS


def keras_output_activation(keras_model: Any, source: str | None = None) -> str:
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
    raise ValueError(f"{source or describe_keras_model(keras_model)}: output activation {function_name!r} has no "
                     f"Lightning equivalent; supported: {', '.join(ACTIVATION_FUNCTIONS)}")


def keras_architecture(keras_model: Any, source: str | None = None) -> dict[str, Any]:
    """vocab_sizes / embedding_dim / dropout_rate / output_activation of a keras_impl model.

    `source` names the model in errors (a file path); by default the model's name.
    """
    from keras_impl.model import OUTPUT_LAYER_NAME, model_embedding_dim, model_vocab_sizes

    source = source or describe_keras_model(keras_model)
    try:
        vocab_sizes = model_vocab_sizes(keras_model)
        embedding_dim = model_embedding_dim(keras_model)
        dropout_rates = {float(keras_model.get_layer(f"dropout_{column}").rate) for column in COLUMNS}
        keras_model.get_layer(OUTPUT_LAYER_NAME)
    except ValueError as error:  # get_layer: no such layer
        raise ValueError(f"{source}: not this project's streetcar model (expected layers embedding_<column>, "
                         f"batchnorm_<column>, dropout_<column>, output; {error})") from None
    if len(dropout_rates) != 1:
        raise ValueError(f"{source}: different dropout rates per column {sorted(dropout_rates)}")
    return {"vocab_sizes": vocab_sizes, "embedding_dim": embedding_dim, "dropout_rate": dropout_rates.pop(),
            "output_activation": keras_output_activation(keras_model, source)}


def lightning_architecture(net: Any) -> dict[str, Any]:
    """The same four settings of a StreetcarNet (kept as attributes by lightning_impl.model)."""
    return {"vocab_sizes": dict(net.vocab_sizes), "embedding_dim": int(net.embedding_dim),
            "dropout_rate": float(net.dropout_rate), "output_activation": str(net.output_activation)}


def build_with(constructor: Callable[..., Any], architecture: Mapping[str, Any]) -> Any:
    """A fresh model of `architecture`: keras_impl.model.build_model and StreetcarNet take the same four settings."""
    return constructor({column: int(size) for column, size in architecture["vocab_sizes"].items()},
                       embedding_dim=int(architecture["embedding_dim"]),
                       dropout_rate=float(architecture["dropout_rate"]),
                       output_activation=str(architecture["output_activation"]))


def copy_target(architecture: Mapping[str, Any], target: Any | None, constructor: Callable[..., Any],
                target_architecture: Callable[[Any], Mapping[str, Any]]) -> Any:
    """The model to copy weights into: `target` if given (its output activation checked), else a new one."""
    if target is None:
        return build_with(constructor, architecture)
    check_same_activation(architecture, target_architecture(target))
    return target


def check_same_activation(source: Mapping[str, Any], target: Mapping[str, Any]) -> None:
    """Refuse to copy weights into a model whose output activation differs from the source's.

    Weights alone do not carry the activation; copying a Keras-2 hard_sigmoid
    model into a Keras-3 hard_sigmoid one would silently change predictions.
    """
    if source["output_activation"] != target["output_activation"]:
        raise ValueError(f"output activation differs: source {source['output_activation']!r}, "
                         f"target {target['output_activation']!r}; the copy would predict differently")


def describe_keras_model(keras_model: Any) -> str:
    return f"Keras model {keras_model.name!r}"
