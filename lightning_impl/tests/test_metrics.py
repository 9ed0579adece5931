"""Keras's loss and epoch metrics in torch: clipping, class weights, thresholds, epoch aggregation.

    python -m pytest lightning_impl/tests/test_metrics.py -q

Expected numbers were measured with keras 3.15 (TensorFlow 2.21 backend):
keras.losses.binary_crossentropy(1, 0) = 16.11809539794922 and (0, 1) =
15.942384719848633; fit() with batch_size=4 over the 10 rows of
`epoch_rows()` and class_weight {0: 1, 1: 3} reported loss 1.3685632944107056.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lightning_impl.metrics import KerasEpochMetrics, keras_binary_crossentropy, keras_binary_crossentropy_per_sample

KERAS_BCE_P0_Y1 = 16.11809539794922
KERAS_BCE_P1_Y0 = 15.942384719848633


def test_clipping_gives_keras_values_not_torch_100():
    probabilities = torch.tensor([0.0, 1.0])
    target = torch.tensor([1.0, 0.0])
    per_sample = keras_binary_crossentropy_per_sample(probabilities, target)
    assert per_sample.tolist() == pytest.approx([KERAS_BCE_P0_Y1, KERAS_BCE_P1_Y0], abs=1e-5)
    assert F.binary_cross_entropy(probabilities, target, reduction="none").tolist() == [100.0, 100.0]


def test_class_weighted_loss_is_divided_by_the_batch_size():
    probabilities = torch.tensor([0.2, 0.9, 0.4, 0.6])
    target = torch.tensor([1.0, 0.0, 0.0, 1.0])
    weight = torch.tensor([5.0, 1.0, 1.0, 5.0])
    per_sample = -(target * torch.log(probabilities) + (1 - target) * torch.log(1 - probabilities))
    expected = float((weight * per_sample).sum() / 4)                  # Keras 3: sum(w l) / N
    assert float(keras_binary_crossentropy(probabilities, target, weight)) == pytest.approx(expected, rel=1e-6)
    assert float(keras_binary_crossentropy(probabilities, target, weight)) != pytest.approx(
        float((weight * per_sample).sum() / weight.sum()), rel=1e-3)  # not torch-NLL's sum(w l) / sum(w)
    assert float(keras_binary_crossentropy(probabilities, target)) == pytest.approx(float(per_sample.mean()), rel=1e-6)


def test_sigmoid_output_loss_uses_the_logits_unclipped():
    # Keras: a sigmoid output carries its logits and binary_crossentropy uses them (measured: 26.8977 for
    # logits 40, -40, 0 with targets 0, 1, 1); clipping would have given 10.9179.
    logits = torch.tensor([40.0, -40.0, 0.0])
    target = torch.tensor([0.0, 1.0, 1.0])
    loss = keras_binary_crossentropy(torch.sigmoid(logits), target, logits=logits)
    assert float(loss) == pytest.approx(26.897714614868164, rel=1e-6)
    assert float(keras_binary_crossentropy(torch.sigmoid(logits), target)) == pytest.approx(10.917874336242676,
                                                                                           rel=1e-5)


def test_loss_gradient_is_zero_where_keras_clips():
    probabilities = torch.tensor([0.0, 1.0, 0.5], requires_grad=True)
    keras_binary_crossentropy(probabilities, torch.tensor([1.0, 0.0, 1.0])).backward()
    assert probabilities.grad[:2].tolist() == [0.0, 0.0]
    assert float(probabilities.grad[2]) == pytest.approx(-2.0 / 3, rel=1e-6)


def test_accuracy_and_recall_count_exactly_one_half_as_no_delay():
    metrics = KerasEpochMetrics()
    probabilities = torch.tensor([0.5, 0.5000001, 0.49, 0.9])
    target = torch.tensor([1.0, 1.0, 0.0, 0.0])
    metrics.record(torch.tensor(0.0), probabilities, target)
    figures = metrics.compute()
    assert figures["accuracy"] == pytest.approx(0.5)      # 0.5 -> negative (wrong), 0.5000001 -> positive (right)
    assert figures["recall"] == pytest.approx(0.5)        # tp 1 of 2 delays


def epoch_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 1)).astype(np.float32)
    y = (rng.random((10, 1)) < 0.3).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


def test_epoch_loss_is_the_row_weighted_mean_of_batch_losses_like_keras():
    x, y = epoch_rows()
    probabilities = F.hardsigmoid(x).reshape(-1)                   # a Dense(1, hard_sigmoid) with kernel 1, bias 0
    target = y.reshape(-1)
    weight = torch.where(target > 0.5, 3.0, 1.0)
    metrics = KerasEpochMetrics()
    batch_losses = []
    for rows in (slice(0, 4), slice(4, 8), slice(8, 10)):          # batch_size 4: the last batch has 2 rows
        loss = keras_binary_crossentropy(probabilities[rows], target[rows], weight[rows])
        batch_losses.append(float(loss))
        metrics.record(loss, probabilities[rows], target[rows], weight[rows])
    figures = metrics.compute()
    assert figures["loss"] == pytest.approx(1.3685632944107056, rel=1e-6)        # Keras's history["loss"]
    assert figures["loss"] != pytest.approx(np.mean(batch_losses), rel=1e-3)      # not the plain mean of batches
    correct = ((probabilities > 0.5).float() == target).float()
    assert figures["accuracy"] == pytest.approx(float(correct.mean()))
    assert figures["weighted_accuracy"] == pytest.approx(float((weight * correct).sum() / weight.sum()))
    # compute() resets
    assert not metrics._pending and int(metrics.counts["accuracy"].tp + metrics.counts["recall"].fn) == 0


def test_validation_metrics_without_weights_equal_plain_means():
    torch.manual_seed(0)
    probabilities, target = torch.rand(2500), (torch.rand(2500) < 0.2).float()
    metrics = KerasEpochMetrics()
    for rows in torch.arange(2500).split(1000):
        metrics.record(keras_binary_crossentropy(probabilities[rows], target[rows]), probabilities[rows],
                       target[rows])
    figures = metrics.compute()
    per_sample = keras_binary_crossentropy_per_sample(probabilities, target)
    assert figures["loss"] == pytest.approx(float(per_sample.double().mean()), rel=1e-6)
    assert figures["weighted_accuracy"] == pytest.approx(figures["accuracy"], rel=1e-6)
    predicted = probabilities > 0.5
    assert figures["recall"] == pytest.approx(float((predicted & (target > 0)).sum() / (target > 0).sum()),
                                              rel=1e-6)


def test_a_float64_epoch_loss_stays_float64_after_the_module_is_moved():
    # A Trainer moves the module (.to(device)) at fit start; torchmetrics then casts inputs to float32.
    metrics = KerasEpochMetrics().to("cpu")
    batch_losses = [0.6775127236746201 + index * 1e-9 for index in range(6)]
    rows = [1000] * 5 + [910]
    for loss, count in zip(batch_losses, rows):
        metrics.record(torch.tensor(loss, dtype=torch.float64), torch.full((count,), 0.25, dtype=torch.float64),
                       torch.zeros(count, dtype=torch.float64))
    exact = sum(loss * count for loss, count in zip(batch_losses, rows)) / sum(rows)
    assert metrics.compute()["loss"] == pytest.approx(exact, rel=1e-15)      # float32 would be ~1e-8 off
