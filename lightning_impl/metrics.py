"""Keras's binary cross-entropy and Keras's per-epoch metrics, in torch.

    from lightning_impl.metrics import keras_binary_crossentropy, KerasEpochMetrics
    loss = keras_binary_crossentropy(probabilities, target, sample_weight)    # one batch, Keras's value
    metrics = KerasEpochMetrics()
    metrics.record(loss, probabilities, target, sample_weight)                 # every step: no arithmetic
    metrics.compute()      # once per epoch -> {"loss", "accuracy", "recall", "weighted_accuracy"}

    python -m pytest lightning_impl/tests/test_metrics.py

Loss (measured against keras 3.15, see the tests for the numbers):

* probabilities are clipped to [1e-7, 1 - 1e-7] before the logs, so a
  confident mistake costs -log(1e-7) = 16.118 (p = 0, y = 1) or
  -log(1.19e-7) = 15.942 (p = 1, y = 0: 1 - 1e-7 rounds to float32).  torch's
  binary_cross_entropy instead clamps each log at -100 (a cost of 100), and
  raises on a NaN probability where Keras gives a NaN loss; so the formula is
  written out here.
* with a sigmoid output Keras does not clip at all: its sigmoid caches the
  logits on the output tensor and the loss uses them
  (sigmoid_cross_entropy_with_logits); `logits=` does the same here.
* class weights: Keras 3 reduces a batch as sum_i(w_i * l_i) / N, dividing by
  the batch size, not by sum_i(w_i) (torch's NLL-style weighted mean would).
  torch's binary_cross_entropy(weight=..., reduction="mean") divides by N too.

Epoch figures (what Keras puts in `history`):

* loss: Keras keeps a Mean of the batch losses weighted by each batch's row
  count, so the epoch loss is sum over all rows of w_i * l_i / N_total, not
  the plain mean of batch losses (they differ when the last batch is short).
  val_loss is the same over unweighted validation batches, i.e. the exact mean.
* accuracy and recall count p > 0.5 as "delay" (p = 0.5 is "no delay") in
  Keras's BinaryAccuracy/Recall and in torchmetrics' BinaryAccuracy/Recall;
  neither uses the class weights (Keras: `metrics=`, not `weighted_metrics=`).
  torchmetrics would apply a sigmoid to inputs outside [0, 1]; probabilities
  never are.
* weighted_accuracy: the book's weighted metric (Keras `weighted_metrics`):
  sum(w_i * correct_i) / sum(w_i).  On validation batches (no weights) it
  equals accuracy.

Speed: a step only appends detached tensors to a list (`record`); the
torchmetrics updates run once per epoch on the concatenated tensors
(`compute`), so the per-step cost is a few list appends instead of a dozen
small kernels.  The values are exact, and under DDP torchmetrics sums each
process's states in `compute()`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection, SumMetric
from torchmetrics.classification import BinaryAccuracy, BinaryRecall

# Keras backend.epsilon(); clip range of binary_crossentropy on probabilities.
KERAS_EPSILON = 1e-7
# Keras BinaryAccuracy / Recall default threshold; both count p > threshold as positive.
DELAY_THRESHOLD = 0.5


# [docs:lightning-bce-clip]
def keras_binary_crossentropy_per_sample(probabilities: torch.Tensor, target: torch.Tensor, *,
                                         logits: torch.Tensor | None = None) -> torch.Tensor:
    """Per-row Keras binary_crossentropy, shape (batch,).

    probabilities, target, logits: (batch,) or (batch, 1).  With `logits`
    (sigmoid output) the loss is computed from them, unclipped, as Keras does.
    """
    target = target.reshape(-1).to(probabilities.dtype)
    if logits is not None:
        return F.binary_cross_entropy_with_logits(logits.reshape(-1), target, reduction="none")
    clipped = probabilities.reshape(-1).clamp(KERAS_EPSILON, 1.0 - KERAS_EPSILON)
    # Keras/TF: -(y log(p) + (1 - y) log(1 - p)) on the clipped p.  Written out rather than
    # torch's binary_cross_entropy, which refuses a NaN input (a RuntimeError on CPU, a device
    # assert on CUDA) where Keras returns a NaN loss that the divergence guard then reports.
    return -(target * torch.log(clipped) + (1.0 - target) * torch.log(1.0 - clipped))
# [/docs:lightning-bce-clip]


# [docs:lightning-class-weight-loss]
def keras_binary_crossentropy(probabilities: torch.Tensor, target: torch.Tensor,
                              sample_weight: torch.Tensor | None = None, *,
                              logits: torch.Tensor | None = None) -> torch.Tensor:
    """Keras 3's batch loss: sum_i(w_i * l_i) / N (N = batch size), a scalar.

    Without `sample_weight` every w_i is 1, i.e. the plain mean.
    """
    if sample_weight is None:
        return keras_binary_crossentropy_per_sample(probabilities, target, logits=logits).mean()
    per_sample = keras_binary_crossentropy_per_sample(probabilities, target, logits=logits)
    # sum(w * l) / N as one dot product.  (torch's binary_cross_entropy(weight=w, reduction="mean")
    # computes the same value, but its weight broadcasting runs Python code that costs more than
    # the whole loss at this batch size.)
    return torch.dot(per_sample, sample_weight.reshape(-1).to(per_sample.dtype)) / per_sample.shape[0]
# [/docs:lightning-class-weight-loss]


class KerasEpochMetrics(nn.Module):
    """One epoch's loss / accuracy / recall / weighted_accuracy, aggregated the Keras way.

    `record` every step (cheap), `compute` once at the end of the epoch (it
    also resets).  Keys are Keras history names without the "val_" prefix.
    """

    KEYS = ("loss", "accuracy", "recall", "weighted_accuracy")

    def __init__(self) -> None:
        super().__init__()
        # Keras: Mean(name="loss").update_state(batch_loss, sample_weight=batch_size), i.e.
        # sum_b(n_b * loss_b) / sum_b(n_b).  Kept as two sums: torchmetrics 1.9's MeanMetric drops
        # its `weight` argument when nan_strategy="disable", and any other strategy would hide a
        # NaN loss that Keras reports (and its callbacks react to).  float64: the sums over
        # ~1.7 M rows stay exact (Keras accumulates in float32).
        self.loss_sum = SumMetric(nan_strategy="disable").set_dtype(torch.float64)
        self.rows = SumMetric(nan_strategy="disable").set_dtype(torch.float64)
        # [docs:lightning-epoch-metrics]
        # One compute group: both count true/false positives/negatives, so the collection runs
        # that update once for the two (one pass over the epoch's rows instead of two).
        self.counts = MetricCollection({"accuracy": BinaryAccuracy(threshold=DELAY_THRESHOLD, validate_args=False),
                                        "recall": BinaryRecall(threshold=DELAY_THRESHOLD, validate_args=False)},
                                       compute_groups=[["accuracy", "recall"]])
        # [/docs:lightning-epoch-metrics]
        self.weighted_correct = SumMetric(nan_strategy="disable").set_dtype(torch.float64)
        self.weight_sum = SumMetric(nan_strategy="disable").set_dtype(torch.float64)
        self._pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
        self._sums = (self.loss_sum, self.rows, self.weighted_correct, self.weight_sum)
        self._parts = (self.loss_sum, self.rows, self.counts, self.weighted_correct, self.weight_sum)

    def record(self, loss: torch.Tensor, probabilities: torch.Tensor, target: torch.Tensor,
               sample_weight: torch.Tensor | None = None) -> None:
        """Keep one batch's (detached) outputs for the end-of-epoch update."""
        self._pending.append((loss.detach(), probabilities.detach().reshape(-1), target.reshape(-1),
                              None if sample_weight is None else sample_weight.reshape(-1)))

    def _flush(self) -> None:
        if not self._pending:
            return
        losses, probabilities, targets, weights = zip(*self._pending)
        self._pending = []
        for part in self._sums:
            # torchmetrics 1.9 casts every input to the metric's `dtype`, and any `.to(device)` (the
            # Trainer moves the module at fit start) resets that to float32's while the states stay
            # float64: a float64 run's losses were rounded to float32 before summing (measured: val_loss
            # 1.4e-8 off).  set_dtype is the one call that sets it.
            if part.dtype != torch.float64:
                part.set_dtype(torch.float64)
        rows = torch.tensor([len(p) for p in probabilities], dtype=torch.float64, device=losses[0].device)
        self.loss_sum.update(torch.stack(losses).to(torch.float64) * rows)
        self.rows.update(rows)
        weight = torch.cat([torch.ones_like(p) if w is None else w.to(p.dtype)
                            for p, w in zip(probabilities, weights)]).to(torch.float64)
        probabilities, targets = torch.cat(probabilities), torch.cat(targets).to(torch.int64)
        self.counts.update(probabilities, targets)
        correct = ((probabilities > DELAY_THRESHOLD).to(torch.int64) == targets).to(torch.float64)
        self.weighted_correct.update(correct * weight)
        self.weight_sum.update(weight)

    def compute(self) -> dict[str, float]:
        """The epoch's figures as Python floats; resets for the next epoch.

        Under DDP every process must call this (torchmetrics sums the states
        of all processes).
        """
        self._flush()
        counted = self.counts.compute()
        values = {
            "loss": float(self.loss_sum.compute() / self.rows.compute()),
            "accuracy": float(counted["accuracy"]),
            "recall": float(counted["recall"]),
            "weighted_accuracy": float(self.weighted_correct.compute() / self.weight_sum.compute()),
        }
        self.reset()
        return values

    def reset(self) -> None:
        self._pending = []
        for part in self._parts:
            part.reset()


__all__ = ["keras_binary_crossentropy", "keras_binary_crossentropy_per_sample", "KerasEpochMetrics", "KERAS_EPSILON",
           "DELAY_THRESHOLD"]
