"""The two engines are one model: the fast engine's fused network and loop against the plain port.

    python -m pytest lightning_impl/tests/test_engines.py -q

* outputs and gradients of FusedStreetcarNet equal StreetcarNet's for the same
  weights and the same dropped elements: float64 1e-12 (outputs) / 1e-10
  (gradients); float32 1e-6 (the two sum the same terms in another order);
* the fused storage follows copies, dtype changes and optimiser updates;
* the fast engine's dropout draws the dropped positions directly, with
  nn.Dropout's distribution;
* a 3-epoch run on 100,000 rows with dropout 0 gives the same history
  (<= 1e-5) and the same kept epoch on both engines;
* a checkpoint saved by either engine loads in the other and predicts the same.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import lightning_impl.fast.network as network_module
from data.dataset import COLUMNS
from lightning_impl.fast.network import FusedStreetcarNet, sample_dropout_positions
from lightning_impl.fast.system import FastStreetcarClassifier
from lightning_impl.model import StreetcarNet
from lightning_impl.system import StreetcarClassifier
from lightning_impl.tests.helpers import BOOK_SIZES, make_request, make_synthetic_dataset
from lightning_impl.train import train

ACTIVATIONS = ["hard_sigmoid", "hard_sigmoid_keras2", "sigmoid"]
# float32: the fused kernel sums per table row, the plain modules per sample, so the two round
# differently: logits and gradients within 1e-6 (measured <= 5.5e-7 and <= 7.5e-8).
FLOAT32_ATOL = 1e-6
# Histories of the two engines over 3 epochs of 100 steps (dropout 0): float32 rounding compounded.
HISTORY_ATOL = 1e-5
QUIET = {"progress": lambda message: None, "accelerator": "cpu", "devices": 1}


def random_features(n_rows: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, BOOK_SIZES[column], (n_rows,), generator=generator) for column in COLUMNS],
                       dim=1)


def twin_networks(output_activation: str = "hard_sigmoid", dropout_rate: float = 0.0, dtype=torch.float64,
                  seed: int = 0) -> tuple[StreetcarNet, FusedStreetcarNet]:
    """A plain and a fused network holding the same perturbed weights (moving statistics included)."""
    torch.manual_seed(seed)
    plain = StreetcarNet(BOOK_SIZES, dropout_rate=dropout_rate, output_activation=output_activation).to(dtype)
    with torch.no_grad():
        for parameter in plain.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
        for name, buffer in plain.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(torch.randn_like(buffer) * 0.05)
            elif name.endswith("running_var"):
                buffer.copy_(torch.rand_like(buffer) * 0.01 + 5e-4)
    fused = FusedStreetcarNet(BOOK_SIZES, dropout_rate=dropout_rate, output_activation=output_activation).to(dtype)
    fused.load_state_dict(plain.state_dict())
    return plain, fused


class FixedMaskDropout(nn.Module):
    """Dropout with given dropped rows of one column: what nn.Dropout does for one draw."""

    def __init__(self, dropped: torch.Tensor, rate: float) -> None:
        super().__init__()
        self.dropped, self.rate = dropped, rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        return x * (~self.dropped).to(x.dtype) / (1.0 - self.rate)


def use_dropped_positions(plain: StreetcarNet, positions: torch.Tensor, rows: int, monkeypatch) -> None:
    """Make both networks drop exactly the flat (sample * 70 + feature) `positions`."""
    mask = torch.zeros(rows * len(COLUMNS) * plain.embedding_dim, dtype=torch.bool)
    mask[positions] = True
    mask = mask.view(rows, len(COLUMNS), plain.embedding_dim)
    for j, column in enumerate(COLUMNS):
        plain.dropouts[column] = FixedMaskDropout(mask[:, j], plain.dropout_rate)
    monkeypatch.setattr(network_module, "sample_dropout_positions", lambda *args, **kwargs: positions)


def gradients(net: nn.Module) -> dict[str, torch.Tensor]:
    return {name: parameter.grad.clone() for name, parameter in net.named_parameters()}


@pytest.mark.parametrize("output_activation", ACTIVATIONS)
@pytest.mark.parametrize("training", [True, False])
def test_fused_outputs_and_gradients_equal_the_plain_ones(monkeypatch, output_activation, training):
    plain, fused = twin_networks(output_activation, dropout_rate=0.01)
    features = random_features(300, seed=1)
    target = torch.rand(300, 1, dtype=torch.float64)
    positions = sample_dropout_positions(300 * 70, 0.01)
    assert positions.numel() > 100                    # the mask really drops elements at this rate
    use_dropped_positions(plain, positions, 300, monkeypatch)
    plain.train(training), fused.train(training)
    outputs = {}
    for name, net in (("plain", plain), ("fused", fused)):
        outputs[name] = net(features)
        ((outputs[name] - target) ** 2).sum().backward()
    assert torch.allclose(outputs["fused"], outputs["plain"], atol=1e-12, rtol=0)
    plain_gradients, fused_gradients = gradients(plain), gradients(fused)
    for name, expected in plain_gradients.items():
        assert torch.allclose(fused_gradients[name], expected, atol=1e-10, rtol=0), name
    assert any(float(grad.abs().max()) > 1e-3 for grad in fused_gradients.values())
    for name, buffer in plain.state_dict().items():     # moving statistics updated alike (training)
        assert torch.allclose(fused.state_dict()[name], buffer, atol=1e-12, rtol=0), name


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_float32_engines_agree_within_rounding(seed):
    # Keras-initialised weights and a 1000-row training batch, as a training step sees them.  The
    # networks are compared up to their logits, with one fixed dL/dlogits: the activation and the
    # loss after them are the same code in both engines (and the loss's 1/p near p = 0 would only
    # magnify float32 noise in p).
    torch.manual_seed(seed)
    plain = StreetcarNet(BOOK_SIZES, dropout_rate=0.0)
    fused = FusedStreetcarNet(BOOK_SIZES, dropout_rate=0.0)
    fused.load_state_dict(plain.state_dict())
    features = random_features(1000, seed=seed + 10)
    grad_logits = torch.randn(1000, 1) / 1000
    logits = {}
    for name, net in (("plain", plain.train()), ("fused", fused.train())):
        logits[name] = net.logits(features)
        logits[name].backward(grad_logits)
    plain_gradients, fused_gradients = gradients(plain), gradients(fused)
    largest = max(float(grad.abs().max()) for grad in plain_gradients.values())
    worst = max(float((fused_gradients[name] - expected).abs().max()) for name, expected in plain_gradients.items())
    logit_difference = float((logits["fused"] - logits["plain"]).abs().max())
    print(f"\nseed {seed}: float32 logits differ by {logit_difference:.1e}, gradients by {worst:.1e} "
          f"(largest gradient {largest:.2f})")
    assert logit_difference <= FLOAT32_ATOL
    assert worst <= FLOAT32_ATOL and largest > 0.01
    with torch.no_grad():
        assert torch.allclose(fused.eval()(features), plain.eval()(features), atol=FLOAT32_ATOL, rtol=0)


def test_fused_storage_follows_copies_dtype_changes_and_optimiser_updates():
    plain, fused = twin_networks()
    plain.eval(), fused.eval()
    features = random_features(64)
    expected = plain(features)
    clone = copy.deepcopy(fused)                                 # parameters get new storage
    assert torch.allclose(clone(features), expected, atol=1e-12)
    assert torch.allclose(copy.deepcopy(fused).float()(features).double(), expected, atol=1e-5)
    optimizer = torch.optim.SGD(fused.parameters(), lr=0.5)
    fused.train()(features).sum().backward()
    optimizer.step()
    plain.load_state_dict(fused.state_dict())                    # the update reached the per-column tensors
    fused.eval()
    assert not torch.allclose(fused(features), expected)
    assert torch.allclose(fused(features), plain(features), atol=1e-12)


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


@pytest.fixture(scope="module")
def engine_runs(tmp_path_factory) -> dict[str, dict]:
    """Experiment 5 (class weights, early stopping on val_accuracy) for 3 epochs on 100,000 rows, dropout 0."""
    dataset = make_synthetic_dataset(100_000, seed=1)
    root = tmp_path_factory.mktemp("engines")
    return {engine: train(make_request(root / engine, "5", epochs=3, patience=10, batch_size=1000,
                                       learning_rate=0.01, hyperparameters__dropout_rate=0.0,
                                       lightning__engine=engine), dataset=dataset, **QUIET)
            for engine in ("plain", "fast")}


def test_three_epochs_on_100k_rows_give_the_same_history_and_kept_epoch(engine_runs):
    plain, fast = engine_runs["plain"], engine_runs["fast"]
    assert plain["best_epoch"] == fast["best_epoch"]
    assert set(plain["history"]) == set(fast["history"])
    differences = {key: float(np.max(np.abs(np.subtract(fast["history"][key], values))))
                   for key, values in plain["history"].items()}
    print(f"\nplain vs fast, 3 epochs on 100,000 rows: largest history difference {max(differences.values()):.1e}, "
          f"kept epoch {plain['best_epoch']} on both")
    assert max(differences.values()) <= HISTORY_ATOL, differences
    assert len(set(plain["history"]["loss"])) == 3                 # the model did train


@pytest.mark.parametrize("saved_by, loaded_by", [(StreetcarClassifier, FastStreetcarClassifier),
                                                 (FastStreetcarClassifier, StreetcarClassifier)])
def test_a_checkpoint_of_either_engine_loads_in_the_other(engine_runs, saved_by, loaded_by):
    engine = "plain" if saved_by is StreetcarClassifier else "fast"
    path = Path(engine_runs[engine]["best_checkpoint"])
    saved = saved_by.load_from_checkpoint(str(path), map_location="cpu", weights_only=True)
    loaded = loaded_by.load_from_checkpoint(str(path), map_location="cpu", weights_only=True)
    assert type(loaded.net) is (FusedStreetcarNet if loaded_by is FastStreetcarClassifier else StreetcarNet)
    assert list(loaded.state_dict()) == list(saved.state_dict())
    assert all(torch.equal(loaded.state_dict()[name], value) for name, value in saved.state_dict().items())
    assert loaded.history == saved.history
    assert len(loaded.history["loss"]) == engine_runs[engine]["best_epoch"] + 1
    features = random_features(2000, seed=4)
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(features), saved.eval()(features), atol=FLOAT32_ATOL, rtol=0)
