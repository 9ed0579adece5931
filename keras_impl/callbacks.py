"""The Keras callbacks of chapter 6, built from the shared configuration.

    from keras_impl.callbacks import build_keras_callbacks, keras_best_epoch
    callbacks = build_keras_callbacks(settings, config.callbacks, run_dir)
    history = model.fit(..., callbacks=callbacks)
    best_epoch = keras_best_epoch(history.history[settings.monitor], settings.mode)

What a run gets (docs/differences.md#callbacks compares each with Lightning's):

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

A real run wraps that set with add_run_safety_callbacks (the end of this
module): NonFiniteGuard first, RunStateBackup (keras.callbacks.BackupAndRestore
plus the callback state, dropout seeds and history Keras does not keep) last,
so `python -m keras_impl.train --resume RUN_DIR` ends where the uninterrupted
run ends (docs/reliability.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from configs.loader import MODES, CallbacksConfig, ExperimentSettings

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


# [docs:keras-checkpoint-name]
def format_checkpoint_name(keras_template: str, epoch_index: int, monitor: str, value: float) -> str:
    """The file name Keras's ModelCheckpoint writes for 0-based epoch `epoch_index`."""
    return keras_template.format(epoch=epoch_index + 1, **{monitor: value})
# [/docs:keras-checkpoint-name]


def build_keras_callbacks(settings: ExperimentSettings, callbacks_config: CallbacksConfig,
                          run_dir: str | Path) -> list[keras.callbacks.Callback]:
    """The callbacks one run uses (see the module docstring)."""
    run_dir = Path(run_dir)
    # [docs:keras-tensorboard]
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.TensorBoard(log_dir=str(run_dir / TENSORBOARD_DIR)),
        keras.callbacks.CSVLogger(str(run_dir / TRAINING_LOG)),
    ]
    # [/docs:keras-tensorboard]
    # [docs:keras-early-stopping]
    if settings.early_stop:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=settings.monitor, mode=settings.mode, patience=settings.patience,
            min_delta=settings.min_delta, verbose=1))
    # [/docs:keras-early-stopping]
        # [docs:keras-model-checkpoint]
        template = checkpoint_file_template(callbacks_config.checkpoint_template, settings.monitor)
        callbacks.append(keras.callbacks.ModelCheckpoint(
            filepath=str(run_dir / template), monitor=settings.monitor, mode=settings.mode,
            save_best_only=True, verbose=1))
        # [/docs:keras-model-checkpoint]
    # [docs:keras-reduce-lr]
    reduce_lr = callbacks_config.reduce_lr
    if reduce_lr.enabled:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=reduce_lr.monitor, mode=reduce_lr.mode, factor=reduce_lr.factor,
            patience=reduce_lr.patience, min_delta=reduce_lr.min_delta, min_lr=reduce_lr.min_lr, verbose=1))
    # [/docs:keras-reduce-lr]
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
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}; valid: {', '.join(MODES)}")
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


# --------------------------------------------------------------------------
# Run safety: resume, divergence, fault injection (docs/reliability.md)
# --------------------------------------------------------------------------
#
# build_keras_callbacks above is the book's set.  add_run_safety_callbacks
# wraps it for a real run:
#
#   [NonFiniteGuard, FaultInjection?, <the book's set>, RunStateBackup]
#
# Keras calls callbacks in list order (keras/src/callbacks/callback_list.py), so the guard sees
# every epoch first and the backup sees it last, after EarlyStopping,
# ModelCheckpoint, ReduceLROnPlateau and CSVLogger have acted on it.

