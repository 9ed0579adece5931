"""The fused arithmetic of the fast engine: all seven columns in one pass over the embedding tables.

    python -m pytest lightning_impl/tests/test_engines.py      # fused == plain, outputs and gradients

The network is additive over table rows: the BatchNorm output of sample i in
column j depends only on the embedding row that sample's code selects.  So
`fused_forward` works on the seven tables side by side in one zero-padded
(7, P, 10) tensor (`FusedStorage`: every per-column parameter and buffer of
lightning_impl.model.StreetcarNet is a view into it) and never builds a
(batch, 70) activation; `fused_backward` is its gradient written out.
`FusedStreetcarFunction` wraps both for autograd; the closed-form training
step (lightning_impl.fast.system) calls them directly.  The same model as the
plain one, summed in another order: lightning_impl/tests/test_engines.py holds
the two to each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch

from data.dataset import COLUMNS

if TYPE_CHECKING:
    from lightning_impl.fast.network import FusedStreetcarNet

class FusedSaved(NamedTuple):
    """What the fused forward keeps for its backward (see FusedStreetcarFunction)."""

    flat_codes: torch.Tensor
    frequency: torch.Tensor | None      # (7, 1, P) n_r / B in training, None in inference
    deviation: torch.Tensor             # (7, P, D) T - mean
    inverse_std: torch.Tensor           # (7, 1, D)
    scale: torch.Tensor                 # (7, 1, D) gamma * inverse_std
    z_rows: torch.Tensor                # (7, P, D) BatchNorm output per table row
    weight_rows: torch.Tensor           # (7, 1, D) the Dense kernel per column
    drops: tuple[torch.Tensor, torch.Tensor] | None   # (sample, flat table element) of each dropped element
    training: bool
    keep_scale: float


# FusedSaved's leading tensor fields: what FusedStreetcarFunction keeps with save_for_backward.
SAVED_TENSORS = FusedSaved._fields.index("drops")


def fused_forward(codes, table, gamma, beta, weight, bias, moving_mean, moving_var, drops, frequency, training,
                   keep_scale, epsilon):
    """The fused forward (see FusedStreetcarFunction): (logits, batch mean, batch variance, saved).

    Batch mean and biased variance are (7, D) in training, None in inference.
    """
    batch = codes.shape[0]
    columns, rows, dim = table.shape
    flat_codes = codes.reshape(-1)
    if training:
        # n_r / B for every (column, row) of the padded table; padding rows never occur.  Under
        # DDP `frequency` arrives computed over the whole global batch (FusedStreetcarNet.global_batch).
        if frequency is None:
            frequency = torch.bincount(flat_codes, minlength=columns * rows).to(table.dtype).div_(batch)
        frequency = frequency.view(columns, 1, rows)
        mean = torch.bmm(frequency, table)                                  # (7, 1, D)
        deviation = table - mean
        var = torch.bmm(frequency, deviation * deviation)                   # biased (/ B), as Keras
    else:
        frequency = None
        mean, var = moving_mean.unsqueeze(1), moving_var.unsqueeze(1)
        deviation = table - mean
    inverse_std = torch.rsqrt(var + epsilon)
    scale = gamma.unsqueeze(1) * inverse_std          # Keras/TF: a = rsqrt(var + eps) * gamma
    shift = beta.unsqueeze(1) - mean * scale          #           b = beta - mean * a
    z_rows = torch.addcmul(shift, table, scale)                             # BN output per table row
    weight_rows = weight.unsqueeze(1)
    z_weighted = z_rows * weight_rows
    row_scores = z_weighted.sum(2).view(-1)                                 # Z . W per table row
    summed = row_scores.index_select(0, flat_codes).view(batch, columns).sum(1)
    dropped = None
    if drops is not None:
        sample, code_slot, component = drops
        dropped_index = flat_codes.index_select(0, code_slot) * dim + component
        summed.index_add_(0, sample, z_weighted.view(-1).index_select(0, dropped_index), alpha=-1)
        dropped = (sample, dropped_index)
    logits = torch.add(bias, summed, alpha=keep_scale).unsqueeze(1)
    saved = FusedSaved(flat_codes, frequency, deviation, inverse_std, scale, z_rows, weight_rows, dropped,
                        bool(training), float(keep_scale))
    if training:
        return logits, mean.squeeze(1), var.squeeze(1), saved
    return logits, None, None, saved


def fused_backward(saved: FusedSaved, grad_logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Gradients of the fused tensors from dL/dlogits (batch, 1), see FusedStreetcarFunction.

    Returns (table (7, P, D), gamma (7, D), beta (7, D), Dense weight (1, 7 * D), Dense bias (1,)).
    """
    z_rows = saved.z_rows
    columns, rows, dim = z_rows.shape
    grad = grad_logits.reshape(-1)
    grad_bias = grad.sum().reshape(1)
    scaled = grad * saved.keep_scale
    # Loss gradient reaching each table row: summed over the samples that select it.
    per_row = z_rows.new_zeros(columns * rows).index_add_(
        0, saved.flat_codes, scaled.unsqueeze(1).expand(-1, columns).reshape(-1)).view(columns, rows, 1)
    if saved.drops is not None:
        sample, dropped_index = saved.drops
        lost = z_rows.new_zeros(z_rows.numel()).index_add_(0, dropped_index, scaled.index_select(0, sample))
        row_grad = per_row - lost.view_as(z_rows)                            # (7, P, D)
        grad_weight = (row_grad * z_rows).sum(1)
    else:
        row_grad = per_row                                                   # (7, P, 1), broadcasts
        grad_weight = torch.bmm(per_row.transpose(1, 2), z_rows).squeeze(1)
    grad_z = row_grad * saved.weight_rows                                    # dL/dZ summed per row
    normalised = saved.deviation * saved.inverse_std                         # x-hat per table row
    grad_beta = grad_z.sum(1, keepdim=True)
    grad_gamma = (grad_z * normalised).sum(1, keepdim=True)
    if saved.training:
        # Through the batch statistics: subtract n_r * (mean(dz) + x_hat * mean(dz * x_hat)).
        correction = torch.addcmul(grad_beta, normalised, grad_gamma) * saved.frequency.transpose(1, 2)
        grad_table = saved.scale * (grad_z - correction)
    else:
        grad_table = saved.scale * grad_z
    return grad_table, grad_gamma.squeeze(1), grad_beta.squeeze(1), grad_weight.reshape(1, -1), grad_bias


