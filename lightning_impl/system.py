"""The LightningModule: the book's model, Keras's loss and metrics, SGD.

    from lightning_impl.system import StreetcarClassifier
    module = StreetcarClassifier(dataset.vocab_sizes, dataset.vocabularies.to_json_dict(),
                                 learning_rate=0.001, one_weight=1.0)
    trainer.fit(module, datamodule=datamodule)          # see lightning_impl.train for the whole run
    StreetcarClassifier.load_from_checkpoint(path)      # self-contained: vocabularies are hyperparameters

    python -m pytest lightning_impl/tests/test_system.py

The network is lightning_impl.model.StreetcarNet; this module adds what Keras's
compile() and fit() add:

* loss: Keras binary_crossentropy with class weights, sum(w * l) / N per batch
  (lightning_impl.metrics);
* optimiser: SGD(learning_rate), no momentum (the book's), stepped once per
  batch by training_step (manual optimisation: the same update as Lightning's
  automatic loop, without its per-step closure machinery);
* gradients: in closed form by default (`gradients="closed_form"`): the
  network's fused backward (StreetcarNet.logits_and_backward) fed with the
  loss's and the activation's derivatives written out
  (metrics.keras_binary_crossentropy_with_gradient), bitwise the values autograd
  computes, without entering the autograd engine.  Its fixed cost - ~0.1 ms a
  backward call plus ~10 us per parameter tensor (23 here), measured on the
  2-core CPU - is about a third of this model's ~1 ms step; Keras pays nothing
  similar, because its train step is one compiled tf.function.  Under DDP
  (whose gradient all-reduce hooks into autograd) or a precision plugin other
  than 32-bit (loss scaling, autocast) the step goes through autograd and
  manual_backward, as it does with `gradients="autograd"`;
* metrics: the Keras history keys loss, accuracy, recall, weighted_accuracy
  and their val_* twins, aggregated over the whole epoch exactly as Keras
  does (lightning_impl.metrics), logged once per epoch - training figures from
  the last training batch's hook, so they are in trainer.callback_metrics
  before any on_train_epoch_end hook (EarlyStopping, ModelCheckpoint and the
  Keras-compatible ReduceLROnPlateau all see them), validation figures from
  on_validation_epoch_end;
* `history`: {key: [value per epoch]}, the values exactly as logged (float32,
  what the callbacks compared), like Keras's History; saved in every
  checkpoint, so a resumed run continues it;
* the random generators' states, saved in every checkpoint and restored when
  a fit resumes from it, so the resumed run draws the dropout masks the
  uninterrupted run would have drawn (Lightning itself does not keep them).

Nothing is logged per step: a step records detached tensors and the metric
arithmetic runs once per epoch, which keeps the hot path to the forward,
the loss, the backward and the SGD update.
"""

from __future__ import annotations

import random
from typing import Any, Mapping

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.precision import Precision

from lightning_impl.metrics import (KerasEpochMetrics, keras_binary_crossentropy,
                                   keras_binary_crossentropy_with_gradient)
from lightning_impl.model import StreetcarNet, parameter_counts

Batch = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]

HISTORY_CHECKPOINT_KEY = "keras_history"
RANDOM_STATE_CHECKPOINT_KEY = "random_states"
# How training_step gets its gradients (see the module docstring): the same values either way.
GRADIENT_MODES = ("closed_form", "autograd")


