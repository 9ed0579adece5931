"""The run's own Lightning callbacks: divergence guard, test-only fault injection, Keras-style epoch lines.

    from lightning_impl.run_callbacks import build_run_callbacks
    trainer = Trainer(callbacks=[*build_run_callbacks(settings, run_dir, say), *callbacks.as_list()])

    python -m pytest lightning_impl/tests/test_train.py -q        # exercised through lightning_impl.train

They are twins of keras_impl.callbacks' NonFiniteGuard and FaultInjection
(experiment.reliability holds the shared rules) and must come first in the
Trainer's list: Lightning runs plain callbacks' on_train_epoch_end in list
order, then the LightningModule's hook, then EarlyStopping and the
checkpoints (lightning/pytorch/loops/fit_loop.py, on_advance_end), so a guard at the front sees an
epoch before anything records or judges it.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only

from experiment.reliability import (FaultPlan, TrainingDiverged, fault_plan_from_environment, guarded_keys,
                                    non_finite_items, reach_fault_point)


class NonFiniteGuard(L.Callback):
    """Raise TrainingDiverged at the end of the first epoch whose loss (or monitored value) is NaN or infinite.

    It runs before every other on_train_epoch_end, so no checkpoint (last.ckpt
    included), history entry, log row or early-stopping decision ever sees
    the diverged epoch; lightning_impl.train catches the exception and keeps
    the best (or last finite) model.  Lightning's own EarlyStopping(check_finite=True)
    only looks at the monitored value, after the checkpoints may have saved a
    NaN model (which predicts "no delay" everywhere and so scores ~0.98
    val_accuracy).  The epoch's figures are synced across DDP processes, so
    every process raises together.
    """

    def __init__(self, keys: Sequence[str]) -> None:
        super().__init__()
        self.keys = tuple(keys)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        figures = {name: float(value) for name, value in trainer.callback_metrics.items()}
        bad = non_finite_items(figures, self.keys)
        if bad:
            key, value = bad[0]
            raise TrainingDiverged(trainer.current_epoch, key, value, figures)


class FaultInjection(L.Callback):
    """Test-only faults (experiment.reliability.FaultPlan): pause to be killed, kill itself, or a NaN output bias.

    Added only when a STREETCAR_FAULT_* variable is set.  The pause polls
    trainer.received_sigterm: Lightning's SIGTERM handler only sets that flag
    and raises at the next batch boundary, so the run has to get there.
    """

    def __init__(self, plan: FaultPlan, run_dir: str | Path) -> None:
        super().__init__()
        self.plan = plan
        self.run_dir = run_dir

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.plan.nan_at_epoch is not None and trainer.current_epoch == self.plan.nan_at_epoch:
            with torch.no_grad():
                # One NaN in the output bias: the predictions, the loss and then every weight become NaN.
                pl_module.net.output.bias.fill_(float("nan"))

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        reach_fault_point((trainer.current_epoch, batch_idx), self.run_dir, plan=self.plan,
                          stop_waiting=lambda: bool(getattr(trainer, "received_sigterm", False)))

    def on_test_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        if batch_idx == 0:  # the "test" phase point, inside Lightning's test loop as a real Ctrl-C would be
            reach_fault_point("test", self.run_dir, plan=self.plan,
                              stop_waiting=lambda: bool(getattr(trainer, "received_sigterm", False)))


# [docs:lightning-epoch-summary]
class EpochSummary(L.Callback):
    """One line per epoch, like Keras's verbose=2: 'Epoch 3/50 - 4.1s - loss: 0.6931 - ... - val_recall: 0.5'."""

    def __init__(self, progress: Callable[[str], None]) -> None:
        super().__init__()
        self.progress = progress
        self.started = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.perf_counter()

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = {key: float(value) for key, value in trainer.callback_metrics.items() if not key.startswith("test_")}
        ordered = sorted(metrics, key=lambda key: (key.startswith("val_"), key))
        figures = " - ".join(f"{key}: {metrics[key]:.4f}" for key in ordered)
        self.progress(f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs} - "
                      f"{time.perf_counter() - self.started:.1f}s - {figures}")