BACKUP_DIR = "backup"
BACKUP_METADATA_FILE = "training_metadata.json"   # Keras's own name for it
BACKUP_WEIGHTS_PATTERN = "epoch-{epoch:04d}.weights.h5"
# Callback state Keras keeps only in memory (docs/differences.md row 29): the
# attributes each stock callback resets in on_train_begin or never saves.
CALLBACK_STATE_ATTRIBUTES = {
    "EarlyStopping": ("wait", "stopped_epoch", "best", "best_epoch"),
    "ModelCheckpoint": ("best",),
    "ReduceLROnPlateau": ("wait", "cooldown_counter", "best"),
}
SEED_STATE_SUFFIX = "seed_generator_state"


def _plain_number(value):
    """A callback attribute as JSON: None, int or float (NaN/inf kept; Python's json writes them)."""
    if value is None:
        return None
    if isinstance(value, (bool, int, np.integer)):
        return int(value)
    return float(value)


class NonFiniteGuard(keras.callbacks.Callback):
    """Stop at the end of the first epoch whose loss (or monitored value) is NaN or infinite.

    Keras's own tool is TerminateOnNaN: it checks the batch loss and sets
    stop_training, but fit() still validates that epoch and calls every
    on_epoch_end, so ModelCheckpoint judges the diverged model - and a model
    whose outputs are NaN predicts "no delay" everywhere, which scores a
    val_accuracy of ~0.98, far above any healthy epoch (~0.6-0.7): the NaN
    model becomes the "best" checkpoint.  Lightning's EarlyStopping
    (check_finite=True) stops on a non-finite *monitored* value only, after
    its checkpoint callbacks may have run.

    The project's rule, the same in both frameworks (lightning_impl has the
    twin): at the end of an epoch, if any of `keys` is non-finite, raise
    TrainingDiverged before any other callback sees the epoch.  It runs first
    in the list, so no checkpoint, CSV row, backup or early-stopping decision
    ever includes the diverged epoch; the trainer catches the exception and
    keeps the best (or last finite) model.  The check is per epoch, not per
    batch: the epoch's loss is the mean over its batches, so one NaN batch
    makes it NaN, and a per-batch check would need a collective per step
    under Lightning's DDP.
    """

    def __init__(self, keys: Sequence[str]) -> None:
        super().__init__()
        self.keys = tuple(keys)

    def on_epoch_end(self, epoch, logs=None):
        from experiment.reliability import TrainingDiverged, non_finite_items

        logs = logs or {}
        bad = non_finite_items(logs, self.keys)
        if bad:
            key, value = bad[0]
            raise TrainingDiverged(epoch, key, value, {name: float(number) for name, number in logs.items()})


class FaultInjection(keras.callbacks.Callback):
    """Test-only faults from experiment.reliability.FaultPlan: pause to be killed, kill itself, or NaN weights.

    Added only when a STREETCAR_FAULT_* variable is set (parity_tests/test_resume.py,
    parity_tests/test_divergence.py); lightning_impl has the twin.
    """

    def __init__(self, plan, run_dir: str | Path) -> None:
        super().__init__()
        self.plan = plan
        self.run_dir = run_dir
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if self.plan.nan_at_epoch is not None and epoch == self.plan.nan_at_epoch:
            # One NaN in the output bias: every prediction, the loss and then every weight become NaN.
            bias = self.model.get_layer("output").bias
            bias.assign(keras.ops.full(bias.shape, float("nan"), dtype=bias.dtype))

    def on_train_batch_begin(self, batch, logs=None):
        from experiment.reliability import reach_fault_point

        reach_fault_point((self.epoch, batch), self.run_dir, plan=self.plan)


