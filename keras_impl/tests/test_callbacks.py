"""keras_impl.callbacks: checkpoint names and the epoch Keras's ModelCheckpoint keeps.

    pytest keras_impl/tests/test_callbacks.py
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import keras_impl  # noqa: F401
import keras

from configs.loader import load_config, override, resolve_experiment
from keras_impl.callbacks import (
    build_keras_callbacks,
    checkpoint_file_template,
    format_checkpoint_name,
    keras_best_epoch,
)

NAN = math.nan

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


def test_checkpoint_template_becomes_keras_syntax():
    template = checkpoint_file_template("best-epoch{epoch:02d}-{monitor}{value:.4f}", "val_accuracy")
    assert template == "best-epoch{epoch:02d}-val_accuracy{val_accuracy:.4f}.keras"
    # Keras formats with epoch + 1: the 0-based epoch 3 is written as 04.
    assert format_checkpoint_name(template, 3, "val_accuracy", 0.731641) == "best-epoch04-val_accuracy0.7316.keras"
    loss_template = checkpoint_file_template("best-epoch{epoch:02d}-{monitor}{value:.4f}", "val_loss")
    assert format_checkpoint_name(loss_template, 0, "val_loss", 0.25) == "best-epoch01-val_loss0.2500.keras"


def test_unformattable_template_is_a_clear_error():
    with pytest.raises(ValueError, match="callbacks.checkpoint_template .* cannot be formatted"):
        checkpoint_file_template("best-{epoch:02d}-{monitor}{value:.4f}-{step}", "val_loss")


@pytest.mark.parametrize("values, mode, expected", [
    ([3, 2, 2.5, 1, 1.5], "min", 3),           # files 01, 02, 04 -> idx 3 kept (differences.md row 23)
    ([3, 2, 2, 1, 1], "min", 3),               # ties are not improvements (differences.md, "What is the same")
    ([0.5, 0.75, 0.75, 1, 1], "max", 3),
    ([0.9, 0.8, 0.7], "max", 0),               # the first epoch always saves
    ([0.7, 0.7, 0.7], "max", 0),
    ([NAN, 3, 2, 1, 0.5], "min", 0),           # a NaN first value is never beaten (differences.md row 18)
    ([3, NAN, 2, 2.5, 1], "min", 4),           # a later NaN is skipped
    ([], "max", None),
])
def test_keras_best_epoch(values, mode, expected):
    assert keras_best_epoch(values, mode) == expected


def test_keras_best_epoch_agrees_with_a_real_model_checkpoint(tmp_path):
    # Script the monitored values as reports/replay_rigs.py does: a first callback overwrites logs[key].
    scripted = [0.30, 0.35, 0.35, 0.32, 0.40, 0.38]

    class Script(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_accuracy"] = scripted[epoch]

    template = checkpoint_file_template("best-epoch{epoch:02d}-{monitor}{value:.4f}", "val_accuracy")
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / template), monitor="val_accuracy", mode="max",
                                                 save_best_only=True, save_weights_only=False)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.zeros((4, 1)), np.zeros(4), epochs=len(scripted), verbose=0, callbacks=[Script(), checkpoint])
    saved = sorted(path.name for path in tmp_path.glob("*.keras"))
    assert saved == ["best-epoch01-val_accuracy0.3000.keras", "best-epoch02-val_accuracy0.3500.keras",
                     "best-epoch05-val_accuracy0.4000.keras"]
    best = keras_best_epoch(scripted, "max")
    assert best == 4
    assert format_checkpoint_name(template, best, "val_accuracy", scripted[best]) == saved[-1]


def test_build_keras_callbacks(tmp_path):
    config = load_config()
    no_stop = build_keras_callbacks(resolve_experiment(config, "0"), config.callbacks, tmp_path)
    assert [type(c).__name__ for c in no_stop] == ["TensorBoard", "CSVLogger"]

    settings = dataclasses.replace(resolve_experiment(config, "4"), patience=3)
    config = override(config, "callbacks.reduce_lr.enabled", True)
    callbacks = build_keras_callbacks(settings, config.callbacks, tmp_path)
    kinds = {type(c).__name__: c for c in callbacks}
    assert list(kinds) == ["TensorBoard", "CSVLogger", "EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau"]
    stop, checkpoint = kinds["EarlyStopping"], kinds["ModelCheckpoint"]
    assert (stop.monitor, stop.patience, stop.min_delta) == ("val_loss", 3, 0.0)
    assert stop.mode == "min" and checkpoint.mode == "min"
    assert checkpoint.save_best_only and checkpoint.monitor == "val_loss"
    assert checkpoint.filepath == str(tmp_path / "best-epoch{epoch:02d}-val_loss{val_loss:.4f}.keras")
    assert kinds["ReduceLROnPlateau"].factor == 0.5
