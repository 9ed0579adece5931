"""Fit a Lightning run (or continue it), decide which model it keeps, test that model: lightning_impl.train's middle.

    outcome, kept, fit_seconds = fit_or_reload(trainer, module, datamodule, callbacks, settings, place,
                                               resume=None, progress=say)
    test = test_kept_model(trainer, kept, datamodule, dataset, run_dir)

The outcome holds experiment.run_state.OUTCOME_KEYS, what training_stopped.json
records; `kept` is the module the run tests: the best checkpoint's with early
stopping (as Keras's ModelCheckpoint(save_best_only=True) keeps it), else the
final one, or the last finite epoch's when training diverged
(docs/reliability.md).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from data.dataset import PreparedDataset
from experiment.artifacts import summarize_test
from configs.console import say
from experiment.run import VOCABULARY_FILE, extend_history

COMMAND = "lightning_impl.train"   # the command a resume hint names
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT_FILE = "last.ckpt"
PREDICTION_BATCH_ROWS = 131072


def check_resumable(run_dir: Path, dataset, settings) -> tuple[int, int]:
    """Check an interrupted run directory can continue: (epochs its last.ckpt holds, epochs to fit to).

    The second number is settings.epochs, or the first one when the last
    committed epoch already ended training (early stopping fired, or the
    epoch cap): the resumed fit then trains nothing and only restores the
    state, as the uninterrupted run had it when training ended
    (experiment.run_state).
    """
    import torch

    from experiment.reliability import check_same_vocabularies
    from experiment.run_state import training_is_over

    check_same_vocabularies(run_dir, dataset.vocabularies, VOCABULARY_FILE)
    last = run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT_FILE
    if not last.is_file():
        raise ValueError(f"--resume: {last} does not exist (the run was interrupted before its first epoch "
                         f"ended); start a new run instead")
    try:
        checkpoint = torch.load(str(last), map_location="cpu", weights_only=True)
        completed = int(checkpoint["epoch"]) + 1
    except Exception as error:  # a damaged file: say so in one line
        raise ValueError(f"--resume: cannot read {last}: {str(error).splitlines()[0] if str(error) else error!r}") \
            from None
    early_stopping = next((state for name, state in checkpoint.get("callbacks", {}).items()
                           if "EarlyStopping" in str(name)), None)
    if training_is_over(completed, settings.epochs, early_stopping):
        return completed, completed
    return completed, settings.epochs


def checkpoint_epoch(path: str | Path) -> int:
    """The 0-based epoch whose end a Lightning checkpoint was saved at (its "epoch" entry)."""
    import torch

    checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    return int(checkpoint["epoch"])


def fit_and_decide(trainer, module, datamodule, callbacks, settings, run_dir: Path, *,
                   resume: str | Path | None, progress: Callable[[str], None]) -> tuple[dict[str, Any], Any, float]:
    """Fit (or continue) the model and decide what the run keeps: (outcome, kept module, fit seconds)."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from experiment.reliability import (RunInterrupted, TrainingDiverged, completed_reason, early_stop_reason,
                                        reach_fault_point, resume_hint)
    last_checkpoint = run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT_FILE
    fit_started = time.perf_counter()
    diverged = None
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(last_checkpoint) if resume is not None else None)
    except TrainingDiverged as error:  # NonFiniteGuard: nothing after it saw the epoch
        diverged = error
    except (KeyboardInterrupt, SIGTERMException, SystemExit) as error:
        # Ctrl-C: Lightning shuts down and calls sys.exit(1); SIGTERM: its handler raises
        # SIGTERMException at the next batch boundary.  Both become one resume line, printed
        # once, by configs.console.run_main.
        signal_name = interrupting_signal(trainer, error)
        completed = len(module.history.get("loss", []))
        raise RunInterrupted(signal_name, f"interrupted by {signal_name} during epoch {completed + 1}; "
                                          f"{resume_hint(COMMAND, run_dir, completed)}") from None
    reach_fault_point("fit-ended", run_dir)
    fit_seconds = time.perf_counter() - fit_started
    if trainer.world_size > 1:
        # Every process says where its training ended (say, not progress: only process 0
        # reports otherwise), so a DDP run shows that EarlyStopping stopped them together.
        say(f"process {trainer.global_rank}/{trainer.world_size}: training ended after epoch "
            f"{trainer.current_epoch}")
    history = {key: list(values) for key, values in module.history.items()}
    if diverged is not None:
        progress(f"{diverged}; keeping the model of the last finite epoch")
    epochs_run = len(history.get("loss", [])) + (1 if diverged is not None else 0)
    kept, chosen = select_kept_model(module, callbacks, settings, history, run_dir, diverged, progress)
    if diverged is not None:
        history = extend_history(history, diverged.figures)
        stop_reason = str(diverged)
    elif callbacks.early_stopping is not None and callbacks.early_stopping.stopped_epoch > 0:
        stop_reason = early_stop_reason(callbacks.early_stopping.stopped_epoch, settings.monitor,
                                        settings.patience)
    else:
        stop_reason = completed_reason(epochs_run, settings.epochs)
    outcome = {"kept_model": chosen["kept_model"], "history": history, "epochs_run": epochs_run,
               "best_epoch": chosen["best_epoch"], "best_value": chosen["best_value"], "monitor": chosen["monitor"],
               "stop_reason": stop_reason}
    return outcome, kept, fit_seconds


