"""The fast engine's LightningModule: StreetcarClassifier with a fused network and its own training loop.

    from lightning_impl.fast.system import FastStreetcarClassifier
    module = FastStreetcarClassifier(dataset.vocab_sizes, vocabularies, gradients="closed_form")
    python -m lightning_impl.train --engine fast --steps-per-execution 8 --gradients closed_form

    python -m pytest lightning_impl/tests/test_fast_system.py lightning_impl/tests/test_engines.py

The same model, loss, metrics, optimiser, hyperparameters and checkpoints as
lightning_impl.system.StreetcarClassifier (a checkpoint of either engine loads
in the other), with what makes a step cheaper on this small model:

* the network is lightning_impl.fast.network.FusedStreetcarNet;
* manual optimisation: training_step runs Keras's train step itself (loss,
  gradients, one SGD update), so it can take a list of batches (the data
  module's steps_per_execution > 1, like Keras's compile(steps_per_execution=K))
  and make one update per batch: Lightning's per-step machinery is then paid
  once per K batches;
* gradients "closed_form" (default): the fused backward fed with the loss's and
  the activation's derivatives written out (lightning_impl.fast.closed_form),
  bitwise autograd's values without entering the autograd engine; "autograd":
  loss.backward() through manual_backward.  DDP (whose gradient all-reduce
  hooks into autograd) and precision plugins other than 32-bit always use
  autograd;
* DDP: BatchNorm statistics and dropout masks of the whole global batch
  (FusedStreetcarNet.split_batches_across), so W processes train like one.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from lightning.pytorch.plugins.precision import Precision

from lightning_impl.fast.closed_form import keras_binary_crossentropy_with_gradient
from lightning_impl.fast.network import FusedStreetcarNet
from lightning_impl.system import Batch, StreetcarClassifier

# How training_step gets its gradients: the same values either way.
GRADIENT_MODES = ("closed_form", "autograd")


class FastStreetcarClassifier(StreetcarClassifier):
    """StreetcarClassifier on the fast engine; `gradients`: "closed_form" (default) or "autograd"."""

    network_class = FusedStreetcarNet

    def __init__(self, vocab_sizes: Mapping[str, int], vocabularies: Mapping[str, Any] | None = None, *,
                 embedding_dim: int = 10, dropout_rate: float = 0.0003, output_activation: str = "hard_sigmoid",
                 learning_rate: float = 0.001, zero_weight: float = 1.0, one_weight: float = 1.0,
                 gradients: str = "closed_form") -> None:
        if gradients not in GRADIENT_MODES:
            raise ValueError(f"gradients {gradients!r}; valid: {', '.join(GRADIENT_MODES)}")
        super().__init__(vocab_sizes, vocabularies, embedding_dim=embedding_dim, dropout_rate=dropout_rate,
                         output_activation=output_activation, learning_rate=learning_rate,
                         zero_weight=zero_weight, one_weight=one_weight)
        # Manual optimisation: training_step makes the SGD update(s) itself; the updates are those of
        # Lightning's automatic loop, without its per-step closure machinery.
        self.automatic_optimization = False
        # The torch random state once the weights are drawn: a DDP fit starts its dropout draws
        # from here, as a one-process fit does (see on_fit_start).
        self._random_state_after_init = torch.get_rng_state()
        # Decided in on_fit_start from the Trainer's strategy and precision.
        self.closed_form_gradients = False

    def training_step(self, batch: Batch | list[Batch], batch_idx: int) -> torch.Tensor:
        """Keras's train step: the batch loss, its gradients, one SGD update; returns the loss.

        A list of batches (steps_per_execution > 1) gets one update per batch, in
        order; the last batch's loss is returned.  Outside a Trainer it only
        computes the loss of one batch, as the plain module does.
        """
        if self._trainer is None:
            return self._shared_step(batch, self.train_metrics)
        optimizer = self.optimizers()
        for one_batch in (batch if isinstance(batch, list) else (batch,)):
            if self.closed_form_gradients:
                loss = self.closed_form_step(one_batch)
            else:
                loss = self._shared_step(one_batch, self.train_metrics)
                optimizer.zero_grad(set_to_none=True)
                # Under DDP scaled by W * N_local / N_global, so DDP's gradient average is the global
                # batch's gradient (FusedStreetcarNet.split_batches_across); 1.0 in a single process.
                self.manual_backward(loss * self.net.ddp_loss_scale)
            optimizer.step()
        return loss

    # [docs:lightning-closed-form-step]
    def closed_form_step(self, batch: Batch) -> torch.Tensor:
        """_shared_step + zero_grad + backward without autograd: the loss, every parameter's .grad set.

        Bitwise what the autograd path computes (lightning_impl/tests/test_fast_system.py).
        """
        features, target, sample_weight = batch
        logits, backward = self.net.logits_and_backward(features)
        probabilities = self.net.activate(logits)
        if self.net.output_activation == "sigmoid":
            # Keras computes a sigmoid output's loss from the logits, unclipped (see _shared_step).
            loss, grad_logits = keras_binary_crossentropy_with_gradient(probabilities, target, sample_weight,
                                                                        logits=logits)
        else:
            loss, grad_probabilities = keras_binary_crossentropy_with_gradient(probabilities, target, sample_weight)
            grad_logits = self.net.activation_backward(logits, grad_probabilities)
        backward(grad_logits)
        self.train_metrics.record(loss, probabilities, target, sample_weight)
        return loss
    # [/docs:lightning-closed-form-step]

    def on_fit_start(self) -> None:
        # Closed-form gradients need one process (DDP's gradient all-reduce runs from autograd
        # hooks) and plain 32-bit precision (other plugins scale the loss or autocast in
        # manual_backward).  Otherwise autograd, with the same values.
        world_size = self.trainer.world_size
        self.closed_form_gradients = (self.hparams.gradients == "closed_form" and world_size == 1
                                      and type(self.trainer.precision_plugin) is Precision)
        # DDP: the data module gives each process a slice of every global batch; the network
        # normalises and drops out over the whole batch (FusedStreetcarNet.split_batches_across).
        if world_size > 1:
            import torch.distributed as distributed

            def batch_sum(tensor: torch.Tensor) -> torch.Tensor:
                distributed.all_reduce(tensor)  # SUM over every process (gloo on CPU, NCCL on GPU)
                return tensor

            self.net.split_batches_across(batch_sum, self.trainer.global_rank, world_size)
            if self.trainer.ckpt_path is None:
                # Lightning's DDP strategy re-seeds every process with the global seed when it
                # sets up the process group (lightning.fabric reset_seed), after the weights were
                # drawn; a single-device fit does not.  Going back to the state after __init__
                # gives every process the one-process run's dropout stream (a resumed fit gets
                # its random states from the checkpoint instead).
                torch.set_rng_state(self._random_state_after_init)

    def on_fit_end(self) -> None:
        self.net.split_batches_across(None, 0, 1)
        self.closed_form_gradients = False


__all__ = ["FastStreetcarClassifier", "GRADIENT_MODES"]
