"""Run Keras and Lightning from identical initial weights on identical batches, and record what happened.

    from experiment.weights import shared_initial_weights
    from parity_tests.trajectory import TRAJECTORY_SCENARIOS, sample_dataset, run_keras, run_lightning
    dataset = sample_dataset(load_prepared())                      # 100,000 seeded real rows
    scenario = TRAJECTORY_SCENARIOS["exp5"]
    weights = shared_initial_weights(dataset.vocab_sizes, scenario.seed)
    keras_run = run_keras(scenario.request(tmp / "keras"), dataset, weights)
    torch_run = run_lightning(scenario.request(tmp / "lightning"), dataset, weights, accelerator="cpu")
    keras_run.history["val_loss"], torch_run.best_epoch, torch_run.saved_epochs, ...

Used by parity_tests/test_trajectories.py, test_repeatability.py and
test_gpu.py; run them with

    python -m pytest parity_tests/test_trajectories.py parity_tests/test_repeatability.py parity_tests/test_gpu.py -q

What makes two runs comparable epoch by epoch
---------------------------------------------

* **Same rows.**  `sample_dataset` takes one seeded 100,000-row subset of the
  prepared real data (data.PreparedDataset.sample: each row stays in its
  split, ~60k train / 20k valid / 20k test).  Both trainers get that dataset
  object with `sample_rows=None`, so a different *run* seed changes the
  initial weights and the batch order but not the rows.
* **Same starting point.**  `experiment.weights.shared_initial_weights` draws one canonical
  weight mapping (experiment/weights.py names, Keras layouts) with NumPy from
  the Keras initialisers' distributions - Embedding U(-0.05, 0.05), Dense
  glorot_uniform kernel and zero bias, BatchNorm gamma 1 / beta 0 / moving
  mean 0 / moving variance 1 - and both `train()` functions set it into their
  freshly built model before fit (their `initial_weights=` keyword).
* **Same batches.**  general.batch_order "shared" (the config default):
  epoch e visits the training rows in data.batches.epoch_permutation(n, seed,
  e), in both frameworks.
* **No randomness left in the step.**  hyperparameters.dropout_rate = 0.0
  (the book's 0.0003 would draw different masks in the two frameworks).

What is recorded (`TrainedRun`)
-------------------------------

history           {key: [float per epoch]} as each framework reports it
best_epoch        0-based epoch the best checkpoint holds (the trainer's own result)
stopped_epoch     0-based last epoch when early stopping ended the run, None if it ran out of epochs
saved_epochs      0-based epochs at which the best-only checkpoint callback *wrote* a file:
                  Keras keeps every improvement file ({epoch} in the name, docs/differences.md row 23), so
                  they are read back from the run directory; Lightning's save_top_k=1 deletes the
                  previous best, so each write is recorded as it happens (record_lightning_saves)
best_weights      canonical weights of the best checkpoint, read back from the file on disk
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from configs.cli import RunRequest
from configs.loader import load_config, override, resolve_experiment
from data.dataset import PreparedDataset
from experiment.weights import shared_initial_weights

# One seeded subset of the real data for the whole suite: >= 100k rows, the scale of parity_tests/test_trajectories.py.
SAMPLE_ROWS = 100_000
SAMPLE_SEED = 42
# A Keras-convention checkpoint name carries the 1-based epoch: best-epoch04-val_loss0.5123.keras.
CHECKPOINT_EPOCH_PATTERN = re.compile(r"epoch(\d+)")


@dataclass(frozen=True)
class Scenario:
    """One trajectory scenario: an experiment row of configs/streetcar.yaml with quick-run overrides."""

    name: str
    experiment: str
    epochs: int
    patience: int
    learning_rate: float | None = None     # None: hyperparameters.learning_rate as configured (0.001)
    seed: int = 42
    activation: str | None = None          # None: hyperparameters.output_activation as configured

    def request(self, out_dir: Path, *, seed: int | None = None) -> RunRequest:
        """The RunRequest both trainers get (sample_rows None: pass `sample_dataset(...)` as dataset)."""
        config = load_config()
        for key, value in (("general.out_dir", str(out_dir)),
                           ("general.seed", self.seed if seed is None else seed),
                           ("general.batch_order", "shared"),
                           ("general.repeatable_run", True),
                           ("hyperparameters.dropout_rate", 0.0)):
            config = override(config, key, value)
        if self.learning_rate is not None:
            config = override(config, "hyperparameters.learning_rate", self.learning_rate)
        if self.activation is not None:
            config = override(config, "hyperparameters.output_activation", self.activation)
        settings = dataclasses.replace(resolve_experiment(config, self.experiment),
                                       epochs=self.epochs, patience=self.patience)
        if not settings.early_stop:
            raise ValueError(f"scenario {self.name}: experiment {self.experiment} has no early stopping")
        return RunRequest(config=config, settings=settings, sample_rows=None, raw_dir=None, json=True)


# The experiment-5 (val_accuracy / max) and experiment-4 (val_loss / min)
# callbacks with the configured learning rate (0.001) and a short patience, so
# that on the 100k-row subset a non-trivial best epoch occurs and the early
# stop fires before `epochs`, after at least 8 epochs (observed epochs: see
# test_trajectories.py).  Experiment 5 needs patience 4 for that: its
# val_accuracy peaks at epoch idx 3, so patience 2 would stop after 6 epochs.
TRAJECTORY_SCENARIOS: dict[str, Scenario] = {
    "exp5": Scenario(name="exp5", experiment="5", epochs=12, patience=4),
    "exp4": Scenario(name="exp4", experiment="4", epochs=12, patience=2),
}
# Seeded repeatability (test_repeatability.py): 3 epochs of experiment 4
# (val_loss / min), each framework's own seeded initialisers, no early stop.
REPEAT_SCENARIO = Scenario(name="repeat", experiment="4", epochs=3, patience=10)
REPEAT_OTHER_SEED = 7


def sample_dataset(dataset: PreparedDataset, rows: int = SAMPLE_ROWS, seed: int = SAMPLE_SEED) -> PreparedDataset:
    """The suite's seeded real-data subset (each row keeps its split)."""
    return dataset.sample(rows, seed)


