"""Replay a scripted metric curve through Keras's and Lightning's callbacks and compare.

Which epoch does training stop at, and which epoch does the best checkpoint
hold?  This tool answers both questions for Keras 3 and for Lightning by
running the *real* frameworks on a tiny model, with the monitored metric
replaced by a curve you choose:

    python -m parity_tests.replay --monitor val_accuracy --mode max --patience 2 \\
        --values 0.69,0.72,0.72,0.71,0.73 [--min-delta 0.01] [--json] [--lightning-defaults]
    python -m parity_tests.replay --monitor val_loss --mode min --patience 1 --values=-inf,3,2
    python -m parity_tests.replay --monitor val_loss --mode min --patience 3 --values-file curve.txt

(A list that starts with '-' needs the `--values=...` form, or argparse takes it
for an option.  A values file holds numbers separated by commas, spaces or
new lines; `nan`, `inf` and `-inf` are numbers.)

How it works:

* **Keras**: `keras.callbacks.EarlyStopping` and
  `keras.callbacks.ModelCheckpoint(save_best_only=True, save_weights_only=True)`
  inside a real `Model.fit` of a one-layer model on 8 random samples.  A
  callback placed first sets `logs[monitor] = values[epoch]` in
  `on_epoch_end`; Keras hands the same logs dict to every callback in order,
  so the real callbacks see the scripted value.  The checkpoint path is the
  project's template in Keras syntax (`best-epoch{epoch:02d}-val_accuracy{val_accuracy:.4f}`).
* **Lightning**: a real `Trainer.fit` of a one-layer LightningModule whose
  `validation_step` logs `values[current_epoch]` with `self.log(monitor, ...,
  on_epoch=True)`, with the project's callbacks from
  `lightning_impl.callbacks.build_lightning_callbacks` -- or, with
  `--lightning-defaults`, stock `EarlyStopping` and
  `ModelCheckpoint(save_top_k=1)` given the same monitor, mode, patience and
  min_delta, to show what the project's callbacks change.
* **Which epoch a checkpoint holds** is found by matching the saved weights
  against a snapshot of the weights taken at the end of every epoch (SGD steps
  on random data change the weights every epoch).  Keras keeps one file per
  improvement; the newest one is its best.  Lightning's top-1 callback keeps one.
* Values are rounded to float32 before either framework sees them, as real
  metrics are: Keras logs are Python floats made from float32 tensors, and
  Lightning's `self.log` stores a float32 tensor.

Output (`--json`): one object

    {"scenario": {...},
     "keras":     {"epochs_run": 5, "best_epoch": 3, "best_value": 0.7316, "best_file": "...", "files": [...],
                   "mode": "max"},
     "lightning": {...same keys...},
     "agree": true, "notes": ["..."]}

`mode` is the direction each side really used (Keras's 'auto' resolved).
`best_epoch` is 0-based (null when nothing was saved); `best_value` is the
scripted value of that epoch: a number, the strings "nan", "inf", "-inf" for
non-finite values (JSON has no NaN), or null when nothing was saved.
`agree` compares epochs_run, best_epoch and best_value; file names are
compared in the notes.  Without `--json` a readable table is printed.  Bad
input prints one message and exits with status 2.

From Python (what the tests do; the frameworks are imported once and the
tiny Keras model is reused across calls):

    from parity_tests.replay import replay, replay_reduce_lr
    replay([10, 9, 8, 9], monitor="val_loss", mode="min", patience=1)
    replay_reduce_lr([5.0] * 8, monitor="val_loss", mode="min", factor=0.5, patience=2)

Tests: `python -m pytest parity_tests/test_callbacks_replay.py parity_tests/test_reduce_lr.py -q`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from configs.cli import OneLineArgumentParser

__all__ = ["ReplayError", "format_table", "json_safe", "main", "parse_values", "prepare", "read_values_file",
           "replay", "replay_reduce_lr"]

# Keras's ModelCheckpoint formats the path with `filepath.format(epoch=..., **logs)`,
# so the monitored key must be a plain format-field name and not one of Keras's own.
_MONITOR_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED_MONITORS = ("epoch", "batch", "step")
_SAMPLES, _FEATURES, _BATCH_SIZE = 8, 4, 4  # two SGD steps per epoch
_LEARNING_RATE = 0.1


class ReplayError(ValueError):
    """A replay request that cannot be run (bad values, mode, patience, file)."""


# --------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------


def parse_values(text: str) -> list[float]:
    """'0.69, 0.72,nan,-inf' -> [0.69, 0.72, nan, -inf]; commas, spaces or new lines separate."""
    items = [item for item in re.split(r"[,\s]+", text.strip()) if item]
    if not items:
        raise ReplayError("no values given: pass e.g. --values 0.69,0.72,0.71")
    values = []
    for position, item in enumerate(items, start=1):
        try:
            values.append(float(item))  # accepts nan, inf, -inf, Infinity
        except ValueError:
            raise ReplayError(f"cannot read value {position} ({item!r}) as a number; "
                              f"use numbers, nan, inf or -inf") from None
    return values


def read_values_file(path: str | Path) -> list[float]:
    path = Path(path)
    if not path.is_file():
        raise ReplayError(f"values file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ReplayError(f"cannot read values file {path}: {error}") from None
    return parse_values(text)


def json_safe(value: float | None) -> float | str | None:
    """A float for JSON: finite -> shortest float32 repr, NaN/inf -> 'nan'/'inf'/'-inf', None -> None."""
    if value is None:
        return None
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(str(np.float32(value)))  # 0.7315999865531921 -> 0.7316


def _float32(value: float) -> float:
    with np.errstate(over="ignore"):
        return float(np.float32(value))


def _check_request(values: Sequence[float], monitor: str, mode: str | None, patience: int,
                   min_delta: float, lightning_defaults: bool) -> list[float]:
    if len(values) == 0:
        raise ReplayError("no values given: the curve needs at least one epoch")
    try:
        scripted = [_float32(float(value)) for value in values]
    except (TypeError, ValueError):
        raise ReplayError(f"values must be numbers, got {list(values)!r}") from None
    if not isinstance(monitor, str) or not _MONITOR_PATTERN.match(monitor) or monitor in _RESERVED_MONITORS:
        raise ReplayError(f"monitor must be a metric name such as val_accuracy or val_loss, got {monitor!r}")
    if mode is None:
        if not lightning_defaults:
            raise ReplayError("mode is required (min or max): the project's callbacks never fall back to "
                              "Lightning's silent default 'min'; omit it only with --lightning-defaults")
    elif mode not in ("min", "max"):
        raise ReplayError(f"mode must be 'min' or 'max', got {mode!r}")
    if not isinstance(patience, int) or isinstance(patience, bool) or patience < 0:
        raise ReplayError(f"patience must be an integer >= 0, got {patience!r}")
    if not isinstance(min_delta, (int, float)) or isinstance(min_delta, bool) or not math.isfinite(min_delta):
        raise ReplayError(f"min_delta must be a finite number, got {min_delta!r}")
    return scripted


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
def _quiet_run() -> Iterator[None]:
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


def _keras_rig() -> dict[str, Any]:
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
            model.compile(optimizer=keras.optimizers.SGD(learning_rate=_LEARNING_RATE),
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


def _keras_fit(values: Sequence[float], monitor: str, callbacks: list[Any]) -> Any:
    rig = _keras_rig()
    model = rig["model"]
    model.set_weights(rig["initial"])  # every replay starts from the same weights and rate
    model.optimizer.learning_rate = _LEARNING_RATE
    recorder = rig["Recorder"]()
    with _quiet_run():
        model.fit(rig["features"], rig["targets"], batch_size=_BATCH_SIZE, epochs=len(values), verbose=0,
                  shuffle=False, callbacks=[rig["ScriptedMetric"](monitor, values), recorder, *callbacks])
    return recorder


def _match(snapshots: Sequence[Any], saved: Any, equal: Any) -> int:
    matches = [index for index, snapshot in enumerate(snapshots) if equal(snapshot, saved)]
    if len(matches) != 1:
        raise RuntimeError(f"checkpoint matches epoch snapshots {matches}; the replay needs weights that "
                           f"change every epoch")
    return matches[0]


def _keras_arrays_equal(left: list[np.ndarray], right: list[np.ndarray]) -> bool:
    return len(left) == len(right) and all(np.array_equal(a, b) for a, b in zip(left, right))


def _keras_side(values: list[float], monitor: str, mode: str | None, patience: int, min_delta: float,
                template: str, workdir: Path) -> dict[str, Any]:
    rig = _keras_rig()
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
    recorder = _keras_fit(values, monitor, [early_stopping, checkpoint])
    saved = {}
    for path in sorted(workdir.glob("*.weights.h5")):
        rig["probe"].load_weights(str(path))
        saved[path.name] = _match(recorder.snapshots, rig["probe"].get_weights(), _keras_arrays_equal)
    # Saves happen only on improvement, in epoch order: the newest file is the best.
    best_file = max(saved, key=saved.get) if saved else None
    resolved = {keras.ops.greater: "max", keras.ops.less: "min"}.get(early_stopping.monitor_op, keras_mode)
    return _side(values, epochs_run=len(recorder.snapshots), best_epoch=saved.get(best_file),
                 best_file=best_file, files=sorted(saved), resolved_mode=resolved)


# --------------------------------------------------------------------------
# Lightning rig
# --------------------------------------------------------------------------


def _lightning_module_class() -> Any:
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
            optimizer = torch.optim.SGD(self.parameters(), lr=_LEARNING_RATE)
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


def _lightning_fit(values: Sequence[float], monitor: str, callbacks: list[Any], workdir: Path,
                   scheduler: Any = None) -> Any:
    module_class = _lightning_module_class()
    pl = _RIG["pl"]
    recorder = _RIG["LightningRecorder"]()
    # No checkpoint callback given (the ReduceLROnPlateau replays): no default one either.
    checkpointing = any(isinstance(callback, pl.callbacks.Checkpoint) for callback in callbacks)
    with _quiet_run():
        trainer = pl.Trainer(max_epochs=len(values), accelerator="cpu", devices=1, logger=False,
                             enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                             enable_checkpointing=checkpointing, default_root_dir=str(workdir),
                             callbacks=[recorder, *callbacks])
        trainer.fit(module_class(monitor, values, scheduler))
    return recorder


def _lightning_callbacks(values: list[float], monitor: str, mode: str | None, patience: int,
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


def _lightning_side(values: list[float], monitor: str, callbacks: tuple[Any, Any, list[Any]],
                    workdir: Path) -> dict[str, Any]:
    early_stopping, checkpoint, callback_list = callbacks
    recorder = _lightning_fit(values, monitor, callback_list, workdir)
    torch = _RIG["torch"]
    best_epoch = best_file = None
    if checkpoint.best_model_path:
        saved = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)["state_dict"]

        def equal(snapshot: dict, weights: dict) -> bool:
            return snapshot.keys() == weights.keys() and all(torch.equal(snapshot[k], weights[k]) for k in snapshot)

        best_epoch = _match(recorder.snapshots, saved, equal)
        best_file = Path(checkpoint.best_model_path).name
    files = sorted(path.name for path in workdir.glob("*.ckpt"))
    return _side(values, epochs_run=len(recorder.snapshots), best_epoch=best_epoch, best_file=best_file,
                 files=files, resolved_mode=checkpoint.mode)


def _side(values: list[float], *, epochs_run: int, best_epoch: int | None, best_file: str | None,
          files: list[str], resolved_mode: str) -> dict[str, Any]:
    return {"epochs_run": epochs_run, "best_epoch": best_epoch,
            "best_value": json_safe(values[best_epoch]) if best_epoch is not None else None,
            "best_file": best_file, "files": files, "mode": resolved_mode}


def prepare() -> None:
    """Import both frameworks and build the tiny Keras model now (otherwise done by the first replay)."""
    _keras_rig()
    _lightning_module_class()


# --------------------------------------------------------------------------
# Replay
# --------------------------------------------------------------------------


def replay(values: Sequence[float], monitor: str, mode: str | None, patience: int, min_delta: float = 0.0,
           lightning_defaults: bool = False, *, template: str | None = None) -> dict[str, Any]:
    """Run the scripted curve through both frameworks; the dict the CLI prints as JSON.

    `mode=None` is allowed only with `lightning_defaults=True`: Keras then uses
    mode='auto' and Lightning its default 'min'.  `template` defaults to
    callbacks.checkpoint_template of configs/streetcar.yaml.  Raises
    ReplayError for a bad request and ValueError for what the project's
    callbacks refuse (e.g. a negative min_delta).
    """
    scripted = _check_request(values, monitor, mode, patience, min_delta, lightning_defaults)
    if template is None:
        from configs.loader import load_config

        template = load_config().callbacks.checkpoint_template
    with tempfile.TemporaryDirectory(prefix="callback-replay-") as temporary:
        keras_dir, lightning_dir = Path(temporary, "keras"), Path(temporary, "lightning")
        keras_dir.mkdir()
        lightning_dir.mkdir()
        # Build Lightning's callbacks first: the project refuses some requests
        # (negative min_delta) and should do so before Keras spends time.
        lightning_callbacks = _lightning_callbacks(scripted, monitor, mode, patience, min_delta,
                                                   lightning_defaults, template, lightning_dir)
        keras_result = _keras_side(scripted, monitor, mode, patience, min_delta, template, keras_dir)
        lightning_result = _lightning_side(scripted, monitor, lightning_callbacks, lightning_dir)
    agree = all(keras_result[key] == lightning_result[key] for key in ("epochs_run", "best_epoch", "best_value"))
    scenario = {"values": [json_safe(value) for value in scripted], "monitor": monitor, "mode": mode,
                "patience": patience, "min_delta": min_delta, "epochs": len(scripted),
                "lightning_callbacks": "lightning-defaults" if lightning_defaults else "project"}
    return {"scenario": scenario, "keras": keras_result, "lightning": lightning_result, "agree": agree,
            "notes": _notes(scenario, scripted, keras_result, lightning_result, agree, lightning_defaults)}


def _notes(scenario: dict[str, Any], values: list[float], keras_result: dict[str, Any],
           lightning_result: dict[str, Any], agree: bool, lightning_defaults: bool) -> list[str]:
    monitor, mode, patience, min_delta = (scenario[key] for key in ("monitor", "mode", "patience", "min_delta"))
    notes = []
    if lightning_defaults:
        notes.append(f"Lightning side: stock EarlyStopping(monitor={monitor!r}, mode={lightning_result['mode']!r}, "
                     f"patience={patience}, min_delta={min_delta}, check_finite=True) and "
                     f"ModelCheckpoint(save_top_k=1); Keras side: EarlyStopping(mode={keras_result['mode']!r}) "
                     f"and ModelCheckpoint(save_best_only=True).")
    else:
        notes.append("Lightning side: the project's KerasCompatibleEarlyStopping and KerasCompatibleModelCheckpoint "
                     "(lightning_impl/callbacks.py); Keras side: keras.callbacks.EarlyStopping and "
                     "ModelCheckpoint(save_best_only=True).")
    non_finite = [index for index, value in enumerate(values) if not math.isfinite(value)]
    explained = False
    if lightning_defaults and not agree:
        first = values[0]
        # NaN, or the infinity Lightning starts from (+inf in min mode, -inf in max mode).
        not_an_improvement_for_lightning = math.isnan(first) or first == (
            math.inf if lightning_result["mode"] == "min" else -math.inf)
        if not math.isfinite(first):
            sentence = (f"The first value is {json_safe(first)}: Keras starts from best=None, so it becomes the best "
                        f"({'and nothing can beat NaN' if math.isnan(first) else 'compared as a number'}); "
                        f"stock Lightning's check_finite=True stops at idx 0")
            if not_an_improvement_for_lightning:
                sentence += " (and its ±inf start would not count it as an improvement either)"
            if math.isnan(first):
                sentence += ". Its ModelCheckpoint stores NaN as ±inf, so any finite value replaces it"
            notes.append(sentence + ".")
            explained = True
        elif non_finite:
            notes.append(f"Non-finite values at idx {non_finite}: stock Lightning's check_finite=True stops at the "
                         f"first one (idx {non_finite[0]}); Keras has no finiteness check (NaN is never an "
                         f"improvement after the first epoch, ±inf compare as numbers).")
            explained = True
        if scenario["mode"] is None and keras_result["mode"] != lightning_result["mode"]:
            notes.append(f"No mode given: Keras's mode='auto' resolved {monitor} to {keras_result['mode']!r}; "
                         f"Lightning has no 'auto' and silently used its default {lightning_result['mode']!r}.")
            explained = True
        if min_delta < 0:
            notes.append(f"min_delta={min_delta}: Keras uses abs(min_delta)={abs(min_delta)}; Lightning keeps the "
                         f"sign and uses it as a tolerance: values up to {abs(min_delta)} worse than the best count as "
                         f"improvements.")
            explained = True
    if not agree and not explained:
        notes.append("Disagreement not explained by a documented difference (docs/differences.md#callbacks); "
                     "please report it with this output.")
    if not lightning_defaults and values and math.isnan(values[0]):
        notes.append("The first value is NaN: in both, as in Keras, it became the best and nothing can beat it.")
    if min_delta > 0:
        notes.append("ModelCheckpoint has no min_delta in either framework: the best checkpoint may hold an epoch "
                     "that EarlyStopping did not count as an improvement.")
    if len(keras_result["files"]) > 1:
        notes.append(f"Keras kept {len(keras_result['files'])} checkpoint files (one per improvement, {{epoch}} in "
                     f"the name); Lightning's save_top_k=1 keeps only the best.")
    keras_stem = _stem(keras_result["best_file"])
    lightning_stem = _stem(lightning_result["best_file"])
    if keras_stem != lightning_stem:
        notes.append(f"Checkpoint names differ: Keras {keras_result['best_file']!r} (1-based {{epoch}}) vs Lightning "
                     f"{lightning_result['best_file']!r}"
                     + (" (0-based {epoch})." if lightning_defaults else "."))
    return notes


def _stem(name: str | None) -> str | None:
    if name is None:
        return None
    for suffix in (".weights.h5", ".ckpt"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


# --------------------------------------------------------------------------
# ReduceLROnPlateau replay
# --------------------------------------------------------------------------


def replay_reduce_lr(values: Sequence[float], *, monitor: str = "val_loss", mode: str = "min", factor: float = 0.5,
                     patience: int = 2, min_delta: float = 1e-4, min_lr: float = 0.0,
                     cooldown: int = 0) -> dict[str, Any]:
    """Learning rate used in each epoch under four ReduceLROnPlateau implementations.

    * "keras": keras.callbacks.ReduceLROnPlateau(monitor, factor, patience, mode, min_delta, cooldown, min_lr).
    * "lightning": the project's KerasCompatibleReduceLROnPlateau with the same arguments.
    * "torch_stock": torch.optim.lr_scheduler.ReduceLROnPlateau(mode, factor, patience), every
      other argument at torch's default (threshold=1e-4 relative, cooldown 0, min_lr 0).
    * "torch_configured": torch's scheduler set up to imitate Keras: patience-1,
      threshold=min_delta, threshold_mode='abs', same cooldown and min_lr.

    Each list holds the rate of the first param group at the start of every
    epoch (the initial rate is 0.1), plus "drops": the epochs whose rate is
    lower than the previous epoch's.
    """
    scripted = _check_request(values, monitor, mode, patience, 0.0, False)
    rig = _keras_rig()
    keras = rig["keras"]
    keras_callback = keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=factor, patience=patience, verbose=0,
                                                       mode=mode, min_delta=min_delta, cooldown=cooldown,
                                                       min_lr=min_lr)
    rates = {"keras": _keras_fit(scripted, monitor, [keras_callback]).learning_rates}

    from lightning_impl.callbacks import KerasCompatibleReduceLROnPlateau

    _lightning_module_class()
    torch = _RIG["torch"]
    project = KerasCompatibleReduceLROnPlateau(monitor=monitor, mode=mode, factor=factor, patience=patience,
                                               min_delta=min_delta, cooldown=cooldown, min_lr=min_lr)

    def torch_stock(optimizer: Any) -> Any:
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience)

    def torch_configured(optimizer: Any) -> Any:
        # torch reduces when num_bad_epochs > patience, Keras when wait >= patience.
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=mode, factor=factor, patience=max(patience - 1, 0), threshold=min_delta,
            threshold_mode="abs", cooldown=cooldown, min_lr=min_lr)

    with tempfile.TemporaryDirectory(prefix="reduce-lr-replay-") as temporary:
        rates["lightning"] = _lightning_fit(scripted, monitor, [project], Path(temporary)).learning_rates
        rates["torch_stock"] = _lightning_fit(scripted, monitor, [], Path(temporary), torch_stock).learning_rates
        rates["torch_configured"] = _lightning_fit(scripted, monitor, [], Path(temporary),
                                                   torch_configured).learning_rates
    drops = {name: [index for index in range(1, len(sequence)) if sequence[index] < sequence[index - 1] * (1 - 1e-6)]
             for name, sequence in rates.items()}
    return {**rates, "drops": drops}


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def format_table(result: dict[str, Any]) -> str:
    scenario = result["scenario"]
    lines = [f"monitor={scenario['monitor']} mode={scenario['mode'] or '(not given)'} patience={scenario['patience']} "
             f"min_delta={scenario['min_delta']} epochs={scenario['epochs']} "
             f"(Lightning: {scenario['lightning_callbacks']} callbacks)",
             "values by epoch idx: " + ", ".join(f"{index}:{value}" for index, value in enumerate(scenario["values"])),
             "",
             f"{'framework':<10} {'epochs_run':>10} {'best_epoch':>10} {'best_value':>10}  best_file"]
    for name in ("keras", "lightning"):
        side = result[name]
        lines.append(f"{name:<10} {side['epochs_run']:>10} {str(side['best_epoch']):>10} "
                     f"{str(side['best_value']):>10}  {side['best_file']}")
    lines += ["", f"agree: {'yes' if result['agree'] else 'NO'}", "notes:"]
    lines += [f"  - {note}" for note in result["notes"]]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog="python -m parity_tests.replay",
                     description="Replay a scripted metric through Keras's and Lightning's EarlyStopping and "
                                 "ModelCheckpoint and report where each stops and which epoch each keeps.")
    parser.add_argument("--monitor", required=True,
                        help="monitored key, one the trainers log: loss, accuracy, recall, val_loss, val_accuracy "
                             "or val_recall")
    parser.add_argument("--mode", help="min or max (required unless --lightning-defaults, where leaving it out "
                                       "shows Keras 'auto' against Lightning's default 'min')")
    parser.add_argument("--patience", required=True, type=int, help="EarlyStopping patience (>= 0)")
    parser.add_argument("--min-delta", type=float, default=0.0, help="EarlyStopping min_delta (default 0)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--values", help="comma-separated values by epoch, e.g. 0.69,0.72,nan "
                                         "(use --values=-inf,... when the first one starts with '-')")
    source.add_argument("--values-file", help="file with the values, separated by commas, spaces or new lines")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--lightning-defaults", action="store_true",
                        help="use stock Lightning EarlyStopping/ModelCheckpoint(save_top_k=1) instead of the "
                             "project's Keras-compatible callbacks")
    return parser


def _check_cli_monitor(monitor: str) -> None:
    """The command line replays the trainers' own metrics only; replay() itself takes any metric name."""
    from configs.loader import MONITORABLE_KEYS

    if monitor not in MONITORABLE_KEYS:
        raise ReplayError(f"--monitor {monitor!r} is not a metric the trainers log; valid: "
                          f"{', '.join(MONITORABLE_KEYS)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    try:
        values = (parse_values(arguments.values) if arguments.values is not None
                  else read_values_file(arguments.values_file))
        # Check everything before importing TensorFlow (seconds).
        _check_cli_monitor(arguments.monitor)
        _check_request(values, arguments.monitor, arguments.mode, arguments.patience, arguments.min_delta,
                       arguments.lightning_defaults)
        result = replay(values, arguments.monitor, arguments.mode, arguments.patience, arguments.min_delta,
                        arguments.lightning_defaults)
    except ValueError as error:  # ReplayError, and what the project's callbacks refuse
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if arguments.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
