"""Seeded repeatability: one seed, one result - in each framework, and the same best epoch across them (docs/differences.md row 6).

    python -m pytest parity_tests/test_repeatability.py -q
    python -m pytest -m gpu parity_tests/test_repeatability.py      # Lightning's deterministic mode on CUDA

Per framework (Keras on the CPU; Lightning on "cpu", and on "cuda" when
there is one), the REPEAT_SCENARIO of parity_tests/trajectory.py: experiment
4's callbacks (val_loss / min) for 3 epochs on the suite's 100,000-row
subset, dropout 0, initial weights from *the framework's own seeded
initialisers* (no shared weights: the seed is what is under test), shared
batch order:

* seed 42 twice -> the per-epoch history is identical (every key, exact float
  equality) and the best checkpoints hold bitwise-identical weights
  (np.array_equal on every canonical weight, read back from the files);
* seed 42 vs seed 7 -> the training loss differs at every epoch.

What makes a run repeatable: general.repeatable_run (true in the config)
makes keras_impl.train call keras.utils.set_random_seed and TensorFlow's
enable_op_determinism, and lightning_impl.train call
lightning.seed_everything and Trainer(deterministic=True), i.e.
torch.use_deterministic_algorithms(True) (plus CUBLAS_WORKSPACE_CONFIG on
CUDA, see docs/gpu.md).  On the CPU both are repeatable bit for bit.

Observed on the CPU (keras 3.15.1 / TF 2.21, torch 2.13 / lightning 2.6.6):
both frameworks repeat bit for bit (history and all 37 canonical weights);
training loss per epoch, seed 42: Keras 1.317514 1.219174 1.170340, Lightning
1.336804 1.225366 1.169257 (different because each framework's generator
draws its own initial weights); seed 7 differs from seed 42 at every epoch in
both.  CUDA: not run yet (docs/gpu.md).

Across frameworks: with the same seed *and* the shared initial weights, Keras
and Lightning choose the same best epoch - the trajectory scenarios of
test_trajectories.py, re-checked here (the runs are shared within a pytest
session, so running both modules trains them once).
"""

from __future__ import annotations

import numpy as np
import pytest

import keras_impl  # noqa: F401  (sets KERAS_BACKEND before Keras is imported)

from parity_tests.trajectory import (
    REPEAT_OTHER_SEED,
    REPEAT_SCENARIO,
    TRAJECTORY_SCENARIOS,
    lightning_device_params,
    scenario_run,
    suite_dataset,
)

pytestmark = [pytest.mark.real_data, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword"
                                         ":DeprecationWarning")]

# Best epochs of the trajectory scenarios, as test_trajectories.EXPECTED writes them down.
EXPECTED_CROSS_FRAMEWORK_BEST_EPOCH = {"exp5": 3, "exp4": 7}


@pytest.fixture(scope="module", params=lightning_device_params())
def device(request) -> str:
    """Lightning-side tests run on "cpu", and on "cuda" too when there is one (marked gpu)."""
    return request.param


@pytest.fixture(scope="module")
def repeat_dataset(prepared_dataset):
    return suite_dataset(prepared_dataset)


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    return tmp_path_factory.mktemp("repeatability")


def seeded_runs(framework: str, dataset, root, accelerator: str = "cpu"):
    """REPEAT_SCENARIO with the framework's own initialisers: (seed 42, seed 42 trained again, seed 7)."""
    def run(seed, repeat):
        return scenario_run(framework, REPEAT_SCENARIO, dataset, root, seed=seed, shared_weights=False,
                            accelerator=accelerator, repeat=repeat)

    return run(REPEAT_SCENARIO.seed, 0), run(REPEAT_SCENARIO.seed, 1), run(REPEAT_OTHER_SEED, 0)


def assert_identical_runs(first, second, label: str) -> None:
    """Exact equality of every history value and bitwise equality of the best checkpoints' weights."""
    assert first.history.keys() == second.history.keys(), label
    for key in first.history:
        assert first.history[key] == second.history[key], (
            f"{label}: history[{key!r}] differs: {first.history[key]} vs {second.history[key]}")
    assert first.best_epoch == second.best_epoch, label
    assert first.best_weights.keys() == second.best_weights.keys(), label
    different = [name for name in first.best_weights
                 if not np.array_equal(first.best_weights[name], second.best_weights[name])]
    assert not different, f"{label}: best-checkpoint weights not bitwise identical: {different}"
    print(f"\n{label}: identical; loss per epoch {first.history['loss']}")


def assert_different_losses(first, other, label: str) -> None:
    same = [epoch for epoch, (a, b) in enumerate(zip(first.history["loss"], other.history["loss"])) if a == b]
    assert not same, (f"{label}: seeds {REPEAT_SCENARIO.seed} and {REPEAT_OTHER_SEED} give the same "
                      f"training loss at epoch(s) {same}")


@pytest.fixture(scope="module")
def keras_runs(repeat_dataset, runs_root):
    return seeded_runs("keras", repeat_dataset, runs_root)


@pytest.fixture(scope="module")
def lightning_runs(repeat_dataset, runs_root, device):
    return seeded_runs("lightning", repeat_dataset, runs_root, accelerator=device)


def test_keras_same_seed_twice_is_identical(keras_runs):
    first, again, _ = keras_runs
    assert_identical_runs(first, again, "keras, seed 42 twice")


def test_keras_other_seed_gives_another_history(keras_runs):
    first, _, other = keras_runs
    assert_different_losses(first, other, "keras")


def test_lightning_same_seed_twice_is_identical(lightning_runs, device):
    # On "cuda" this is the deterministic-mode check: Trainer(deterministic=True) (docs/gpu.md).
    first, again, _ = lightning_runs
    assert_identical_runs(first, again, f"lightning on {device}, seed 42 twice")


def test_lightning_other_seed_gives_another_history(lightning_runs, device):
    first, _, other = lightning_runs
    assert_different_losses(first, other, f"lightning on {device}")


@pytest.mark.parametrize("scenario_name", sorted(TRAJECTORY_SCENARIOS))
def test_same_seed_and_shared_weights_give_the_same_best_epoch_across_frameworks(
        scenario_name, repeat_dataset, tmp_path_factory):
    scenario = TRAJECTORY_SCENARIOS[scenario_name]
    root = tmp_path_factory.mktemp(f"cross-{scenario_name}")     # used only when test_trajectories did not run
    keras_run = scenario_run("keras", scenario, repeat_dataset, root)
    lightning_run = scenario_run("lightning", scenario, repeat_dataset, root)
    assert keras_run.best_epoch == lightning_run.best_epoch == EXPECTED_CROSS_FRAMEWORK_BEST_EPOCH[scenario_name]