def interrupting_signal(trainer, error: BaseException) -> str:
    """"SIGTERM" or "SIGINT" for an interrupted fit or test; any other SystemExit is raised again."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    if isinstance(error, SystemExit) and not isinstance(error, SIGTERMException) \
            and trainer.state.status != "interrupted":
        raise error
    return "SIGTERM" if isinstance(error, SIGTERMException) or trainer.received_sigterm else "SIGINT"


def select_kept_model(module, callbacks, settings, history: dict[str, list[float]], run_dir: Path, diverged,
                      progress: Callable[[str], None]) -> tuple[Any, dict[str, Any]]:
    """(the module the run tests, {kept_model, best_epoch, best_value, monitor}) after a fit.

    With early stopping: the best checkpoint, checked against the history.
    Without: the trained module, or last.ckpt (the last finite epoch) after
    divergence.  NoFiniteModel when no finite model was ever saved.
    """
    from experiment.reliability import NoFiniteModel

    module_class = type(module)  # the engine's LightningModule; both engines read each other's checkpoints
    checkpoint_dir = run_dir / CHECKPOINT_DIR
    last_checkpoint = checkpoint_dir / LAST_CHECKPOINT_FILE
    if not settings.early_stop:
        kept = module
        if diverged is not None:
            # last.ckpt was last written at the end of the last finite epoch.
            if not last_checkpoint.is_file():
                raise NoFiniteModel(diverged)
            kept = module_class.load_from_checkpoint(str(last_checkpoint), map_location="cpu", weights_only=True)
        return kept, {"kept_model": last_checkpoint, "best_epoch": None, "best_value": None, "monitor": None}
    best_path = Path(callbacks.best_checkpoint.best_model_path or checkpoint_dir / "missing")
    if not best_path.is_file():
        if diverged is not None:
            raise NoFiniteModel(diverged)
        raise ValueError(f"early stopping is on but no best checkpoint was written in {checkpoint_dir}")
    best_epoch = checkpoint_epoch(best_path)
    best_value = float(history[settings.monitor][best_epoch])
    score = callbacks.best_checkpoint.best_model_score
    if score is not None and np.float32(float(score)) != np.float32(best_value) \
            and not (math.isnan(float(score)) and math.isnan(best_value)):
        raise RuntimeError(f"the best checkpoint {best_path.name} holds epoch {best_epoch} with "
                           f"{settings.monitor} = {float(score)}, but the history says {best_value}")
    # [docs:lightning-load-best]
    kept = module_class.load_from_checkpoint(str(best_path), map_location="cpu", weights_only=True)
    # [/docs:lightning-load-best]
    progress(f"best epoch {best_epoch + 1} (0-based {best_epoch}): {settings.monitor} = {best_value:.6f}; "
             f"testing {best_path.name}")
    return kept, {"kept_model": best_path, "best_epoch": best_epoch, "best_value": best_value,
                  "monitor": settings.monitor}


def fit_or_reload(trainer, module, datamodule, callbacks, settings, place, *, resume: str | Path | None,
                  progress: Callable[[str], None]) -> tuple[dict[str, Any], Any, float]:
    """fit_and_decide, its outcome recorded before testing; or, when training_stopped.json already holds one
    (experiment.run.RunPlace.stopped), the kept model that outcome names, untrained."""
    from experiment.reliability import reach_fault_point
    from experiment.run_state import record_stopped, stopped_summary

    if place.stopped is not None:
        progress(stopped_summary(place.stopped))
        kept = type(module).load_from_checkpoint(str(place.stopped["kept_model"]), map_location="cpu",
                                                 weights_only=True)
        return place.stopped, kept, 0.0
    outcome, kept, fit_seconds = fit_and_decide(trainer, module, datamodule, callbacks, settings, place.run_dir,
                                                resume=resume, progress=progress)
    # Training is over: record the outcome before testing, so that a resume tests the same model.
    if trainer.global_rank == 0:  # process 0 alone writes the run directory
        record_stopped(place.run_dir, outcome)
    reach_fault_point("stopped", place.run_dir)
    return outcome, kept, fit_seconds


def predict_probabilities(net, features: np.ndarray, device, batch_rows: int = PREDICTION_BATCH_ROWS) -> np.ndarray:
    """p(delay) of every row, (n,) float64 (exact for a float32 network; a float64 one is not rounded near
    the 0.5 threshold): the network called directly in inference mode."""
    import torch

    net.eval()
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(features), batch_rows):
            batch = torch.as_tensor(np.ascontiguousarray(features[start:start + batch_rows]), device=device)
            chunks.append(net(batch).reshape(-1).double().cpu().numpy())
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float64)


def test_kept_model(trainer, kept, datamodule, dataset: PreparedDataset, run_dir: Path) -> dict[str, Any] | None:
    """The test split's figures of the kept model (experiment.artifacts.summarize_test); None off process 0."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from experiment.reliability import interrupted_while_testing
    
    try:
        # [docs:lightning-load-and-test]
        trainer.test(kept, datamodule=datamodule, verbose=False)
        if trainer.global_rank != 0:
            return None
        test_features, test_target = dataset.split_arrays("test")
        probabilities = predict_probabilities(kept.net, test_features, trainer.strategy.root_device)
        return summarize_test(test_target, probabilities)
        # [/docs:lightning-load-and-test]
    except (KeyboardInterrupt, SIGTERMException, SystemExit) as error:
        # The same shutdown paths as in fit (lightning_impl.fit); the outcome is recorded, so the
        # resume only tests again.
        raise interrupted_while_testing(interrupting_signal(trainer, error), COMMAND, run_dir) from None