def collect_random_states() -> dict[str, Any]:
    """The generators a training step draws from (torch's, for the dropout masks; NumPy's and
    Python's for completeness), so that a run resumed from a checkpoint draws what the
    uninterrupted run would have drawn.  Lightning does not keep them in checkpoints."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    # Plain ints, lists and tensors only: the checkpoint stays loadable with torch.load(weights_only=True).
    states: dict[str, Any] = {"torch": torch.get_rng_state(),
                              "numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(cached_gaussian)],
                              "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["torch_cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: Mapping[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached_gaussian))
    random.setstate(states["python"])
    if "torch_cuda" in states and torch.cuda.is_available() and len(states["torch_cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["torch_cuda"])


class StreetcarClassifier(L.LightningModule):
    """Streetcar-delay classifier: StreetcarNet trained the way the book's Keras model is.

    Args:
        vocab_sizes: {column: vocabulary size} for the seven columns.
        vocabularies: the encoding (data.vocab.Vocabularies.to_json_dict()),
            stored so that a checkpoint alone can score a trip; None for a
            model without one (e.g. converted from a book-era Keras file).
        embedding_dim, dropout_rate, output_activation: StreetcarNet's.
        learning_rate: SGD learning rate.
        zero_weight, one_weight: Keras's class_weight {0: zero_weight, 1:
            one_weight}, recorded for provenance; the data module delivers the
            per-row weights with each training batch.
        gradients: "closed_form" (default) or "autograd", see the module
            docstring; the same updates, bitwise, either way.
    """

    def __init__(self, vocab_sizes: Mapping[str, int], vocabularies: Mapping[str, Any] | None = None, *,
                 embedding_dim: int = 10, dropout_rate: float = 0.0003, output_activation: str = "hard_sigmoid",
                 learning_rate: float = 0.001, zero_weight: float = 1.0, one_weight: float = 1.0,
                 gradients: str = "closed_form") -> None:
        super().__init__()
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
        if gradients not in GRADIENT_MODES:
            raise ValueError(f"gradients {gradients!r}; valid: {', '.join(GRADIENT_MODES)}")
        self.save_hyperparameters()
        self.net = StreetcarNet(vocab_sizes, embedding_dim=embedding_dim, dropout_rate=dropout_rate,
                                output_activation=output_activation)
        self.train_metrics = KerasEpochMetrics()
        self.val_metrics = KerasEpochMetrics()
        self.test_metrics = KerasEpochMetrics()
        self.history: dict[str, list[float]] = {}
        self._epoch_figures: dict[str, float] = {}
        # Manual optimisation: training_step does Keras's train step itself (loss, backward, one SGD
        # update).  The update is the same as Lightning's automatic loop would make; what goes is the
        # closure machinery around it, ~10-20% of a step at this model's ~1 ms steps (measured).
        self.automatic_optimization = False
        # The torch random state once the weights are drawn: a DDP fit starts its dropout draws
        # from here, as a one-process fit does (see on_fit_start).
        self._random_state_after_init = torch.get_rng_state()
        # Decided in on_fit_start from the Trainer's strategy and precision.
        self.closed_form_gradients = False

    # -- forward ---------------------------------------------------------------

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, 7) codes -> (batch, 1) probabilities of a delay."""
        return self.net(features)

    # -- steps -----------------------------------------------------------------

    # [docs:lightning-steps]
    def _shared_step(self, batch: Batch, metrics: KerasEpochMetrics) -> torch.Tensor:
        features, target, sample_weight = batch
        logits = self.net.logits(features)
        probabilities = self.net.activate(logits)
        # Keras computes a sigmoid output's loss from the logits it caches on the tensor, unclipped.
        loss = keras_binary_crossentropy(probabilities, target, sample_weight,
                                         logits=logits if self.net.output_activation == "sigmoid" else None)
        metrics.record(loss, probabilities, target, sample_weight)
        return loss

    def training_step(self, batch: Batch | list[Batch], batch_idx: int) -> torch.Tensor:
        """Keras's train step: the batch loss, its gradients, one SGD update; returns the loss.

        A list of batches (the data module's steps_per_execution > 1) gets one
        update per batch, in order, as Keras's compile(steps_per_execution=K)
        does; the last batch's loss is returned.  Called outside a Trainer (a
        test comparing one step with Keras) it only computes the loss of a
        single batch, as an automatically optimised module would.
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
                # batch's gradient (StreetcarNet.split_batches_across); 1.0 in a single process.
                self.manual_backward(loss * self.net.ddp_loss_scale)
            optimizer.step()
        return loss
    # [/docs:lightning-steps]

    # [docs:lightning-closed-form-step]
    def closed_form_step(self, batch: Batch) -> torch.Tensor:
        """_shared_step + zero_grad + backward without autograd: the loss, every parameter's .grad set.

        Bitwise what the autograd path computes (lightning_impl/tests/test_system.py).
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
        # normalises and drops out over the whole batch (StreetcarNet.split_batches_across).
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

    def on_train_batch_end(self, outputs: Any, batch: Batch, batch_idx: int) -> None:
        # The epoch's training figures, logged from the last batch's hook: Lightning's
        # on_train_epoch_end runs plain callbacks (the Keras-compatible ReduceLROnPlateau)
        # before the module's own hook, and they must see "loss" & co. like Keras's do.
        if self.trainer.is_last_batch:
            self._log_epoch(self.train_metrics, prefix="")

    def on_train_epoch_end(self) -> None:
        for key, value in self._epoch_figures.items():
            self.history.setdefault(key, []).append(value)
        self._epoch_figures = {}

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._shared_step(batch, self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch(self.val_metrics, prefix="val_")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._shared_step(batch, self.test_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_epoch(self.test_metrics, prefix="test_")

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self.net(batch[0]).reshape(-1)

    # [docs:lightning-log-epoch]
    def _log_epoch(self, metrics: KerasEpochMetrics, prefix: str) -> None:
        if self.trainer.sanity_checking:
            metrics.reset()
            return
        figures = {f"{prefix}{key}": value for key, value in metrics.compute().items()}
        # batch_size=1: one value per epoch.  torchmetrics has already summed every process's
        # states, so each process logs the same value; sync_dist=True averages equal numbers
        # (a no-op) and keeps Lightning from warning about unsynced epoch metrics under DDP.
        self.log_dict(figures, on_step=False, on_epoch=True, batch_size=1, sync_dist=True)
        if prefix != "test_":
            # Keep what the callbacks see: Lightning logs float32, as Keras's logs are.
            self._epoch_figures.update({key: float(np.float32(value)) for key, value in figures.items()})
    # [/docs:lightning-log-epoch]

    # -- optimiser -------------------------------------------------------------

    # [docs:lightning-optimizer]
    def configure_optimizers(self) -> torch.optim.Optimizer:
        # The book: SGD(learning_rate=0.001), momentum 0 (Keras's and torch's SGD defaults agree).
        # foreach=True: one fused update over the 23 parameter tensors (torch's CPU default loops).
        return torch.optim.SGD(self.parameters(), lr=self.hparams.learning_rate, momentum=0.0, foreach=True)
    # [/docs:lightning-optimizer]

    # -- checkpoints and bookkeeping ------------------------------------------

    # [docs:lightning-checkpoint-extras]
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[HISTORY_CHECKPOINT_KEY] = {key: list(values) for key, values in self.history.items()}
        checkpoint[RANDOM_STATE_CHECKPOINT_KEY] = collect_random_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.history = {key: list(values) for key, values in checkpoint.get(HISTORY_CHECKPOINT_KEY, {}).items()}
        # Only a resumed fit continues the random streams (dropout masks); loading a model to
        # score or test must not disturb the caller's generators.
        trainer = self._trainer
        if trainer is not None and trainer.state.fn == "fit" and RANDOM_STATE_CHECKPOINT_KEY in checkpoint:
            restore_random_states(checkpoint[RANDOM_STATE_CHECKPOINT_KEY])
    # [/docs:lightning-checkpoint-extras]

    def parameter_counts(self) -> dict[str, int]:
        """Keras's model.summary() counts: total / trainable / non_trainable."""
        return parameter_counts(self.net)


__all__ = ["StreetcarClassifier", "HISTORY_CHECKPOINT_KEY", "GRADIENT_MODES"]
