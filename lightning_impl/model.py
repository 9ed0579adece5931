"""The book's streetcar-delay network as a plain torch `nn.Module`: stock layers, Keras's numbers.

    from lightning_impl.model import StreetcarNet, get_canonical_weights, set_canonical_weights
    net = StreetcarNet(dataset.vocab_sizes)       # 1,341 weights: 1,201 trainable + 140 moving statistics
    probabilities = net(features)                 # features: int64 (batch, 7) in data.COLUMNS order
    weights = get_canonical_weights(net)          # experiment.weights names, Keras layouts

    python -m pytest lightning_impl/tests/test_model.py

Per column (hour, Route, daym, month, year, Direction, day), as the Keras model is built:

    Keras: Embedding(vocab, 10) -> BatchNormalization -> Flatten -> Dropout(rate)
    torch: nn.Embedding(vocab, 10) -> KerasBatchNorm1d(10) -> nn.Dropout(rate)
    then the seven are concatenated -> nn.Linear(70, 1) -> the output activation.

The state_dict reads like the Keras model: `embeddings.<column>.weight`,
`batchnorms.<column>.weight / .bias / .running_mean / .running_var` (Keras's
gamma / beta / moving_mean / moving_variance) and `output.weight / .bias`.
Where Keras and torch differ this module follows Keras, and each place names
both conventions.  lightning_impl.fast holds a fused version of the same
network (same state_dict) for speed.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from configs.loader import OUTPUT_ACTIVATIONS
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



def hard_sigmoid_keras2(x: torch.Tensor) -> torch.Tensor:
    """Keras 2's hard sigmoid (the book's era): clip(0.2 x + 0.5, 0, 1), flat beyond |x| = 2.5."""
    return torch.clamp(0.2 * x + 0.5, 0.0, 1.0)


# [docs:lightning-hard-sigmoid]
def apply_output_activation(logits: torch.Tensor, name: str) -> torch.Tensor:
    """Logits -> probabilities with the named activation (see OUTPUT_ACTIVATIONS)."""
    if name == "hard_sigmoid":
        # Keras 3 computes relu6(x + 3) / 6 (keras/src/backend/tensorflow/nn.py), and so do we.
        # torch's F.hardsigmoid has the same values, but its backward multiplies by 1/6 rounded to
        # float32 even for float64 tensors, where Keras divides by 6 (docs/differences.md row 35).
        return F.relu6(logits + 3.0) / 6.0
    if name == "hard_sigmoid_keras2":
        return hard_sigmoid_keras2(logits)
    if name == "sigmoid":
        return torch.sigmoid(logits)
    raise ValueError(f"unknown output_activation {name!r}; valid: {', '.join(OUTPUT_ACTIVATIONS)}")
# [/docs:lightning-hard-sigmoid]


# [docs:lightning-moving-statistics]
class KerasBatchNorm1d(nn.BatchNorm1d):
    """nn.BatchNorm1d(momentum=0.01, eps=1e-3) with Keras's moving variance.

    torch moves running_var towards the *unbiased* batch variance (sum / (n - 1)),
    Keras moves moving_variance towards the *biased* one (sum / n): the batch's
    share differs by a factor (n - 1) / n, 999/1000 at batch 1000.  Both normalise
    a training batch with the biased variance.  No num_batches_tracked buffer:
    Keras has no such weight, so the state_dict holds Keras's four.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features, eps=BATCHNORM_EPSILON, momentum=1.0 - KERAS_BATCHNORM_MOMENTUM)
        self.register_buffer("num_batches_tracked", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        var, mean = torch.var_mean(x, dim=0, correction=0)     # biased: what both normalise a batch with
        with torch.no_grad():                                   # Keras: moving * momentum + batch * (1 - momentum)
            self.running_mean.mul_(KERAS_BATCHNORM_MOMENTUM).add_(mean, alpha=1.0 - KERAS_BATCHNORM_MOMENTUM)
            self.running_var.mul_(KERAS_BATCHNORM_MOMENTUM).add_(var, alpha=1.0 - KERAS_BATCHNORM_MOMENTUM)
        # Keras/TF's form x * a + (beta - mean * a), a = rsqrt(var + eps) * gamma; unlike F.batch_norm
        # it also takes a one-row batch (a short last batch), as Keras does.
        scale = torch.rsqrt(var + self.eps) * self.weight
        return x * scale + (self.bias - mean * scale)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args) -> None:
        # torch adds a num_batches_tracked entry to state saved before its version 2; there is none here.
        super()._load_from_state_dict(state_dict, prefix, {**local_metadata, "version": 2}, *args)
# [/docs:lightning-moving-statistics]