@dataclass(frozen=True)
class TrainedRun:
    """What one train() call did, in framework-neutral terms (see the module docstring)."""

    framework: str
    history: dict[str, list[float]]
    epochs_run: int
    max_epochs: int
    best_epoch: int | None
    saved_epochs: list[int]
    best_checkpoint: Path
    best_weights: dict[str, np.ndarray]
    result: dict[str, Any]

    @property
    def stopped_epoch(self) -> int | None:
        """0-based epoch at which early stopping ended the run; None when every epoch ran."""
        return self.epochs_run - 1 if self.epochs_run < self.max_epochs else None


def checkpoint_file_epoch(path: Path) -> int:
    """0-based epoch from a Keras-convention (1-based) checkpoint file name."""
    match = CHECKPOINT_EPOCH_PATTERN.search(path.name)
    if match is None:
        raise ValueError(f"checkpoint file {path.name} carries no epoch number")
    return int(match.group(1)) - 1


def run_keras(request: RunRequest, dataset: PreparedDataset,
              initial_weights: Mapping[str, np.ndarray] | None = None) -> TrainedRun:
    """keras_impl.train.train on `dataset`, started from `initial_weights` (None: Keras's seeded init)."""
    import keras

    from keras_impl.model import get_canonical_weights
    from keras_impl.train import train

    result = train(request, dataset=dataset, initial_weights=initial_weights, progress=lambda line: None)
    run_dir = Path(result["run_dir"])
    best = Path(result["best_checkpoint"])
    saved = sorted(checkpoint_file_epoch(path) for path in run_dir.glob("*.keras") if path.name != "model.keras")
    return TrainedRun(framework="keras", history=result["history"], epochs_run=result["epochs_run"],
                      max_epochs=request.settings.epochs, best_epoch=result["best_epoch"], saved_epochs=saved,
                      best_checkpoint=best, best_weights=get_canonical_weights(keras.models.load_model(str(best))),
                      result=result)


@contextlib.contextmanager
def record_lightning_saves() -> Iterator[list[tuple[int, str]]]:
    """Record (0-based epoch, file name) for every file the best-only checkpoint callback writes.

    Wraps KerasCompatibleModelCheckpoint._save_checkpoint (Lightning's one
    writing method, called after the callback decided to save) for the
    duration of the block; the monitor-less last.ckpt callback is a plain
    ModelCheckpoint and is not recorded.
    """
    from unittest import mock

    from lightning_impl.callbacks import KerasCompatibleModelCheckpoint

    saves: list[tuple[int, str]] = []
    original = KerasCompatibleModelCheckpoint._save_checkpoint

    def recording_save(self, trainer, filepath):
        saves.append((int(trainer.current_epoch), Path(filepath).name))
        return original(self, trainer, filepath)

    with mock.patch.object(KerasCompatibleModelCheckpoint, "_save_checkpoint", recording_save):
        yield saves


