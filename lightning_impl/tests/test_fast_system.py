"""FastStreetcarClassifier's training step: closed-form gradients are bitwise autograd's.

    python -m pytest lightning_impl/tests/test_fast_system.py -q

The fast engine's default training step (gradients="closed_form") never enters
the autograd engine: the network's fused backward is fed with the loss's and
the output activation's derivatives written out.  These tests hold it to the
autograd path op for op - loss, every parameter's gradient, the moving
statistics and the SGD update must be *equal*, not close - for each output
activation, with and without class weights, with dropped elements, in
float32 (what training uses) and float64.
"""

from __future__ import annotations

import copy

import pytest
import torch

import lightning_impl.fast.network as network_module
from data.dataset import COLUMNS
from lightning_impl.fast.closed_form import keras_binary_crossentropy_with_gradient, output_activation_backward
from lightning_impl.fast.network import sample_dropout_positions
from lightning_impl.fast.system import GRADIENT_MODES, FastStreetcarClassifier
from lightning_impl.metrics import keras_binary_crossentropy
from lightning_impl.model import apply_output_activation
from lightning_impl.tests.helpers import BOOK_SIZES

ACTIVATIONS = ["hard_sigmoid", "hard_sigmoid_keras2", "sigmoid"]


def make_batch(rows: int, seed: int, weighted: bool = True, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    features = torch.stack([torch.randint(0, BOOK_SIZES[column], (rows,), generator=generator) for column in COLUMNS],
                           dim=1)
    target = (torch.rand(rows, generator=generator) < 0.3).to(dtype)
    # Keras's balanced class weights for a ~3 % positive class are about 0.52 / 16.
    weight = torch.where(target > 0.5, 16.1, 0.52).to(dtype) if weighted else None
    return features, target, weight


def perturbed_classifier(output_activation: str, dtype=torch.float32, dropout_rate: float = 0.0003
                         ) -> FastStreetcarClassifier:
    """A classifier whose weights are far from their initial values, so that every gradient is non-zero
    and some outputs sit in the flat parts of the activation (zero gradient there)."""
    torch.manual_seed(0)
    classifier = FastStreetcarClassifier(BOOK_SIZES, output_activation=output_activation, learning_rate=0.05,
                                     dropout_rate=dropout_rate).to(dtype)
    with torch.no_grad():
        for parameter in classifier.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.6)
    return classifier.train()


def autograd_step(classifier: FastStreetcarClassifier, batch) -> torch.Tensor:
    classifier.zero_grad(set_to_none=True)
    loss = classifier._shared_step(batch, classifier.train_metrics)
    loss.backward()
    return loss


@pytest.mark.parametrize("output_activation", ACTIVATIONS)
@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_closed_form_step_equals_autograd_bitwise(monkeypatch, output_activation, weighted, dtype):
    batch = make_batch(1000, seed=3, weighted=weighted, dtype=dtype)
    # The same dropped elements for both paths (each draw would otherwise consume the generator).
    dropped = sample_dropout_positions(1000 * 70, 0.002)
    assert dropped.numel() > 50
    monkeypatch.setattr(network_module, "sample_dropout_positions", lambda *args, **kwargs: dropped)
    by_autograd = perturbed_classifier(output_activation, dtype, dropout_rate=0.002)
    closed_form = copy.deepcopy(by_autograd)
    with torch.no_grad():
        probabilities = copy.deepcopy(by_autograd).net(batch[0])

    expected_loss = autograd_step(by_autograd, batch)
    loss = closed_form.closed_form_step(batch)

    assert loss.dtype == dtype and loss.shape == ()
    assert torch.equal(loss, expected_loss.detach())
    flat = probabilities.reshape(-1)
    # The batch reaches the activation's flat parts (zero gradient) as well as its slope.
    assert 0 < int(((flat <= 1e-7) | (flat >= 1 - 1e-7)).sum()) < flat.numel()
    for (name, expected), parameter in zip(by_autograd.named_parameters(), closed_form.parameters()):
        assert parameter.grad is not None and parameter.grad.shape == expected.shape, name
        assert torch.equal(parameter.grad, expected.grad), name
    for (name, expected), buffer in zip(by_autograd.named_buffers(), closed_form.buffers()):
        assert torch.equal(buffer, expected), name          # moving statistics updated alike
    assert any(float(p.grad.abs().max()) > 1e-3 for p in closed_form.parameters())


