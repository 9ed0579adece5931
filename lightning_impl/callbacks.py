"""Keras-compatible EarlyStopping, ModelCheckpoint and ReduceLROnPlateau for Lightning.

The book trains with `keras.callbacks.EarlyStopping` and
`keras.callbacks.ModelCheckpoint(save_best_only=True)` (and the article pairs
them with `ReduceLROnPlateau`).  Lightning has callbacks with the same names,
but they differ from Keras in ways that change *which epoch training stops at*
and *which epoch the best checkpoint holds*.  docs/differences.md#callbacks lists
every difference; this module removes the ones that can be removed, so that a
Lightning run of an experiment stops where the Keras run stops and keeps the
same best epoch.

    from lightning_impl.callbacks import build_lightning_callbacks
    callbacks = build_lightning_callbacks(settings, config.callbacks, run_dir / "checkpoints")
    trainer = Trainer(callbacks=callbacks.as_list(), ...)
    trainer.fit(module)                       # or fit(module, ckpt_path=callbacks.last_checkpoint_path)
    callbacks.best_checkpoint.best_model_path # the file Keras would call best-epoch04-...

What is reproduced, rule by rule (docs/differences.md row in brackets):

* **mode is explicit** (row 16).  Keras infers 'auto' from the metric name;
  Lightning silently defaults to 'min', which *minimises* val_accuracy.  Every
  class here requires mode='min' or 'max' and raises ValueError otherwise.
* **The first monitored value is always an improvement** (row 17).  Keras
  starts from `best=None`; Lightning starts from +-inf, so a
  first value of NaN or of the "wrong" infinity is not an improvement there and
  Lightning can stop at idx 0, which Keras never does.  Here the first value
  becomes the best whatever it is -- a first NaN becomes an unbeatable best, as
  in Keras.
* **Non-finite values follow Keras by default** (row 18).  Keras has no
  finiteness check: NaN compares False, so it is never an improvement after the
  first epoch; +-inf compare as numbers.  Lightning's `check_finite=True` stops
  at the first NaN/inf instead.  The trainer may opt into a divergence policy
  (`stop_on_non_finite=True`): stop at the first non-finite monitored value
  and never make a non-finite value the best checkpoint.
* **min_delta >= 0, strict comparison** (row 19).  Keras takes abs(); a
  negative Lightning min_delta is a tolerance.  Negative values are refused.
  A change of exactly min_delta, and a tie with the best, are not improvements
  in either framework.  Comparisons are done the Keras way: the difference is
  taken in Python floats, then compared in float32 (`keras.ops.less/greater`
  cast Python floats to floatx), so edge cases round identically.
* **Patience arithmetic** (row 20) is already identical; `patience` given to
  the constructor wins over the one saved in a checkpoint (row 30).
* **Checkpoint names** (row 22) are rendered from the configured template with
  Keras's 1-based epoch: best epoch idx 3 is `best-epoch04-...`, as Keras
  names it, not Lightning's 0-based `epoch=03`.
* **The last checkpoint** (row 24) is a separate monitor-less ModelCheckpoint
  writing `last.ckpt` every epoch, because in Lightning 2.6 `save_last` on a
  monitored top-1 callback is only a copy of the best, not the final epoch.
* **ReduceLROnPlateau** (row 26) is a Lightning callback that changes the
  optimizer's learning rate on exactly the epochs Keras's callback does.

What is *not* Keras (deliberate, documented at each place):

* Resuming.  Keras's BackupAndRestore restores weights and epoch only; its
  callbacks restart from scratch.  Here, as in Lightning, `fit(ckpt_path=...)`
  restores EarlyStopping, ModelCheckpoint and ReduceLROnPlateau state, so a
  resumed run stops where the uninterrupted run would have (row 29).
* Files on disk.  Keras with `{epoch}` in the path keeps every improvement
  file; `save_top_k=1` keeps only the best (row 23).  The best *epoch* is the
  same.
* A monitored key that is missing raises (Lightning's strict=True) instead of
  Keras's warning (row 27): in this project a missing key is a bug.

The classes live one per module: lightning_impl.early_stopping,
KerasCompatibleModelCheckpoint here, lightning_impl.reduce_lr, and the rules
they share (mode, min_delta, patience checks, Keras's improvement test, the
checkpoint file name) in lightning_impl.callback_rules.

Run the unit tests with:

    python -m pytest lightning_impl/tests/test_callbacks.py -q

and the Keras-vs-Lightning replays with `python -m pytest parity_tests/test_callbacks_replay.py
parity_tests/test_reduce_lr.py -q` (or `python -m parity_tests.replay --help`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor

from configs.loader import CallbacksConfig, ExperimentSettings
from lightning_impl.callback_rules import check_mode, keras_is_improvement, render_checkpoint_stem
from lightning_impl.early_stopping import KerasCompatibleEarlyStopping
from lightning_impl.reduce_lr import KerasCompatibleReduceLROnPlateau
from lightning_impl.run_callbacks import LastEpochCheckpoint, RunRelativePaths

__all__ = [
    "KerasCompatibleCallbacks",
    "KerasCompatibleModelCheckpoint",
    "LAST_CHECKPOINT_NAME",
    "build_lightning_callbacks",
]

# File stem of the resume checkpoint.  Lightning's `ckpt_path="last"` finds files
# matching ^last(-\d+)?\.ckpt in the checkpoint callbacks' directories.
LAST_CHECKPOINT_NAME = "last"


# --------------------------------------------------------------------------
# ModelCheckpoint
# --------------------------------------------------------------------------


class KerasCompatibleModelCheckpoint(RunRelativePaths, ModelCheckpoint):
    """Best-only ModelCheckpoint with keras.callbacks.ModelCheckpoint(save_best_only=True)'s choice of epoch.

    * The first monitored value is always saved and becomes the best even if it
      is NaN (Keras best=None; a first NaN is then unbeatable).  Stock Lightning
      stores NaN as +-inf, so any later finite value replaces it (row 18).
    * Strictly better values only; ties are not saved (the same in both: docs/differences.md, "What is the same").
      Neither framework's ModelCheckpoint has a min_delta.
    * save_top_k=1: only the best file stays on disk.  Keras with {epoch} in
      the path keeps every improvement file (row 23); the best epoch is the same.
    * File names come from the configured template with Keras's 1-based epoch
      (`best-epoch04-val_accuracy0.7316.ckpt` for idx 3), not Lightning's
      0-based `epoch=03` (row 22).
    * With `stop_on_non_finite=True` (the trainer's divergence policy) a
      non-finite value is never saved as the best.
    """

    def __init__(self, dirpath: str | Path, *, monitor: str, mode: str,
                 template: str = "best-epoch{epoch:02d}-{monitor}{value:.4f}",
                 stop_on_non_finite: bool = False, save_weights_only: bool = False,
                 verbose: bool = False) -> None:
        owner = type(self).__name__
        mode = check_mode(mode, owner)
        render_checkpoint_stem(template, epoch_index=0, monitor=monitor, value=0.0)  # fail early on a bad template
        # [docs:lightning-checkpoint-options]
        # auto_insert_metric_name=False and our own format_checkpoint_name: the
        # template decides the whole name (Lightning would write "epoch=03-...").
        # save_top_k=1: Keras save_best_only keeps the best epoch (plus older files when {epoch}
        # is in the path); Lightning deletes the previous best.  save_last=False: last.ckpt
        # is the separate monitor-less callback.  save_weights_only=False by default: a
        # full Lightning checkpoint (Keras's ModelCheckpoint default also saves the whole model).
        super().__init__(dirpath=str(dirpath), monitor=monitor, mode=mode, save_top_k=1, save_last=False,
                         save_weights_only=save_weights_only, auto_insert_metric_name=False, verbose=verbose)
        # [/docs:lightning-checkpoint-options]
        self.template = template
        self.stop_on_non_finite = bool(stop_on_non_finite)
        # Keras: best=None until the first save.  Lightning keeps NaN as +-inf in
        # best_k_models; this keeps the real value so a first NaN stays "best".
        self.keras_best: Tensor | None = None

    def format_checkpoint_name(self, metrics: dict[str, Tensor], filename: str | None = None,
                               ver: int | None = None, prefix: str | None = None) -> str:
        if filename is not None:  # not used by a top-1 callback without save_last; stock behaviour
            return super().format_checkpoint_name(metrics, filename=filename, ver=ver, prefix=prefix)
        # metrics["epoch"] is trainer.current_epoch (0-based), set by _monitor_candidates.
        stem = render_checkpoint_stem(self.template, epoch_index=int(metrics.get("epoch", 0)),
                                      monitor=str(self.monitor), value=metrics.get(str(self.monitor)))
        if prefix is not None:
            stem = self.CHECKPOINT_JOIN_CHAR.join([prefix, stem])
        if ver is not None:
            stem = self.CHECKPOINT_JOIN_CHAR.join([stem, f"v{ver}"])
        name = f"{stem}{self.FILE_EXTENSION}"
        return os.path.join(self.dirpath, name) if self.dirpath else name

    def check_monitor_top_k(self, trainer: Trainer, current: Tensor | None = None) -> bool:
        if current is None:
            return False
        value = float(current)
        if self.stop_on_non_finite and not math.isfinite(value):
            decision = False
        else:
            best = None if self.keras_best is None else float(self.keras_best)
            # Keras: save when _is_improvement(current, best) -- no min_delta in ModelCheckpoint.
            # Lightning: save when len(best_k_models) < k or monitor_op(current, kth_value).
            decision = keras_is_improvement(value, best, mode=self.mode, min_delta=0.0)
        return bool(trainer.strategy.reduce_boolean_decision(decision))

    def _update_best_and_save(self, current: Tensor, trainer: Trainer,
                              monitor_candidates: dict[str, Tensor]) -> None:
        # Lightning 2.6 private method, called right after check_monitor_top_k said "save".
        super()._update_best_and_save(current, trainer, monitor_candidates)
        # Lightning stored NaN as +-inf; keep the value Keras compares with.
        self.keras_best = current.detach().to(torch.float32).cpu().clone()
        self.best_model_score = self.keras_best

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "keras_best": self.keras_best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if "keras_best" in state_dict:
            self.keras_best = state_dict["keras_best"]
        elif self.best_model_path and self.best_model_score is not None:
            self.keras_best = torch.as_tensor(self.best_model_score)


# --------------------------------------------------------------------------
# The project's set of callbacks
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class KerasCompatibleCallbacks:
    """The callbacks one Lightning run uses, by role.

    `early_stopping` and `best_checkpoint` exist only for experiments with
    early stopping (4, 5, 9); `last_checkpoint` always exists and holds the
    final epoch (for resuming); `reduce_lr` exists when callbacks.reduce_lr is
    enabled.
    """

    early_stopping: KerasCompatibleEarlyStopping | None
    best_checkpoint: KerasCompatibleModelCheckpoint | None
    last_checkpoint: ModelCheckpoint
    reduce_lr: KerasCompatibleReduceLROnPlateau | None

    @property
    def last_checkpoint_path(self) -> Path:
        """Where `last.ckpt` is written (it exists after the first epoch)."""
        return Path(str(self.last_checkpoint.dirpath)) / f"{LAST_CHECKPOINT_NAME}{ModelCheckpoint.FILE_EXTENSION}"

    def as_list(self) -> list[Callback]:
        """For `Trainer(callbacks=...)`.

        Keras runs callbacks in list order; Lightning runs EarlyStopping and
        checkpoints after the other callbacks and moves checkpoints to the end
        (lightning/pytorch/loops/fit_loop.py on_advance_end; _reorder_callbacks in
        lightning/pytorch/trainer/connectors/callback_connector.py).  The best
        checkpoint comes before the last one, so `last.ckpt` holds the best
        checkpoint's state after this epoch.
        """
        ordered: list[Callback | None] = [self.reduce_lr, self.early_stopping, self.best_checkpoint,
                                          self.last_checkpoint]
        return [callback for callback in ordered if callback is not None]


def build_lightning_callbacks(settings: ExperimentSettings, callbacks_config: CallbacksConfig,
                              checkpoint_dir: Path, *, early_stop: bool | None = None,
                              stop_on_non_finite: bool = False) -> KerasCompatibleCallbacks:
    """The Keras-compatible callbacks for one experiment.

    `settings` gives monitor, mode, patience and min_delta (an experiment row
    over the `callbacks` defaults); `callbacks_config` gives the checkpoint
    template and the reduce_lr section.  `early_stop` overrides
    `settings.early_stop`.  `stop_on_non_finite` switches EarlyStopping and the
    best checkpoint from Keras's NaN semantics to the divergence policy: stop
    at the first non-finite *monitored* value and keep the best checkpoint.
    It watches only the monitored key: a diverged model often still has a
    finite val_accuracy (NaN probabilities count as "no delay"), so catching a
    NaN training loss needs a loss check in the trainer (Keras's TerminateOnNaN
    territory), not this flag.
    """
    checkpoint_dir = Path(checkpoint_dir)
    use_early_stop = settings.early_stop if early_stop is None else bool(early_stop)
    early_stopping = best_checkpoint = None
    # [docs:lightning-early-stopping]
    if use_early_stop:
        early_stopping = KerasCompatibleEarlyStopping(
            settings.monitor, mode=settings.mode, patience=settings.patience, min_delta=settings.min_delta,
            stop_on_non_finite=stop_on_non_finite)
    # [/docs:lightning-early-stopping]
        # [docs:lightning-model-checkpoint]
        best_checkpoint = KerasCompatibleModelCheckpoint(
            checkpoint_dir, monitor=settings.monitor, mode=settings.mode,
            template=callbacks_config.checkpoint_template, stop_on_non_finite=stop_on_non_finite)
        # [/docs:lightning-model-checkpoint]
    # [docs:lightning-last-checkpoint]
    # monitor=None + save_top_k=1 rewrites last.ckpt after every epoch, so it is
    # the final epoch (Lightning 2.6's save_last on a monitored top-1 callback is
    # a copy of the best; Keras has no save_last).  mode is meaningless without a
    # monitor and is given only because Lightning's default would be implicit.
    # enable_version_counter=False: always last.ckpt, never last-v1.ckpt.  LastEpochCheckpoint saves
    # paths relative to the run folder (lightning_impl.run_callbacks.RunRelativePaths).
    last_checkpoint = LastEpochCheckpoint(dirpath=str(checkpoint_dir), filename=LAST_CHECKPOINT_NAME, monitor=None,
                                          mode="min", save_top_k=1, save_last=False, enable_version_counter=False)
    # [/docs:lightning-last-checkpoint]
    reduce_lr = (KerasCompatibleReduceLROnPlateau.from_config(callbacks_config.reduce_lr)
                 if callbacks_config.reduce_lr.enabled else None)
    return KerasCompatibleCallbacks(early_stopping=early_stopping, best_checkpoint=best_checkpoint,
                                    last_checkpoint=last_checkpoint, reduce_lr=reduce_lr)