def load_lightning_net(checkpoint: str | Path):
    """The StreetcarNet of a Lightning checkpoint, on the CPU, in eval mode."""
    from lightning_impl.system import StreetcarClassifier

    module = StreetcarClassifier.load_from_checkpoint(str(checkpoint), map_location="cpu", weights_only=True)
    return module.net.eval()


def run_lightning(request: RunRequest, dataset: PreparedDataset,
                  initial_weights: Mapping[str, np.ndarray] | None = None, *,
                  accelerator: str = "cpu") -> TrainedRun:
    """lightning_impl.train.train on `dataset` and `accelerator`, from `initial_weights` (None: seeded init)."""
    from lightning_impl.model import get_canonical_weights
    from lightning_impl.train import train

    with record_lightning_saves() as saves:
        result = train(request, dataset=dataset, accelerator=accelerator, devices=1, initial_weights=initial_weights,
                       progress_bar=False, progress=lambda line: None)
    best = Path(result["best_checkpoint"])
    if saves and saves[-1][1] != best.name:
        raise RuntimeError(f"the last recorded save {saves[-1]} is not the best checkpoint {best.name}")
    return TrainedRun(framework="lightning", history=result["history"], epochs_run=result["epochs_run"],
                      max_epochs=request.settings.epochs, best_epoch=result["best_epoch"],
                      saved_epochs=[epoch for epoch, _ in saves], best_checkpoint=best,
                      best_weights=get_canonical_weights(load_lightning_net(best)), result=result)


# --------------------------------------------------------------------------- one run per session

# Trainings are the expensive part of the suite (~10-60 s each on 2 cores), and
# test_trajectories.py and test_repeatability.py need some of the same ones, so
# each (framework, scenario, seed, initial weights?, accelerator) trains once
# per pytest session.  The runs' files live under the first caller's tmp dir.
_SAMPLED: dict[tuple[int, int], PreparedDataset] = {}
_RUNS: dict[tuple, TrainedRun] = {}


def suite_dataset(prepared: PreparedDataset, rows: int = SAMPLE_ROWS, seed: int = SAMPLE_SEED) -> PreparedDataset:
    """`sample_dataset(prepared)`, computed once per session (the prepared dataset is the suite's one)."""
    key = (rows, seed)
    if key not in _SAMPLED:
        _SAMPLED[key] = sample_dataset(prepared, rows, seed)
    return _SAMPLED[key]


def scenario_run(framework: str, scenario: Scenario, dataset: PreparedDataset, out_root: Path, *,
                 seed: int | None = None, shared_weights: bool = True, accelerator: str = "cpu",
                 repeat: int = 0) -> TrainedRun:
    """The run of `scenario` in `framework` ("keras" / "lightning"), trained on first use.

    shared_weights=True starts from shared_initial_weights(vocab sizes, scenario seed);
    False lets the framework's own seeded initialisers draw them.  `repeat` > 0
    asks for another, separately trained run of the same settings (repeatability).
    """
    if framework not in ("keras", "lightning"):
        raise ValueError(f"framework must be 'keras' or 'lightning', got {framework!r}")
    if framework == "keras" and accelerator != "cpu":
        raise ValueError("the Keras side of the suite runs on the CPU only")
    run_seed = scenario.seed if seed is None else seed
    key = (framework, scenario, run_seed, shared_weights, accelerator, repeat,
           dataset.report.get("sample", {}).get("seed"))
    if key not in _RUNS:
        initial = shared_initial_weights(dataset.vocab_sizes, scenario.seed) if shared_weights else None
        out_dir = Path(out_root) / f"{framework}-{scenario.name}-seed{run_seed}-{accelerator}-{repeat}"
        request = scenario.request(out_dir, seed=run_seed)
        if framework == "keras":
            _RUNS[key] = run_keras(request, dataset, initial)
        else:
            _RUNS[key] = run_lightning(request, dataset, initial, accelerator=accelerator)
    return _RUNS[key]


def lightning_device_params() -> list:
    """pytest params for a `device` fixture: "cpu" always, "cuda" marked gpu and skipped without CUDA."""
    import pytest
    import torch

    return ["cpu", pytest.param("cuda", id="cuda", marks=[
        pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")])]


def per_epoch_max_diffs(first: TrainedRun, second: TrainedRun, keys: tuple[str, ...]) -> dict[str, float]:
    """{key: max over the common epochs of |first - second|} (for reports; the tests use compare_arrays)."""
    epochs = min(first.epochs_run, second.epochs_run)
    return {key: float(np.max(np.abs(np.asarray(first.history[key][:epochs], dtype=np.float64)
                                     - np.asarray(second.history[key][:epochs], dtype=np.float64))))
            for key in keys}
