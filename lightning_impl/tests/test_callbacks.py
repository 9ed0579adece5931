"""Unit and Trainer tests of the Keras-compatible Lightning callbacks (lightning_impl/callbacks.py,
early_stopping.py, reduce_lr.py and callback_rules.py; Lightning only, no TensorFlow).

    python -m pytest lightning_impl/tests/test_callbacks.py -q

What is checked here: argument validation, Keras's improvement rule, the
checkpoint names, the builder for every experiment of the configuration, state
round trips, resuming from `last.ckpt` (the project's EarlyStopping restores
its state but keeps the constructor's patience, stock Lightning does not),
the Keras-style reset of a reused instance, the divergence policy and the
ReduceLROnPlateau callback.  The Keras-vs-Lightning comparisons themselves
live in parity_tests/test_callbacks_replay.py and parity_tests/test_reduce_lr.py.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from configs.loader import load_config, override, resolve_experiment
from lightning_impl.callback_rules import keras_is_improvement, render_checkpoint_stem
from lightning_impl.callbacks import KerasCompatibleCallbacks, KerasCompatibleModelCheckpoint, build_lightning_callbacks
from lightning_impl.early_stopping import KerasCompatibleEarlyStopping
from lightning_impl.reduce_lr import KerasCompatibleReduceLROnPlateau

NAN, INF = math.nan, math.inf
KERAS_DOC_LOSSES = [10, 9, 8, 9, 8.9, 8.8, 8.7, 8.6, 8.5]  # keras EarlyStopping docstring curve


# --------------------------------------------------------------------------
# A tiny module whose validation logs a scripted metric
# --------------------------------------------------------------------------


class ScriptedModule(pl.LightningModule):
    def __init__(self, values: Sequence[float], monitor: str = "val_loss") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(4, 1)
        self.values, self.monitor = list(values), monitor
        generator = torch.Generator().manual_seed(0)
        self.features = torch.randn(8, 4, generator=generator)
        self.targets = (torch.rand(8, 1, generator=generator) > 0.5).float()

    def training_step(self, batch: Any, batch_index: int) -> torch.Tensor:
        inputs, labels = batch
        return torch.nn.functional.binary_cross_entropy_with_logits(self.layer(inputs), labels)

    def validation_step(self, batch: Any, batch_index: int) -> None:
        self.log(self.monitor, self.values[self.current_epoch], on_step=False, on_epoch=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.features, self.targets), batch_size=4)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.features[:4], self.targets[:4]), batch_size=4)


class EpochCounter(pl.Callback):
    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epochs.append(trainer.current_epoch)


def fit(values: Sequence[float], callbacks: list[pl.Callback], root: Path, *, max_epochs: int | None = None,
        ckpt_path: str | Path | None = None, monitor: str = "val_loss") -> list[int]:
    """Epoch indices that ran in this fit."""
    counter = EpochCounter()
    checkpointing = any(isinstance(callback, pl.callbacks.Checkpoint) for callback in callbacks)
    trainer = pl.Trainer(max_epochs=max_epochs or len(values), accelerator="cpu", devices=1, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         enable_checkpointing=checkpointing, default_root_dir=str(root),
                         callbacks=[counter, *callbacks])
    trainer.fit(ScriptedModule(values, monitor), ckpt_path=str(ckpt_path) if ckpt_path else None)
    return counter.epochs


def project_callbacks(root: Path, *, monitor: str = "val_loss", mode: str = "min", patience: int = 3,
                      min_delta: float = 0.0, stop_on_non_finite: bool = False) -> KerasCompatibleCallbacks:
    config = load_config()
    settings = dataclasses.replace(resolve_experiment(config, "4"), monitor=monitor, mode=mode, patience=patience,
                                   min_delta=min_delta)
    return build_lightning_callbacks(settings, config.callbacks, root / "checkpoints",
                                     stop_on_non_finite=stop_on_non_finite)


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("factory", "message"), [
    (lambda: KerasCompatibleEarlyStopping("val_loss", mode="auto", patience=1), "mode must be 'min' or 'max'"),
    (lambda: KerasCompatibleEarlyStopping("val_loss", mode="min", patience=1, min_delta=-0.1),
     "min_delta must be >= 0"),
    (lambda: KerasCompatibleEarlyStopping("val_loss", mode="min", patience=-1), "patience must be an integer >= 0"),
    (lambda: KerasCompatibleEarlyStopping("val_loss", mode="min", patience=1, min_delta=NAN), "min_delta must be"),
    (lambda: KerasCompatibleModelCheckpoint("x", monitor="val_loss", mode="MAX"), "mode must be 'min' or 'max'"),
    (lambda: KerasCompatibleModelCheckpoint("x", monitor="val_loss", mode="min", template="{missing}"),
     "cannot be rendered"),
    (lambda: KerasCompatibleReduceLROnPlateau(monitor="val_loss", mode="min", factor=1.0), "factor must be in"),
    (lambda: KerasCompatibleReduceLROnPlateau(monitor="val_loss", mode="min", min_delta=-1e-4), "min_delta must be"),
    (lambda: KerasCompatibleReduceLROnPlateau(monitor="val_loss", mode="min", min_lr=-1.0), "min_lr must be"),
    (lambda: KerasCompatibleReduceLROnPlateau(monitor="val_loss", mode="min", cooldown=-1), "cooldown must be"),
], ids=["es-auto", "es-negative-min-delta", "es-negative-patience", "es-nan-min-delta", "mc-bad-mode",
        "mc-bad-template", "rlrop-factor", "rlrop-negative-min-delta", "rlrop-min-lr", "rlrop-cooldown"])
def test_bad_arguments_are_value_errors(factory: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()


def test_mode_has_no_default() -> None:
    # Lightning: EarlyStopping(monitor) silently uses mode='min'; here mode is a required keyword.
    with pytest.raises(TypeError):
        KerasCompatibleEarlyStopping("val_accuracy", patience=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        KerasCompatibleModelCheckpoint("x", monitor="val_accuracy")  # type: ignore[call-arg]


# --------------------------------------------------------------------------
# Keras's improvement rule
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("current", "best", "mode", "min_delta", "expected"), [
    (NAN, None, "max", 0.0, True),        # Keras best=None: the first value always improves, NaN too
    (-INF, None, "max", 0.0, True),       # Lightning: -inf > -inf is False
    (INF, None, "min", 0.0, True),        # Lightning: inf < inf is False
    (1.0, NAN, "min", 0.0, False),        # nothing beats a NaN best
    (NAN, 1.0, "min", 0.0, False),        # NaN is never an improvement afterwards
    (2.0, 2.0, "min", 0.0, False),        # ties are not improvements (both frameworks)
    (0.75, 0.75, "max", 0.0, False),
    (1.5, 2.0, "min", 0.5, False),        # a change of exactly min_delta is not an improvement
    (1.49, 2.0, "min", 0.5, True),
    (1.0, 0.75, "max", 0.25, False),
    (1.01, 0.75, "max", 0.25, True),
    (0.75, 0.7, "max", 0.05, False),      # 0.75-0.05 rounds to float32(0.7): Keras compares in float32
    (1.0, -INF, "min", 0.0, False),       # -inf in min mode is unbeatable
    (INF, 5.0, "max", 0.0, True),
    (INF, INF, "max", 0.0, False),
])
def test_keras_is_improvement(current: float, best: float | None, mode: str, min_delta: float,
                              expected: bool) -> None:
    assert keras_is_improvement(current, best, mode=mode, min_delta=min_delta) is expected


def test_checkpoint_stem_uses_keras_one_based_epoch() -> None:
    template = load_config().callbacks.checkpoint_template
    # Keras: filepath.format(epoch=epoch + 1, **logs); Lightning's {epoch} would be 3 here.
    assert render_checkpoint_stem(template, epoch_index=3, monitor="val_accuracy",
                                  value=torch.tensor(0.73164)) == "best-epoch04-val_accuracy0.7316"
    assert render_checkpoint_stem(template, epoch_index=0, monitor="val_loss", value=NAN) == "best-epoch01-val_lossnan"


# --------------------------------------------------------------------------
# The builder
# --------------------------------------------------------------------------


@pytest.mark.parametrize("experiment", ["0", "1", "2", "3"])
def test_no_early_stopping_experiments_only_keep_the_last_checkpoint(experiment: str, tmp_path: Path) -> None:
    config = load_config()
    built = build_lightning_callbacks(resolve_experiment(config, experiment), config.callbacks, tmp_path)
    assert built.early_stopping is None and built.best_checkpoint is None and built.reduce_lr is None
    assert built.as_list() == [built.last_checkpoint]
    last = built.last_checkpoint
    assert (last.monitor, last.save_top_k, last.filename, last._enable_version_counter) == (None, 1, "last", False)
    assert built.last_checkpoint_path == tmp_path / "last.ckpt"


@pytest.mark.parametrize(("experiment", "monitor", "mode"), [
    ("4", "val_loss", "min"), ("5", "val_accuracy", "max"), ("9", "val_accuracy", "max")])
def test_early_stopping_experiments(experiment: str, monitor: str, mode: str, tmp_path: Path) -> None:
    config = load_config()
    settings = resolve_experiment(config, experiment)
    built = build_lightning_callbacks(settings, config.callbacks, tmp_path)
    early_stopping, best = built.early_stopping, built.best_checkpoint
    assert isinstance(early_stopping, KerasCompatibleEarlyStopping)
    assert (early_stopping.monitor, early_stopping.mode, early_stopping.patience) == (monitor, mode,
                                                                                     settings.patience)
    assert early_stopping.check_finite is False and early_stopping.stop_on_non_finite is False
    assert isinstance(best, KerasCompatibleModelCheckpoint)
    assert (best.monitor, best.mode, best.save_top_k, best.save_last) == (monitor, mode, 1, False)
    assert best.template == config.callbacks.checkpoint_template
    assert built.as_list() == [early_stopping, best, built.last_checkpoint]
    # The override wins over the experiment row.
    assert build_lightning_callbacks(settings, config.callbacks, tmp_path, early_stop=False).early_stopping is None


def test_reduce_lr_is_built_when_enabled(tmp_path: Path) -> None:
    config = override(load_config(), "callbacks.reduce_lr.enabled", True)
    built = build_lightning_callbacks(resolve_experiment(config, "1"), config.callbacks, tmp_path)
    reduce_lr = built.reduce_lr
    assert isinstance(reduce_lr, KerasCompatibleReduceLROnPlateau)
    section = config.callbacks.reduce_lr
    assert (reduce_lr.monitor, reduce_lr.mode, reduce_lr.factor, reduce_lr.patience, reduce_lr.min_delta,
            reduce_lr.min_lr, reduce_lr.cooldown) == (section.monitor, section.mode, section.factor,
                                                      section.patience, section.min_delta, section.min_lr, 0)
    assert built.as_list()[0] is reduce_lr


# --------------------------------------------------------------------------
# State: round trip, resume, reuse
# --------------------------------------------------------------------------


def test_early_stopping_state_round_trip_keeps_constructor_patience() -> None:
    early_stopping = KerasCompatibleEarlyStopping("val_loss", mode="min", patience=3)
    for value in (10.0, 9.0, 8.0, 9.0, 8.9):
        early_stopping._evaluate_stopping_criteria(torch.tensor(value))
    state = early_stopping.state_dict()
    assert (state["wait_count"], float(state["best_score"]), state["patience"], state["has_best"]) == (2, 8.0, 3, True)

    resumed = KerasCompatibleEarlyStopping("val_loss", mode="min", patience=10)
    resumed.load_state_dict(state)
    assert (resumed.wait_count, float(resumed.best_score), resumed.has_best) == (2, 8.0, True)
    assert resumed.patience == 10  # stock Lightning 2.6 would now say 3 (docs/differences.md row 30)
    assert resumed.state_key == early_stopping.state_key


def test_nan_first_best_survives_a_state_round_trip() -> None:
    early_stopping = KerasCompatibleEarlyStopping("val_loss", mode="min", patience=5)
    early_stopping._evaluate_stopping_criteria(torch.tensor(NAN))
    early_stopping._evaluate_stopping_criteria(torch.tensor(1.0))
    resumed = KerasCompatibleEarlyStopping("val_loss", mode="min", patience=5)
    resumed.load_state_dict(early_stopping.state_dict())
    assert math.isnan(float(resumed.best_score)) and resumed.has_best and resumed.wait_count == 1
    assert resumed._evaluate_stopping_criteria(torch.tensor(0.5)) == (False, None)  # still no improvement
    assert resumed.wait_count == 2


def test_resume_from_last_checkpoint_stops_like_the_uninterrupted_run(tmp_path: Path) -> None:
    # Uninterrupted: patience 3 stops at idx 5, best idx 2 (value 8).
    full = project_callbacks(tmp_path / "full", patience=3)
    assert fit(KERAS_DOC_LOSSES, full.as_list(), tmp_path / "full") == [0, 1, 2, 3, 4, 5]

    # Interrupted after idx 4; last.ckpt holds the final epoch and ES wait=2, best=8.
    first = project_callbacks(tmp_path / "run", patience=3)
    assert fit(KERAS_DOC_LOSSES, first.as_list(), tmp_path / "run", max_epochs=5) == [0, 1, 2, 3, 4]
    last = first.last_checkpoint_path
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["epoch"] == 4
    state = saved["callbacks"][first.early_stopping.state_key]
    assert (state["wait_count"], float(state["best_score"])) == (2, 8.0)

    resumed = project_callbacks(tmp_path / "run", patience=3)
    assert fit(KERAS_DOC_LOSSES, resumed.as_list(), tmp_path / "run", ckpt_path=last) == [5]
    assert resumed.early_stopping.stopped_epoch == 5
    assert Path(resumed.best_checkpoint.best_model_path).name == "best-epoch03-val_loss8.0000.ckpt"


def test_resume_with_a_new_patience_uses_the_new_patience(tmp_path: Path) -> None:
    first = project_callbacks(tmp_path, patience=3)
    fit(KERAS_DOC_LOSSES, first.as_list(), tmp_path, max_epochs=5)
    resumed = project_callbacks(tmp_path, patience=5)
    # wait=2 restored, patience 5: non-improving idx 5, 6, 7 bring wait to 5 -> stop at idx 7.
    # ckpt_path="last": Lightning finds last.ckpt in the checkpoint callbacks' folder.
    assert fit(KERAS_DOC_LOSSES, resumed.as_list(), tmp_path, ckpt_path="last") == [5, 6, 7]
    assert resumed.early_stopping.patience == 5 and resumed.early_stopping.stopped_epoch == 7


def test_stock_lightning_resume_overwrites_patience(tmp_path: Path) -> None:
    """The Lightning 2.6 behaviour the project's EarlyStopping changes (docs/differences.md row 30)."""
    def stock(patience: int) -> list[pl.Callback]:
        return [EarlyStopping("val_loss", mode="min", patience=patience),
                ModelCheckpoint(dirpath=str(tmp_path), filename="last", monitor=None, save_top_k=1,
                                enable_version_counter=False)]

    fit(KERAS_DOC_LOSSES, stock(3), tmp_path, max_epochs=5)
    callbacks = stock(5)
    assert fit(KERAS_DOC_LOSSES, callbacks, tmp_path, ckpt_path=tmp_path / "last.ckpt") == [5]
    assert callbacks[0].patience == 3


