"""Keras and Lightning trained in lockstep, one update at a time, from the same weights on the same batches.

The divergence study (`python -m parity_tests.divergence`) needs what a
fit() cannot give: both frameworks' logits for the *same* batch at the *same*
update, so that it can count the rows that sit on different sides of the
output activation's kink.  So this module drives the two models itself:

* Keras: the keras_impl model, compiled as keras_impl compiles it, trained
  with `train_on_batch` (the train function fit runs, so the same update);
  the metrics are reset before each call, so the returned loss is that
  batch's loss and not the running mean fit prints.
* Lightning: the lightning_impl network with an SGD optimiser; each update
  is what Lightning's automatic optimisation does for the module's
  training_step: zero_grad, the Keras-compatible loss, backward, step.

Before each update both frameworks' training-mode logits of the batch are
computed (BatchNorm on the batch's statistics, as the update itself sees
them).  In torch that forward *is* the update's forward (backward and step
follow it).  Keras's train function runs its own forward, so the extra
Keras forward would move the BatchNorm moving statistics a second time:
they are saved before it and put back after it, inside one tf.function.

Dropout is 0 here: with any dropout the two frameworks draw different masks
and the runs are not comparable update by update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from data import COLUMNS
from data.batches import batch_slices, epoch_permutation
from keras_impl.precision import FLOAT_TYPES, keras_float_type

# Where each output activation stops passing a gradient: |logit| >= kink.
ACTIVATION_KINKS = {"hard_sigmoid": 3.0, "hard_sigmoid_keras2": 2.5, "sigmoid": None}


@dataclass
class Setting:
    """One cell of the study: an output activation at a precision, and what the run used."""

    activation: str
    precision: int
    learning_rate: float
    batch_size: int
    class_weight: Mapping[int, float]
    seed: int

    @property
    def name(self) -> str:
        return f"{self.activation}-float{self.precision}"


class KerasSide:
    """The keras_impl model: its training-mode logits and loss for a batch, and one training update."""

    def __init__(self, setting: Setting, vocab_sizes: Mapping[str, int], weights: Mapping[str, np.ndarray]):
        import keras
        import tensorflow as tf

        from keras_impl.model import OUTPUT_LAYER_NAME, build_model, compile_model, set_canonical_weights

        self.dtype = FLOAT_TYPES[setting.precision]
        self.model = compile_model(build_model(vocab_sizes, dropout_rate=0.0, output_activation=setting.activation),
                                   setting.learning_rate)
        built = {variable.dtype for variable in self.model.weights}
        if built != {self.dtype}:
            raise RuntimeError(f"the Keras model was built in {sorted(built)}, not {self.dtype}")
        set_canonical_weights(self.model, {name: value.astype(self.dtype) for name, value in weights.items()})
        self.model.make_train_function()
        moving = [variable for variable in self.model.non_trainable_variables if "moving" in variable.path]
        dense = self.model.get_layer(OUTPUT_LAYER_NAME)
        # One forward that also yields the Dense layer's input (the 70 concatenated BatchNorm outputs);
        # the logit is the layer's affine map, by the same matmul + bias the layer runs.
        both = keras.Model(self.model.inputs, [dense.input, self.model.output])

        @tf.function
        def logits_and_loss(inputs, target, weight):
            saved = [tf.identity(variable.value) for variable in moving]
            merged, probabilities = both(inputs, training=True)
            loss = self.model.compute_loss(x=inputs, y=target, y_pred=probabilities, sample_weight=weight,
                                           training=True)
            for variable, value in zip(moving, saved):
                variable.assign(value)
            logits = tf.reshape(tf.matmul(merged, dense.kernel) + dense.bias, [-1])
            return logits, loss, tf.reduce_sum(merged * merged, axis=1)

        self._logits_and_loss = logits_and_loss

    @staticmethod
    def inputs(features: np.ndarray) -> dict[str, np.ndarray]:
        return {column: features[:, j:j + 1].astype(np.int32) for j, column in enumerate(COLUMNS)}

    def logits_and_loss(self, features: np.ndarray, target: np.ndarray,
                        sample_weight: np.ndarray) -> tuple[np.ndarray, float]:
        """The batch's training-mode logits and the loss the update will see; moving statistics untouched."""
        logits, loss, squared_norms = self._logits_and_loss(
            self.inputs(features), target.reshape(-1, 1).astype(self.dtype), sample_weight.astype(self.dtype))
        self.last_squared_norms = squared_norms.numpy().astype(np.float64)   # |Dense input|^2 per row
        return logits.numpy().astype(np.float64), float(loss)

    def update(self, features: np.ndarray, target: np.ndarray, sample_weight: np.ndarray) -> None:
        """The train function fit and train_on_batch run, on this one batch."""
        batch = (self.inputs(features), target.reshape(-1, 1).astype(self.dtype), sample_weight.astype(self.dtype))
        self.model.train_function(iter([batch]))

    def evaluate(self, features: np.ndarray, target: np.ndarray, batch_size: int) -> tuple[float, float]:
        logs = self.model.evaluate(self.inputs(features), target.reshape(-1, 1).astype(self.dtype),
                                   batch_size=batch_size, verbose=0, return_dict=True)
        return float(logs["loss"]), float(logs["accuracy"])


