"""ReduceLROnPlateau for Lightning that lowers the rate on the epochs Keras's callback does.

    from lightning_impl.reduce_lr import KerasCompatibleReduceLROnPlateau
    reduce_lr = KerasCompatibleReduceLROnPlateau.from_config(config.callbacks.reduce_lr)

build_lightning_callbacks (lightning_impl.callbacks) adds it when
callbacks.reduce_lr.enabled; the improvement rule is
lightning_impl.callback_rules.keras_is_improvement, as for EarlyStopping.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from lightning.pytorch import Callback, LightningModule, Trainer

from configs.loader import ReduceLRConfig
from lightning_impl.callback_rules import check_min_delta, check_mode, check_patience, keras_is_improvement

__all__ = ["KerasCompatibleReduceLROnPlateau"]


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
        self.mode = check_mode(mode, owner)
        if not isinstance(factor, (int, float)) or not 0.0 < factor < 1.0:
            # Keras: factor >= 1 raises ValueError; torch: factor >= 1 raises too.
            raise ValueError(f"{owner}: factor must be in (0, 1), got {factor!r}")
        self.factor = float(factor)
        self.patience = check_patience(patience, owner)
        self.min_delta = check_min_delta(min_delta, owner)
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
        # Keras keeps none of this across a restart (docs/differences.md row 29); Lightning restores
        # callback state, so a resumed run reduces on the same epochs as an
        # uninterrupted one.  The rate itself lives in the optimizer state.
        return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict["best"]
        self.wait = state_dict["wait"]
        self.cooldown_counter = state_dict["cooldown_counter"]
