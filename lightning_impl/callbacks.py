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

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from torch import Tensor

from configs.loader import MODES, CallbacksConfig, ExperimentSettings, ReduceLRConfig
from lightning_impl.run_callbacks import LastEpochCheckpoint, RunRelativePaths

__all__ = [
    "KerasCompatibleCallbacks",
    "KerasCompatibleEarlyStopping",
    "KerasCompatibleModelCheckpoint",
    "KerasCompatibleReduceLROnPlateau",
    "LAST_CHECKPOINT_NAME",
    "build_lightning_callbacks",
    "keras_is_improvement",
    "render_checkpoint_stem",
]

# File stem of the resume checkpoint.  Lightning's `ckpt_path="last"` finds files
# matching ^last(-\d+)?\.ckpt in the checkpoint callbacks' directories.
LAST_CHECKPOINT_NAME = "last"


# --------------------------------------------------------------------------
# Shared rules
# --------------------------------------------------------------------------


def _check_mode(mode: object, owner: str) -> str:
    # Keras: mode='auto' infers the direction from the metric name; Lightning:
    # mode defaults to 'min' silently.  Here it must be spelled out.
    if mode not in MODES:
        raise ValueError(f"{owner}: mode must be 'min' or 'max', got {mode!r} "
                         f"(Keras would guess with 'auto', Lightning would silently use 'min')")
    return str(mode)


def _check_min_delta(min_delta: float, owner: str) -> float:
    # Keras: self.min_delta = abs(min_delta); Lightning: a negative min_delta is
    # kept and becomes a tolerance (worse values count as improvements).
    if not isinstance(min_delta, (int, float)) or isinstance(min_delta, bool) or math.isnan(min_delta):
        raise ValueError(f"{owner}: min_delta must be a number >= 0, got {min_delta!r}")
    if min_delta < 0:
        raise ValueError(f"{owner}: min_delta must be >= 0, got {min_delta} (Keras uses abs(min_delta), "
                         f"Lightning turns a negative value into a tolerance; the two disagree, so it is refused)")
    return float(min_delta)


def _check_patience(patience: int, owner: str) -> int:
    # Keras and Lightning both accept a negative patience and treat it like 0
    # (`wait >= patience`); here it is a configuration mistake.
    if not isinstance(patience, int) or isinstance(patience, bool) or patience < 0:
        raise ValueError(f"{owner}: patience must be an integer >= 0, got {patience!r}")
    return patience


def keras_is_improvement(current: float, best: float | None, *, mode: str, min_delta: float = 0.0) -> bool:
    """Keras's `MonitorCallback._is_improvement` on Python floats, with Keras's rounding.

    Keras 3: `best is None` -> True (the first value always improves, NaN too);
    otherwise `ops.greater(current - min_delta, best)` (max) or
    `ops.less(current + min_delta, best)` (min).  The subtraction happens on
    Python floats; `keras.ops` then converts both sides to float32 (floatx), so
    the comparison is a float32 one.  NaN compares False; ties are not
    improvements.  Lightning's own rule is the same formula on float32 tensors,
    starting from best = -inf (max) / +inf (min) instead of None.
    """
    if best is None:
        return True
    signed_delta = min_delta if mode == "max" else -min_delta
    with np.errstate(over="ignore", invalid="ignore"):
        candidate = np.float32(float(current) - signed_delta)
        reference = np.float32(float(best))
    return bool(candidate > reference) if mode == "max" else bool(candidate < reference)


# [docs:lightning-checkpoint-name]
def render_checkpoint_stem(template: str, *, epoch_index: int, monitor: str, value: float | Tensor | None) -> str:
    """Render the configured checkpoint template the way Keras names the file.

    `epoch_index` is the 0-based index both frameworks pass to their hooks;
    `{epoch}` receives epoch_index + 1, as in Keras's
    `filepath.format(epoch=epoch + 1, **logs)` (Lightning's own `{epoch}` is the
    0-based `trainer.current_epoch`).  `{monitor}` is the monitored key and
    `{value}` its value as a Python float (NaN renders as 'nan' in both).

        >>> render_checkpoint_stem("best-epoch{epoch:02d}-{monitor}{value:.4f}",
        ...                        epoch_index=3, monitor="val_accuracy", value=0.73164)
        'best-epoch04-val_accuracy0.7316'
    """
    number = float("nan") if value is None else float(value)
    try:
        return template.format(epoch=epoch_index + 1, monitor=monitor, value=number)
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(f"checkpoint template {template!r} cannot be rendered: {error!r}; "
                         f"it may use {{epoch}}, {{monitor}} and {{value}} only") from None