class LightningSide:
    """The lightning_impl network, its logits and one automatic-optimisation update."""

    def __init__(self, setting: Setting, vocab_sizes: Mapping[str, int], weights: Mapping[str, np.ndarray]):
        import torch

        from lightning_impl.model import StreetcarNet, set_canonical_weights

        torch.set_num_threads(1)
        self.torch = torch
        self.dtype = torch.float64 if setting.precision == 64 else torch.float32
        self.activation = setting.activation
        self.net = StreetcarNet(vocab_sizes, dropout_rate=0.0, output_activation=setting.activation)
        set_canonical_weights(self.net, weights)
        self.net.to(self.dtype)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=setting.learning_rate)
        self._pending = None

    def _loss(self, features, target, sample_weight=None):
        from lightning_impl.metrics import keras_binary_crossentropy
        from lightning_impl.model import apply_output_activation

        logits = self.net.logits(self.torch.from_numpy(features))
        probabilities = apply_output_activation(logits, self.activation)
        target = self.torch.from_numpy(target.astype(np.float64)).to(self.dtype)
        weight = None if sample_weight is None else self.torch.from_numpy(sample_weight).to(self.dtype)
        return logits, probabilities, keras_binary_crossentropy(
            probabilities, target, weight, logits=logits if self.activation == "sigmoid" else None)

    def logits_and_loss(self, features: np.ndarray, target: np.ndarray,
                        sample_weight: np.ndarray) -> tuple[np.ndarray, float]:
        """The forward of automatic optimisation's step (it moves the BatchNorm statistics once, as Lightning's)."""
        self.net.train()
        self.optimizer.zero_grad()
        logits, _, loss = self._loss(features, target, sample_weight)
        self._pending = loss
        return logits.detach().reshape(-1).numpy().astype(np.float64), float(loss.detach())

    def update(self, features: np.ndarray, target: np.ndarray, sample_weight: np.ndarray) -> None:
        """The rest of that step: backward of the loss logits_and_loss computed, then SGD."""
        self._pending.backward()
        self.optimizer.step()
        self._pending = None

    def evaluate(self, features: np.ndarray, target: np.ndarray, batch_size: int) -> tuple[float, float]:
        self.net.eval()
        losses, correct = [], 0
        with self.torch.no_grad():
            for rows in batch_slices(len(target), batch_size):
                _, probabilities, loss = self._loss(features[rows], target[rows])
                losses.append(float(loss) * len(target[rows]))
                correct += int(((probabilities.reshape(-1).numpy() > 0.5) == (target[rows] > 0.5)).sum())
        return sum(losses) / len(target), correct / len(target)