def test_reused_early_stopping_starts_afresh_like_keras(tmp_path: Path) -> None:
    early_stopping = KerasCompatibleEarlyStopping("val_loss", mode="min", patience=1)
    assert fit([10, 9, 8, 9], [early_stopping], tmp_path / "a") == [0, 1, 2, 3]
    assert early_stopping.stopped_epoch == 3
    # Keras resets in on_train_begin; stock Lightning keeps best=8 and stops after
    # one epoch of this curve (docs/differences.md row 21).
    assert fit([20, 19, 18, 17], [early_stopping], tmp_path / "b") == [0, 1, 2, 3]
    assert float(early_stopping.best_score) == 17.0 and early_stopping.stopped_epoch == 0


def test_model_checkpoint_keeps_a_nan_first_best_and_its_state(tmp_path: Path) -> None:
    callbacks = project_callbacks(tmp_path, patience=10)
    fit([NAN, 3.0, 2.0, 1.0], callbacks.as_list(), tmp_path)
    best = callbacks.best_checkpoint
    assert Path(best.best_model_path).name == "best-epoch01-val_lossnan.ckpt"
    assert math.isnan(float(best.best_model_score)) and math.isnan(float(best.keras_best))
    restored = project_callbacks(tmp_path, patience=10).best_checkpoint
    restored.dirpath = best.dirpath
    restored.load_state_dict(best.state_dict())
    assert restored.best_model_path == best.best_model_path and math.isnan(float(restored.keras_best))


