"""The LightningModule: the book's model, Keras's loss and metrics, SGD - Lightning's automatic optimisation.

    from lightning_impl.system import StreetcarClassifier
    module = StreetcarClassifier(dataset.vocab_sizes, dataset.vocabularies.to_json_dict(),
                                 learning_rate=0.001, one_weight=1.0)
    trainer.fit(module, datamodule=datamodule)          # see lightning_impl.train for the whole run
    StreetcarClassifier.load_from_checkpoint(path)      # self-contained: vocabularies are hyperparameters

    python -m pytest lightning_impl/tests/test_system.py

What Keras's compile() and fit() add to the network (lightning_impl.model):

* loss: Keras binary_crossentropy with class weights, sum(w * l) / N per batch
  (lightning_impl.metrics.keras_binary_crossentropy); training_step returns it
  and Lightning runs zero_grad, backward and the optimiser step;
* optimiser: SGD(learning_rate), no momentum (the book's);
* metrics: the Keras history keys loss, accuracy, recall, weighted_accuracy
  and their val_* twins, aggregated over the whole epoch as Keras does
  (lightning_impl.metrics.KerasEpochMetrics) and logged with
  self.log_dict(on_epoch=True);
* `history`: {key: [value per epoch]} like Keras's History, kept in every
  checkpoint with the random generators' states, so a resumed run continues
  both (Lightning itself keeps neither).

lightning_impl.fast.system.FastStreetcarClassifier is the same module with a
fused network and hand-written gradients (`--engine fast`).
"""

from __future__ import annotations

from typing import Any, Mapping

import lightning as L
import numpy as np
import torch

from lightning_impl.metrics import KerasEpochMetrics, keras_binary_crossentropy
from lightning_impl.model import StreetcarNet, parameter_counts
from lightning_impl.random_states import collect_random_states, restore_random_states

Batch = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]

HISTORY_CHECKPOINT_KEY = "keras_history"
RANDOM_STATE_CHECKPOINT_KEY = "random_states"
# 32 or 64 (hyperparameters.precision): a float64 state_dict loaded into a float32 module would be
# rounded without a word, so loaders read this first and build the module in that width.
PRECISION_CHECKPOINT_KEY = "precision"


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
    """

    network_class = StreetcarNet

    def __init__(self, vocab_sizes: Mapping[str, int], vocabularies: Mapping[str, Any] | None = None, *,
                 embedding_dim: int = 10, dropout_rate: float = 0.0003, output_activation: str = "hard_sigmoid",
                 learning_rate: float = 0.001, zero_weight: float = 1.0, one_weight: float = 1.0) -> None:
        super().__init__()
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
        self.save_hyperparameters()
        self.net = self.network_class(vocab_sizes, embedding_dim=embedding_dim, dropout_rate=dropout_rate,
                                      output_activation=output_activation)
        self.train_metrics = KerasEpochMetrics()
        self.val_metrics = KerasEpochMetrics()
        self.test_metrics = KerasEpochMetrics()
        self.history: dict[str, list[float]] = {}
        self._epoch_figures: dict[str, float] = {}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, 7) codes -> (batch, 1) probabilities of a delay."""
        return self.net(features)

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

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        # Keras's train step: the batch loss; Lightning then runs zero_grad, backward and SGD.
        return self._shared_step(batch, self.train_metrics)
    # [/docs:lightning-steps]

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
            # Keep what the callbacks see: Lightning logs float32, as Keras's logs are (float64 in a
            # --precision 64 run, where Keras's metric trackers follow floatx).
            width = np.float64 if self.precision_bits == 64 else np.float32
            self._epoch_figures.update({key: float(width(value)) for key, value in figures.items()})
    # [/docs:lightning-log-epoch]

    # [docs:lightning-optimizer]
    def configure_optimizers(self) -> torch.optim.Optimizer:
        # The book: SGD(learning_rate=0.001), momentum 0 (Keras's and torch's SGD defaults agree).
        # foreach=True: one fused update over the 23 parameter tensors (torch's CPU default loops).
        return torch.optim.SGD(self.parameters(), lr=self.hparams.learning_rate, momentum=0.0, foreach=True)
    # [/docs:lightning-optimizer]

    # [docs:lightning-checkpoint-extras]
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[HISTORY_CHECKPOINT_KEY] = {key: list(values) for key, values in self.history.items()}
        checkpoint[RANDOM_STATE_CHECKPOINT_KEY] = collect_random_states()
        checkpoint[PRECISION_CHECKPOINT_KEY] = self.precision_bits

    @property
    def precision_bits(self) -> int:
        """32 or 64: the width the network's weights are in now."""
        return 64 if self.net.output.weight.dtype == torch.float64 else 32

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if checkpoint.get(PRECISION_CHECKPOINT_KEY, 32) == 64:
            # Lightning copies the state_dict in after this hook (load_from_checkpoint, a resumed fit):
            # into a float32 module a float64 run's weights would be rounded without a word.
            self.double()
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


__all__ = ["StreetcarClassifier", "HISTORY_CHECKPOINT_KEY", "RANDOM_STATE_CHECKPOINT_KEY", "PRECISION_CHECKPOINT_KEY"]
