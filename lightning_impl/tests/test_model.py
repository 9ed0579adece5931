"""StreetcarNet: structure, Keras's numeric conventions, the fused forward vs the plain one, weights.

    python -m pytest lightning_impl/tests/test_model.py -q
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import lightning_impl.model as model_module
from data.dataset import COLUMNS
from experiment.weights import expected_shapes
from lightning_impl.model import (BATCHNORM_EPSILON, StreetcarNet, apply_output_activation, get_canonical_weights,
                                  parameter_counts, sample_dropout_positions, set_canonical_weights)
from lightning_impl.tests.helpers import BOOK_SIZES


def random_features(n_rows: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, BOOK_SIZES[column], (n_rows,), generator=generator) for column in COLUMNS],
                       dim=1)


def perturbed_net(output_activation: str = "hard_sigmoid", dropout_rate: float = 0.0003, seed: int = 0,
                  dtype=torch.float64) -> StreetcarNet:
    """A network whose every weight (moving statistics included) is away from its initial value."""
    torch.manual_seed(seed)
    net = StreetcarNet(BOOK_SIZES, dropout_rate=dropout_rate, output_activation=output_activation).to(dtype)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
        for name, buffer in net.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(torch.randn_like(buffer) * 0.05)
            elif name.endswith("running_var"):
                buffer.copy_(torch.rand_like(buffer) * 0.01 + 5e-4)
    return net


# -- structure -----------------------------------------------------------------


def test_weights_are_named_by_column_and_counted_like_keras():
    net = StreetcarNet(BOOK_SIZES)
    names = set(net.state_dict())
    for column in COLUMNS:
        assert f"embeddings.{column}.weight" in names
        for field in ("weight", "bias", "running_mean", "running_var"):
            assert f"batchnorms.{column}.{field}" in names
    assert {"output.weight", "output.bias"} <= names
    assert len(names) == 7 * 5 + 2                       # no num_batches_tracked, no helper buffers
    assert not any("num_batches_tracked" in name for name in names)
    assert parameter_counts(net) == {"total": 1341, "trainable": 1201, "non_trainable": 140}
    assert net.embeddings["Route"].weight.shape == (14, 10)
    assert net.output.weight.shape == (1, 70)


def test_initialisers_are_keras_ones():
    torch.manual_seed(3)
    net = StreetcarNet(BOOK_SIZES)
    for column in COLUMNS:
        table = net.embeddings[column].weight.detach()
        assert float(table.abs().max()) <= 0.05 and float(table.std()) > 0.01   # U(-0.05, 0.05), not N(0, 1)
        assert torch.equal(net.batchnorms[column].weight, torch.ones(10))
        assert torch.equal(net.batchnorms[column].bias, torch.zeros(10))
        assert torch.equal(net.batchnorms[column].running_mean, torch.zeros(10))
        assert torch.equal(net.batchnorms[column].running_var, torch.ones(10))
    limit = math.sqrt(6.0 / (70 + 1))                                           # glorot_uniform
    kernel = net.output.weight.detach()
    assert float(kernel.abs().max()) <= limit and float(kernel.abs().max()) > limit / 2
    assert torch.equal(net.output.bias, torch.zeros(1))


@pytest.mark.parametrize("bad, message", [
    ({"vocab_sizes": {"hour": 24}}, "lacks column"),
    ({"dropout_rate": 1.0}, "dropout_rate"),
    ({"output_activation": "relu"}, "unknown output_activation"),
    ({"embedding_dim": 0}, "embedding_dim"),
])
def test_bad_construction_is_a_value_error(bad, message):
    arguments = {"vocab_sizes": BOOK_SIZES, **bad}
    with pytest.raises(ValueError, match=message):
        StreetcarNet(**arguments)


def test_features_of_the_wrong_shape_are_refused():
    net = StreetcarNet(BOOK_SIZES).eval()
    with pytest.raises(ValueError, match=r"shape \(batch, 7\)"):
        net(torch.zeros(4, 6, dtype=torch.int64))


# -- activations ---------------------------------------------------------------


def test_hard_sigmoid_definitions():
    x = torch.tensor([-3.5, -3.0, -2.5, -1.0, 0.0, 1.0, 2.5, 3.0])
    # Keras 3 (relu6(x + 3) / 6) == torch hardsigmoid: flat beyond |x| = 3.
    keras3 = apply_output_activation(x, "hard_sigmoid")
    assert torch.allclose(keras3, torch.tensor([0.0, 0.0, 1 / 12, 1 / 3, 0.5, 2 / 3, 11 / 12, 1.0]))
    # Keras 2 (clip(0.2 x + 0.5, 0, 1)): flat beyond |x| = 2.5.
    keras2 = apply_output_activation(x, "hard_sigmoid_keras2")
    assert torch.allclose(keras2, torch.tensor([0.0, 0.0, 0.0, 0.3, 0.5, 0.7, 1.0, 1.0]))
    assert torch.allclose(apply_output_activation(torch.tensor([0.0]), "sigmoid"), torch.tensor([0.5]))


# -- BatchNorm conventions -------------------------------------------------------


def test_training_updates_moving_statistics_the_keras_way():
    """moving = 0.99 * moving + 0.01 * batch statistic, with the BIASED batch variance."""
    net = perturbed_net(dropout_rate=0.0).train()
    features = random_features(50)
    before_mean = net.batchnorms["Route"].running_mean.clone()
    before_var = net.batchnorms["Route"].running_var.clone()
    embedded = net.embeddings["Route"].weight.detach()[features[:, 1]]
    net(features)
    batch_mean, biased_var = embedded.mean(0), embedded.var(0, unbiased=False)
    assert torch.allclose(net.batchnorms["Route"].running_mean, 0.99 * before_mean + 0.01 * batch_mean, atol=1e-12)
    assert torch.allclose(net.batchnorms["Route"].running_var, 0.99 * before_var + 0.01 * biased_var, atol=1e-12)
    # torch's BatchNorm1d(momentum=0.01) would have used the unbiased variance: visibly different at n = 50.
    torch_bn = torch.nn.BatchNorm1d(10, momentum=0.01, dtype=torch.float64)
    torch_bn.running_mean.copy_(before_mean)
    torch_bn.running_var.copy_(before_var)
    torch_bn.train()(embedded)
    assert torch.allclose(torch_bn.running_var, 0.99 * before_var + 0.01 * embedded.var(0, unbiased=True))
    assert not torch.allclose(torch_bn.running_var, net.batchnorms["Route"].running_var, atol=1e-9, rtol=0)


def test_inference_normalises_with_epsilon_1e3():
    net = StreetcarNet(BOOK_SIZES, output_activation="sigmoid").to(torch.float64).eval()
    with torch.no_grad():
        for column in COLUMNS:
            net.embeddings[column].weight.zero_()
            net.batchnorms[column].running_var.fill_(1e-3)
        net.embeddings["hour"].weight[5, 0] = 1.0
        net.output.weight.zero_()
        net.output.weight[0, 0] = 1.0
    features = torch.zeros(1, 7, dtype=torch.int64)
    features[0, 0] = 5
    logit = float(net.logits(features).detach())
    assert logit == pytest.approx(1.0 / math.sqrt(1e-3 + BATCHNORM_EPSILON), rel=1e-12)   # 22.36, torch eps: 31.6


def test_training_mode_normalises_with_batch_statistics():
    net = perturbed_net(dropout_rate=0.0).train()
    features = random_features(40)
    fused = net(features)
    reference = net.reference_forward(features)
    assert torch.allclose(fused, reference, atol=1e-12)


# -- fused forward == per-column reference, values and gradients ---------------


@pytest.mark.parametrize("output_activation", ["hard_sigmoid", "hard_sigmoid_keras2", "sigmoid"])
@pytest.mark.parametrize("training", [True, False])
def test_fused_forward_and_gradients_equal_the_per_column_reference(monkeypatch, output_activation, training):
    net = perturbed_net(output_activation=output_activation, dropout_rate=0.01).train(training)
    features = random_features(300, seed=1)
    target = torch.rand(300, 1, dtype=torch.float64)
    dropped = sample_dropout_positions(300 * 70, 0.01)
    assert dropped.numel() > 100                     # the mask really drops elements at this rate
    monkeypatch.setattr(model_module, "sample_dropout_positions", lambda *args, **kwargs: dropped)

    net.zero_grad()
    fused = net(features)
    ((fused - target) ** 2).sum().backward()
    fused_grads = {name: parameter.grad.clone() for name, parameter in net.named_parameters()}

    net.zero_grad()
    reference = net.reference_forward(features, dropped if training else None)
    ((reference - target) ** 2).sum().backward()
    assert torch.allclose(fused, reference, atol=1e-12, rtol=0)
    for name, parameter in net.named_parameters():
        assert torch.allclose(fused_grads[name], parameter.grad, atol=1e-10, rtol=0), name
    assert any(float(grad.abs().max()) > 1e-3 for grad in fused_grads.values())


def test_float32_fused_forward_matches_reference():
    net = perturbed_net(dtype=torch.float32).eval()
    features = random_features(2000, seed=2)
    with torch.no_grad():
        assert torch.allclose(net(features), net.reference_forward(features), atol=2e-6)


def test_fused_storage_follows_optimiser_copies_and_dtype_changes():
    net = perturbed_net().eval()
    features = random_features(64)
    expected = net.reference_forward(features)
    assert torch.equal(net(features), net(features))
    clone = copy.deepcopy(net)                                   # parameters get new storage
    assert torch.allclose(clone(features), expected, atol=1e-12)
    fresh = StreetcarNet(BOOK_SIZES).to(torch.float64).eval()
    fresh.load_state_dict(net.state_dict())
    assert torch.allclose(fresh(features), expected, atol=1e-12)
    as_float = copy.deepcopy(net).float()
    assert torch.allclose(as_float(features).double(), expected, atol=1e-5)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    net.train()
    net(features).sum().backward()
    optimizer.step()
    net.eval()
    assert not torch.allclose(net(features), expected)
    assert torch.allclose(net(features), net.reference_forward(features), atol=1e-12)


# -- dropout ---------------------------------------------------------------------


def test_dropout_positions_are_a_bernoulli_mask():
    torch.manual_seed(0)
    counts = [sample_dropout_positions(70_000, 0.0003).numel() for _ in range(400)]
    assert np.mean(counts) == pytest.approx(21.0, rel=0.05)      # rate * n
    assert np.var(counts) == pytest.approx(21.0, rel=0.25)       # binomial variance ~ n p
    positions = sample_dropout_positions(70_000, 0.01)
    assert positions.dtype == torch.int64 and torch.all(positions[1:] > positions[:-1])
    assert 0 <= int(positions.min()) and int(positions.max()) < 70_000
    dense = sample_dropout_positions(10_000, 0.5)                 # large rates: a dense uniform mask
    assert 4_700 < dense.numel() < 5_300
    assert sample_dropout_positions(70_000, 0.0).numel() == 0
    torch.manual_seed(7)
    first = sample_dropout_positions(70_000, 0.0003)
    torch.manual_seed(7)
    assert torch.equal(first, sample_dropout_positions(70_000, 0.0003))


def test_a_dropped_element_removes_exactly_its_scaled_contribution(monkeypatch):
    """Keras/torch dropout: a dropped feature contributes 0, kept ones are scaled by 1 / (1 - rate)."""
    rate = 0.2
    net = perturbed_net(output_activation="sigmoid", dropout_rate=rate).train()
    features = random_features(8, seed=3)
    dropped = torch.tensor([3, 70 + 15, 6 * 70 + 69])            # (row 0, hour k3), (row 1, Route k5), (row 6, day k9)
    monkeypatch.setattr(model_module, "sample_dropout_positions", lambda *args, **kwargs: dropped)
    with_drops = net.logits(features).reshape(-1)
    monkeypatch.setattr(model_module, "sample_dropout_positions",
                        lambda *args, **kwargs: torch.empty(0, dtype=torch.int64))
    without = net.logits(features).reshape(-1)

    def batchnorm_output(column_index: int, component: int) -> torch.Tensor:
        column = COLUMNS[column_index]
        values = net.embeddings[column].weight.detach()[features[:, column_index], component]
        mean, var = values.mean(), values.var(unbiased=False)
        batchnorm = net.batchnorms[column]
        return (values - mean) / torch.sqrt(var + BATCHNORM_EPSILON) * batchnorm.weight[component] + \
            batchnorm.bias[component]

    scale = 1.0 / (1.0 - rate)
    expected = without.detach().clone()
    for row, column_index, component in ((0, 0, 3), (1, 1, 5), (6, 6, 9)):
        feature = column_index * 10 + component
        expected[row] -= scale * batchnorm_output(column_index, component)[row] * net.output.weight[0, feature]
    assert torch.allclose(with_drops, expected, atol=1e-12)
    assert torch.equal(with_drops[[2, 3, 4, 5, 7]], without[[2, 3, 4, 5, 7]])


# -- canonical weights ---------------------------------------------------------------


def test_canonical_weights_round_trip_in_keras_layouts():
    net = perturbed_net(dtype=torch.float32)
    weights = get_canonical_weights(net)
    assert {name: value.shape for name, value in weights.items()} == expected_shapes(BOOK_SIZES)
    assert all(value.dtype == np.float32 for value in weights.values())
    # Keras Dense kernel (70, 1) is torch's (1, 70) transposed; row j*10+k is feature k of column j.
    assert weights["output.kernel"][13, 0] == float(net.output.weight.detach()[0, 13])
    assert np.array_equal(weights["batchnorm.Direction.moving_variance"],
                          net.batchnorms["Direction"].running_var.numpy())
    other = StreetcarNet(BOOK_SIZES)
    set_canonical_weights(other, weights)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), other.state_dict().values()))
    features = random_features(32)
    with torch.no_grad():
        assert torch.equal(net.eval()(features), other.eval()(features))


def test_set_canonical_weights_checks_names_shapes_and_values_first():
    net = StreetcarNet(BOOK_SIZES)
    before = copy.deepcopy(net.state_dict())
    weights = get_canonical_weights(perturbed_net(dtype=torch.float32))
    wrong_shape = dict(weights, **{"output.kernel": weights["output.kernel"].T})
    with pytest.raises(ValueError, match=r"output.kernel: weights has shape \(1, 70\), the model expects \(70, 1\)"):
        set_canonical_weights(net, wrong_shape)
    missing = {name: value for name, value in weights.items() if name != "embedding.hour"}
    with pytest.raises(ValueError, match="missing embedding.hour"):
        set_canonical_weights(net, missing)
    not_finite = dict(weights, **{"output.bias": np.array([np.nan], dtype=np.float32)})
    with pytest.raises(ValueError, match="non-finite"):
        set_canonical_weights(net, not_finite)
    assert all(torch.equal(before[name], value) for name, value in net.state_dict().items())
