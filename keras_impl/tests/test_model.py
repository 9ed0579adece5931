"""keras_impl.model: structure, parameter counts, activations, canonical weights, save/load.

    pytest keras_impl/tests/test_model.py
"""

from __future__ import annotations

import numpy as np
import pytest

import keras_impl  # noqa: F401
import keras

from configs.loader import OUTPUT_ACTIVATIONS
from data.dataset import COLUMNS
from data.vocab import BOOK_VOCABULARIES
from experiment.weights import expected_shapes
from experiment.weights import parameter_counts as canonical_parameter_counts
from keras_impl.model import (
    ACTIVATION_FUNCTIONS,
    build_model,
    compile_model,
    get_canonical_weights,
    hard_sigmoid_keras2,
    model_vocab_sizes,
    parameter_counts,
    set_canonical_weights,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

BOOK_SIZES = BOOK_VOCABULARIES.sizes()
ACTIVATION_POINTS = np.array([-3.0, -2.5, 0.0, 1.0, 2.5, 3.0], dtype=np.float32)


@pytest.fixture(scope="module")
def book_model():
    return compile_model(build_model(BOOK_SIZES), learning_rate=0.001)


def random_canonical_weights(seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = {name: rng.normal(size=shape).astype(np.float32) for name, shape in expected_shapes(BOOK_SIZES).items()}
    for name in weights:
        if name.endswith("moving_variance"):
            weights[name] = np.abs(weights[name]) + 0.5
    return weights


def test_parameter_counts_match_the_book(book_model):
    # Keras's model.summary(): Total 1,341 / Trainable 1,201 / Non-trainable 140 on the real vocabularies.
    assert parameter_counts(book_model) == {"total": 1341, "trainable": 1201, "non_trainable": 140}
    assert book_model.count_params() == 1341
    assert parameter_counts(book_model) == canonical_parameter_counts(BOOK_SIZES)


def test_summary_prints_the_book_counts(book_model):
    lines = []
    book_model.summary(print_fn=lambda line, **_: lines.append(line))
    text = "\n".join(lines)
    assert "Total params: 1,341" in text
    assert "Trainable params: 1,201" in text
    assert "Non-trainable params: 140" in text


def test_inputs_and_layers_are_named_by_column(book_model):
    assert [tensor.name for tensor in book_model.inputs] == list(COLUMNS)
    assert all(tensor.dtype == "int32" and tuple(tensor.shape) == (None, 1) for tensor in book_model.inputs)
    names = {layer.name for layer in book_model.layers}
    for column in COLUMNS:
        for prefix in ("embedding", "batchnorm", "flatten", "dropout"):
            assert f"{prefix}_{column}" in names
    assert {"concatenate", "output"} <= names
    assert model_vocab_sizes(book_model) == BOOK_SIZES
    for column in COLUMNS:
        embedding = book_model.get_layer(f"embedding_{column}")
        assert (embedding.input_dim, embedding.output_dim) == (BOOK_SIZES[column], 10)
        batchnorm = book_model.get_layer(f"batchnorm_{column}")
        assert (batchnorm.momentum, batchnorm.epsilon) == (0.99, 1e-3)
        assert book_model.get_layer(f"dropout_{column}").rate == pytest.approx(0.0003)
    output = book_model.get_layer("output")
    assert output.units == 1 and output.kernel.shape == (70, 1)
    assert output.activation is keras.activations.hard_sigmoid


def test_concatenation_follows_columns_order(book_model):
    concatenate = book_model.get_layer("concatenate")
    inbound = [tensor._keras_history.operation.name for tensor in concatenate._inbound_nodes[0].input_tensors]
    assert inbound == [f"dropout_{column}" for column in COLUMNS]


def test_compile_gives_the_book_metrics():
    model = compile_model(build_model(BOOK_SIZES), learning_rate=0.01)
    rng = np.random.default_rng(0)
    x = {column: rng.integers(0, BOOK_SIZES[column], (40, 1)) for column in COLUMNS}
    y = (rng.random(40) < 0.3).astype(np.float32)
    history = model.fit(x, y, validation_data=(x, y), batch_size=20, epochs=1, verbose=0, class_weight={0: 1.0, 1: 3.0})
    assert sorted(history.history) == sorted(["loss", "accuracy", "recall", "weighted_accuracy",
                                              "val_loss", "val_accuracy", "val_recall", "val_weighted_accuracy"])
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert float(optimizer.learning_rate) == pytest.approx(0.01) and optimizer.momentum == 0.0


@pytest.mark.parametrize("name, expected", [
    ("hard_sigmoid", [0.0, 0.5 - 2.5 / 6, 0.5, 0.5 + 1 / 6, 0.5 + 2.5 / 6, 1.0]),   # Keras 3: relu6(x+3)/6
    ("hard_sigmoid_keras2", [0.0, 0.0, 0.5, 0.7, 1.0, 1.0]),                       # Keras 2: clip(0.2x+0.5)
])
def test_hard_sigmoid_variants(name, expected):
    values = keras.ops.convert_to_numpy(ACTIVATION_FUNCTIONS[name](ACTIVATION_POINTS))
    np.testing.assert_allclose(values, expected, atol=1e-6)


def test_every_configured_activation_has_a_keras_function():
    assert tuple(ACTIVATION_FUNCTIONS) == OUTPUT_ACTIVATIONS == ("hard_sigmoid", "hard_sigmoid_keras2", "sigmoid")


def test_sigmoid_activation_and_unknown_name():
    values = keras.ops.convert_to_numpy(ACTIVATION_FUNCTIONS["sigmoid"](ACTIVATION_POINTS))
    np.testing.assert_allclose(values, 1 / (1 + np.exp(-ACTIVATION_POINTS)), rtol=1e-6)
    with pytest.raises(ValueError, match="unknown output_activation 'relu'; valid: hard_sigmoid"):
        build_model(BOOK_SIZES, output_activation="relu")


def test_build_model_rejects_bad_arguments():
    sizes = dict(BOOK_SIZES)
    del sizes["year"]
    with pytest.raises(ValueError, match="lacks column\\(s\\) year"):
        build_model(sizes)
    with pytest.raises(ValueError, match="dropout_rate"):
        build_model(BOOK_SIZES, dropout_rate=1.0)


def test_canonical_weights_round_trip():
    weights = random_canonical_weights()
    model = build_model(BOOK_SIZES)
    set_canonical_weights(model, weights)
    exported = get_canonical_weights(model)
    assert sorted(exported) == sorted(expected_shapes(BOOK_SIZES))
    for name, value in weights.items():
        assert exported[name].dtype == np.float32
        np.testing.assert_array_equal(exported[name], value)
    # By name: the kernel rows of 'Route' are the Dense kernel's rows 10..19.
    np.testing.assert_array_equal(model.get_layer("output").kernel.numpy()[10:20], weights["output.kernel"][10:20])
    np.testing.assert_array_equal(model.get_layer("embedding_Direction").embeddings.numpy(),
                                  weights["embedding.Direction"])
    np.testing.assert_array_equal(model.get_layer("batchnorm_day").moving_variance.numpy(),
                                  weights["batchnorm.day.moving_variance"])


def test_set_canonical_weights_checks_before_copying():
    model = build_model(BOOK_SIZES)
    before = get_canonical_weights(model)
    weights = random_canonical_weights()
    weights["embedding.Route"] = np.zeros((15, 10), dtype=np.float32)
    del weights["output.bias"]
    with pytest.raises(ValueError) as raised:
        set_canonical_weights(model, weights)
    message = str(raised.value)
    assert "missing output.bias" in message
    assert "embedding.Route: weights has shape (15, 10), the model expects (14, 10)" in message
    after = get_canonical_weights(model)
    assert all(np.array_equal(before[name], after[name]) for name in before)  # nothing half-copied


def test_model_inference_matches_a_numpy_reference():
    weights = random_canonical_weights(seed=3)
    model = set_canonical_weights(build_model(BOOK_SIZES, output_activation="hard_sigmoid_keras2"), weights)
    rng = np.random.default_rng(5)
    features = np.stack([rng.integers(0, BOOK_SIZES[c], 50) for c in COLUMNS], axis=1)
    blocks = []
    for j, column in enumerate(COLUMNS):
        embedded = weights[f"embedding.{column}"][features[:, j]]
        normalised = (embedded - weights[f"batchnorm.{column}.moving_mean"]) / np.sqrt(
            weights[f"batchnorm.{column}.moving_variance"] + 1e-3)
        blocks.append(normalised * weights[f"batchnorm.{column}.gamma"] + weights[f"batchnorm.{column}.beta"])
    logits = np.concatenate(blocks, axis=1) @ weights["output.kernel"] + weights["output.bias"]
    expected = np.clip(0.2 * logits + 0.5, 0, 1).reshape(-1)
    inputs = {column: features[:, j:j + 1] for j, column in enumerate(COLUMNS)}
    got = np.asarray(model(inputs, training=False)).reshape(-1)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("activation", ["hard_sigmoid", "hard_sigmoid_keras2"])
def test_save_load_gives_identical_predictions(tmp_path, activation):
    model = compile_model(build_model(BOOK_SIZES, output_activation=activation), 0.001)
    set_canonical_weights(model, random_canonical_weights(seed=7))
    rng = np.random.default_rng(9)
    inputs = {column: rng.integers(0, BOOK_SIZES[column], (300, 1)) for column in COLUMNS}

    def predictions(any_model) -> np.ndarray:
        return np.asarray(any_model(inputs, training=False))

    before = predictions(model)
    assert 0.0 < before.mean() < 1.0
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(predictions(loaded), before)
    assert isinstance(loaded.optimizer, keras.optimizers.SGD)
    if activation == "hard_sigmoid_keras2":
        assert loaded.get_layer("output").activation is hard_sigmoid_keras2
    weights_path = tmp_path / "model.weights.h5"
    model.save_weights(weights_path)
    fresh = build_model(BOOK_SIZES, output_activation=activation)
    fresh.load_weights(weights_path)
    np.testing.assert_array_equal(predictions(fresh), before)
    from_json = keras.models.model_from_json(model.to_json())
    from_json.load_weights(weights_path)
    np.testing.assert_array_equal(predictions(from_json), before)