def sides(logits: np.ndarray, kink: float) -> np.ndarray:
    """-1 at or below -kink, 0 strictly inside (-kink, kink) where the gradient flows, +1 at or above kink."""
    return np.where(logits >= kink, 1, np.where(logits <= -kink, -1, 0))


KERAS_EPSILON = 1e-7   # Keras clips probabilities to [epsilon, 1 - epsilon] in binary_crossentropy


def output_gradient(logits: np.ndarray, target: np.ndarray, weight: np.ndarray, activation: str) -> np.ndarray:
    """dLoss/dlogit per row, in float64, from a framework's logits: how the loss turns a logit into a step.

    Keras's clipped binary cross-entropy on the activation's output (sigmoid: from the logits).  For a
    delay row (y = 1) on hard_sigmoid's slope the derivative is -w / (6 p N): near the lower kink p is
    tiny, so a tiny difference in the logit becomes a large difference in the gradient.
    """
    count = len(logits)
    if activation == "sigmoid":
        return weight * (1.0 / (1.0 + np.exp(-logits)) - target) / count
    if activation == "hard_sigmoid":
        probability, slope, inside = (logits + 3.0) / 6.0, 1.0 / 6.0, np.abs(logits) < 3.0
    else:                                                          # hard_sigmoid_keras2
        probability, slope, inside = 0.2 * logits + 0.5, 0.2, np.abs(logits) <= 2.5
    clipped = np.clip(probability, KERAS_EPSILON, 1.0 - KERAS_EPSILON)
    passes = inside & (clipped == probability)
    derivative = weight * (-target / clipped + (1.0 - target) / (1.0 - clipped)) / count
    return np.where(passes, derivative * slope, 0.0)


def step_gains(logits: np.ndarray, target: np.ndarray, weight: np.ndarray, activation: str,
               squared_norms: np.ndarray, learning_rate: float) -> np.ndarray:
    """Per row: how far one SGD step on the output layer moves the row's logit, relative to its distance
    from the loss's minimum along that logit: lr * (d2 loss / d logit2) * (|h|^2 + 1).

    Below 2 the step shrinks the row's error (a contraction); above 2 it overshoots and the row's error
    grows from step to step, and so does any difference between two runs.  On hard_sigmoid's slope a
    delay row's curvature is w / (36 p^2 N): unbounded as p -> 0 near the lower kink.  The sigmoid loss
    from logits has curvature w p (1 - p) / N <= w / (4 N).
    """
    count = len(logits)
    if activation == "sigmoid":
        probability = 1.0 / (1.0 + np.exp(-logits))
        curvature = probability * (1.0 - probability)
    else:
        if activation == "hard_sigmoid":
            probability, slope, inside = (logits + 3.0) / 6.0, 1.0 / 6.0, np.abs(logits) < 3.0
        else:
            probability, slope, inside = 0.2 * logits + 0.5, 0.2, np.abs(logits) <= 2.5
        clipped = np.clip(probability, KERAS_EPSILON, 1.0 - KERAS_EPSILON)
        passes = inside & (clipped == probability)
        curvature = np.where(passes, slope ** 2 * (target / clipped ** 2 + (1.0 - target) / (1.0 - clipped) ** 2), 0.0)
    return learning_rate * weight * curvature / count * (squared_norms + 1.0)


def compare_update(keras_logits: np.ndarray, torch_logits: np.ndarray, kink: float | None,
                   near: float) -> tuple[int, int, float]:
    """(rows within `near` of ±kink in either framework, rows on different sides, largest |Δlogit|)."""
    largest = float(np.max(np.abs(keras_logits - torch_logits)))
    if kink is None:
        return 0, 0, largest
    close = (np.abs(np.abs(keras_logits) - kink) < near) | (np.abs(np.abs(torch_logits) - kink) < near)
    return int(close.sum()), int((sides(keras_logits, kink) != sides(torch_logits, kink)).sum()), largest


