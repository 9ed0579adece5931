"""EarlyStopping for Lightning that stops on the epoch keras.callbacks.EarlyStopping stops on.

    from lightning_impl.early_stopping import KerasCompatibleEarlyStopping
    stopper = KerasCompatibleEarlyStopping("val_accuracy", mode="max", patience=15)

build_lightning_callbacks (lightning_impl.callbacks) makes it from the config;
the rules it shares with the other callbacks are lightning_impl.callback_rules.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from torch import Tensor

from lightning_impl.callback_rules import check_min_delta, check_mode, check_patience, keras_is_improvement

__all__ = ["KerasCompatibleEarlyStopping"]


class KerasCompatibleEarlyStopping(EarlyStopping):
    """Lightning EarlyStopping that stops on the same epoch as keras.callbacks.EarlyStopping.

    Differences from the stock Lightning callback, each a Keras rule:

    * `mode` is required ('min' or 'max'); `min_delta` and `patience` must be >= 0.
    * The first monitored value is always the new best, NaN and +-inf included
      (Keras `best=None`); stock Lightning compares it with +-inf and can stop
      at idx 0 (docs/differences.md row 17).
    * No finiteness check by default (stock Lightning: check_finite=True stops
      at the first NaN/inf).  With `stop_on_non_finite=True` it stops at the
      first non-finite value instead, keeping the best so far: the trainer's
      divergence policy, not Keras.
    * Comparisons in float32 after a Python-float subtraction, like Keras.
    * `patience` given to the constructor survives `load_state_dict`; stock
      Lightning 2.6 overwrites it with the checkpoint's value (docs/differences.md row 30).
    * State is reset in `setup('fit')`, like Keras's `on_train_begin`, so a
      reused instance starts afresh; Lightning restores checkpoint state *after*
      setup, so `fit(ckpt_path=...)` still resumes it (row 29).  Stock Lightning
      never resets (row 21).

    Patience arithmetic is unchanged (row 20): both frameworks stop on the
    `patience`-th consecutive non-improving epoch; patience 0 and 1 behave
    alike; `stopped_epoch` is the 0-based index of the last epoch that ran.
    """

    def __init__(self, monitor: str, *, mode: str, patience: int, min_delta: float = 0.0,
                 stop_on_non_finite: bool = False, verbose: bool = False) -> None:
        owner = type(self).__name__
        mode = check_mode(mode, owner)
        patience = check_patience(patience, owner)
        min_delta = check_min_delta(min_delta, owner)
        # check_finite=False: the finiteness policy lives in _evaluate_stopping_criteria.
        # strict=True (Lightning default): a missing key raises; Keras only warns (docs/differences.md row 27).
        super().__init__(monitor=monitor, min_delta=min_delta, patience=patience, verbose=verbose,
                         mode=mode, strict=True, check_finite=False)
        self.stop_on_non_finite = bool(stop_on_non_finite)
        self.configured_patience = patience
        # Keras: best=None until the first value; Lightning: best_score=+-inf from the start.
        self.has_best = False

    def reset(self) -> None:
        """Forget all progress, as Keras's EarlyStopping.on_train_begin does."""
        self.wait_count = 0
        self.stopped_epoch = 0
        self.best_score = torch.tensor(torch.inf if self.mode == "min" else -torch.inf)
        self.has_best = False
        self.stopping_reason = EarlyStoppingReason.NOT_STOPPED
        self.stopping_reason_message = None
        self.patience = self.configured_patience

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        # Keras resets in on_train_begin of every fit(); Lightning never resets.
        # Lightning calls setup() before restoring callback state from ckpt_path,
        # so resetting here gives Keras's fresh start and still lets a resume win.
        if stage == "fit":
            self.reset()

    def _evaluate_stopping_criteria(self, current: Tensor) -> tuple[bool, str | None]:
        # Replaces Lightning 2.6's decision (a private method, stable since 1.5;
        # lightning_impl/tests/test_callbacks.py fails if its contract changes).
        value = float(current)
        if self.stop_on_non_finite and not math.isfinite(value):
            # Divergence policy (Lightning's check_finite=True): stop now, keep the best.
            self.stopping_reason = EarlyStoppingReason.NON_FINITE_METRIC
            return True, (f"Monitored metric {self.monitor} = {value} is not finite; "
                          f"best so far {float(self.best_score):.5f}. Signaling Trainer to stop.")
        # [docs:lightning-stopping-rule]
        best = float(self.best_score) if self.has_best else None
        if keras_is_improvement(value, best, mode=self.mode, min_delta=abs(self.min_delta)):
            # Keras: best=current, wait=0 (the first value always lands here, even NaN).
            self.best_score = current.detach().to(torch.float32).cpu().clone()
            self.has_best = True
            self.wait_count = 0
            return False, f"Metric {self.monitor} improved. New best score: {value:.5f}"
        # Keras: wait += 1; stop if wait >= patience (its `epoch > 0` guard can
        # never matter here, because the first value always improves).
        self.wait_count += 1
        if self.wait_count >= self.patience:
            self.stopping_reason = EarlyStoppingReason.PATIENCE_EXHAUSTED
            return True, (f"Monitored metric {self.monitor} did not improve in the last {self.wait_count} "
                          f"records. Best score: {float(self.best_score):.5f}. Signaling Trainer to stop.")
        return False, None
        # [/docs:lightning-stopping-rule]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "has_best": self.has_best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        # Lightning 2.6 restores `patience` from the checkpoint (docs/differences.md row 30),
        # so a resumed run could not change it.  Here the constructor's value
        # wins: resuming with a new patience applies it to the restored wait count.
        self.patience = self.configured_patience
        # A checkpoint written before `has_best` existed: a finite best or a
        # non-zero wait count means at least one value was seen.
        self.has_best = bool(state_dict.get(
            "has_best", self.wait_count > 0 or bool(torch.isfinite(torch.as_tensor(self.best_score)))))
