"""Fit a Keras run, or continue it, and decide which model it keeps (keras_impl.train's middle).

    outcome = fit_and_decide(model, request, dataset, run_dir, class_weight=..., first_epoch=0,
                             fit_epochs=settings.epochs, initial_weights=None, progress=say)

The outcome holds experiment.run_state.OUTCOME_KEYS, what training_stopped.json
records.  With early stopping the run keeps ModelCheckpoint's best file;
without, the final model, saved as the book's §6.10 saves it (save_final_model).
A resume continues from backup/ (keras_impl.callbacks.RunStateBackup), and a
diverged epoch leaves the last finite epoch's model (docs/reliability.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from configs.cli import RunRequest
from data.dataset import PreparedDataset
from experiment.run import VOCABULARY_FILE, extend_history
from keras_impl.callbacks import BACKUP_DIR, TRAINING_LOG

COMMAND = "keras_impl.train"   # the command a resume hint names
ARCHITECTURE_FILE = "model_architecture.json"
WEIGHTS_FILE = "model.weights.h5"
FINAL_MODEL_FILE = "model.keras"


def fit_and_decide(model, request: RunRequest, dataset: PreparedDataset, run_dir: Path, *,
                   class_weight: Mapping[int, float], first_epoch: int, fit_epochs: int,
                   initial_weights: Mapping[str, np.ndarray] | None,
                   progress: Callable[[str], None]) -> dict[str, Any]:
    """Fit (or continue) the model and decide what the run keeps: experiment.run_state.OUTCOME_KEYS.

    `fit_epochs` is settings.epochs, or first_epoch when the backup's last
    epoch already ended training: fit() then trains nothing, and the backup
    callback only restores the state the run had when training ended.
    """
    import keras

    from experiment.reliability import (NoFiniteModel, RunInterrupted, TrainingDiverged, completed_reason,
                                        early_stop_reason, reach_fault_point, resume_hint)
    from keras_impl.callbacks import add_run_safety_callbacks, build_keras_callbacks
    from keras_impl.train import build_fit

    config, settings = request.config, request.settings
    # [docs:keras-fit]
    if initial_weights is not None:
        # By canonical name, every key and shape checked first (experiment.weights.check_weights).
        from keras_impl.model import set_canonical_weights

        set_canonical_weights(model, initial_weights, source="initial_weights")
        progress("initial weights: the given canonical weights, not the seeded initialisers")
    callbacks = add_run_safety_callbacks(build_keras_callbacks(settings, config.callbacks, run_dir),
                                         settings, run_dir)
    backup = run_state_backup(callbacks)  # its history spans every epoch (a resumed fit returns only its own)
    diverged = None
    try:
        if fit_epochs > first_epoch:
            fit_arguments = build_fit(request, dataset, class_weight, epochs=fit_epochs, first_epoch=first_epoch)
            model.fit(**fit_arguments, callbacks=callbacks, verbose=2)
        else:  # the backup's last epoch ended training: restore, train nothing (experiment.run_state)
            backup.restore_without_training(model)
    except TrainingDiverged as error:  # NonFiniteGuard: nothing after it saw the epoch
        diverged = error
    except KeyboardInterrupt as error:  # Ctrl-C, or SIGTERM through sigterm_raises_interrupt
        completed = len(next(iter(backup.history.values()), []))
        signal_name = getattr(error, "signal_name", "SIGINT")
        # One line, printed once by configs.console.run_main.
        raise RunInterrupted(signal_name, f"interrupted by {signal_name} during epoch {completed + 1}; "
                                          f"{resume_hint(COMMAND, run_dir, completed)}") from None
    # [/docs:keras-fit]
    reach_fault_point("fit-ended", run_dir)
    history = kept_history = plain_history(backup.history)
    if diverged is not None:
        history = extend_history(history, diverged.figures)
        progress(f"{diverged}; keeping the model of the last finite epoch")
        if not kept_history:
            raise NoFiniteModel(diverged)
    epochs_run = len(next(iter(history.values()), []))

    kept_model_path, best_epoch, best_value, monitor = select_kept_model(model, request, kept_history, run_dir,
                                                                         diverged, progress)
    if diverged is not None:
        stop_reason = str(diverged)
    else:
        stopping = next((c for c in callbacks if isinstance(c, keras.callbacks.EarlyStopping)), None)
        stop_reason = (early_stop_reason(stopping.stopped_epoch, settings.monitor, settings.patience)
                       if stopping is not None and stopping.stopped_epoch > 0
                       else completed_reason(epochs_run, settings.epochs))
    return {"kept_model": kept_model_path, "history": history, "epochs_run": epochs_run, "best_epoch": best_epoch,
            "best_value": best_value, "monitor": monitor, "stop_reason": stop_reason}


def select_kept_model(model, request: RunRequest, kept_history: Mapping[str, Sequence[float]], run_dir: Path,
                      diverged, progress: Callable[[str], None]) -> tuple[Path, int | None, float | None, str | None]:
    """(the model file the run tests, best epoch, best value, monitor) after a fit.

    With early stopping: ModelCheckpoint's best file, as Keras decides it.
    Without: the final model (the last finite epoch's after divergence),
    saved as the book saves it.
    """
    settings = request.settings
    if not settings.early_stop:
        if diverged is not None:
            restore_last_finite_weights(model, run_dir, diverged)
        return save_final_model(model, run_dir), None, None, None
    # Only finite epochs can hold the best checkpoint (the diverged one was never judged).
    best_epoch, best_value, kept_model_path = locate_best_checkpoint(request, kept_history, run_dir)
    progress(f"best epoch {best_epoch + 1} (0-based {best_epoch}): {settings.monitor} = {best_value:.6f}; "
             f"testing {kept_model_path.name}")
    return kept_model_path, best_epoch, best_value, settings.monitor


def run_state_backup(callbacks):
    """The RunStateBackup among a run's callbacks (keras_impl.callbacks.add_run_safety_callbacks adds one)."""
    from keras_impl.callbacks import RunStateBackup

    backups = [callback for callback in callbacks if isinstance(callback, RunStateBackup)]
    if len(backups) != 1:  # pragma: no cover - guards add_run_safety_callbacks' contract
        raise RuntimeError(f"expected one RunStateBackup among the callbacks, found {len(backups)}")
    return backups[0]


def locate_best_checkpoint(request: RunRequest, history: Mapping[str, Sequence[float]],
                           run_dir: Path) -> tuple[int, float, Path]:
    """(best_epoch, best_value, checkpoint path), decided as Keras decides and checked on disk."""
    from keras_impl.callbacks import checkpoint_file_template, format_checkpoint_name, keras_best_epoch

    settings = request.settings
    if settings.monitor not in history:
        raise RuntimeError(f"monitor {settings.monitor!r} is not in the history keys {sorted(history)}")
    values = [float(value) for value in history[settings.monitor]]
    best_epoch = keras_best_epoch(values, settings.mode)
    template = checkpoint_file_template(request.config.callbacks.checkpoint_template, settings.monitor)
    expected = run_dir / format_checkpoint_name(template, best_epoch, settings.monitor, values[best_epoch])
    if not expected.is_file():
        saved = sorted(path.name for path in run_dir.glob(f"*{Path(template).suffix}"))
        raise RuntimeError(f"Keras's best epoch by the history is {best_epoch} (1-based {best_epoch + 1}), "
                           f"but {expected.name} is not in {run_dir}; checkpoints there: {saved}")
    return best_epoch, values[best_epoch], expected


# [docs:keras-save]
def save_final_model(model, run_dir: Path) -> Path:
    """The book's §6.10 explicit save (see keras_impl.train's docstring for the Keras 2 -> 3 mapping)."""
    from data.atomic import write_atomic

    write_atomic(run_dir / ARCHITECTURE_FILE, model.to_json())
    model.save_weights(str(run_dir / WEIGHTS_FILE))
    model.save(str(run_dir / FINAL_MODEL_FILE))
    return run_dir / FINAL_MODEL_FILE
# [/docs:keras-save]


def plain_history(history: Mapping[str, Sequence[Any]]) -> dict[str, list[float]]:
    return {key: [float(value) for value in values] for key, values in history.items()}


# --------------------------------------------------------------------------
# Resume and divergence (docs/reliability.md)
# --------------------------------------------------------------------------


def prepare_resume(run_dir: Path, dataset: PreparedDataset, settings) -> tuple[int, int]:
    """Check an interrupted run directory can continue: (epoch it continues at, 0-based; epochs to fit to).

    The second number is settings.epochs, or the first one when the backup's
    last epoch already ended training (early stopping fired, or the epoch
    cap): fit() then trains nothing (experiment.run_state).  Also cuts
    training_log.csv back to the epochs the backup holds: an epoch that ended
    after the last backup (the process died in between) is run again and
    logged again.
    """
    from experiment.reliability import check_same_vocabularies
    from experiment.run_state import training_is_over
    from keras_impl.callbacks import read_backup_metadata

    check_same_vocabularies(run_dir, dataset.vocabularies, VOCABULARY_FILE)
    metadata = read_backup_metadata(run_dir / BACKUP_DIR)
    if metadata is None:
        raise ValueError(f"--resume: {run_dir / BACKUP_DIR} holds no backup (the run was interrupted before "
                         f"its first epoch ended); start a new run instead")
    first_epoch = int(metadata["epoch"])
    trim_training_log(run_dir / TRAINING_LOG, first_epoch)
    early_stopping = metadata["project_state"]["callbacks"].get("EarlyStopping")
    if training_is_over(first_epoch, settings.epochs, early_stopping):
        return first_epoch, first_epoch
    return first_epoch, settings.epochs


def trim_training_log(path: Path, epochs: int) -> None:
    """Keep the header and the rows of epochs 0..epochs-1 of Keras's CSVLogger file (atomically)."""
    from data.atomic import write_atomic

    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:] if line.split(",", 1)[0].strip().isdigit()
                        and int(line.split(",", 1)[0]) < epochs]
    write_atomic(path, "".join(kept).encode("utf-8"))


def restore_last_finite_weights(model, run_dir: Path, diverged) -> None:
    """After divergence without early stopping, put back the weights of the last finite epoch (the backup)."""
    from keras_impl.callbacks import read_backup_metadata

    metadata = read_backup_metadata(run_dir / BACKUP_DIR)
    if metadata is None:
        raise ValueError(f"training diverged in its first epoch ({diverged}), so no finite model exists; "
                         f"lower hyperparameters.learning_rate")
    model.load_weights(str(run_dir / BACKUP_DIR / metadata["weights"]))
