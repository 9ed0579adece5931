"""The two tiny training rigs a callback replay runs: one real Keras fit, one real Lightning fit.

Each trains a one-layer model on 8 random samples (two SGD steps per epoch,
so the weights change every epoch) while the monitored metric is replaced by
the scripted curve, and records the weights at the end of every epoch, so
that a checkpoint's epoch is found by matching its weights (`match_epoch`).
The Keras model is built once per process and reused by every replay.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from reports.replay_values import json_safe

_SAMPLES, _FEATURES, _BATCH_SIZE = 8, 4, 4  # two SGD steps per epoch
LEARNING_RATE = 0.1


# --------------------------------------------------------------------------
# Quiet frameworks
# --------------------------------------------------------------------------


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null: TensorFlow's C++ start-up lines ignore TF_CPP_MIN_LOG_LEVEL."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def quiet_run() -> Iterator[None]:
    """No warnings and no INFO lines ("GPU available: False ...") while a framework runs.

    The replay reports what the callbacks decided; Lightning's advice about
    DataLoader workers or non-empty checkpoint folders is noise here.
    """
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


# --------------------------------------------------------------------------
# Keras rig (built once per process)
# --------------------------------------------------------------------------

_RIG: dict[str, Any] = {}


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(_SAMPLES, _FEATURES)).astype("float32")
    targets = (rng.random((_SAMPLES, 1)) > 0.5).astype("float32")
    return features, targets


def keras_rig() -> dict[str, Any]:
    if "keras" in _RIG:
        return _RIG
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    with _native_stderr_silenced():
        import keras

        def build() -> Any:
            inputs = keras.Input((_FEATURES,))
            outputs = keras.layers.Dense(1, activation="sigmoid",
                                         kernel_initializer=keras.initializers.GlorotUniform(seed=0))(inputs)
            model = keras.Model(inputs, outputs)
            # metrics=["accuracy"]: lets Keras's mode='auto' resolve val_accuracy to 'max'.
            model.compile(optimizer=keras.optimizers.SGD(learning_rate=LEARNING_RATE),
                          loss="binary_crossentropy", metrics=["accuracy"])
            return model

        model, probe = build(), build()
        features, targets = _data()
        model.fit(features, targets, batch_size=_BATCH_SIZE, epochs=1, verbose=0, shuffle=False)  # trace once

    class ScriptedMetric(keras.callbacks.Callback):
        """First in the list: later callbacks read logs[monitor] = values[epoch]."""

        def __init__(self, monitor: str, values: Sequence[float]) -> None:
            super().__init__()
            self.monitor, self.values = monitor, list(values)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs[self.monitor] = self.values[epoch]

    # [docs:keras-custom-callback]
    class Recorder(keras.callbacks.Callback):
        """Weights at the end of every epoch and the learning rate used in it."""

        def __init__(self) -> None:
            super().__init__()
            self.snapshots: list[list[np.ndarray]] = []
            self.learning_rates: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.learning_rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.snapshots.append([np.array(weight) for weight in self.model.get_weights()])
    # [/docs:keras-custom-callback]

    _RIG.update(keras=keras, model=model, probe=probe, initial=model.get_weights(), features=features,
                targets=targets, ScriptedMetric=ScriptedMetric, Recorder=Recorder)
    return _RIG


def keras_fit(values: Sequence[float], monitor: str, callbacks: list[Any]) -> Any:
    rig = keras_rig()
    model = rig["model"]
    model.set_weights(rig["initial"])  # every replay starts from the same weights and rate
    model.optimizer.learning_rate = LEARNING_RATE
    recorder = rig["Recorder"]()
    with quiet_run():
        model.fit(rig["features"], rig["targets"], batch_size=_BATCH_SIZE, epochs=len(values), verbose=0,
                  shuffle=False, callbacks=[rig["ScriptedMetric"](monitor, values), recorder, *callbacks])
    return recorder


def match_epoch(snapshots: Sequence[Any], saved: Any, equal: Any) -> int:
    matches = [index for index, snapshot in enumerate(snapshots) if equal(snapshot, saved)]
    if len(matches) != 1:
        raise RuntimeError(f"checkpoint matches epoch snapshots {matches}; the replay needs weights that "
                           f"change every epoch")
    return matches[0]


def _keras_arrays_equal(left: list[np.ndarray], right: list[np.ndarray]) -> bool:
    return len(left) == len(right) and all(np.array_equal(a, b) for a, b in zip(left, right))


def keras_side(values: list[float], monitor: str, mode: str | None, patience: int, min_delta: float,
                template: str, workdir: Path) -> dict[str, Any]:
    rig = keras_rig()
    keras = rig["keras"]
    keras_mode = mode or "auto"
    # The project's template in Keras syntax: {monitor} -> the key, {value...} -> {<key>...}.
    pattern = template.replace("{monitor}", monitor).replace("{value", "{" + monitor)
    early_stopping = keras.callbacks.EarlyStopping(monitor=monitor, mode=keras_mode, patience=patience,
                                                   min_delta=min_delta, verbose=0)
    # [docs:keras-weights-only]
    checkpoint = keras.callbacks.ModelCheckpoint(str(workdir / f"{pattern}.weights.h5"), monitor=monitor,
                                                 mode=keras_mode, save_best_only=True, save_weights_only=True,
                                                 verbose=0)
    # [/docs:keras-weights-only]
    recorder = keras_fit(values, monitor, [early_stopping, checkpoint])
    saved = {}
    for path in sorted(workdir.glob("*.weights.h5")):
        rig["probe"].load_weights(str(path))
        saved[path.name] = match_epoch(recorder.snapshots, rig["probe"].get_weights(), _keras_arrays_equal)
    # Saves happen only on improvement, in epoch order: the newest file is the best.
    best_file = max(saved, key=saved.get) if saved else None
    resolved = {keras.ops.greater: "max", keras.ops.less: "min"}.get(early_stopping.monitor_op, keras_mode)
    return side_result(values, epochs_run=len(recorder.snapshots), best_epoch=saved.get(best_file),
                 best_file=best_file, files=sorted(saved), resolved_mode=resolved)


# --------------------------------------------------------------------------
# Lightning rig
# --------------------------------------------------------------------------


def lightning_module_class() -> Any:
    if "Module" in _RIG:
        return _RIG["Module"]
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    features, targets = _data()

    class ScriptedModule(pl.LightningModule):
        """One linear layer trained by SGD; validation logs the scripted metric."""

        def __init__(self, monitor: str, values: Sequence[float], scheduler: Any = None) -> None:
            super().__init__()
            with torch.random.fork_rng():
                torch.manual_seed(0)
                self.layer = torch.nn.Linear(_FEATURES, 1)
            self.monitor, self.values, self.scheduler_factory = monitor, list(values), scheduler

        def training_step(self, batch: Any, batch_index: int) -> torch.Tensor:
            inputs, labels = batch
            return torch.nn.functional.binary_cross_entropy_with_logits(self.layer(inputs), labels)

        def validation_step(self, batch: Any, batch_index: int) -> None:
            self.log(self.monitor, self.values[self.current_epoch], on_step=False, on_epoch=True)

        def configure_optimizers(self) -> Any:
            optimizer = torch.optim.SGD(self.parameters(), lr=LEARNING_RATE)
            if self.scheduler_factory is None:
                return optimizer
            return {"optimizer": optimizer, "lr_scheduler": {
                "scheduler": self.scheduler_factory(optimizer), "monitor": self.monitor, "interval": "epoch"}}

        def train_dataloader(self) -> DataLoader:
            dataset = TensorDataset(torch.from_numpy(features), torch.from_numpy(targets))
            return DataLoader(dataset, batch_size=_BATCH_SIZE, shuffle=False)

        def val_dataloader(self) -> DataLoader:
            dataset = TensorDataset(torch.from_numpy(features[:_BATCH_SIZE]), torch.from_numpy(targets[:_BATCH_SIZE]))
            return DataLoader(dataset, batch_size=_BATCH_SIZE)

    # [docs:lightning-custom-callback]
    class Recorder(pl.Callback):
        """Weights at the end of every epoch and the learning rate used in it (a plain
        callback: Lightning runs it before EarlyStopping and the checkpoints)."""

        def __init__(self) -> None:
            self.snapshots: list[dict[str, torch.Tensor]] = []
            self.learning_rates: list[float] = []

        def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self.learning_rates.append(float(trainer.optimizers[0].param_groups[0]["lr"]))

        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self.snapshots.append({key: value.detach().clone() for key, value in pl_module.state_dict().items()})
    # [/docs:lightning-custom-callback]

    _RIG.update(Module=ScriptedModule, LightningRecorder=Recorder, pl=pl, torch=torch)
    return ScriptedModule


def torch_module() -> Any:
    """torch, imported by the Lightning rig (the replay module needs its schedulers)."""
    lightning_module_class()
    return _RIG["torch"]


def lightning_fit(values: Sequence[float], monitor: str, callbacks: list[Any], workdir: Path,
                   scheduler: Any = None) -> Any:
    module_class = lightning_module_class()
    pl = _RIG["pl"]
    recorder = _RIG["LightningRecorder"]()
    # No checkpoint callback given (the ReduceLROnPlateau replays): no default one either.
    checkpointing = any(isinstance(callback, pl.callbacks.Checkpoint) for callback in callbacks)
    with quiet_run():
        trainer = pl.Trainer(max_epochs=len(values), accelerator="cpu", devices=1, logger=False,
                             enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                             enable_checkpointing=checkpointing, default_root_dir=str(workdir),
                             callbacks=[recorder, *callbacks])
        trainer.fit(module_class(monitor, values, scheduler))
    return recorder


def lightning_callbacks(values: list[float], monitor: str, mode: str | None, patience: int,
                         min_delta: float, lightning_defaults: bool, template: str,
                         workdir: Path) -> tuple[Any, Any, list[Any]]:
    """(early_stopping, best_checkpoint, callback list); raises ValueError for what the project refuses."""
    if lightning_defaults:
        from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

        # [docs:lightning-stock-callbacks]
        options = {} if mode is None else {"mode": mode}  # no mode: Lightning's default 'min'
        early_stopping = EarlyStopping(monitor=monitor, patience=patience, min_delta=min_delta, **options)
        checkpoint = ModelCheckpoint(dirpath=str(workdir), monitor=monitor, save_top_k=1, **options)
        # [/docs:lightning-stock-callbacks]
        return early_stopping, checkpoint, [early_stopping, checkpoint]
    from configs.loader import ExperimentSettings, load_config
    from lightning_impl.callbacks import build_lightning_callbacks

    callbacks_config = load_config().callbacks
    callbacks_config = dataclasses.replace(
        callbacks_config, checkpoint_template=template,
        reduce_lr=dataclasses.replace(callbacks_config.reduce_lr, enabled=False))  # the replay scripts one metric
    settings = ExperimentSettings(experiment="replay", description="scripted metric replay", epochs=len(values),
                                  early_stop=True, monitor=monitor, mode=str(mode), patience=patience,
                                  min_delta=min_delta, one_weight=1.0, zero_weight=1.0)
    built = build_lightning_callbacks(settings, callbacks_config, workdir, early_stop=True)
    return built.early_stopping, built.best_checkpoint, built.as_list()


def lightning_side(values: list[float], monitor: str, callbacks: tuple[Any, Any, list[Any]],
                    workdir: Path) -> dict[str, Any]:
    early_stopping, checkpoint, callback_list = callbacks
    recorder = lightning_fit(values, monitor, callback_list, workdir)
    torch = _RIG["torch"]
    best_epoch = best_file = None
    if checkpoint.best_model_path:
        saved = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)["state_dict"]

        def equal(snapshot: dict, weights: dict) -> bool:
            return snapshot.keys() == weights.keys() and all(torch.equal(snapshot[k], weights[k]) for k in snapshot)

        best_epoch = match_epoch(recorder.snapshots, saved, equal)
        best_file = Path(checkpoint.best_model_path).name
    files = sorted(path.name for path in workdir.glob("*.ckpt"))
    return side_result(values, epochs_run=len(recorder.snapshots), best_epoch=best_epoch, best_file=best_file,
                 files=files, resolved_mode=checkpoint.mode)


def side_result(values: list[float], *, epochs_run: int, best_epoch: int | None, best_file: str | None,
          files: list[str], resolved_mode: str) -> dict[str, Any]:
    return {"epochs_run": epochs_run, "best_epoch": best_epoch,
            "best_value": json_safe(values[best_epoch]) if best_epoch is not None else None,
            "best_file": best_file, "files": files, "mode": resolved_mode}


def prepare() -> None:
    """Import both frameworks and build the tiny Keras model now (otherwise done by the first replay)."""
    keras_rig()
    lightning_module_class()
