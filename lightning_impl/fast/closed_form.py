"""The closed-form gradients of the fast engine's training step: the loss's and the activation's.

    loss, grad = keras_binary_crossentropy_with_gradient(probabilities, target, sample_weight)
    grad_logits = output_activation_backward(logits, grad, "hard_sigmoid")

    python -m pytest lightning_impl/tests/test_fast_system.py

Each runs the operations autograd would run backwards through
lightning_impl.metrics.keras_binary_crossentropy and
lightning_impl.model.apply_output_activation, in the same order, so the
values are bitwise loss.backward()'s (the tests check it); the fast engine's
closed-form step feeds them to the fused network's backward
(lightning_impl.fast.network.FusedStreetcarNet.logits_and_backward).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lightning_impl.metrics import KERAS_EPSILON
from configs.loader import OUTPUT_ACTIVATIONS


def output_activation_backward(logits: torch.Tensor, grad_probabilities: torch.Tensor, name: str) -> torch.Tensor:
    """dL/dlogits from dL/dprobabilities for apply_output_activation(logits, name).

    The same kernels and order of operations autograd runs for those
    functions, so the result is bitwise autograd's (the tests check it):
    relu6(x + 3) / 6 passes grad / 6 where 0 < x + 3 < 6 (hardtanh's backward); the Keras-2
    clamp passes its gradient where 0 <= 0.2 x + 0.5 <= 1 (clamp's backward
    includes both ends), times 0.2; sigmoid's is p (1 - p).
    """
    grad_probabilities = grad_probabilities.reshape(logits.shape)
    if name == "hard_sigmoid":
        return torch.ops.aten.hardtanh_backward(grad_probabilities / 6.0, logits + 3.0, 0.0, 6.0)
    if name == "hard_sigmoid_keras2":
        linear = 0.2 * logits + 0.5
        inside = (linear >= 0.0).logical_and_(linear <= 1.0)
        return torch.where(inside, grad_probabilities, 0.0) * 0.2
    if name == "sigmoid":
        return torch.ops.aten.sigmoid_backward(grad_probabilities, torch.sigmoid(logits))
    raise ValueError(f"unknown output_activation {name!r}; valid: {', '.join(OUTPUT_ACTIVATIONS)}")



# [docs:lightning-loss-gradient]
def keras_binary_crossentropy_with_gradient(probabilities: torch.Tensor, target: torch.Tensor,
                                            sample_weight: torch.Tensor | None = None, *,
                                            logits: torch.Tensor | None = None
                                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """keras_binary_crossentropy(...) and its gradient with respect to its input (shaped like it).

    With `logits` (sigmoid output) that input is the logits, otherwise the
    probabilities.  The loss runs the operations of keras_binary_crossentropy
    and the gradient those autograd runs backwards through them, in the same
    order, so both are bitwise what loss.backward() would give (the tests
    check it), including the zero gradient where the clip to
    [1e-7, 1 - 1e-7] is active (clamp's backward passes the gradient at the
    bounds themselves, as here).  lightning_impl.fast.system trains with it
    without the autograd engine; the intermediates (the clipped p, 1 - p,
    1 - y) are computed once for both.
    """
    source = probabilities if logits is None else logits
    flat_target = target.reshape(-1).to(source.dtype)
    batch = source.numel()
    # d(sum(w * l) / N) / dl_i = w_i / N  (plain mean: 1 / N); dot's backward is grad * other.
    grad_loss = source.new_ones(()).div(batch)
    weight = None if sample_weight is None else sample_weight.reshape(-1).to(source.dtype)
    grad_rows = grad_loss.expand(batch) if weight is None else grad_loss * weight
    if logits is not None:
        flat_logits = logits.reshape(-1)
        per_sample = F.binary_cross_entropy_with_logits(flat_logits, flat_target, reduction="none")
        # binary_cross_entropy_with_logits' backward: (sigmoid(x) - y) * grad.
        gradient = (torch.sigmoid(flat_logits) - flat_target) * grad_rows
    else:
        flat = probabilities.reshape(-1)
        clipped = flat.clamp(KERAS_EPSILON, 1.0 - KERAS_EPSILON)
        other_class, other_clipped = 1.0 - flat_target, 1.0 - clipped
        per_sample = -(flat_target * torch.log(clipped) + other_class * torch.log(other_clipped))
        # Backwards through -(y log c + (1 - y) log(1 - c)): the negation, each product, each log
        # (grad / its argument), the 1 - c (a negation), summed into dL/dc; then the clamp.
        negated = -grad_rows
        grad_clipped = (negated * flat_target).div(clipped) - (negated * other_class).div(other_clipped)
        inside = (flat >= KERAS_EPSILON).logical_and_(flat <= 1.0 - KERAS_EPSILON)
        gradient = torch.where(inside, grad_clipped, 0.0)
    loss = per_sample.mean() if weight is None else torch.dot(per_sample, weight) / batch
    return loss, gradient.reshape(source.shape)
# [/docs:lightning-loss-gradient]


__all__ = ["output_activation_backward", "keras_binary_crossentropy_with_gradient"]