# [/docs:lightning-epoch-summary]


def build_run_callbacks(settings: Any, run_dir: str | Path, progress: Callable[[str], None]) -> list[L.Callback]:
    """[guard, fault injection (only when asked for), epoch summary]: put them before the Keras-compatible ones."""
    callbacks: list[L.Callback] = [NonFiniteGuard(guarded_keys(settings))]
    plan = fault_plan_from_environment()
    if plan is not None:
        callbacks.append(FaultInjection(plan, run_dir))
    callbacks.append(EpochSummary(progress))
    return callbacks


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write every checkpoint to a temp file beside it, then os.replace: a kill never leaves half a file.

    Lightning 2.6 already saves through an fsspec transaction, but for a local
    path fsspec writes the temp file into the system temp folder and commits
    with shutil.move, which is a rename only when that folder is on the same
    filesystem as the run directory (/tmp is often a tmpfs); otherwise it
    copies into the target, and a SIGKILL during the copy leaves a truncated
    last.ckpt that --resume cannot read.  A temp file in the target's own
    folder makes the rename atomic on every local filesystem (POSIX rename).
    Remote URLs (s3://, gs://, ...) keep Lightning's own path.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options=storage_options)
            return
        from data.atomic import write_atomic

        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_atomic(Path(path), buffer.getvalue())


class RunRelativePaths:
    """Mix-in for a ModelCheckpoint: its saved state names files relative to its folder.

    Lightning's ModelCheckpoint.state_dict stores absolute paths
    (best_model_path, best_k_models, ...) plus its dirpath, and
    load_state_dict keeps only best_model_path when the dirpath changed.
    So a run folder that was moved (`mv`) pointed at files that no longer
    exist, and a copy (`cp -a`) silently tested the original folder's best
    checkpoint.  Here the state says "best-epoch04-....ckpt" and "." for
    the folder, and loading resolves them against the folder this callback
    writes to now.  Paths saved by older versions (absolute, inside the saved
    dirpath) are moved over the same way; anything else is left as it is.
    Put it before ModelCheckpoint in the bases.
    """

    PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        folder = Path(str(self.dirpath)) if self.dirpath else None
        for key in self.PATH_KEYS:
            state[key] = _relative_to(state.get(key), folder)
        state["best_k_models"] = {_relative_to(path, folder): value
                                  for path, value in state.get("best_k_models", {}).items()}
        state["dirpath"] = "."
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        saved_folder = state.get("dirpath")
        here = Path(str(self.dirpath)) if self.dirpath else None
        for key in self.PATH_KEYS:
            state[key] = _resolved_in(state.get(key), here, saved_folder)
        state["best_k_models"] = {_resolved_in(path, here, saved_folder): value
                                  for path, value in state.get("best_k_models", {}).items()}
        state["dirpath"] = self.dirpath  # the same folder now: Lightning restores every field
        super().load_state_dict(state)


def _relative_to(path: Any, folder: Path | None) -> Any:
    if not path or folder is None or Path(str(path)).parent != folder:
        return path
    return Path(str(path)).name


def _resolved_in(path: Any, here: Path | None, saved_folder: Any) -> Any:
    if not path or here is None:
        return path
    path = Path(str(path))
    if not path.is_absolute():
        return str(here / path)
    if saved_folder and path.parent == Path(str(saved_folder)):  # written before paths were relative
        return str(here / path.name)
    return str(path)


class LastEpochCheckpoint(RunRelativePaths, ModelCheckpoint):
    """The every-epoch last.ckpt writer (lightning_impl.callbacks), with run-relative paths in its state."""


__all__ = ["RunRelativePaths", "LastEpochCheckpoint", "NonFiniteGuard", "FaultInjection", "EpochSummary",
           "AtomicCheckpointIO", "build_run_callbacks"]