def leaf_gradients(fused_gradients: tuple[torch.Tensor, ...], leaf_rows: list[int]) -> list[torch.Tensor]:
    """The fused gradients cut into the per-column parameters' (in FusedStorage.leaves order), as views."""
    grad_table, grad_gamma, grad_beta, grad_weight, grad_bias = fused_gradients
    return ([grad_table[j, :size] for j, size in enumerate(leaf_rows)]
            + list(grad_gamma.unbind(0)) + list(grad_beta.unbind(0)) + [grad_weight, grad_bias])


class FusedStreetcarFunction(torch.autograd.Function):
    """Embedding lookup -> BatchNorm -> Dropout -> Dense for all seven columns at once.

    The network is additive over table rows: the BatchNorm output of sample i
    in column j depends only on the embedding row that sample's code selects.
    So the batch enters the forward only through how often each table row
    occurs (n_r), and the backward only through the loss gradient summed per
    row.  Everything is computed on the padded (7, P, D) table, never on
    (batch, 70) activations, with the Keras 3 arithmetic:

        mean, var = batch mean and *biased* batch variance of each feature:
                    sum_r n_r T[r] / B  and  sum_r n_r (T[r] - mean)^2 / B
        Z         = T * a + b,   a = gamma * rsqrt(var + epsilon),  b = beta - mean * a
                    (tf.nn.batch_normalization's form; inference uses the moving statistics)
        logit_i   = keep_scale * (sum of Z * W over sample i's kept features) + bias

    The backward is the textbook BatchNorm gradient through the batch
    statistics, dx = a * (dz - mean(dz) - x_hat * mean(dz * x_hat)), summed over
    the samples that select each row.  Dropped elements (a handful per batch
    at rate 0.0003) are subtracted explicitly in both directions.

    Arguments: codes (B, 7) row indices into the flattened (7 * P) table;
    table (7, P, D), gamma, beta, weight (7, D), bias (1,) -- the fused
    storage, read directly; moving_mean, moving_var (7, D) (inference only);
    drops: None or (sample, code_slot, component) int64 tensors for each
    dropped element (code_slot = sample * 7 + column); training, keep_scale,
    epsilon; then the per-column parameters *leaves (7 tables, 7 gammas, 7
    betas, weight, bias), passed only so autograd routes their gradients:
    their values are the storage above.

    Returns logits (B, 1) and, in training, the batch mean and biased
    variance (7, D) for the moving-statistics update (not differentiable).
    """

    @staticmethod
    def forward(ctx, codes, table, gamma, beta, weight, bias, moving_mean, moving_var, drops, frequency, training,
                keep_scale, epsilon, *leaves):
        logits, mean, var, saved = fused_forward(codes, table, gamma, beta, weight, bias, moving_mean, moving_var,
                                                  drops, frequency, training, keep_scale, epsilon)
        ctx.save_for_backward(*saved[:SAVED_TENSORS])
        ctx.rest = saved[SAVED_TENSORS:]
        ctx.leaf_rows = [leaf.shape[0] for leaf in leaves[:table.shape[0]]]
        if training:
            ctx.mark_non_differentiable(mean, var)
            return logits, mean, var
        no_mean, no_var = logits.new_empty(0), logits.new_empty(0)
        ctx.mark_non_differentiable(no_mean, no_var)
        return logits, no_mean, no_var

    @staticmethod
    def backward(ctx, grad_logits, _grad_mean, _grad_var):
        saved = FusedSaved(*ctx.saved_tensors, *ctx.rest)
        return (None,) * 13 + tuple(leaf_gradients(fused_backward(saved, grad_logits), ctx.leaf_rows))