def test_a_closed_form_sgd_update_equals_the_autograd_one():
    batch = make_batch(700, seed=5)
    by_autograd = perturbed_classifier("hard_sigmoid", dropout_rate=0.0)
    closed_form = copy.deepcopy(by_autograd)
    optimizers = [module.configure_optimizers() for module in (by_autograd, closed_form)]
    for step in range(4):                       # grads replaced each step, never accumulated
        autograd_step(by_autograd, batch)
        optimizers[0].step()
        if step == 2:
            # Whatever replaced the .grad tensors in between, the next step's are written afresh.
            closed_form.zero_grad(set_to_none=True)
        elif step == 3:
            closed_form.net.output.bias.grad = torch.full_like(closed_form.net.output.bias, 99.0)
        closed_form.closed_form_step(batch)
        optimizers[1].step()
    for (name, expected), parameter in zip(by_autograd.named_parameters(), closed_form.parameters()):
        assert torch.equal(parameter, expected), name
    assert not torch.equal(closed_form.net.output.weight, perturbed_classifier("hard_sigmoid").net.output.weight)


@pytest.mark.parametrize("output_activation", ACTIVATIONS)
def test_loss_and_activation_derivatives_are_autograd_ones(output_activation):
    torch.manual_seed(1)
    logits = (torch.randn(2000, 1) * 4).requires_grad_(True)
    target = (torch.rand(2000) < 0.3).float()
    weight = torch.where(target > 0.5, 16.1, 0.52)
    probabilities = apply_output_activation(logits, output_activation)
    sigmoid = output_activation == "sigmoid"
    expected_loss = keras_binary_crossentropy(probabilities, target, weight, logits=logits if sigmoid else None)
    expected_loss.backward()
    with torch.no_grad():
        if sigmoid:
            loss, gradient = keras_binary_crossentropy_with_gradient(probabilities, target, weight, logits=logits)
        else:
            loss, grad_probabilities = keras_binary_crossentropy_with_gradient(probabilities, target, weight)
            gradient = output_activation_backward(logits, grad_probabilities, output_activation)
    assert torch.equal(loss, expected_loss.detach())
    assert gradient.shape == logits.shape
    assert torch.equal(gradient, logits.grad)
    if not sigmoid:
        # Where the output is clipped to 1e-7 or 1 - 1e-7, Keras's loss has no gradient.
        flat = probabilities.detach().reshape(-1)
        assert bool((gradient.reshape(-1)[(flat < 1e-7) | (flat > 1 - 1e-7)] == 0).all())


def test_closed_form_step_is_for_training_mode_only():
    classifier = perturbed_classifier("hard_sigmoid").eval()
    with pytest.raises(ValueError, match="training steps"):
        classifier.closed_form_step(make_batch(10, seed=0))


def test_gradient_mode_is_checked():
    assert GRADIENT_MODES == ("closed_form", "autograd")
    with pytest.raises(ValueError, match="closed_form, autograd"):
        FastStreetcarClassifier(BOOK_SIZES, gradients="tape")


@pytest.mark.parametrize("weighted", [True, False])
def test_loss_derivative_by_probability_is_autograd_one_including_the_clipped_ends(weighted):
    # Probabilities at and beyond Keras's clip bounds (no gradient there), at the bounds' float32
    # neighbours and inside; targets of both classes at each.
    values = torch.tensor([0.0, 1e-8, 1e-7, 2e-7, 0.25, 0.5, 0.75, 1 - 2e-7, 1 - 1e-7, 1.0], dtype=torch.float32)
    probabilities = values.repeat(2).reshape(-1, 1).requires_grad_(True)
    target = torch.cat([torch.zeros(len(values)), torch.ones(len(values))])
    weight = torch.where(target > 0.5, 16.1, 0.52) if weighted else None
    expected_loss = keras_binary_crossentropy(probabilities, target, weight)
    expected_loss.backward()
    loss, gradient = keras_binary_crossentropy_with_gradient(probabilities.detach(), target, weight)
    assert torch.equal(loss, expected_loss.detach())
    assert gradient.shape == probabilities.shape
    assert torch.equal(gradient, probabilities.grad)
    clipped = (values < 1e-7) | (values > 1 - 1e-7)
    assert bool((gradient.reshape(2, -1)[:, clipped] == 0).all())
    assert bool((gradient.reshape(2, -1)[:, ~clipped] != 0).all())