# --------------------------------------------------------------------------
# The divergence policy (not Keras)
# --------------------------------------------------------------------------


def test_stop_on_non_finite_stops_and_keeps_the_best(tmp_path: Path) -> None:
    callbacks = project_callbacks(tmp_path, patience=5, stop_on_non_finite=True)
    assert fit([3.0, 2.0, NAN, 1.0], callbacks.as_list(), tmp_path) == [0, 1, 2]
    assert callbacks.early_stopping.stopping_reason.name == "NON_FINITE_METRIC"
    assert Path(callbacks.best_checkpoint.best_model_path).name == "best-epoch02-val_loss2.0000.ckpt"
    assert callbacks.last_checkpoint_path.is_file()


def test_stop_on_non_finite_never_saves_a_non_finite_best(tmp_path: Path) -> None:
    callbacks = project_callbacks(tmp_path, patience=5, stop_on_non_finite=True)
    assert fit([NAN, 1.0], callbacks.as_list(), tmp_path) == [0]
    assert callbacks.best_checkpoint.best_model_path == ""


def test_keras_semantics_by_default_run_through_nan(tmp_path: Path) -> None:
    callbacks = project_callbacks(tmp_path, patience=5)
    assert fit([3.0, 2.0, NAN, 1.0], callbacks.as_list(), tmp_path) == [0, 1, 2, 3]
    assert Path(callbacks.best_checkpoint.best_model_path).name == "best-epoch04-val_loss1.0000.ckpt"