# [/docs:lightning-checkpoint-name]


# --------------------------------------------------------------------------
# EarlyStopping
# --------------------------------------------------------------------------


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
      Lightning 2.6 overwrites it with the checkpoint's value (row 8, caveat a).
    * State is reset in `setup('fit')`, like Keras's `on_train_begin`, so a
      reused instance starts afresh; Lightning restores checkpoint state *after*
      setup, so `fit(ckpt_path=...)` still resumes it (row 8).  Stock Lightning
      never resets (row 6e).

    Patience arithmetic is unchanged (row 1): both frameworks stop on the
    `patience`-th consecutive non-improving epoch; patience 0 and 1 behave
    alike; `stopped_epoch` is the 0-based index of the last epoch that ran.
    """

    def __init__(self, monitor: str, *, mode: str, patience: int, min_delta: float = 0.0,
                 stop_on_non_finite: bool = False, verbose: bool = False) -> None:
        owner = type(self).__name__
        mode = _check_mode(mode, owner)
        patience = _check_patience(patience, owner)
        min_delta = _check_min_delta(min_delta, owner)
        # check_finite=False: the finiteness policy lives in _evaluate_stopping_criteria.
        # strict=True (Lightning default): a missing key raises; Keras only warns (row 9).
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
        state = super().state_dict()
        state["has_best"] = self.has_best
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        # Lightning 2.6 restores `patience` from the checkpoint (row 8, caveat a),
        # so a resumed run could not change it.  Here the constructor's value
        # wins: resuming with a new patience applies it to the restored wait count.
        self.patience = self.configured_patience
        # A checkpoint written before `has_best` existed: a finite best or a
        # non-zero wait count means at least one value was seen.
        self.has_best = bool(state_dict.get(
            "has_best", self.wait_count > 0 or bool(torch.isfinite(torch.as_tensor(self.best_score)))))


# --------------------------------------------------------------------------
# ModelCheckpoint
# --------------------------------------------------------------------------


class KerasCompatibleModelCheckpoint(RunRelativePaths, ModelCheckpoint):
    """Best-only ModelCheckpoint with keras.callbacks.ModelCheckpoint(save_best_only=True)'s choice of epoch.

    * The first monitored value is always saved and becomes the best even if it
      is NaN (Keras best=None; a first NaN is then unbeatable).  Stock Lightning
      stores NaN as +-inf, so any later finite value replaces it (row 4).
    * Strictly better values only; ties are not saved (same in both, row 3).
      Neither framework's ModelCheckpoint has a min_delta.
    * save_top_k=1: only the best file stays on disk.  Keras with {epoch} in
      the path keeps every improvement file (row 6a); the best epoch is the same.
    * File names come from the configured template with Keras's 1-based epoch
      (`best-epoch04-val_accuracy0.7316.ckpt` for idx 3), not Lightning's
      0-based `epoch=03` (row 6b).
    * With `stop_on_non_finite=True` (the trainer's divergence policy) a
      non-finite value is never saved as the best.
    """

    def __init__(self, dirpath: str | Path, *, monitor: str, mode: str,
                 template: str = "best-epoch{epoch:02d}-{monitor}{value:.4f}",
                 stop_on_non_finite: bool = False, save_weights_only: bool = False,
                 verbose: bool = False) -> None:
        owner = type(self).__name__
        mode = _check_mode(mode, owner)
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
        state = super().state_dict()
        state["keras_best"] = self.keras_best
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if "keras_best" in state_dict:
            self.keras_best = state_dict["keras_best"]
        elif self.best_model_path and self.best_model_score is not None:
            self.keras_best = torch.as_tensor(self.best_model_score)


# --------------------------------------------------------------------------
# ReduceLROnPlateau
# --------------------------------------------------------------------------


class KerasCompatibleReduceLROnPlateau(Callback):
    """Lower the learning rate on the epochs keras.callbacks.ReduceLROnPlateau would.

    Why a callback and not torch's scheduler (docs/differences.md row 26): torch's
    `ReduceLROnPlateau` reduces when num_bad_epochs > patience (one epoch after
    Keras's wait >= patience) and uses a relative threshold by default.
    `patience - 1` and `threshold_mode='abs'` fix those two, but torch still
    starts from best=+-inf (Keras: None, so a first NaN is Keras's unbeatable
    best), compares `a < best - threshold` in float64 (Keras: `a + min_delta <
    best` in float32), resets its bad-epoch count even when the lr is already at
    min_lr (Keras keeps counting), and needs a monitor key wired into the
    module's `configure_optimizers`.  A callback reproduces all of it and keeps
    the module untouched.

    The rule, per epoch (Keras `on_epoch_end`, here `on_train_epoch_end`, after
    that epoch's validation):

        if cooldown_counter > 0: cooldown_counter -= 1; wait = 0
        if improvement(current, best): best = current; wait = 0
        elif cooldown_counter == 0:
            wait += 1
            if wait >= patience and lr > min_lr:
                lr = max(lr * factor, min_lr); cooldown_counter = cooldown; wait = 0

    The new rate applies from the next epoch in both frameworks.  Keras keeps
    the rate in a float32 variable; torch keeps a Python float, so rates agree
    to float32 precision.  The monitored key must be logged by the validation
    hooks or by training_step(on_epoch=True): plain callbacks run before
    `LightningModule.on_train_epoch_end`.
    """

    def __init__(self, *, monitor: str, mode: str, factor: float = 0.1, patience: int = 10,
                 min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0) -> None:
        # Defaults are Keras's (factor 0.1, patience 10, min_delta 1e-4 absolute,
        # cooldown 0, min_lr 0); torch's are the same numbers but threshold 1e-4 is relative.
        owner = type(self).__name__
        self.monitor = monitor
        self.mode = _check_mode(mode, owner)
        if not isinstance(factor, (int, float)) or not 0.0 < factor < 1.0:
            # Keras: factor >= 1 raises ValueError; torch: factor >= 1 raises too.
            raise ValueError(f"{owner}: factor must be in (0, 1), got {factor!r}")
        self.factor = float(factor)
        self.patience = _check_patience(patience, owner)
        self.min_delta = _check_min_delta(min_delta, owner)
        if not isinstance(cooldown, int) or cooldown < 0:
            raise ValueError(f"{owner}: cooldown must be an integer >= 0, got {cooldown!r}")
        self.cooldown = cooldown
        if not isinstance(min_lr, (int, float)) or min_lr < 0:
            raise ValueError(f"{owner}: min_lr must be >= 0, got {min_lr!r}")
        self.min_lr = float(min_lr)
        self.best: float | None = None
        self.wait = 0
        self.cooldown_counter = 0
        # Learning rate of the first param group used in each epoch, for logging and tests.
        self.learning_rates: list[float] = []

    @classmethod
    def from_config(cls, config: ReduceLRConfig) -> KerasCompatibleReduceLROnPlateau:
        """Build from the `callbacks.reduce_lr` section (cooldown is always 0 there)."""
        return cls(monitor=config.monitor, mode=config.mode, factor=config.factor, patience=config.patience,
                   min_delta=config.min_delta, min_lr=config.min_lr)

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode)

    def reset(self) -> None:
        """Keras's `_reset()`, called from on_train_begin of every fit()."""
        self.best = None
        self.wait = 0
        self.cooldown_counter = 0
        self.learning_rates = []

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # As for EarlyStopping: Keras resets on every fit; checkpoint state, if
        # any, is restored by Lightning after setup and wins.
        if stage == "fit":
            self.reset()

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for optimizer in trainer.optimizers:
            self.learning_rates.append(float(optimizer.param_groups[0]["lr"]))
            break

    # [docs:lightning-reduce-lr]
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        metrics = trainer.callback_metrics
        if self.monitor not in metrics:
            # Keras warns and skips the epoch; Lightning's plateau scheduler raises.
            raise RuntimeError(f"{type(self).__name__}: monitored metric {self.monitor!r} was not logged; "
                               f"available: {', '.join(sorted(metrics)) or 'none'}")
        current = float(metrics[self.monitor])
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if keras_is_improvement(current, self.best, mode=self.mode, min_delta=self.min_delta):
            self.best = current
            self.wait = 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience and self._reduce(trainer):
                self.cooldown_counter = self.cooldown
                self.wait = 0  # Keras resets wait only when a rate really changed
    # [/docs:lightning-reduce-lr]

    def _reduce(self, trainer: Trainer) -> bool:
        reduced = False
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                old = float(group["lr"])
                # Keras: `old_lr > np.float32(min_lr)` with old_lr read from a float32
                # variable; torch keeps a Python float, so compare both in float32.
                if np.float32(old) > np.float32(self.min_lr):
                    group["lr"] = max(old * self.factor, self.min_lr)
                    reduced = True
        return reduced

    def state_dict(self) -> dict[str, Any]:
        # Keras keeps none of this across a restart (row 8); Lightning restores
        # callback state, so a resumed run reduces on the same epochs as an
        # uninterrupted one.  The rate itself lives in the optimizer state.
        return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict["best"]
        self.wait = state_dict["wait"]
        self.cooldown_counter = state_dict["cooldown_counter"]


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
