"""Feeding the prepared dataset to Keras: named inputs, class weights, batch order.

    from keras_impl.data import build_fit_arguments
    arguments = build_fit_arguments(dataset, batch_size=1000, seed=42, epochs=50,
                                    class_weight={0: 1.0, 1: 44.6}, batch_order="shared")
    model.fit(**arguments, callbacks=[...])

The model takes one named input per column, so every split is fed as
{column: (n, 1) int32 array} (int32: every vocabulary is tiny, and it halves
the bytes moved per batch compared with the dataset's int64).

Two batch orders (config general.batch_order):

"framework"  Keras's own: fit(x, y, shuffle=True, class_weight=...).  Keras
             reshuffles with TensorFlow's RNG every epoch; torch's
             RandomSampler uses another generator, so the two frameworks see
             different batches.

"shared"     Epoch e visits the training rows in the order
             data.batches.epoch_permutation(n_train, seed, e), cut into
             consecutive batch_size chunks (the last, shorter batch kept) -
             the order lightning_impl uses too, so both frameworks see the same
             batches.  It is fed as one tf.data stream covering every epoch,
             `range(first_epoch, epochs).flat_map(that epoch's batches)`, with
             fit(steps_per_epoch=ceil(n_train / batch_size), shuffle=False):
             batch k of the stream belongs to epoch first_epoch + k // steps by
             construction.

             Why not a keras.utils.PyDataset whose on_epoch_end advances an
             epoch counter: measured with keras 3.15, fit() calls the
             dataset's on_epoch_end once *before* the first epoch (the epoch
             iterator's reset()), and it probes the first batches to learn the
             tensor specs, so a counter would be off by one and the order would
             depend on hook timing.  The stream has no hooks to get wrong, and
             it runs inside tf.data (gathers in C++ threads, prefetched), so an
             epoch costs about what Keras's own numpy-array fit costs (the
             epoch timings are in docs/benchmarks.md).

             The stream yields the weights itself (Keras refuses class_weight
             next to per-row sample weights): class_weight[target] per row,
             which is exactly what Keras does with class_weight internally.
             The batch loss is then sum_i(w_i * l_i) / N, divided by the batch
             size N and not by sum(w_i).  (torch's binary_cross_entropy(weight=w)
             with reduction "mean" also divides by N; CrossEntropyLoss with
             class weights would divide by sum(w_i).)

Validation is fed in stored order at the same batch size, unweighted, in both
modes.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from configs.loader import BATCH_ORDERS
from data.dataset import COLUMNS, PreparedDataset
from keras_impl.precision import current_float_type

# Batches the shared stream prepares ahead of the training step.
PREFETCH_BATCHES = 8


def named_inputs(features: np.ndarray) -> dict[str, np.ndarray]:
    """(n, 7) encoded features -> {column: (n, 1) int32}, the form the model's named inputs take."""
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[1] != len(COLUMNS):
        raise ValueError(f"features must have shape (n, {len(COLUMNS)}) in COLUMNS order, got {features.shape}")
    as_int32 = features.astype(np.int32)
    return {column: np.ascontiguousarray(as_int32[:, j:j + 1]) for j, column in enumerate(COLUMNS)}


