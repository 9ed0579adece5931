"""The Keras callbacks of chapter 6, built from the shared configuration.

    from keras_impl.callbacks import build_keras_callbacks, keras_best_epoch
    callbacks = build_keras_callbacks(settings, config.callbacks, run_dir)
    history = model.fit(..., callbacks=callbacks)
    best_epoch = keras_best_epoch(history.history[settings.monitor], settings.mode)

What a run gets (CALLBACKS.md rows 1-8 compare each with Lightning's):

* TensorBoard(log_dir=run_dir/"tensorboard") and CSVLogger(run_dir/"training_log.csv"),
  always: the book's TensorBoard, and an epoch log that survives a killed run.
* When the experiment stops early (experiments 4, 5, 9):
  EarlyStopping(monitor, mode, patience, min_delta, verbose=1) and
  ModelCheckpoint(run_dir/<template>.keras, monitor, mode, save_best_only=True,
  verbose=1).  Keras formats the file name with 1-based {epoch} and the
  epoch's logs; with {epoch} in the name every improvement leaves its own
  file (Lightning's save_top_k=1 would delete the older ones).
* ReduceLROnPlateau when callbacks.reduce_lr.enabled (the article pairs it
  with ModelCheckpoint).

Keeping the construction in one function leaves one place to add the resume
support of a later issue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import keras

from configs.loader import CallbacksConfig, ExperimentSettings

CHECKPOINT_SUFFIX = ".keras"
TENSORBOARD_DIR = "tensorboard"
TRAINING_LOG = "training_log.csv"


def checkpoint_file_template(template: str, monitor: str) -> str:
    """The config's checkpoint stem in Keras's own syntax, plus ".keras".

    "best-epoch{epoch:02d}-{monitor}{value:.4f}" with monitor val_accuracy ->
    "best-epoch{epoch:02d}-val_accuracy{val_accuracy:.4f}.keras": Keras fills
    it with filepath.format(epoch=epoch + 1, **logs), so {epoch} is 1-based.
    """
    keras_template = template.replace("{monitor}", monitor).replace("{value", "{" + monitor) + CHECKPOINT_SUFFIX
    try:
        format_checkpoint_name(keras_template, 0, monitor, 0.5)
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(f"callbacks.checkpoint_template {template!r} cannot be formatted "
                         f"(Keras str.format with epoch and {monitor}): {error!r}") from None
    return keras_template


def format_checkpoint_name(keras_template: str, epoch_index: int, monitor: str, value: float) -> str:
    """The file name Keras's ModelCheckpoint writes for 0-based epoch `epoch_index`."""
    return keras_template.format(epoch=epoch_index + 1, **{monitor: value})


def build_keras_callbacks(settings: ExperimentSettings, callbacks_config: CallbacksConfig,
                          run_dir: str | Path) -> list[keras.callbacks.Callback]:
    """The callbacks one run uses (see the module docstring)."""
    run_dir = Path(run_dir)
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.TensorBoard(log_dir=str(run_dir / TENSORBOARD_DIR)),
        keras.callbacks.CSVLogger(str(run_dir / TRAINING_LOG)),
    ]
    if settings.early_stop:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=settings.monitor, mode=settings.mode, patience=settings.patience,
            min_delta=settings.min_delta, verbose=1))
        template = checkpoint_file_template(callbacks_config.checkpoint_template, settings.monitor)
        callbacks.append(keras.callbacks.ModelCheckpoint(
            filepath=str(run_dir / template), monitor=settings.monitor, mode=settings.mode,
            save_best_only=True, verbose=1))
    reduce_lr = callbacks_config.reduce_lr
    if reduce_lr.enabled:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=reduce_lr.monitor, mode=reduce_lr.mode, factor=reduce_lr.factor,
            patience=reduce_lr.patience, min_delta=reduce_lr.min_delta, min_lr=reduce_lr.min_lr, verbose=1))
    return callbacks


def keras_best_epoch(values: Sequence[float], mode: str) -> int | None:
    """0-based epoch whose weights ModelCheckpoint(save_best_only=True) ends up holding.

    Keras's rule (keras/src/callbacks/monitor_callback.py, _is_improvement):
    the first epoch always saves (best starts as None); after that only a
    strict improvement does (ops.less / ops.greater, so ties keep the older
    epoch).  ModelCheckpoint has no min_delta.  A NaN compares false both
    ways: a NaN first value becomes a best that nothing beats, a later NaN
    is never an improvement.
    """
    if mode not in ("min", "max"):
        raise ValueError(f"mode {mode!r}; valid: min, max")
    best_value: float | None = None
    best_epoch: int | None = None
    for epoch, value in enumerate(values):
        value = float(value)
        if best_value is None:
            improved = True
        elif mode == "min":
            improved = value < best_value
        else:
            improved = value > best_value
        if improved:
            best_value, best_epoch = value, epoch
    return best_epoch
