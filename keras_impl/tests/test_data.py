"""keras_impl.data: named inputs, class weights and the shared batch order as fit() consumes it.

    pytest keras_impl/tests/test_data.py
"""

from __future__ import annotations

import numpy as np
import pytest

import keras_impl  # noqa: F401
import keras

from data.batches import batch_slices, epoch_permutation
from data.dataset import COLUMNS
from keras_impl.data import (
    batches_per_epoch,
    build_fit_arguments,
    build_shared_order_stream,
    class_sample_weights,
    named_inputs,
)
from keras_impl.tests.helpers import make_synthetic_dataset

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")



def shared_order_batches(n_rows, batch_size, seed, epoch):
    """The oracle: each batch's rows of one epoch of the shared order (data.batches' recipe)."""
    order = epoch_permutation(n_rows, seed, epoch)
    return [order[batch] for batch in batch_slices(n_rows, batch_size)]

def test_named_inputs_are_int32_columns():
    features = np.arange(21, dtype=np.int64).reshape(3, 7)
    inputs = named_inputs(features)
    assert list(inputs) == list(COLUMNS)
    assert inputs["hour"].dtype == np.int32 and inputs["hour"].shape == (3, 1)
    np.testing.assert_array_equal(inputs["Direction"].ravel(), [5, 12, 19])
    with pytest.raises(ValueError, match=r"shape \(n, 7\)"):
        named_inputs(np.zeros((3, 6)))


def test_class_sample_weights_is_keras_class_weight():
    weights = class_sample_weights(np.array([0, 1, 1, 0, 1], dtype=np.uint8), {0: 1.0, 1: 44.5})
    assert weights.dtype == np.float32
    np.testing.assert_array_equal(weights, [1.0, 44.5, 44.5, 1.0, 44.5])
    with pytest.raises(ValueError, match=r"no weight for class\(es\) \[1\]"):
        class_sample_weights(np.array([0, 1]), {0: 1.0})


def test_batches_per_epoch_keeps_the_short_last_batch():
    assert batches_per_epoch(2500, 1000) == 3
    assert batches_per_epoch(2000, 1000) == 2
    with pytest.raises(ValueError, match="empty"):
        batches_per_epoch(0, 1000)


def test_shared_stream_is_epoch_permutation_in_consecutive_batches():
    n_rows, batch_size, seed = 23, 5, 42
    features = np.repeat(np.arange(n_rows, dtype=np.int64)[:, None], 7, axis=1)   # every column = row id
    target = (np.arange(n_rows) % 3 == 0).astype(np.float32)
    weights = class_sample_weights(target, {0: 1.0, 1: 4.0})
    stream = build_shared_order_stream(features, target, weights, batch_size=batch_size, seed=seed,
                                       epochs=3, first_epoch=1)
    got = [(inputs, y.numpy(), w.numpy()) for inputs, y, w in stream]
    expected = [rows for epoch in (1, 2) for rows in shared_order_batches(n_rows, batch_size, seed, epoch)]
    assert len(got) == len(expected) == 2 * 5
    assert [len(rows) for rows in expected[:5]] == [5, 5, 5, 5, 3]
    for (inputs, y, w), rows in zip(got, expected):
        for column in COLUMNS:
            assert inputs[column].shape == (len(rows), 1)
            np.testing.assert_array_equal(inputs[column].numpy().ravel(), rows)
        np.testing.assert_array_equal(y, target[rows])
        np.testing.assert_array_equal(w, weights[rows])


class RecordingModel(keras.Model):
    """Records the targets of every training batch it is given (run eagerly), learns nothing."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)
        self.seen: list[np.ndarray] = []

    def call(self, inputs):
        return self.dense(keras.ops.cast(inputs["hour"], "float32"))

    def train_step(self, data):
        _, y, _ = data
        self.seen.append(np.asarray(y))
        return {"loss": keras.ops.convert_to_tensor(0.0)}


def test_fit_consumes_the_shared_order_epoch_by_epoch():
    # The targets carry the row ids, so the recorded batches show the order fit() trained in.
    n_rows, batch_size, seed, epochs = 17, 4, 7, 3
    features = np.zeros((n_rows, 7), dtype=np.int64)
    target = np.arange(n_rows, dtype=np.float32)
    stream = build_shared_order_stream(features, target, np.ones(n_rows, np.float32), batch_size=batch_size,
                                       seed=seed, epochs=epochs)
    model = RecordingModel()
    model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
    model.fit(stream, epochs=epochs, steps_per_epoch=batches_per_epoch(n_rows, batch_size), shuffle=False, verbose=0)
    expected = [rows for epoch in range(epochs) for rows in shared_order_batches(n_rows, batch_size, seed, epoch)]
    assert len(model.seen) == len(expected) == epochs * 5
    for seen, rows in zip(model.seen, expected):
        np.testing.assert_array_equal(seen.astype(np.int64), rows)


def test_build_fit_arguments_for_both_orders():
    dataset = make_synthetic_dataset(1000)
    class_weight = {0: 1.0, 1: 9.0}
    shared = build_fit_arguments(dataset, batch_size=100, seed=1, epochs=2, class_weight=class_weight)
    assert shared["steps_per_epoch"] == 6 and shared["shuffle"] is False and "class_weight" not in shared
    assert shared["validation_batch_size"] == 100 and shared["epochs"] == 2
    validation_inputs, validation_target = shared["validation_data"]
    assert validation_target.shape == (200,) and validation_inputs["day"].shape == (200, 1)
    framework = build_fit_arguments(dataset, batch_size=100, seed=1, epochs=2, class_weight=class_weight,
                                    batch_order="framework")
    assert framework["shuffle"] is True and framework["class_weight"] == class_weight
    assert framework["x"]["hour"].shape == (600, 1) and framework["batch_size"] == 100
    with pytest.raises(ValueError, match="batch_order 'random'; valid: shared, framework"):
        build_fit_arguments(dataset, batch_size=100, seed=1, epochs=2, class_weight=class_weight,
                            batch_order="random")


def test_shared_weights_give_keras_class_weight_loss():
    # Keras 3: batch loss = sum(w_i * l_i) / N.  The shared stream's sample weights
    # must give exactly the loss that fit(class_weight=...) gives on the same batch.
    from keras_impl.model import build_model, compile_model
    from data.vocab import BOOK_VOCABULARIES

    dataset = make_synthetic_dataset(400, seed=3)
    features, target = dataset.split_arrays("train")
    inputs = named_inputs(features)
    class_weight = {0: 1.0, 1: 7.5}
    keras.utils.set_random_seed(0)
    model = compile_model(build_model(BOOK_VOCABULARIES.sizes(), dropout_rate=0.0), 0.001)
    probabilities = np.asarray(model(inputs, training=False)).reshape(-1).astype(np.float64)
    clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)
    per_row = -(target * np.log(clipped) + (1 - target) * np.log(1 - clipped))
    weights = class_sample_weights(target, class_weight)
    expected = float(np.sum(weights * per_row) / len(per_row))
    evaluated = model.evaluate(inputs, target.astype(np.float32), sample_weight=weights,
                               batch_size=len(per_row), verbose=0, return_dict=True)
    assert evaluated["loss"] == pytest.approx(expected, rel=1e-5)