def train_in_lockstep(setting: Setting, dataset: Any, weights: Mapping[str, np.ndarray], epochs: int, *,
                      near: float = 1e-5, eval_batch_size: int = 10_000, progress=None,
                      max_updates: int | None = None) -> dict[str, Any]:
    """Both frameworks, update by update; every update's losses and logit comparison, every epoch's figures.

    `max_updates` stops after that many updates (the suite pins where runs part without training whole
    epochs); an epoch cut short gets no epoch figures."""
    train_x, train_y = dataset.split_arrays("train")
    valid_x, valid_y = dataset.split_arrays("valid")
    row_weights = np.where(train_y > 0.5, setting.class_weight[1], setting.class_weight[0])
    kink = ACTIVATION_KINKS[setting.activation]
    with keras_float_type(setting.precision):
        keras_side = KerasSide(setting, dataset.vocab_sizes, weights)
        torch_side = LightningSide(setting, dataset.vocab_sizes, weights)
        updates = {"keras_loss": [], "lightning_loss": [], "near_kink": [], "different_sides": [],
                   "largest_logit_difference": [], "logit_difference": [], "output_gradient_difference": [],
                   "largest_step_gain": [], "overshooting_rows": []}
        epochs_out = []
        for epoch in range(epochs):
            order = epoch_permutation(len(train_y), setting.seed, epoch)
            sizes = []
            for rows in batch_slices(len(order), setting.batch_size):
                if max_updates is not None and len(updates["keras_loss"]) >= max_updates:
                    return {"updates": updates, "epochs": epochs_out}
                index = order[rows]
                features, target, weight = train_x[index], train_y[index], row_weights[index]
                keras_logits, keras_loss = keras_side.logits_and_loss(features, target, weight)
                torch_logits, torch_loss = torch_side.logits_and_loss(features, target, weight)
                near_count, different, largest = compare_update(keras_logits, torch_logits, kink, near)
                keras_gradient = output_gradient(keras_logits, target, weight, setting.activation)
                torch_gradient = output_gradient(torch_logits, target, weight, setting.activation)
                updates["output_gradient_difference"].append(
                    float(np.abs(keras_gradient - torch_gradient).sum() / max(np.abs(keras_gradient).sum(), 1e-300)))
                gains = step_gains(keras_logits, target, weight, setting.activation, keras_side.last_squared_norms,
                                   setting.learning_rate)
                updates["largest_step_gain"].append(float(gains.max()))
                updates["overshooting_rows"].append(int((gains > 2.0).sum()))
                updates["logit_difference"].append(
                    float(np.abs(keras_logits - torch_logits).sum() / max(np.abs(keras_logits).sum(), 1e-300)))
                updates["near_kink"].append(near_count)
                updates["different_sides"].append(different)
                updates["largest_logit_difference"].append(largest)
                updates["keras_loss"].append(keras_loss)
                updates["lightning_loss"].append(torch_loss)
                keras_side.update(features, target, weight)
                torch_side.update(features, target, weight)
                sizes.append(len(index))
                if progress is not None:
                    progress()
            epochs_out.append(_epoch_figures(updates, sizes, keras_side, torch_side, valid_x, valid_y,
                                             eval_batch_size))
    return {"updates": updates, "epochs": epochs_out}


def _epoch_figures(updates, sizes, keras_side, torch_side, valid_x, valid_y, eval_batch_size) -> dict[str, Any]:
    """Per framework: the epoch's mean training loss (batches weighted by size, as Keras's tracker), val figures."""
    figures = {}
    for name, side in (("keras", keras_side), ("lightning", torch_side)):
        losses = np.asarray(updates[f"{name}_loss"][-len(sizes):])
        val_loss, val_accuracy = side.evaluate(valid_x, valid_y, eval_batch_size)
        figures[name] = {"loss": float(np.dot(losses, sizes) / sum(sizes)), "val_loss": val_loss,
                         "val_accuracy": val_accuracy}
    return figures
