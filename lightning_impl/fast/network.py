"""The fast engine's network: lightning_impl.model.StreetcarNet computed by the fused kernel.

    from lightning_impl.fast.network import FusedStreetcarNet
    net = FusedStreetcarNet(dataset.vocab_sizes)     # the same modules and state_dict as StreetcarNet
    logits, backward = net.train().logits_and_backward(features)   # training without autograd

    python -m pytest lightning_impl/tests/test_engines.py

What it changes against the plain network, and why (each measured on the
2-core CPU at batch 1000, one thread; docs/benchmarks.md has the run):

* storage: the seven per-column tables live side by side in one zero-padded
  (7, P, 10) tensor, gammas, betas and moving statistics in (7, 10) tensors,
  and every per-column parameter and buffer is a view into them
  (lightning_impl.fast.fused.FusedStorage), so checkpoints, optimisers and
  load_state_dict see the plain network's tensors under the plain names;
* arithmetic: one embedding lookup + one BatchNorm over the 70 features +
  dropout + Dense, with a hand-written backward on table rows
  (lightning_impl.fast.fused);
* dropout draws only the positions it drops (~21 of 70,000 per batch at the
  book's rate), not a dense mask (`sample_dropout_positions`): the same
  distribution as nn.Dropout's, another random stream;
* `logits_and_backward` runs the forward and backward as plain functions and
  returns a `backward(grad_logits)` that writes every parameter's .grad,
  like torch.func.vjp: the closed-form step of lightning_impl.fast.system;
* DDP: BatchNorm statistics and dropout masks of the whole global batch
  (`split_batches_across`), so W processes train like one.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import numpy as np
import torch

from data.dataset import COLUMNS
from lightning_impl.fast.closed_form import output_activation_backward
from lightning_impl.fast.fused import FusedStorage, FusedStreetcarFunction, fused_backward, fused_forward
from lightning_impl.model import BATCHNORM_EPSILON, KERAS_BATCHNORM_MOMENTUM, StreetcarNet

# Dropout rates at or above this draw a dense uniform mask (as Keras and torch do);
# below it the few dropped positions are drawn directly (see sample_dropout_positions).
DENSE_DROPOUT_MIN_RATE = 0.05


def sample_dropout_positions(count: int, rate: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """Sorted flat positions (int64) of the elements a dropout of `rate` zeroes among `count`.

    The distribution is that of Keras's and torch's dense masks: each element
    is dropped independently with probability `rate` (Keras keeps an element
    where uniform >= rate).  For small rates the positions are drawn as
    geometric gaps between drops, so the cost follows the ~rate * count drops
    instead of count: at the book's rate 0.0003 a 1000 x 70 batch has about 21
    drops, while a dense mask draws 70,000 uniforms per step, which cost more
    than all the rest of the step on the 2-core CPU.  Small rates draw from the
    CPU generator whatever the device, so a seeded run drops the same elements
    on CPU and GPU.  (The random stream differs from Keras's in any case.)
    """
    device = torch.device(device)
    if rate <= 0.0 or count <= 0:
        return torch.empty(0, dtype=torch.int64, device=device)
    if rate >= DENSE_DROPOUT_MIN_RATE:
        return torch.nonzero(torch.rand(count, device=device) < rate).flatten()
    expected = count * rate
    chunk = int(expected + 6.0 * math.sqrt(expected) + 16)
    pieces, last = [], -1.0
    while True:
        # geometric_(p) draws the trial number of the first success (1, 2, ...): the gap
        # between consecutive dropped positions of a Bernoulli(p) sequence.
        ends = torch.empty(chunk, dtype=torch.float64).geometric_(rate).numpy().cumsum() + last
        pieces.append(ends)
        last = float(ends[-1])
        if last >= count:
            break
    positions = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
    return torch.from_numpy(positions[positions < count].astype(np.int64)).to(device)


class FusedStreetcarNet(StreetcarNet):
    """StreetcarNet (same modules, same state_dict) whose forward is the fused kernel (module docstring)."""

    def __init__(self, vocab_sizes: Mapping[str, int], embedding_dim: int = 10, dropout_rate: float = 0.0003,
                 output_activation: str = "hard_sigmoid") -> None:
        super().__init__(vocab_sizes, embedding_dim, dropout_rate, output_activation)
        # Column j's codes index rows j * P ... of the flattened padded (7 * P) table.
        padded_rows = max(self.vocab_sizes.values())
        self.register_buffer("code_offsets", torch.arange(len(COLUMNS), dtype=torch.int64) * padded_rows,
                             persistent=False)
        self._fused = FusedStorage(self)

    def _apply(self, fn, recurse: bool = True):
        # .to(device) / .double() / .cuda() give every tensor new storage: tie the per-column
        # tensors into fused storage again right away (the forward would also notice).
        super()._apply(fn, recurse)
        if "_fused" in self.__dict__:
            self._fused.ensure_tied(self)
        return self

    def _dropped_elements(self, batch: int, device: torch.device, *, global_rows: int | None = None,
                          first_row: int = 0) -> tuple[torch.Tensor, ...] | None:
        """(sample, code_slot, component) of the elements this training step's dropout zeroes.

        Under DDP (`global_rows` given) the positions are drawn for the whole
        global batch - every process's generator is seeded alike, so all draw
        the same - and this process keeps those of its rows first_row ...
        first_row + batch - 1: the masks of the one-process run.
        """
        width = len(COLUMNS) * self.embedding_dim
        rows = batch if global_rows is None else global_rows
        positions = sample_dropout_positions(rows * width, self.dropout_rate, "cpu").numpy()
        if global_rows is not None:
            positions = positions[(positions >= first_row * width) & (positions < (first_row + batch) * width)]
            positions = positions - first_row * width
        if positions.size == 0:
            return None
        # A flat position is (sample * 7 + column) * dim + component: the code slot is position // dim.
        code_slot, component = np.divmod(positions, self.embedding_dim)
        parts = tuple(torch.from_numpy(part) for part in (code_slot // len(COLUMNS), code_slot, component))
        return parts if device.type == "cpu" else tuple(part.to(device) for part in parts)

    def _fused_arguments(self, features: torch.Tensor) -> tuple:
        """The fused forward's arguments for this batch (dropout positions drawn in training)."""
        self.check_features(features)
        fused = self._fused
        fused.ensure_tied(self)
        columns, dim = len(COLUMNS), self.embedding_dim
        # torch Linear (1, 70) -> (column, component); its gradient reaches it through fused.leaves.
        weight = self.output.weight.detach().view(columns, dim)
        codes = features + self.code_offsets
        if not self.training:
            return (codes, fused.table, fused.gamma, fused.beta, weight, self.output.bias, fused.moving_mean,
                    fused.moving_var, None, None, False, 1.0, BATCHNORM_EPSILON)
        if features.shape[0] == 0:
            raise ValueError("a training batch needs at least one row (BatchNorm uses batch statistics)")
        keep_scale = 1.0 / (1.0 - self.dropout_rate)       # kept values scaled up, as Keras and torch do
        frequency = None
        if self.batch_sum is not None:  # DDP: this process holds a slice of the global batch
            frequency, global_rows, first_row = self.global_batch(codes)
            drops = self._dropped_elements(features.shape[0], features.device, global_rows=global_rows,
                                           first_row=first_row)
        else:
            drops = self._dropped_elements(features.shape[0], features.device)
        return (codes, fused.table, fused.gamma, fused.beta, weight, self.output.bias, None, None,
                drops, frequency, True, keep_scale, BATCHNORM_EPSILON)

    @torch.no_grad()
    def _update_moving_statistics(self, batch_mean: torch.Tensor, batch_var: torch.Tensor) -> None:
        fused = self._fused
        # Keras order of operations: moving * momentum + batch * (1 - momentum), as KerasBatchNorm1d.
        fused.moving_mean.mul_(KERAS_BATCHNORM_MOMENTUM).add_(batch_mean, alpha=1.0 - KERAS_BATCHNORM_MOMENTUM)
        fused.moving_var.mul_(KERAS_BATCHNORM_MOMENTUM).add_(batch_var, alpha=1.0 - KERAS_BATCHNORM_MOMENTUM)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, 7) codes -> (batch, 1) Dense output before the activation.

        In training mode this also updates the BatchNorm moving statistics the
        Keras way, as lightning_impl.model.KerasBatchNorm1d does.
        """
        logits, batch_mean, batch_var = FusedStreetcarFunction.apply(*self._fused_arguments(features),
                                                                       *self._fused.leaves)
        if self.training:
            self._update_moving_statistics(batch_mean, batch_var)
        return logits

    # [docs:lightning-logits-and-backward]
    def logits_and_backward(self, features: torch.Tensor
                            ) -> tuple[torch.Tensor, Callable[[torch.Tensor], None]]:
        """A training forward without autograd: (logits, backward), like torch.func.vjp.

        `backward(grad_logits)` takes dL/dlogits (batch, 1) and stores every
        parameter's gradient in its `.grad`, replacing what was there (the
        effect of zero_grad() + loss.backward(); the .grad tensors are views
        of fused buffers overwritten in place each step, see
        FusedStorage.gradient_buffers).  The values are bitwise those
        `logits()` + autograd give: both run fused_forward / fused_backward.
        What goes is the autograd engine's fixed cost per backward call and
        per parameter tensor (lightning_impl.fast.system).  The moving statistics
        are updated as in `logits()`; training mode only.
        """
        if not self.training:
            raise ValueError("logits_and_backward is for training steps; call logits() in eval mode")
        with torch.no_grad():
            logits, batch_mean, batch_var, saved = fused_forward(*self._fused_arguments(features))
            self._update_moving_statistics(batch_mean, batch_var)
        fused = self._fused

        @torch.no_grad()
        def backward(grad_logits: torch.Tensor) -> None:
            for buffer, grad in zip(fused.gradient_buffers(), fused_backward(saved, grad_logits)):
                buffer.copy_(grad)

        return logits, backward
    # [/docs:lightning-logits-and-backward]

    def activation_backward(self, logits: torch.Tensor, grad_probabilities: torch.Tensor) -> torch.Tensor:
        """dL/dlogits from dL/dprobabilities through the output activation, as autograd computes it."""
        return output_activation_backward(logits, grad_probabilities, self.output_activation)

    # -- DDP: one global batch split across processes ---------------------------------------
    # Set by FastStreetcarClassifier.on_fit_start when the Trainer runs W > 1 processes; None in a
    # single process, in evaluation and outside a Trainer.
    batch_sum = None            # Callable[[Tensor], Tensor]: sum over processes (all-reduce)
    process_rank, process_count = 0, 1
    ddp_loss_scale = 1.0        # W * N_local / N_global of the last training forward

    def split_batches_across(self, batch_sum, rank: int, world_size: int) -> None:
        """Train on slices of global batches: BatchNorm statistics and dropout masks of the whole batch.

        Each of the W processes holds N_local rows of a global batch of N_global
        (lightning_impl.datamodule slices every batch of the shared order).
        Per-process BatchNorm statistics would be those of N_local rows; here
        they are the global batch's.  The fused BatchNorm depends on the batch
        only through how often each table row occurs, so the processes sum
        those counts (one all-reduce of 7 * P + W numbers per step, no autograd
        through it: counts do not depend on the weights) and every process
        normalises with the global batch's mean and biased variance - bitwise
        the single-process numbers.  The backward is linear in the loss
        gradient, so DDP's gradient average is exact once each process scales
        its loss by W * N_local / N_global (ddp_loss_scale; the training step
        applies it).  torch.nn.SyncBatchNorm does the same for nn.BatchNorm*d,
        which this Keras-style BatchNorm is not.
        """
        self.batch_sum, self.process_rank, self.process_count = batch_sum, int(rank), int(world_size)
        self.ddp_loss_scale = 1.0

    def global_batch(self, codes: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """(row frequencies n_r / N_global of the global batch, N_global, this process's first row in it)."""
        table = self._fused.table
        counts = torch.bincount(codes.reshape(-1), minlength=table.shape[0] * table.shape[1]).to(table.dtype)
        rows = torch.zeros(self.process_count, dtype=table.dtype, device=counts.device)
        rows[self.process_rank] = codes.shape[0]
        # float32 sums of integer counts below 2**24 are exact, so the frequencies are bitwise
        # those of a single process holding the whole batch.
        total = self.batch_sum(torch.cat([counts, rows]))
        counts, rows = total[:-self.process_count], total[-self.process_count:]
        global_rows = int(rows.sum())
        first_row = int(rows[:self.process_rank].sum())
        self.ddp_loss_scale = self.process_count * codes.shape[0] / global_rows
        return counts.div_(global_rows), global_rows, first_row
