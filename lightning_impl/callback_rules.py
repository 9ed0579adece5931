"""The Keras rules the project's Lightning callbacks share: argument checks, "is this an improvement", file names.

EarlyStopping (lightning_impl.early_stopping), the best ModelCheckpoint
(lightning_impl.callbacks) and ReduceLROnPlateau (lightning_impl.reduce_lr)
decide "better" with one function, `keras_is_improvement`, so the three agree
with Keras and with each other on every edge case (NaN first, ties, float32
rounding); lightning_impl.callbacks' docstring lists the differences from
stock Lightning rule by rule.
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from configs.loader import MODES

__all__ = ["check_min_delta", "check_mode", "check_patience", "keras_is_improvement", "render_checkpoint_stem"]


def check_mode(mode: object, owner: str) -> str:
    # Keras: mode='auto' infers the direction from the metric name; Lightning:
    # mode defaults to 'min' silently.  Here it must be spelled out.
    if mode not in MODES:
        raise ValueError(f"{owner}: mode must be 'min' or 'max', got {mode!r} "
                         f"(Keras would guess with 'auto', Lightning would silently use 'min')")
    return str(mode)


def check_min_delta(min_delta: float, owner: str) -> float:
    # Keras: self.min_delta = abs(min_delta); Lightning: a negative min_delta is
    # kept and becomes a tolerance (worse values count as improvements).
    if not isinstance(min_delta, (int, float)) or isinstance(min_delta, bool) or math.isnan(min_delta):
        raise ValueError(f"{owner}: min_delta must be a number >= 0, got {min_delta!r}")
    if min_delta < 0:
        raise ValueError(f"{owner}: min_delta must be >= 0, got {min_delta} (Keras uses abs(min_delta), "
                         f"Lightning turns a negative value into a tolerance; the two disagree, so it is refused)")
    return float(min_delta)


def check_patience(patience: int, owner: str) -> int:
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
