"""The book's streetcar-delay network as a plain torch `nn.Module` (SPEC §5).

    from lightning_impl.model import StreetcarNet, get_canonical_weights, set_canonical_weights
    net = StreetcarNet(dataset.vocab_sizes)           # 1,341 weights: 1,201 trainable + 140 moving stats
    probabilities = net(features)                     # features: int64 (batch, 7) in data.COLUMNS order
    weights = get_canonical_weights(net)              # experiment.weights names, Keras layouts
    set_canonical_weights(net, weights)               # checked by name and shape before any copy

    python -m pytest lightning_impl/tests/test_model.py      # structure, conventions, fused == reference

Per column (data.COLUMNS order: hour, Route, daym, month, year, Direction,
day), exactly as the Keras model is built:

    Embedding(vocab, 10) -> BatchNormalization -> Flatten -> Dropout(rate)
    concatenate the 7 -> Dense(1) -> output activation

Every weight lives under its column's name, so a state_dict reads like the
Keras model and weights are exchanged by name (experiment.weights), never by
position:

    embeddings.<column>.weight                          (vocab, 10)
    batchnorms.<column>.weight / .bias                  (10,)  gamma / beta, trainable
    batchnorms.<column>.running_mean / .running_var     (10,)  buffers = Keras's non-trainable
                                                                 moving_mean / moving_variance
    output.weight (1, 70), output.bias (1,)                    torch Linear layout (Keras kernel is (70, 1))

Speed.  The forward never walks the seven branches and never builds a
(batch, 70) activation:

* storage: the seven per-column tables live side by side in one zero-padded
  (7, 31, 10) tensor, gammas, betas and moving statistics in (7, 10)
  tensors; every per-column parameter and buffer is a view into them (see
  `_FusedStorage`), so the fused computation needs no concatenation and
  optimiser updates / load_state_dict write straight into it;
* arithmetic: `_FusedStreetcarFunction` is one embedding lookup + one
  BatchNorm over the 70 features + dropout + Dense with a hand-written
  backward on table-row tensors (see its docstring);
* dropout draws only the positions it drops (~21 of 70,000 per batch at the
  book's rate), not a dense mask (`sample_dropout_positions`);
* training without autograd: `logits_and_backward` runs the same forward and
  backward as plain functions (`_fused_forward`, `_fused_backward`) and
  returns a `backward(grad_logits)` that writes every parameter's .grad,
  like torch.func.vjp; lightning_impl.system trains with it by default.

Measured on the 2-core CPU (batch 1000, one thread): a training step with
F.embedding on the concatenated table, torch batch_norm with running stats
kept aside and F.dropout took ~5 ms (embedding backward, var_mean and the
dropout mask each ~0.5 ms); the fused step takes ~1.5 ms, most of it per-op
dispatch of ~50 small ops rather than arithmetic.

`reference_forward` is the plain branch-by-branch statement of the model,
with torch autograd; the tests check outputs and gradients of the two agree.

Where Keras 3 and torch differ this module follows Keras (SPEC §8); each
place says both conventions in a comment.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data.dataset import COLUMNS
from experiment.weights import check_weights

# [docs:lightning-batchnorm]
# BatchNorm numbers.  Keras: moving = moving * 0.99 + batch * (1 - 0.99), i.e.
# Keras momentum 0.99 == torch momentum 0.01 (torch's default is 0.1); Keras
# epsilon 1e-3 vs torch's default 1e-5.
KERAS_BATCHNORM_MOMENTUM = 0.99
BATCHNORM_EPSILON = 1e-3
# Keras Embedding default initialiser: RandomUniform(-0.05, 0.05); torch nn.Embedding uses N(0, 1).
EMBEDDING_INIT_LIMIT = 0.05
# [/docs:lightning-batchnorm]

OUTPUT_ACTIVATIONS = ("hard_sigmoid", "hard_sigmoid_keras2", "sigmoid")

# Dropout rates at or above this draw a dense uniform mask (as Keras and torch do);
# below it the few dropped positions are drawn directly (see sample_dropout_positions).
DENSE_DROPOUT_MIN_RATE = 0.05


def hard_sigmoid_keras2(x: torch.Tensor) -> torch.Tensor:
    """Keras 2's hard sigmoid (the book's era): clip(0.2 x + 0.5, 0, 1), flat beyond |x| = 2.5.

    Keras 3's hard_sigmoid (= torch.nn.functional.hardsigmoid) is relu6(x + 3) / 6,
    flat beyond |x| = 3: an imported book model needs this one to predict as it did.
    """
    return torch.clamp(0.2 * x + 0.5, 0.0, 1.0)


# [docs:lightning-hard-sigmoid]
def apply_output_activation(logits: torch.Tensor, name: str) -> torch.Tensor:
    """Logits -> probabilities with the named activation (see OUTPUT_ACTIVATIONS)."""
    if name == "hard_sigmoid":
        # Keras 3: relu6(x + 3) / 6 (keras/src/backend/tensorflow/nn.py); torch hardsigmoid is the same function.
        return F.hardsigmoid(logits)
    if name == "hard_sigmoid_keras2":
        return hard_sigmoid_keras2(logits)
    if name == "sigmoid":
        return torch.sigmoid(logits)
    raise ValueError(f"unknown output_activation {name!r}; valid: {', '.join(OUTPUT_ACTIVATIONS)}")
# [/docs:lightning-hard-sigmoid]


def output_activation_backward(logits: torch.Tensor, grad_probabilities: torch.Tensor, name: str) -> torch.Tensor:
    """dL/dlogits from dL/dprobabilities for apply_output_activation(logits, name).

    The same kernels and order of operations autograd runs for those
    functions, so the result is bitwise autograd's (the tests check it):
    hardsigmoid_backward passes grad / 6 strictly inside (-3, 3); the Keras-2
    clamp passes its gradient where 0 <= 0.2 x + 0.5 <= 1 (clamp's backward
    includes both ends), times 0.2; sigmoid's is p (1 - p).
    """
    grad_probabilities = grad_probabilities.reshape(logits.shape)
    if name == "hard_sigmoid":
        return torch.ops.aten.hardsigmoid_backward(grad_probabilities, logits)
    if name == "hard_sigmoid_keras2":
        linear = 0.2 * logits + 0.5
        inside = (linear >= 0.0).logical_and_(linear <= 1.0)
        return torch.where(inside, grad_probabilities, 0.0) * 0.2
    if name == "sigmoid":
        return torch.ops.aten.sigmoid_backward(grad_probabilities, torch.sigmoid(logits))
    raise ValueError(f"unknown output_activation {name!r}; valid: {', '.join(OUTPUT_ACTIVATIONS)}")


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


class ColumnBatchNorm(nn.Module):
    """One column's BatchNorm weights under the names torch's BatchNorm1d uses.

    weight/bias are Keras's gamma/beta (trainable); running_mean/running_var
    are Keras's moving_mean/moving_variance, kept as buffers so that they count
    as non-trainable weights, as in Keras's summary.  There is deliberately no
    num_batches_tracked buffer (torch's BatchNorm1d has one; Keras has no such
    weight, and it would spoil the 140 non-trainable count).  The arithmetic
    lives in StreetcarNet, which normalises all seven columns in one call.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        # Keras and torch agree here: gamma ones, beta zeros, moving mean zeros, moving variance ones.
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={BATCHNORM_EPSILON}, keras_momentum={KERAS_BATCHNORM_MOMENTUM}"