class FusedStorage:
    """The fused tensors behind the per-column parameters and buffers.

    table (7, P, D) zero-padded (P = largest vocabulary), gamma / beta /
    moving_mean / moving_var (7, D).  Each column's parameter or buffer is a
    view into one of them, so the fused forward reads them without any
    concatenation, and whatever writes a per-column tensor in place (the
    optimiser, load_state_dict, the moving-statistics update) writes the fused
    tensor.  Operations that give a parameter new storage (.to(device),
    .double(), deepcopy, load_state_dict(assign=True)) break the sharing; the
    forward notices (the views' addresses changed) and ties them again from
    the per-column values, which are always the truth.
    """

    def __init__(self, net: "FusedStreetcarNet") -> None:
        self.tie(net)

    @staticmethod
    def member_slots(net: "FusedStreetcarNet") -> list[tuple[dict, str]]:
        """(dict, key) of every per-column parameter and buffer: a dict lookup finds the current tensor.

        Parameters keep their identity through .to() (their .data is swapped);
        buffers are replaced in their module's _buffers dict, so the check
        looks them up afresh each time, which costs ~0.1 us per slot instead of
        nn.Module attribute access.
        """
        slots: list[tuple[dict, str]] = []
        for column in COLUMNS:
            batchnorm = net.batchnorms[column]
            slots += [(net.embeddings[column]._parameters, "weight"), (batchnorm._parameters, "weight"),
                      (batchnorm._parameters, "bias"), (batchnorm._buffers, "running_mean"),
                      (batchnorm._buffers, "running_var")]
        return slots

    def tie(self, net: "FusedStreetcarNet") -> None:
        first = net.embeddings[COLUMNS[0]].weight
        dtype, device = first.dtype, first.device
        rows = max(net.vocab_sizes.values())
        with torch.no_grad():
            self.table = torch.zeros(len(COLUMNS), rows, net.embedding_dim, dtype=dtype, device=device)
            self.gamma, self.beta, self.moving_mean, self.moving_var = (
                torch.empty(len(COLUMNS), net.embedding_dim, dtype=dtype, device=device) for _ in range(4))
            for j, column in enumerate(COLUMNS):
                embedding, batchnorm = net.embeddings[column], net.batchnorms[column]
                size = embedding.weight.shape[0]
                self.table[j, :size].copy_(embedding.weight)
                embedding.weight.data = self.table[j, :size]
                for fused, parameter in ((self.gamma, batchnorm.weight), (self.beta, batchnorm.bias)):
                    fused[j].copy_(parameter)
                    parameter.data = fused[j]
                for fused, name in ((self.moving_mean, "running_mean"), (self.moving_var, "running_var")):
                    fused[j].copy_(batchnorm._buffers[name])
                    batchnorm._buffers[name] = fused[j]
        self.slots = self.member_slots(net) + [(net.output._parameters, "weight"), (net.output._parameters, "bias")]
        self.addresses = [slot[key].data_ptr() for slot, key in self.slots]
        # The trainable tensors in the order FusedStreetcarFunction returns their gradients.
        self.leaves = ([net.embeddings[column].weight for column in COLUMNS]
                       + [net.batchnorms[column].weight for column in COLUMNS]
                       + [net.batchnorms[column].bias for column in COLUMNS]
                       + [net.output.weight, net.output.bias])
        self.leaf_rows = [leaf.shape[0] for leaf in self.leaves[:len(COLUMNS)]]
        self.gradients: tuple[torch.Tensor, ...] | None = None
        self.gradient_views: list[torch.Tensor] = []

    def gradient_buffers(self) -> tuple[torch.Tensor, ...]:
        """Fused gradient tensors (table, gamma, beta, Dense weight, bias) that every parameter's .grad views.

        FusedStreetcarNet.logits_and_backward copies each step's gradients into
        them: five copies instead of cutting 23 fresh views and assigning them
        every step.  If anything replaced a
        .grad (zero_grad(set_to_none=True), a manual assignment), the buffers
        are linked again.
        """
        linked = self.gradients is not None and all(
            leaf.grad is view for leaf, view in zip(self.leaves, self.gradient_views))
        if not linked:
            weight, bias = self.leaves[-2], self.leaves[-1]
            self.gradients = (torch.zeros_like(self.table), torch.zeros_like(self.gamma), torch.zeros_like(self.beta),
                              torch.zeros_like(weight), torch.zeros_like(bias))
            self.gradient_views = leaf_gradients(self.gradients, self.leaf_rows)
            for leaf, view in zip(self.leaves, self.gradient_views):
                leaf.grad = view
        return self.gradients

    def ensure_tied(self, net: "FusedStreetcarNet") -> None:
        if [slot[key].data_ptr() for slot, key in self.slots] != self.addresses:
            self.tie(net)