class StreetcarNet(nn.Module):
    """Seven categorical columns -> probability of a delay (the book's model).

    Input: int64 (batch, 7) label-encoded values in data.COLUMNS order.  Output:
    (batch, 1) probabilities; `logits()` gives the Dense output before the activation.
    """

    def __init__(self, vocab_sizes: Mapping[str, int], embedding_dim: int = 10, dropout_rate: float = 0.0003,
                 output_activation: str = "hard_sigmoid") -> None:
        super().__init__()
        missing = [column for column in COLUMNS if column not in vocab_sizes]
        if missing:
            raise ValueError(f"vocab_sizes lacks column(s) {', '.join(missing)}; needs {', '.join(COLUMNS)}")
        sizes = {column: int(vocab_sizes[column]) for column in COLUMNS}
        if min(sizes.values()) < 1:
            raise ValueError(f"vocabulary sizes must be >= 1, got {sizes}")
        if int(embedding_dim) < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
        if not 0.0 <= float(dropout_rate) < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}")
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"unknown output_activation {output_activation!r}; valid: {', '.join(OUTPUT_ACTIVATIONS)}")
        self.vocab_sizes, self.embedding_dim = sizes, int(embedding_dim)
        self.dropout_rate, self.output_activation = float(dropout_rate), output_activation
        # [docs:lightning-layers]
        self.embeddings = nn.ModuleDict({column: nn.Embedding(size, self.embedding_dim)
                                         for column, size in sizes.items()})
        self.batchnorms = nn.ModuleDict({column: KerasBatchNorm1d(self.embedding_dim) for column in COLUMNS})
        self.dropouts = nn.ModuleDict({column: nn.Dropout(self.dropout_rate) for column in COLUMNS})
        self.output = nn.Linear(len(COLUMNS) * self.embedding_dim, 1)
        # [/docs:lightning-layers]
        self.reset_parameters()

    # [docs:lightning-initialisers]
    def reset_parameters(self) -> None:
        """Keras's initialisers (the torch defaults differ; see each line)."""
        with torch.no_grad():
            for embedding in self.embeddings.values():
                # Keras Embedding: uniform(-0.05, 0.05); torch nn.Embedding: normal(0, 1).
                nn.init.uniform_(embedding.weight, -EMBEDDING_INIT_LIMIT, EMBEDDING_INIT_LIMIT)
            for batchnorm in self.batchnorms.values():  # Keras and torch agree: gamma 1, beta 0, moving 0 / 1
                batchnorm.weight.fill_(1.0), batchnorm.bias.zero_()
                batchnorm.running_mean.zero_(), batchnorm.running_var.fill_(1.0)
            # Keras Dense: glorot_uniform kernel + zero bias; torch nn.Linear: kaiming_uniform(a=sqrt(5))
            # + uniform bias.  Glorot's limit sqrt(6 / (fan_in + fan_out)) is symmetric in the fans,
            # so torch's transposed (1, 70) layout gets the same limit as Keras's (70, 1).
            nn.init.xavier_uniform_(self.output.weight)
            self.output.bias.zero_()
    # [/docs:lightning-initialisers]

    def check_features(self, features: torch.Tensor) -> None:
        if features.dim() != 2 or features.shape[1] != len(COLUMNS):
            raise ValueError(f"features must have shape (batch, {len(COLUMNS)}), got {tuple(features.shape)}")

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, 7) codes -> (batch, 1) Dense output before the activation."""
        self.check_features(features)
        # [docs:lightning-reference-forward]
        branches = []
        for j, column in enumerate(COLUMNS):
            embedded = self.embeddings[column](features[:, j])                  # (batch, 10)
            branches.append(self.dropouts[column](self.batchnorms[column](embedded)))
        return self.output(torch.cat(branches, dim=1))                           # Flatten + Concatenate + Dense
        # [/docs:lightning-reference-forward]

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return apply_output_activation(logits, self.output_activation)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, 7) codes -> (batch, 1) probabilities of a delay."""
        return self.activate(self.logits(features))


# -- weights in Keras layouts (experiment.weights) ----------------------------


def parameter_counts(net: StreetcarNet) -> dict[str, int]:
    """total / trainable / non_trainable as Keras's model.summary() counts them (buffers = moving statistics)."""
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in net.parameters() if not p.requires_grad)
    moving = sum(buffer.numel() for name, buffer in net.named_buffers()
                 if name.rsplit(".", 1)[-1] in ("running_mean", "running_var"))
    return {"total": trainable + frozen + moving, "trainable": trainable, "non_trainable": frozen + moving}


def canonical_targets(net: StreetcarNet) -> dict[str, torch.Tensor]:
    """{canonical name: the tensor holding it}; torch Linear (1, 70) is the Keras kernel (70, 1) transposed."""
    targets: dict[str, torch.Tensor] = {}
    for column in COLUMNS:
        batchnorm = net.batchnorms[column]
        targets.update({f"embedding.{column}": net.embeddings[column].weight,
                        f"batchnorm.{column}.gamma": batchnorm.weight, f"batchnorm.{column}.beta": batchnorm.bias,
                        f"batchnorm.{column}.moving_mean": batchnorm.running_mean,
                        f"batchnorm.{column}.moving_variance": batchnorm.running_var})
    targets.update({"output.kernel": net.output.weight.T, "output.bias": net.output.bias})
    return targets


def get_canonical_weights(net: StreetcarNet) -> dict[str, np.ndarray]:
    """The network's weights under experiment.weights' canonical names, Keras layouts, in the network's width."""
    return {name: tensor.detach().to("cpu").numpy().copy()
            for name, tensor in canonical_targets(net).items()}


def set_canonical_weights(net: StreetcarNet, weights: Mapping[str, np.ndarray], source: str = "weights") -> None:
    """Copy canonical (Keras-layout) weights into `net`; every name, shape and value is checked first."""
    check_weights(weights, net.vocab_sizes, net.embedding_dim, source=source)
    non_finite = sorted(name for name, value in weights.items() if not np.all(np.isfinite(np.asarray(value))))
    if non_finite:
        raise ValueError(f"{source} hold non-finite values in {', '.join(non_finite)}")
    with torch.no_grad():
        for name, tensor in canonical_targets(net).items():
            # Straight to the tensor's dtype: a float64 network gets float64 values unrounded.
            tensor.copy_(torch.as_tensor(np.asarray(weights[name])).to(tensor.device, tensor.dtype))


__all__ = ["StreetcarNet", "KerasBatchNorm1d", "apply_output_activation", "hard_sigmoid_keras2",
           "get_canonical_weights", "set_canonical_weights", "parameter_counts",
           "KERAS_BATCHNORM_MOMENTUM", "BATCHNORM_EPSILON"]
