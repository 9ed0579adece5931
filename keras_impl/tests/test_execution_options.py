"""Keras's execution options (the config's `keras` section): which change the model's updates, and which do not.

    python -m pytest keras_impl/tests/test_execution_options.py -q

docs/differences.md, "Keras execution options", states the findings these
tests measure; docs/benchmarks.md times the options.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from configs.loader import ConfigError, load_config, override
from keras_impl.data import batches_per_epoch, build_fit_arguments, check_steps_per_execution
from keras_impl.model import build_model, compile_model, get_canonical_weights
from keras_impl.runtime import make_repeatable
from keras_impl.tests.helpers import make_synthetic_dataset

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ROWS, BATCH_SIZE = 6000, 100          # 3,600 training rows: 36 batches an epoch


@functools.lru_cache(maxsize=None)      # each setting is fitted once for the whole module
def fit_two_epochs(steps_per_execution: int, batch_order: str = "shared"):
    """(canonical weights, history) after 2 epochs of the book's model with one execution setting."""
    make_repeatable(5)
    dataset = make_synthetic_dataset(ROWS, seed=3)
    model = compile_model(build_model(dataset.vocab_sizes, dropout_rate=0.0003), 0.05,
                          steps_per_execution=steps_per_execution)
    arguments = build_fit_arguments(dataset, batch_size=BATCH_SIZE, seed=1, epochs=2,
                                    class_weight={0: 1.0, 1: 7.5}, batch_order=batch_order)
    history = model.fit(**arguments, verbose=0).history
    return get_canonical_weights(model), history


def assert_same_run(first, second) -> None:
    for name in first[0]:
        np.testing.assert_array_equal(first[0][name], second[0][name], err_msg=name)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert first[1][key] == second[1][key], key


def test_the_synthetic_epoch_has_36_batches():
    dataset = make_synthetic_dataset(ROWS, seed=3)
    assert batches_per_epoch(len(dataset.splits["train"]), BATCH_SIZE) == 36


def test_steps_per_execution_dividing_the_epoch_gives_the_same_updates_bit_for_bit():
    assert_same_run(fit_two_epochs(1), fit_two_epochs(9))


def test_steps_per_execution_with_keras_own_order_gives_the_same_updates_even_when_it_does_not_divide():
    # Arrays, no steps_per_epoch: Keras makes the epoch's last call shorter (8 does not divide 36).
    assert_same_run(fit_two_epochs(1, "framework"), fit_two_epochs(8, "framework"))


def test_steps_per_execution_not_dividing_the_shared_epoch_is_refused_with_the_divisors():
    check_steps_per_execution(3600, BATCH_SIZE, 9, "shared")            # 9 divides 36: accepted
    check_steps_per_execution(3600, BATCH_SIZE, 8, "framework")         # Keras's own order: accepted
    with pytest.raises(ValueError) as error:
        check_steps_per_execution(3600, BATCH_SIZE, 8, "shared")
    assert str(error.value) == (
        "keras.steps_per_execution = 8 does not divide the 36 batches of an epoch: with the shared batch order "
        "Keras would take the next epoch's first batches into this one; use a divisor (1, 2, 3, 4, 6, 9, 12, 18, "
        "36) or general.batch_order: framework")
    # The full training split: 1,717 batches = 17 x 101.
    with pytest.raises(ValueError, match=r"the 1,717 batches .* \(1, 17, 101, 1,717\)"):
        check_steps_per_execution(1_716_824, 1000, 32, "shared")


def test_what_the_refused_setting_would_do_the_epoch_edges_move():
    # Measured: the same 72 updates in all (equal weights at the end), but epoch 1 takes
    # 40 batches, so its loss and val_loss differ - why the trainer refuses it.
    plain, grouped = fit_two_epochs(1), fit_two_epochs(8)
    for name in plain[0]:
        np.testing.assert_array_equal(plain[0][name], grouped[0][name], err_msg=name)
    assert plain[1]["loss"][0] != grouped[1]["loss"][0]
    assert plain[1]["val_loss"][0] != grouped[1]["val_loss"][0]


def test_jit_compile_true_with_repeatable_run_is_a_config_error():
    config = override(load_config(), "keras.jit_compile", "auto")
    assert config.keras.jit_compile == "auto"
    with pytest.raises(ConfigError, match="'keras.jit_compile' = true needs 'general.repeatable_run': false"):
        override(config, "keras.jit_compile", True)
    relaxed = override(override(config, "general.repeatable_run", False), "keras.jit_compile", True)
    assert relaxed.keras.jit_compile is True
    with pytest.raises(ConfigError, match="'keras.jit_compile' = 'yes'; valid: auto, true, false"):
        override(config, "keras.jit_compile", "yes")
    with pytest.raises(ConfigError, match="'keras.steps_per_execution' = 0; must be >= 1"):
        override(config, "keras.steps_per_execution", 0)


JIT_PROBE = """
import numpy as np, keras
from keras_impl.data import build_fit_arguments
from keras_impl.model import build_model, compile_model, get_canonical_weights
from keras_impl.tests.helpers import make_synthetic_dataset
def fit(jit):
    keras.utils.set_random_seed(5)         # seeded, without TensorFlow's op determinism (XLA refuses it)
    dataset = make_synthetic_dataset(6000, seed=3)
    model = compile_model(build_model(dataset.vocab_sizes, dropout_rate=0.0003), 0.05, jit_compile=jit)
    model.fit(**build_fit_arguments(dataset, batch_size=100, seed=1, epochs=2, class_weight={0: 1.0, 1: 7.5}),
              verbose=0)
    return get_canonical_weights(model), model.jit_compile
plain, plain_jit = fit(False)
again, _ = fit(False)
xla, xla_jit = fit(True)
print(plain_jit, xla_jit, max(float(np.max(np.abs(plain[k] - again[k]))) for k in plain),
      max(float(np.max(np.abs(plain[k] - xla[k]))) for k in plain))
"""


@pytest.mark.long
def test_jit_compile_rounds_differently_so_the_updates_change():
    # Its own process: op determinism, once on (every other test here), is on for the process.
    completed = subprocess.run([sys.executable, "-c", JIT_PROBE], cwd=PROJECT_ROOT, capture_output=True,
                               text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    plain_jit, xla_jit, repeat_difference, xla_difference = completed.stdout.split()
    assert (plain_jit, xla_jit) == ("False", "True")
    assert float(repeat_difference) == 0.0          # without XLA, two seeded runs agree bit for bit
    # Measured here: 1.4e-2 after 2 epochs at learning rate 0.05 (rounding, then amplified).
    assert 1e-6 < float(xla_difference) < 1.0
