"""StreetcarNet, the plain port: structure, Keras's numeric conventions (KerasBatchNorm1d), weights.

    python -m pytest lightning_impl/tests/test_model.py -q
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from data.dataset import COLUMNS
from experiment.weights import expected_shapes
from lightning_impl.model import (BATCHNORM_EPSILON, KerasBatchNorm1d, StreetcarNet, apply_output_activation,
                                  get_canonical_weights, parameter_counts, set_canonical_weights)
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


def test_training_mode_normalises_with_batch_statistics_in_keras_form():
    net = perturbed_net(dropout_rate=0.0).train()
    features = random_features(40)
    expected = []
    for j, column in enumerate(COLUMNS):
        embedded = net.embeddings[column].weight.detach()[features[:, j]]
        mean, var = embedded.mean(0), embedded.var(0, unbiased=False)
        batchnorm = net.batchnorms[column]
        expected.append((embedded - mean) / torch.sqrt(var + BATCHNORM_EPSILON) * batchnorm.weight + batchnorm.bias)
    logits = torch.cat(expected, dim=1) @ net.output.weight.T + net.output.bias
    assert torch.allclose(net.logits(features), logits, atol=1e-12)


def test_keras_batchnorm_differs_from_torch_batchnorm_only_by_the_biased_moving_variance():
    """At batch 1000 the batch's share of the moving variance is 999/1000 of torch's; all else is stock."""
    torch.manual_seed(0)
    batch = torch.randn(1000, 10, dtype=torch.float64) * 3 + 1
    keras_style = KerasBatchNorm1d(10).to(torch.float64)
    stock = torch.nn.BatchNorm1d(10, eps=1e-3, momentum=0.01, dtype=torch.float64)
    with torch.no_grad():
        for module in (keras_style, stock):
            module.weight.copy_(torch.linspace(0.5, 2.0, 10, dtype=torch.float64))
            module.bias.copy_(torch.linspace(-1.0, 1.0, 10, dtype=torch.float64))
    assert torch.allclose(keras_style(batch), stock(batch), atol=1e-12)                  # the same outputs
    assert torch.allclose(keras_style.running_mean, stock.running_mean, atol=1e-15)
    unbiased = batch.var(0, unbiased=True)
    assert torch.allclose(stock.running_var - 0.99, 0.01 * unbiased, atol=1e-12)
    assert torch.allclose(keras_style.running_var - 0.99, 0.01 * unbiased * 999 / 1000, atol=1e-12)
    with torch.no_grad():
        assert torch.allclose(keras_style.eval()(batch), torch.nn.functional.batch_norm(
            batch, keras_style.running_mean, keras_style.running_var, keras_style.weight, keras_style.bias,
            eps=1e-3), atol=1e-12)
    # Keras keeps four weights per BatchNormalization: no num_batches_tracked counter.
    assert list(keras_style.state_dict()) == ["weight", "bias", "running_mean", "running_var"]
    assert "num_batches_tracked" in stock.state_dict()


def test_a_one_row_training_batch_is_normalised_as_keras_does():
    # A short last batch can hold one row: Keras normalises it (variance 0, output = beta);
    # F.batch_norm would refuse it in training mode.
    net = perturbed_net(dropout_rate=0.0, output_activation="sigmoid").train()
    logits = net.logits(random_features(1))
    betas = torch.cat([net.batchnorms[column].bias for column in COLUMNS])
    assert torch.allclose(logits.reshape(()), (net.output.weight.reshape(-1) * betas).sum() + net.output.bias[0],
                          atol=1e-12)


def test_dropout_is_one_stock_module_per_column():
    net = StreetcarNet(BOOK_SIZES, dropout_rate=0.2)
    assert list(net.dropouts) == list(COLUMNS)
    assert all(type(module) is torch.nn.Dropout and module.p == 0.2 for module in net.dropouts.values())
    features = random_features(500)
    torch.manual_seed(1)
    with torch.no_grad():
        net.eval()
        assert torch.equal(net(features), net(features))            # no dropout in inference
        net.train()
        assert not torch.equal(net(features), net(features))        # a fresh mask every training step


def test_checkpoints_of_the_earlier_layout_still_load():
    # Earlier versions saved the BatchNorm weights from a plain nn.Module (state_dict version 1);
    # torch's BatchNorm would add a num_batches_tracked entry to such state: KerasBatchNorm1d does not.
    source = perturbed_net(dtype=torch.float32)
    state = source.state_dict()
    state._metadata = {key: {"version": 1} for key in state._metadata}
    net = StreetcarNet(BOOK_SIZES)
    net.load_state_dict(state)                                        # strict: no missing or extra keys
    assert all(torch.equal(net.state_dict()[name], value) for name, value in source.state_dict().items())


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


def test_hard_sigmoid_backward_divides_by_six_as_keras_does():
    """Keras 3's relu6(x + 3) / 6 passes grad / 6; torch's F.hardsigmoid multiplies by 1/6 rounded to float32.

    Same values forward, so the difference is invisible in predictions; in float64 it is a relative 3e-8
    on every gradient (docs/differences.md row 35), which the port does not have.
    """
    import torch.nn.functional as F

    from lightning_impl.model import apply_output_activation

    logits = torch.tensor([-3.5, -2.0, 0.25, 2.9, 3.0], dtype=torch.float64, requires_grad=True)
    apply_output_activation(logits, "hard_sigmoid").sum().backward()
    assert logits.grad.tolist() == [0.0, 1 / 6, 1 / 6, 1 / 6, 0.0]
    stock = logits.detach().clone().requires_grad_()
    F.hardsigmoid(stock).sum().backward()
    assert stock.grad[1].item() == float(torch.tensor(1 / 6, dtype=torch.float32))   # the float32 constant
    assert torch.equal(apply_output_activation(logits.detach(), "hard_sigmoid"), F.hardsigmoid(logits.detach()))