class RunStateBackup(keras.callbacks.BackupAndRestore):
    """keras.callbacks.BackupAndRestore that also keeps what Keras loses, written atomically.

    What stock BackupAndRestore (keras 3.15) saves at each epoch end: the
    model's weights with the optimizer's variables (model.save_weights) into
    latest.weights.h5, then {"epoch", "batch"} into training_metadata.json;
    on the next fit() it loads both and starts at that epoch.  What it loses
    (docs/differences.md rows 29 and 31):

    * EarlyStopping's wait / best / best_epoch / stopped_epoch (it resets in
      on_train_begin), ModelCheckpoint's best (in memory only, so the first
      resumed epoch is always saved as a "best"), ReduceLROnPlateau's wait /
      best / cooldown: a resumed run trains longer and keeps other files;
    * the Dropout layers' SeedGenerator states, which are model variables but
      not weights (save_weights skips them): a resumed run draws the dropout
      masks of epoch 0 again;
    * the History (fit() returns only the resumed epochs);
    * atomicity: the weights file is rewritten in place, then the metadata,
      so a kill between the two pairs epoch k's weights with epoch k-1's
      number.

    This subclass saves, at the end of every epoch, weights to a new
    epoch-NNNN.weights.h5 (temp file + os.replace) and then one metadata file
    (temp + os.replace) holding Keras's {"epoch", "batch"} plus the weights
    file's name, the callbacks' state, the seed-generator states and the
    history so far.  The metadata is the commit point: whatever instant the
    process dies, the metadata names a complete weights file of the same
    epoch.  On the next fit() with the same backup_dir it restores all of it
    after the other callbacks' on_train_begin resets (it is last in the list).
    """

    def __init__(self, backup_dir: str | Path, stateful: Sequence[keras.callbacks.Callback] = ()) -> None:
        # delete_checkpoint=False: stock Keras deletes the backup when fit() ends, and a run killed
        # between that and its result could not be finished; keras_impl.train deletes it once the
        # run is marked completed (experiment.run_state).
        super().__init__(backup_dir=str(backup_dir), save_freq="epoch", double_checkpoint=False,
                         delete_checkpoint=False)
        self.stateful = {}
        for callback in stateful:
            kind = next((name for name in CALLBACK_STATE_ATTRIBUTES
                         if isinstance(callback, getattr(keras.callbacks, name))), None)
            if kind is not None:
                if kind in self.stateful:
                    raise ValueError(f"RunStateBackup keeps one {kind}; got two")
                self.stateful[kind] = callback
        self.history: dict[str, list[float]] = {}
        self.restored_epoch: int | None = None

    # -- saving ----------------------------------------------------------------

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        super().on_epoch_end(epoch, logs)   # -> _save_model()

    def project_state(self) -> dict:
        return {
            "callbacks": {kind: {name: _plain_number(getattr(callback, name, None))
                                 for name in CALLBACK_STATE_ATTRIBUTES[kind]}
                          for kind, callback in self.stateful.items()},
            "seed_generators": {variable.path: np.asarray(variable.numpy()).tolist()
                                for variable in self.model.variables if variable.path.endswith(SEED_STATE_SUFFIX)},
            "history": self.history,
        }

    def _save_model(self):
        import json

        from data.atomic import atomic_path, write_atomic

        backup_dir = Path(self.backup_dir)
        backup_dir.mkdir(parents=True, exist_ok=True)
        weights_name = BACKUP_WEIGHTS_PATTERN.format(epoch=self._current_epoch)
        # Keras insists on the ".weights.h5" suffix; atomic_path's temp name keeps it.
        with atomic_path(backup_dir / weights_name) as temporary:
            self.model.save_weights(str(temporary), overwrite=True)
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen, "weights": weights_name,
                    "project_state": self.project_state()}
        # allow_nan: a NaN "best" (Keras keeps a first NaN as best) must survive the round trip.
        write_atomic(backup_dir / BACKUP_METADATA_FILE, json.dumps(metadata, allow_nan=True).encode())
        for stale in backup_dir.glob("epoch-*.weights.h5"):
            if stale.name != weights_name:
                stale.unlink(missing_ok=True)

    # -- restoring -------------------------------------------------------------

    def on_train_begin(self, logs=None):
        # Stock Keras falls back to a ".bkp" double checkpoint on OSError; here the
        # metadata always names a complete file, and any failure is a clear error.
        self._load_model()

    def restore_without_training(self, model) -> None:
        """Load the backup into `model` and the callbacks without fit(): the run's training had already ended."""
        self.set_model(model)
        self._load_model()

    def _load_model(self):
        metadata = read_backup_metadata(self.backup_dir)
        if metadata is None:
            return
        if not self.model.built:  # pragma: no cover - the trainer builds the model first
            raise ValueError("RunStateBackup needs a built model")
        if self.model.optimizer is not None and not self.model.optimizer.built:
            # Keras does the same: optimizer variables must exist before load_weights fills them.
            self.model.optimizer.build(self.model.trainable_variables)
        weights_path = Path(self.backup_dir) / metadata["weights"]
        try:
            self.model.load_weights(str(weights_path))
        except Exception as error:  # h5py / Keras errors: a damaged or foreign weights file
            raise ValueError(f"cannot resume from {weights_path}: {str(error).splitlines()[0] if str(error) else error!r}"
                             f" (the backup does not fit this model)") from None
        state = metadata["project_state"]
        for kind, values in state["callbacks"].items():
            callback = self.stateful.get(kind)
            if callback is None:
                raise ValueError(f"cannot resume: the backup holds {kind} state but this run has no {kind}")
            for name, value in values.items():
                setattr(callback, name, value)
        seeds = {variable.path: variable for variable in self.model.variables
                 if variable.path.endswith(SEED_STATE_SUFFIX)}
        if set(seeds) != set(state["seed_generators"]):
            raise ValueError(f"cannot resume: the backup's dropout seed generators {sorted(state['seed_generators'])} "
                             f"are not this model's {sorted(seeds)}")
        for path, value in state["seed_generators"].items():
            seeds[path].assign(np.asarray(value, dtype=seeds[path].dtype))
        self.history = {key: [float(v) for v in values] for key, values in state["history"].items()}
        self.restored_epoch = int(metadata["epoch"])
        # What stock BackupAndRestore does: fit() starts at this epoch.
        self.model._initial_epoch = self.restored_epoch