def split_inputs(dataset: PreparedDataset, split: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One split as (named inputs, (n,) target in Keras's float type: float32 unless --precision 64)."""
    features, target = dataset.split_arrays(split)
    return named_inputs(features), np.asarray(target, dtype=current_float_type())


# [docs:keras-sample-weights]
def class_sample_weights(target: np.ndarray, class_weight: Mapping[int, float]) -> np.ndarray:
    """Per-row weights class_weight[target] in Keras's float type (Keras's class_weight -> sample_weight)."""
    target = np.asarray(target).reshape(-1)
    classes = set(np.unique(target).astype(int).tolist())
    missing = sorted(classes - set(int(key) for key in class_weight))
    if missing:
        raise ValueError(f"class_weight has no weight for class(es) {missing}; got {dict(class_weight)}")
    lookup = np.zeros(max(max(classes, default=0), max(class_weight)) + 1, dtype=current_float_type())
    for label, weight in class_weight.items():
        lookup[int(label)] = float(weight)
    return lookup[target.astype(np.int64)]
# [/docs:keras-sample-weights]


def batches_per_epoch(n_rows: int, batch_size: int) -> int:
    """ceil(n_rows / batch_size): the last, shorter batch counts (Keras and the shared order keep it)."""
    if n_rows < 1:
        raise ValueError("the training split is empty")
    return -(-int(n_rows) // int(batch_size))


def check_steps_per_execution(n_rows: int, batch_size: int, steps_per_execution: int, batch_order: str) -> None:
    """ValueError unless Keras can run `steps_per_execution` batches per call without moving the epochs' edges.

    Measured with keras 3.15: given steps_per_epoch (the shared stream), fit
    runs ceil(steps / K) calls of K batches an epoch, so when K does not divide
    the epoch's batches it takes the next epoch's first batches and every
    epoch's validation, checkpoint and early-stopping decision moves.  With
    Keras's own order (arrays, no steps_per_epoch) the last call of an epoch
    is shorter and nothing moves (keras_impl/tests/test_execution_options.py).
    """
    if steps_per_execution == 1 or batch_order != "shared":
        return
    batches = batches_per_epoch(n_rows, batch_size)
    if batches % steps_per_execution:
        divisors = [k for k in range(1, batches + 1) if batches % k == 0]
        shown = ", ".join(f"{k:,}" for k in divisors[:12]) + (", ..." if len(divisors) > 12 else "")
        raise ValueError(
            f"keras.steps_per_execution = {steps_per_execution} does not divide the {batches:,} batches of an "
            f"epoch: with the shared batch order Keras would take the next epoch's first batches into this one; "
            f"use a divisor ({shown}) or general.batch_order: framework")


def build_shared_order_stream(features: np.ndarray, target: np.ndarray, sample_weight: np.ndarray, *,
                              batch_size: int, seed: int, epochs: int, first_epoch: int = 0):
    """tf.data stream of (inputs, target, sample_weight) batches for epochs first_epoch..epochs-1.

    Epoch e's batches are epoch_permutation(n, seed, e) cut into consecutive
    batch_size chunks.  The permutation is computed in NumPy (the shared,
    framework-neutral generator) once per epoch, when the stream reaches it.
    """
    import tensorflow as tf

    from data.batches import epoch_permutation

    n_rows = int(np.shape(features)[0])
    if not 0 <= first_epoch < epochs:
        raise ValueError(f"first_epoch must be in [0, {epochs}), got {first_epoch}")
    feature_table = tf.constant(np.asarray(features, dtype=np.int32))
    target_table = tf.constant(np.asarray(target, dtype=current_float_type()))
    weight_table = tf.constant(np.asarray(sample_weight, dtype=current_float_type()))

    def permutation_of(epoch: np.int64) -> np.ndarray:
        return epoch_permutation(n_rows, int(seed), int(epoch)).astype(np.int64)

    def batches_of_epoch(epoch):
        order = tf.numpy_function(permutation_of, [epoch], tf.int64, stateful=False)
        order.set_shape([n_rows])
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    def gather_batch(rows):
        batch_features = tf.gather(feature_table, rows)
        inputs = {column: batch_features[:, j:j + 1] for j, column in enumerate(COLUMNS)}
        return inputs, tf.gather(target_table, rows), tf.gather(weight_table, rows)

    return (tf.data.Dataset.range(first_epoch, epochs)
            .flat_map(batches_of_epoch)
            .map(gather_batch)
            .prefetch(PREFETCH_BATCHES))


def build_fit_arguments(dataset: PreparedDataset, *, batch_size: int, seed: int, epochs: int,
                        class_weight: Mapping[int, float], batch_order: str = "shared",
                        first_epoch: int = 0) -> dict[str, Any]:
    """Keyword arguments for model.fit: training data, order, weights and validation data."""
    if batch_order not in BATCH_ORDERS:
        raise ValueError(f"batch_order {batch_order!r}; valid: {', '.join(BATCH_ORDERS)}")
    train_features, train_target = dataset.split_arrays("train")
    validation_inputs, validation_target = split_inputs(dataset, "valid")
    if validation_target.shape[0] == 0:
        raise ValueError("the validation split is empty; use more --sample-rows")
    # [docs:keras-validation-data]
    common = {
        "epochs": int(epochs),
        "initial_epoch": int(first_epoch),
        "validation_data": (validation_inputs, validation_target),
        "validation_batch_size": int(batch_size),
    }
    # [/docs:keras-validation-data]
    # [docs:keras-class-weight-fit]
    if batch_order == "framework":
        return {**common, "x": named_inputs(train_features), "y": np.asarray(train_target, dtype=current_float_type()),
                "batch_size": int(batch_size), "shuffle": True,
                "class_weight": {int(k): float(v) for k, v in class_weight.items()}}
    # [/docs:keras-class-weight-fit]
    stream = build_shared_order_stream(
        train_features, train_target, class_sample_weights(train_target, class_weight),
        batch_size=int(batch_size), seed=int(seed), epochs=int(epochs), first_epoch=int(first_epoch))
    return {**common, "x": stream, "shuffle": False,
            "steps_per_epoch": batches_per_epoch(train_features.shape[0], batch_size)}
