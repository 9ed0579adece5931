"""The book's streetcar-delay model in Keras 3, built by column name.

    from keras_impl.model import build_model, compile_model
    model = build_model(dataset.vocab_sizes)        # 7 named int inputs -> p(delay)
    compile_model(model, learning_rate=0.001)
    model.summary()                                 # Total 1,341 / Trainable 1,201 / Non-trainable 140

Per column (in data.COLUMNS order: hour, Route, daym, month, year, Direction,
day):

    Input(shape=(1,), name=column, int32)
      -> Embedding(vocab, 10, name="embedding_<column>")
      -> BatchNormalization(name="batchnorm_<column>")   momentum 0.99, epsilon 1e-3
      -> Flatten -> Dropout(rate)
    Concatenate (COLUMNS order) -> Dense(1, hard_sigmoid, name="output")

The book assembled its column list from a Python set, so the concatenation
order (and with it the meaning of the output kernel's rows) changed from run to
run; here it is the fixed tuple COLUMNS.  Layers are named by column so weights
are exchanged by name (experiment.weights), never by position.

Output activations (configs: hyperparameters.output_activation):

    "hard_sigmoid"         Keras 3's definition, relu6(x + 3) / 6 = clip(x/6 + 0.5, 0, 1),
                           identical to torch.nn.functional.hardsigmoid.
    "hard_sigmoid_keras2"  The book's Keras 2.2.4 definition, clip(0.2x + 0.5, 0, 1).
                           Keras 3 silently re-interprets an old .h5's
                           "hard_sigmoid" with the new formula (docs/differences.md row 1), so a
                           faithful import of a book model needs this one.  It
                           is a registered serialisable function, so a .keras
                           file that uses it loads again once this module is
                           imported.
    "sigmoid"              For experiments beyond the book.
"""

from __future__ import annotations

from typing import Mapping

import keras
import numpy as np

from configs.loader import OUTPUT_ACTIVATIONS
from data.dataset import COLUMNS
from experiment.weights import BATCHNORM_FIELDS, check_weights

# [docs:keras-batchnorm]
# The Keras 3 BatchNormalization defaults, written out because the torch side
# must use different numbers for the same behaviour: Keras momentum 0.99 means
# moving = 0.99 * moving + 0.01 * batch, which is torch momentum 0.01; Keras
# epsilon is 1e-3, torch's default is 1e-5.
BATCHNORM_MOMENTUM = 0.99
BATCHNORM_EPSILON = 1e-3
# [/docs:keras-batchnorm]

OUTPUT_LAYER_NAME = "output"
REGISTERED_PACKAGE = "streetcar"


# [docs:keras-hard-sigmoid-keras2]
@keras.saving.register_keras_serializable(package=REGISTERED_PACKAGE, name="hard_sigmoid_keras2")
def hard_sigmoid_keras2(x):
    """Keras 2's hard sigmoid: clip(0.2 * x + 0.5, 0, 1) (reaches 0 at x = -2.5, 1 at x = 2.5).

    Keras 3's keras.activations.hard_sigmoid is relu6(x + 3) / 6 instead
    (reaches 0 at x = -3, 1 at x = 3).
    """
    return keras.ops.clip(0.2 * x + 0.5, 0.0, 1.0)
# [/docs:keras-hard-sigmoid-keras2]


# The Keras callable of each name in configs.loader.OUTPUT_ACTIVATIONS (the one list of valid names).
ACTIVATION_FUNCTIONS = {
    "hard_sigmoid": keras.activations.hard_sigmoid,
    "hard_sigmoid_keras2": hard_sigmoid_keras2,
    "sigmoid": keras.activations.sigmoid,
}


def resolve_output_activation(name: str):
    """Activation name from the config -> the Keras callable."""
    if name not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"unknown output_activation {name!r}; valid: {', '.join(OUTPUT_ACTIVATIONS)}")
    return ACTIVATION_FUNCTIONS[name]


# [docs:keras-column-branch]
def build_column_branch(column: str, vocab_size: int, embedding_dim: int, dropout_rate: float):
    """One column's Input and its Embedding -> BatchNorm -> Flatten -> Dropout output."""
    column_input = keras.Input(shape=(1,), name=column, dtype="int32")
    embedded = keras.layers.Embedding(vocab_size, embedding_dim, name=f"embedding_{column}")(column_input)
    normalised = keras.layers.BatchNormalization(momentum=BATCHNORM_MOMENTUM, epsilon=BATCHNORM_EPSILON,
                                                 name=f"batchnorm_{column}")(embedded)
    flattened = keras.layers.Flatten(name=f"flatten_{column}")(normalised)
    dropped = keras.layers.Dropout(dropout_rate, name=f"dropout_{column}")(flattened)
    return column_input, dropped
# [/docs:keras-column-branch]