class _FusedSaved(NamedTuple):
    """What the fused forward keeps for its backward (see _FusedStreetcarFunction)."""

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


# _FusedSaved's leading tensor fields: what _FusedStreetcarFunction keeps with save_for_backward.
_SAVED_TENSORS = _FusedSaved._fields.index("drops")


def _fused_forward(codes, table, gamma, beta, weight, bias, moving_mean, moving_var, drops, frequency, training,
                   keep_scale, epsilon):
    """The fused forward (see _FusedStreetcarFunction): (logits, batch mean, batch variance, saved).

    Batch mean and biased variance are (7, D) in training, None in inference.
    """
    batch = codes.shape[0]
    columns, rows, dim = table.shape
    flat_codes = codes.reshape(-1)
    if training:
        # n_r / B for every (column, row) of the padded table; padding rows never occur.  Under
        # DDP `frequency` arrives computed over the whole global batch (StreetcarNet.global_batch).
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
    saved = _FusedSaved(flat_codes, frequency, deviation, inverse_std, scale, z_rows, weight_rows, dropped,
                        bool(training), float(keep_scale))
    if training:
        return logits, mean.squeeze(1), var.squeeze(1), saved
    return logits, None, None, saved


def _fused_backward(saved: _FusedSaved, grad_logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Gradients of the fused tensors from dL/dlogits (batch, 1), see _FusedStreetcarFunction.

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


def _leaf_gradients(fused_gradients: tuple[torch.Tensor, ...], leaf_rows: list[int]) -> list[torch.Tensor]:
    """The fused gradients cut into the per-column parameters' (in _FusedStorage.leaves order), as views."""
    grad_table, grad_gamma, grad_beta, grad_weight, grad_bias = fused_gradients
    return ([grad_table[j, :size] for j, size in enumerate(leaf_rows)]
            + list(grad_gamma.unbind(0)) + list(grad_beta.unbind(0)) + [grad_weight, grad_bias])


class _FusedStreetcarFunction(torch.autograd.Function):
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
        logits, mean, var, saved = _fused_forward(codes, table, gamma, beta, weight, bias, moving_mean, moving_var,
                                                  drops, frequency, training, keep_scale, epsilon)
        ctx.save_for_backward(*saved[:_SAVED_TENSORS])
        ctx.rest = saved[_SAVED_TENSORS:]
        ctx.leaf_rows = [leaf.shape[0] for leaf in leaves[:table.shape[0]]]
        if training:
            ctx.mark_non_differentiable(mean, var)
            return logits, mean, var
        no_mean, no_var = logits.new_empty(0), logits.new_empty(0)
        ctx.mark_non_differentiable(no_mean, no_var)
        return logits, no_mean, no_var

    @staticmethod
    def backward(ctx, grad_logits, _grad_mean, _grad_var):
        saved = _FusedSaved(*ctx.saved_tensors, *ctx.rest)
        return (None,) * 13 + tuple(_leaf_gradients(_fused_backward(saved, grad_logits), ctx.leaf_rows))


class _FusedStorage:
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

    def __init__(self, net: "StreetcarNet") -> None:
        self.tie(net)

    @staticmethod
    def member_slots(net: "StreetcarNet") -> list[tuple[dict, str]]:
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

    def tie(self, net: "StreetcarNet") -> None:
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
        # The trainable tensors in the order _FusedStreetcarFunction returns their gradients.
        self.leaves = ([net.embeddings[column].weight for column in COLUMNS]
                       + [net.batchnorms[column].weight for column in COLUMNS]
                       + [net.batchnorms[column].bias for column in COLUMNS]
                       + [net.output.weight, net.output.bias])
        self.leaf_rows = [leaf.shape[0] for leaf in self.leaves[:len(COLUMNS)]]
        self.gradients: tuple[torch.Tensor, ...] | None = None
        self.gradient_views: list[torch.Tensor] = []

    def gradient_buffers(self) -> tuple[torch.Tensor, ...]:
        """Fused gradient tensors (table, gamma, beta, Dense weight, bias) that every parameter's .grad views.

        StreetcarNet.logits_and_backward copies each step's gradients into
        them: five copies instead of cutting 23 fresh views and assigning them
        (~0.1 ms a step on the 2-core CPU, measured).  If anything replaced a
        .grad (zero_grad(set_to_none=True), a manual assignment), the buffers
        are linked again.
        """
        linked = self.gradients is not None and all(
            leaf.grad is view for leaf, view in zip(self.leaves, self.gradient_views))
        if not linked:
            weight, bias = self.leaves[-2], self.leaves[-1]
            self.gradients = (torch.zeros_like(self.table), torch.zeros_like(self.gamma), torch.zeros_like(self.beta),
                              torch.zeros_like(weight), torch.zeros_like(bias))
            self.gradient_views = _leaf_gradients(self.gradients, self.leaf_rows)
            for leaf, view in zip(self.leaves, self.gradient_views):
                leaf.grad = view
        return self.gradients

    def ensure_tied(self, net: "StreetcarNet") -> None:
        if [slot[key].data_ptr() for slot, key in self.slots] != self.addresses:
            self.tie(net)


class StreetcarNet(nn.Module):
    """Seven categorical columns -> probability of a delay (the book's model).

    Input: int64 tensor (batch, 7) of label-encoded values in data.COLUMNS
    order.  Output: (batch, 1) probabilities; `logits()` gives the Dense
    output before the activation.
    """

    def __init__(self, vocab_sizes: Mapping[str, int], embedding_dim: int = 10, dropout_rate: float = 0.0003,
                 output_activation: str = "hard_sigmoid") -> None:
        super().__init__()
        missing = [column for column in COLUMNS if column not in vocab_sizes]
        if missing:
            raise ValueError(f"vocab_sizes lacks column(s) {', '.join(missing)}; needs {', '.join(COLUMNS)}")
        sizes = {column: int(vocab_sizes[column]) for column in COLUMNS}
        bad = {column: size for column, size in sizes.items() if size < 1}
        if bad:
            raise ValueError(f"vocabulary sizes must be >= 1, got {bad}")
        if int(embedding_dim) < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
        if not 0.0 <= float(dropout_rate) < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}")
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"unknown output_activation {output_activation!r}; "
                             f"valid: {', '.join(OUTPUT_ACTIVATIONS)}")
        self.vocab_sizes = sizes
        self.embedding_dim = int(embedding_dim)
        self.dropout_rate = float(dropout_rate)
        self.output_activation = output_activation

        # [docs:lightning-layers]
        self.embeddings = nn.ModuleDict({column: nn.Embedding(size, self.embedding_dim)
                                         for column, size in sizes.items()})
        self.batchnorms = nn.ModuleDict({column: ColumnBatchNorm(self.embedding_dim) for column in COLUMNS})
        self.output = nn.Linear(len(COLUMNS) * self.embedding_dim, 1)
        # [/docs:lightning-layers]
        # Column j's codes index rows j * P ... of the flattened padded (7 * P) table.
        padded_rows = max(sizes.values())
        self.register_buffer("code_offsets", torch.arange(len(COLUMNS), dtype=torch.int64) * padded_rows,
                             persistent=False)
        self.reset_parameters()
        self._fused = _FusedStorage(self)

    # [docs:lightning-initialisers]
    def _apply(self, fn, recurse: bool = True):
        # .to(device) / .double() / .cuda() give every tensor new storage: tie the per-column
        # tensors into fused storage again right away (the forward would also notice).
        super()._apply(fn, recurse)
        if "_fused" in self.__dict__:
            self._fused.ensure_tied(self)
        return self

    def reset_parameters(self) -> None:
        """Keras's initialisers (the torch defaults differ; see each line)."""
        with torch.no_grad():
            for embedding in self.embeddings.values():
                # Keras Embedding: uniform(-0.05, 0.05); torch nn.Embedding: normal(0, 1).
                nn.init.uniform_(embedding.weight, -EMBEDDING_INIT_LIMIT, EMBEDDING_INIT_LIMIT)
            for batchnorm in self.batchnorms.values():
                batchnorm.weight.fill_(1.0)
                batchnorm.bias.zero_()
                batchnorm.running_mean.zero_()
                batchnorm.running_var.fill_(1.0)
            # Keras Dense: glorot_uniform kernel + zero bias; torch nn.Linear: kaiming_uniform(a=sqrt(5))
            # + uniform bias.  Glorot's limit sqrt(6 / (fan_in + fan_out)) is symmetric in the fans,
            # so torch's transposed (1, 70) layout gets the same limit as Keras's (70, 1).
            nn.init.xavier_uniform_(self.output.weight)
            self.output.bias.zero_()
    # [/docs:lightning-initialisers]

    def _check_features(self, features: torch.Tensor) -> None:
        if features.dim() != 2 or features.shape[1] != len(COLUMNS):
            raise ValueError(f"features must have shape (batch, {len(COLUMNS)}), got {tuple(features.shape)}")

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
        self._check_features(features)
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
        # [docs:lightning-moving-statistics]
        # Keras order of operations: moving * momentum + batch * (1 - momentum).
        fused.moving_mean.mul_(KERAS_BATCHNORM_MOMENTUM).add_(batch_mean, alpha=1.0 - KERAS_BATCHNORM_MOMENTUM)
        fused.moving_var.mul_(KERAS_BATCHNORM_MOMENTUM).add_(batch_var, alpha=1.0 - KERAS_BATCHNORM_MOMENTUM)
        # [/docs:lightning-moving-statistics]

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, 7) codes -> (batch, 1) Dense output before the activation.

        In training mode this also updates the BatchNorm moving statistics the
        Keras way: moving = moving * 0.99 + batch_stat * (1 - 0.99), with the
        *biased* batch variance (torch's BatchNorm uses momentum 0.1 and the
        unbiased variance).
        """
        logits, batch_mean, batch_var = _FusedStreetcarFunction.apply(*self._fused_arguments(features),
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
        _FusedStorage.gradient_buffers).  The values are bitwise those
        `logits()` + autograd give: both run _fused_forward / _fused_backward.
        What goes is the autograd engine's fixed cost per backward call and
        per parameter tensor (lightning_impl.system).  The moving statistics
        are updated as in `logits()`; training mode only.
        """
        if not self.training:
            raise ValueError("logits_and_backward is for training steps; call logits() in eval mode")
        with torch.no_grad():
            logits, batch_mean, batch_var, saved = _fused_forward(*self._fused_arguments(features))
            self._update_moving_statistics(batch_mean, batch_var)
        fused = self._fused

        @torch.no_grad()
        def backward(grad_logits: torch.Tensor) -> None:
            for buffer, grad in zip(fused.gradient_buffers(), _fused_backward(saved, grad_logits)):
                buffer.copy_(grad)

        return logits, backward
    # [/docs:lightning-logits-and-backward]

    def activation_backward(self, logits: torch.Tensor, grad_probabilities: torch.Tensor) -> torch.Tensor:
        """dL/dlogits from dL/dprobabilities through the output activation, as autograd computes it."""
        return output_activation_backward(logits, grad_probabilities, self.output_activation)

    # -- DDP: one global batch split across processes ---------------------------------------
    # Set by StreetcarClassifier.on_fit_start when the Trainer runs W > 1 processes; None in a
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

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return apply_output_activation(logits, self.output_activation)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, 7) codes -> (batch, 1) probabilities of a delay."""
        return self.activate(self.logits(features))

    def reference_forward(self, features: torch.Tensor, dropped: torch.Tensor | None = None) -> torch.Tensor:
        """The same model walked column by column, as the Keras graph is drawn: probabilities.

        Slow (seven lookups, seven BatchNorms, a dense (batch, 70) dropout
        mask), torch autograd only; the plain statement of the model that the
        fused `forward` is tested against, values and gradients.  In training
        mode it normalises with the batch statistics but does NOT update the
        moving statistics, and zeroes exactly the flat positions `dropped`
        (default: none), so a test can give both forms the same mask.
        """
        self._check_features(features)
        batch, dim = features.shape[0], self.embedding_dim
        # [docs:lightning-reference-forward]
        branches = []
        for j, column in enumerate(COLUMNS):
            embedded = self.embeddings[column](features[:, j])                 # (batch, dim)
            batchnorm = self.batchnorms[column]
            if self.training:
                mean = embedded.mean(0)
                var = ((embedded - mean) ** 2).mean(0)                         # biased, as Keras
            else:
                mean, var = batchnorm.running_mean, batchnorm.running_var
            # Keras/TF: x * rsqrt(var + eps) * gamma + (beta - mean * rsqrt(var + eps) * gamma)
            scale = torch.rsqrt(var + BATCHNORM_EPSILON) * batchnorm.weight
            branches.append(embedded * scale + (batchnorm.bias - mean * scale))
        hidden = torch.cat(branches, dim=1)                                     # Flatten + Concatenate
        if self.training and self.dropout_rate > 0:
            mask = torch.full((batch * len(COLUMNS) * dim,), 1.0 / (1.0 - self.dropout_rate),
                              dtype=hidden.dtype, device=hidden.device)
            if dropped is not None and dropped.numel():
                mask[dropped] = 0.0
            hidden = hidden * mask.view_as(hidden)
        return self.activate(self.output(hidden))
        # [/docs:lightning-reference-forward]


# -- weights in Keras layouts (experiment.weights) ----------------------------


def parameter_counts(net: StreetcarNet) -> dict[str, int]:
    """total / trainable / non_trainable as Keras's model.summary() counts them.

    Trainable = the parameters; non-trainable = the BatchNorm moving
    statistics (buffers).  The non-persistent code offsets are not weights.
    """
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in net.parameters() if not p.requires_grad)
    moving = sum(buffer.numel() for name, buffer in net.named_buffers()
                 if name.rsplit(".", 1)[-1] in ("running_mean", "running_var"))
    return {"total": trainable + frozen + moving, "trainable": trainable, "non_trainable": frozen + moving}


def get_canonical_weights(net: StreetcarNet) -> dict[str, np.ndarray]:
    """The network's weights under experiment.weights' canonical names, Keras layouts, float32."""

    def numpy(tensor: torch.Tensor) -> np.ndarray:
        return tensor.detach().to("cpu", torch.float32).numpy().copy()

    weights: dict[str, np.ndarray] = {}
    for column in COLUMNS:
        weights[f"embedding.{column}"] = numpy(net.embeddings[column].weight)
        batchnorm = net.batchnorms[column]
        weights[f"batchnorm.{column}.gamma"] = numpy(batchnorm.weight)
        weights[f"batchnorm.{column}.beta"] = numpy(batchnorm.bias)
        weights[f"batchnorm.{column}.moving_mean"] = numpy(batchnorm.running_mean)
        weights[f"batchnorm.{column}.moving_variance"] = numpy(batchnorm.running_var)
    # torch Linear weight is (out, in) = (1, 70); the Keras Dense kernel is (in, out) = (70, 1).
    weights["output.kernel"] = numpy(net.output.weight).T.copy()
    weights["output.bias"] = numpy(net.output.bias)
    return weights


def set_canonical_weights(net: StreetcarNet, weights: Mapping[str, np.ndarray], source: str = "weights") -> None:
    """Copy canonical (Keras-layout) weights into `net`; every name and shape is checked first."""
    check_weights(weights, net.vocab_sizes, net.embedding_dim, source=source)
    non_finite = sorted(name for name, value in weights.items() if not np.all(np.isfinite(np.asarray(value))))
    if non_finite:
        raise ValueError(f"{source} hold non-finite values in {', '.join(non_finite)}")
    targets: list[tuple[torch.Tensor, np.ndarray]] = []
    for column in COLUMNS:
        targets.append((net.embeddings[column].weight, weights[f"embedding.{column}"]))
        batchnorm = net.batchnorms[column]
        targets.append((batchnorm.weight, weights[f"batchnorm.{column}.gamma"]))
        targets.append((batchnorm.bias, weights[f"batchnorm.{column}.beta"]))
        targets.append((batchnorm.running_mean, weights[f"batchnorm.{column}.moving_mean"]))
        targets.append((batchnorm.running_var, weights[f"batchnorm.{column}.moving_variance"]))
    # Keras kernel (70, 1) -> torch Linear weight (1, 70).
    targets.append((net.output.weight, np.asarray(weights["output.kernel"]).T))
    targets.append((net.output.bias, weights["output.bias"]))
    with torch.no_grad():
        for tensor, value in targets:
            tensor.copy_(torch.as_tensor(np.asarray(value, dtype=np.float32)).to(tensor.device, tensor.dtype))


__all__ = ["StreetcarNet", "ColumnBatchNorm", "apply_output_activation", "output_activation_backward",
           "hard_sigmoid_keras2", "sample_dropout_positions", "get_canonical_weights", "set_canonical_weights",
           "parameter_counts", "OUTPUT_ACTIVATIONS", "KERAS_BATCHNORM_MOMENTUM", "BATCHNORM_EPSILON"]
