"""keras_impl.train: result object, artefacts, repeatability, early stopping, the CLI.

    pytest keras_impl/tests/test_train.py                 # real-data CLI test skips without the workbooks
    STREETCAR_RAW_DIR=/path/to/workbooks pytest keras_impl/tests/test_train.py

Most runs are in-process train() calls on a synthetic dataset (one TensorFlow
import for the whole module); one subprocess runs the real CLI on the real data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import keras_impl  # noqa: F401
import keras

from experiment.artifacts import RESULT_KEYS, read_history_csv, summarize_test
from configs.console import run_main
from keras_impl.callbacks import keras_best_epoch
from keras_impl.data import split_inputs
from keras_impl.model import get_canonical_weights
from keras_impl.tests.helpers import PROJECT_ROOT, make_request, make_synthetic_dataset
from keras_impl.train import main, predict_probabilities, train

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

HISTORY_KEYS = ["accuracy", "loss", "recall", "val_accuracy", "val_loss", "val_recall",
                "val_weighted_accuracy", "weighted_accuracy"]
RUN_FILES = ["model.keras", "model.weights.h5", "model_architecture.json", "vocabulary.json", "history.csv",
             "training_log.csv", "curves.png", "confusion_matrix.png", "result.json"]


@pytest.fixture(scope="module")
def dataset():
    return make_synthetic_dataset(6000, seed=0)


def quiet(_message: str) -> None:
    pass


def saved_weights(path: str | Path) -> dict[str, np.ndarray]:
    return get_canonical_weights(keras.models.load_model(str(path)))


def test_result_object_and_artefacts(tmp_path, dataset):
    result = train(make_request(tmp_path, "0"), dataset=dataset, progress=quiet)
    assert list(result) == list(RESULT_KEYS)
    assert (result["framework"], result["experiment"], result["epochs_run"]) == ("keras", "0", 1)
    assert (result["best_epoch"], result["best_value"], result["monitor"], result["best_checkpoint"]) == \
        (None, None, None, None)
    assert result["params"] == {"total": 1341, "trainable": 1201, "non_trainable": 140}
    assert sorted(result["history"]) == HISTORY_KEYS
    assert all(isinstance(v, float) for values in result["history"].values() for v in values)
    assert result["device"] == "cpu" and result["seconds"] > 0
    # Validation batches carry no weights: the weighted and plain accuracies agree.
    assert result["history"]["val_weighted_accuracy"] == result["history"]["val_accuracy"]

    test = result["test"]
    assert test["rows"] == len(dataset.splits["test"]) == 1200
    assert sum(map(sum, test["confusion_matrix"])) == 1200
    run_dir = Path(result["run_dir"])
    assert run_dir.parent == tmp_path and run_dir.name.startswith("keras-exp0-")
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert json.loads((run_dir / "result.json").read_text())["test"] == test
    assert read_history_csv(run_dir / "history.csv") == result["history"]
    architecture = json.loads((run_dir / "model_architecture.json").read_text())
    assert architecture["class_name"] == "Functional"

    # The test figures come from the model saved on disk.
    inputs, target = split_inputs(dataset, "test")
    reloaded = keras.models.load_model(run_dir / "model.keras")
    assert summarize_test(target, predict_probabilities(reloaded, inputs)) == test


def test_seeded_runs_are_repeatable(tmp_path, dataset):
    first = train(make_request(tmp_path / "a", "0", epochs=2), dataset=dataset, progress=quiet)
    second = train(make_request(tmp_path / "b", "0", epochs=2), dataset=dataset, progress=quiet)
    assert first["history"] == second["history"]
    assert first["test"] == second["test"]
    weights_first = saved_weights(Path(first["run_dir"]) / "model.keras")
    weights_second = saved_weights(Path(second["run_dir"]) / "model.keras")
    for name in weights_first:
        np.testing.assert_array_equal(weights_first[name], weights_second[name], err_msg=name)


def test_the_seed_decides_the_initial_weights(dataset):
    from keras_impl.model import build_model
    from keras_impl.runtime import make_repeatable

    def initial_weights(seed: int) -> dict[str, np.ndarray]:
        make_repeatable(seed)
        return get_canonical_weights(build_model(dataset.vocab_sizes))

    first, again, other = initial_weights(42), initial_weights(42), initial_weights(7)
    assert all(np.array_equal(first[name], again[name]) for name in first)
    assert not np.array_equal(first["embedding.hour"], other["embedding.hour"])
    assert not np.array_equal(first["output.kernel"], other["output.kernel"])


def test_early_stopping_keeps_the_best_checkpoint(tmp_path, dataset):
    # Experiment 4 (val_loss / min, balanced weights).  A learning rate of 2.0
    # makes val_loss jump about, so the run stops early (seen here: val_loss
    # 9.56, 3.18, 2.36, 14.32 -> stop after epoch 4, keep epoch 3).
    epochs, patience = 8, 1
    request = make_request(tmp_path, "4", epochs=epochs, patience=patience, learning_rate=2.0)
    result = train(request, dataset=dataset, progress=quiet)
    history = result["history"]
    best = result["best_epoch"]
    assert result["monitor"] == "val_loss"
    assert best == keras_best_epoch(history["val_loss"], "min")
    assert result["best_value"] == history["val_loss"][best]
    # Keras's EarlyStopping (min_delta 0) stops `patience` epochs after the best one.
    assert result["epochs_run"] == len(history["loss"]) == min(epochs, best + patience + 1) < epochs
    checkpoint = Path(result["best_checkpoint"])
    assert checkpoint.name == f"best-epoch{best + 1:02d}-val_loss{history['val_loss'][best]:.4f}.keras"
    assert checkpoint.is_file() and checkpoint.parent == Path(result["run_dir"])
    # Every saved file is an improvement of val_loss (Keras keeps them all with {epoch} in the name).
    saved_epochs = sorted(int(path.name[len("best-epoch"):][:2]) - 1
                          for path in checkpoint.parent.glob("best-epoch*.keras"))
    running_best = [i for i, value in enumerate(history["val_loss"])
                    if value < min(history["val_loss"][:i], default=float("inf"))]
    assert saved_epochs == running_best and saved_epochs[-1] == best
    # The test figures come from the kept checkpoint, not from the last epoch's weights.
    inputs, target = split_inputs(dataset, "test")
    assert summarize_test(target, predict_probabilities(keras.models.load_model(checkpoint), inputs)) == result["test"]


def test_framework_batch_order_runs(tmp_path, dataset):
    result = train(make_request(tmp_path, "3", epochs=1, batch_order="framework"), dataset=dataset,
                   progress=quiet)
    assert result["epochs_run"] == 1 and sorted(result["history"]) == HISTORY_KEYS
    # Class-weighted: the weighted accuracy is not the plain one on the training split.
    assert result["history"]["weighted_accuracy"] != result["history"]["accuracy"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert run_main(main, ["--experiment", "77", "--out-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: unknown experiment '77'; valid: 0, 1, 2, 3, 4, 5, 6, 9")


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as raised:
        main(["--help"])
    assert raised.value.code == 0
    text = capsys.readouterr().out
    assert "python -m keras_impl.train --experiment 0" in text and "--sample-rows" in text


@pytest.mark.real_data
@pytest.mark.slow
def test_cli_experiment_0_on_real_data(tmp_path):
    environment = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    completed = subprocess.run(
        [sys.executable, "-m", "keras_impl.train", "--experiment", "0", "--sample-rows", "20000", "--json",
         "--out-dir", str(tmp_path)],
        cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 1, completed.stdout[:2000]
    result = json.loads(lines[0])
    assert list(result) == list(RESULT_KEYS)
    assert (result["framework"], result["experiment"], result["epochs_run"]) == ("keras", "0", 1)
    assert result["best_epoch"] is None and result["best_checkpoint"] is None
    assert result["params"] == {"total": 1341, "trainable": 1201, "non_trainable": 140}
    assert sorted(result["history"]) == HISTORY_KEYS and len(result["history"]["loss"]) == 1
    assert 0.0 < result["history"]["loss"][0] < 2.0

    from configs.loader import load_config
    from data import load_prepared

    sample = load_prepared(load_config(), progress=False).sample(20000, 42)
    test_rows = len(sample.splits["test"])
    assert result["test"]["rows"] == test_rows
    assert sum(map(sum, result["test"]["confusion_matrix"])) == test_rows
    (tn, fp), (fn, tp) = result["test"]["confusion_matrix"]
    assert result["test"]["false_negatives"] == fn and tp + fn == int(sample.split_arrays("test")[1].sum())
    run_dir = Path(result["run_dir"])
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "result.json").read_text()) == result
    # Progress went to stderr, with Keras's own verbose=2 epoch line.
    assert "val_accuracy" in completed.stderr and "/step" in completed.stderr
