"""StreetcarClassifier, the plain engine: Keras's loss from training_step, Lightning's automatic optimisation.

    python -m pytest lightning_impl/tests/test_system.py -q
"""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from data.dataset import COLUMNS
from lightning_impl.metrics import keras_binary_crossentropy
from lightning_impl.system import StreetcarClassifier
from lightning_impl.tests.helpers import BOOK_SIZES


def make_batch(rows: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    features = torch.stack([torch.randint(0, BOOK_SIZES[column], (rows,), generator=generator) for column in COLUMNS],
                           dim=1)
    target = (torch.rand(rows, generator=generator) < 0.3).float()
    return features, target, torch.where(target > 0.5, 16.1, 0.52)


@pytest.mark.parametrize("output_activation", ["hard_sigmoid", "sigmoid"])
def test_training_step_returns_keras_class_weighted_loss(output_activation):
    torch.manual_seed(0)
    module = StreetcarClassifier(BOOK_SIZES, output_activation=output_activation, dropout_rate=0.0)
    assert module.automatic_optimization
    batch = make_batch(500, seed=1)
    loss = module.training_step(batch, 0)
    reference = copy.deepcopy(module)          # the same weights, moving statistics already moved once
    logits = reference.net.logits(batch[0])
    expected = keras_binary_crossentropy(reference.net.activate(logits), batch[1], batch[2],
                                         logits=logits if output_activation == "sigmoid" else None)
    # Keras: sum(w * l) / N, not torch's sum(w * l) / sum(w).
    assert loss.shape == () and loss.requires_grad
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-6)
    per_row = keras_binary_crossentropy(reference.net.activate(logits), batch[1], None,
                                        logits=logits if output_activation == "sigmoid" else None)
    assert float(loss.detach()) != pytest.approx(float(per_row), rel=1e-3)          # the weights do count


def test_a_trainer_step_is_one_sgd_update_of_the_loss_gradient():
    torch.manual_seed(0)
    module = StreetcarClassifier(BOOK_SIZES, dropout_rate=0.0, learning_rate=0.5)
    by_hand = copy.deepcopy(module)
    batch = make_batch(400, seed=2)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=DataLoader([batch], batch_size=None))
    loss = by_hand.training_step(batch, 0)
    loss.backward()
    with torch.no_grad():
        for parameter in by_hand.parameters():
            parameter -= 0.5 * parameter.grad
    for (name, expected), parameter in zip(by_hand.named_parameters(), module.parameters()):
        assert torch.allclose(parameter, expected, atol=1e-6), name
    assert float((module.net.output.weight - StreetcarClassifier(BOOK_SIZES).net.output.weight).abs().max()) > 0
    assert module.history["loss"] == [pytest.approx(float(loss.detach()), rel=1e-6)]


def test_configure_optimizers_is_the_books_sgd():
    optimizer = StreetcarClassifier(BOOK_SIZES, learning_rate=0.003).configure_optimizers()
    assert type(optimizer) is torch.optim.SGD
    assert optimizer.defaults["lr"] == 0.003 and optimizer.defaults["momentum"] == 0.0
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        StreetcarClassifier(BOOK_SIZES, learning_rate=0.0)