def read_backup_metadata(backup_dir: str | Path) -> dict | None:
    """The RunStateBackup metadata in `backup_dir`, None when there is none, ValueError when damaged."""
    import json

    path = Path(backup_dir) / BACKUP_METADATA_FILE
    if not path.is_file():
        return None
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
        epoch = metadata["epoch"]
        weights = metadata["weights"]
        state = metadata["project_state"]
        if not isinstance(epoch, int) or epoch < 1 or not isinstance(state, dict):
            raise ValueError("bad epoch or state")
        for key in ("callbacks", "seed_generators", "history"):
            if not isinstance(state[key], dict):
                raise ValueError(f"bad {key}")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"cannot resume: {path} is corrupt or not written by keras_impl "
                         f"({type(error).__name__}: {error})") from None
    if not (Path(backup_dir) / weights).is_file():
        raise ValueError(f"cannot resume: {path} names {weights}, which is missing from {backup_dir}")
    return metadata


def add_run_safety_callbacks(callbacks: Sequence[keras.callbacks.Callback], settings: ExperimentSettings,
                             run_dir: str | Path) -> list[keras.callbacks.Callback]:
    """The book's callbacks wrapped for a real run: guard first, backup last (see the section comment).

    CSVLogger appends, so a resumed run continues training_log.csv (the
    trainer first drops the rows of epochs the backup does not hold).
    """
    from experiment.reliability import fault_plan_from_environment, guarded_keys

    run_dir = Path(run_dir)
    for callback in callbacks:
        if isinstance(callback, keras.callbacks.CSVLogger):
            callback.append = True
    plan = fault_plan_from_environment()
    front: list[keras.callbacks.Callback] = [NonFiniteGuard(guarded_keys(settings))]
    if plan is not None:
        front.append(FaultInjection(plan, run_dir))
    backup = RunStateBackup(run_dir / BACKUP_DIR, stateful=callbacks)
    return [*front, *callbacks, backup]