# --------------------------------------------------------------------------
# ReduceLROnPlateau (Lightning side; the Keras comparison is in parity_tests)
# --------------------------------------------------------------------------


def test_reduce_lr_flat_curve_halves_after_patience_epochs(tmp_path: Path) -> None:
    reduce_lr = KerasCompatibleReduceLROnPlateau(monitor="val_loss", mode="min", factor=0.5, patience=2)
    fit([5.0] * 8, [reduce_lr], tmp_path)
    assert reduce_lr.learning_rates == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125])


def test_reduce_lr_state_round_trip_and_missing_monitor(tmp_path: Path) -> None:
    reduce_lr = KerasCompatibleReduceLROnPlateau(monitor="val_loss", mode="min", factor=0.5, patience=3)
    fit([5.0, 4.0, 4.5], [reduce_lr], tmp_path)
    state = reduce_lr.state_dict()
    assert state == {"best": 4.0, "wait": 1, "cooldown_counter": 0}
    restored = KerasCompatibleReduceLROnPlateau(monitor="val_loss", mode="min", factor=0.5, patience=3)
    restored.load_state_dict(state)
    assert (restored.best, restored.wait) == (4.0, 1)
    missing = KerasCompatibleReduceLROnPlateau(monitor="val_recall", mode="max")
    with pytest.raises(RuntimeError, match="val_recall"):
        fit([1.0], [missing], tmp_path / "missing")