def build_model(vocab_sizes: Mapping[str, int], *, embedding_dim: int = 10, dropout_rate: float = 0.0003,
                output_activation: str = "hard_sigmoid") -> keras.Model:
    """The book's model with one named input per column of data.COLUMNS."""
    missing = [column for column in COLUMNS if column not in vocab_sizes]
    if missing:
        raise ValueError(f"vocab_sizes lacks column(s) {', '.join(missing)}; needs {', '.join(COLUMNS)}")
    bad_sizes = {column: vocab_sizes[column] for column in COLUMNS if int(vocab_sizes[column]) < 1}
    if bad_sizes:
        raise ValueError(f"vocabulary sizes must be >= 1, got {bad_sizes}")
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}")
    activation = resolve_output_activation(output_activation)

    # [docs:keras-assemble]
    inputs, branches = [], []
    for column in COLUMNS:
        column_input, branch = build_column_branch(column, int(vocab_sizes[column]), embedding_dim, dropout_rate)
        inputs.append(column_input)
        branches.append(branch)
    merged = keras.layers.Concatenate(name="concatenate")(branches)
    output = keras.layers.Dense(1, activation=activation, name=OUTPUT_LAYER_NAME)(merged)
    # A list in COLUMNS order (a dict would be flattened in sorted-key order);
    # Keras still matches a dict of arrays to the inputs by name when fed.
    return keras.Model(inputs=inputs, outputs=output, name="streetcar_delay")
    # [/docs:keras-assemble]


def compile_model(model: keras.Model, learning_rate: float, *, steps_per_execution: int = 1,
                  jit_compile: bool | str = "auto") -> keras.Model:
    """SGD without momentum + binary cross-entropy, with the book's metrics.

    History keys: loss, accuracy, recall, weighted_accuracy and their val_*.
    `accuracy` and `recall` ignore sample/class weights (Keras's `metrics`);
    `weighted_accuracy` is the book's weighted accuracy (Keras's
    `weighted_metrics`: each row counts with its class weight).  Validation
    batches carry no weights, so val_weighted_accuracy equals val_accuracy.
    Both metrics count p > 0.5 as "delay", as torchmetrics does.
    steps_per_execution and jit_compile are Keras's own compile options (the
    config's `keras` section; defaults as Keras's).  The first changes how the
    train function is called, not what it computes; XLA rounds differently
    (docs/differences.md row 38).
    """
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    # [docs:keras-compile]
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.0),
        loss="binary_crossentropy",
        metrics=["accuracy", keras.metrics.Recall(name="recall")],
        weighted_metrics=[keras.metrics.BinaryAccuracy(name="weighted_accuracy")],
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
    )
    # [/docs:keras-compile]
    return model


def model_vocab_sizes(model: keras.Model) -> dict[str, int]:
    """column -> vocabulary size, read from the model's embedding layers."""
    return {column: int(model.get_layer(f"embedding_{column}").input_dim) for column in COLUMNS}


def model_embedding_dim(model: keras.Model) -> int:
    return int(model.get_layer(f"embedding_{COLUMNS[0]}").output_dim)


def canonical_variables(model: keras.Model) -> dict[str, "keras.Variable"]:
    """Canonical weight name (experiment.weights) -> the model's Keras variable."""
    try:
        variables = {}
        for column in COLUMNS:
            variables[f"embedding.{column}"] = model.get_layer(f"embedding_{column}").embeddings
            batchnorm = model.get_layer(f"batchnorm_{column}")
            for field in BATCHNORM_FIELDS:
                variables[f"batchnorm.{column}.{field}"] = getattr(batchnorm, field)
        output = model.get_layer(OUTPUT_LAYER_NAME)
        variables["output.kernel"] = output.kernel
        variables["output.bias"] = output.bias
    except ValueError as error:  # get_layer: "No such layer"
        raise ValueError(f"model {model.name!r} is not this project's streetcar model: {error}") from None
    return variables


def get_canonical_weights(model: keras.Model) -> dict[str, np.ndarray]:
    """The model's weights as {canonical name: array} in Keras layouts, in the model's float type."""
    # variable.numpy(): keras.ops.convert_to_numpy(variable) goes through
    # np.array(copy=False) and trips a NumPy 2 DeprecationWarning in keras 3.15.
    return {name: np.array(variable.numpy())
            for name, variable in canonical_variables(model).items()}


def set_canonical_weights(model: keras.Model, weights: Mapping[str, np.ndarray],
                          source: str = "weights") -> keras.Model:
    """Copy canonical weights into the model, by name, after checking every key and shape."""
    check_weights(weights, model_vocab_sizes(model), model_embedding_dim(model), source=source)
    for name, variable in canonical_variables(model).items():
        variable.assign(np.asarray(weights[name], dtype=variable.dtype))
    return model


def parameter_counts(model: keras.Model) -> dict[str, int]:
    """total / trainable / non_trainable, as model.summary() prints them."""
    trainable = int(sum(np.prod(variable.shape) for variable in model.trainable_weights))
    non_trainable = int(sum(np.prod(variable.shape) for variable in model.non_trainable_weights))
    return {"total": trainable + non_trainable, "trainable": trainable, "non_trainable": non_trainable}
