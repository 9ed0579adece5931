"""The run's own Lightning callbacks: divergence guard, test-only fault injection, Keras-style epoch lines.

    from lightning_impl.run_callbacks import build_run_callbacks
    trainer = Trainer(callbacks=[*build_run_callbacks(settings, run_dir, say), *callbacks.as_list()])

    python -m pytest lightning_impl/tests/test_train.py -q        # exercised through lightning_impl.train

They are twins of keras_impl.callbacks' NonFiniteGuard and FaultInjection
(experiment.reliability holds the shared rules) and must come first in the
Trainer's list: Lightning runs plain callbacks' on_train_epoch_end in list
order, then the LightningModule's hook, then EarlyStopping and the
checkpoints (shared/CALLBACKS.md row 7a), so a guard at the front sees an
epoch before anything records or judges it.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only

from experiment.reliability import (FaultPlan, TrainingDiverged, fault_plan_from_environment, guarded_keys,
                                    non_finite_items, pause_until_killed)


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
    """Test-only faults (experiment.reliability.FaultPlan): pause to be killed, or a NaN output bias.

    Added only when a STREETCAR_FAULT_* variable is set.  The pause polls
    trainer.received_sigterm: Lightning's SIGTERM handler only sets that flag
    and raises at the next batch boundary, so the run has to get there.
    """

    def __init__(self, plan: FaultPlan, run_dir: str | Path) -> None:
        super().__init__()
        self.plan = plan
        self.marker = plan.marker_path(run_dir)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.plan.nan_at_epoch is not None and trainer.current_epoch == self.plan.nan_at_epoch:
            with torch.no_grad():
                # One NaN in the output bias: the predictions, the loss and then every weight become NaN.
                pl_module.net.output.bias.fill_(float("nan"))

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.plan.pause_at == (trainer.current_epoch, batch_idx):
            pause_until_killed(self.marker, stop_waiting=lambda: bool(getattr(trainer, "received_sigterm", False)))


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


__all__ = ["NonFiniteGuard", "FaultInjection", "EpochSummary", "AtomicCheckpointIO", "build_run_callbacks"]
