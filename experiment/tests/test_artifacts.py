"""Run artefacts: fresh run directories, exact history CSV, the book's test
figures and strict JSON files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiment import (
    create_run_dir, read_history_csv, summarize_test, write_history_csv,
    write_run_artifacts,
)
from experiment.weights import check_weights, expected_shapes, parameter_counts
from data import BOOK_VOCABULARIES


def test_run_dirs_are_never_reused(tmp_path):
    first = create_run_dir(tmp_path, "keras", "5")
    second = create_run_dir(tmp_path, "keras", "5")
    assert first != second and first.is_dir() and second.is_dir()
    assert first.name.startswith("keras-exp5-")


def test_summarize_test_counts_p_half_as_no_delay():
    # p = 0.5 is "no delay" in Keras (p > 0.5) and torchmetrics alike.
    figures = summarize_test(np.array([0, 1, 1, 0, 1]), np.array([0.1, 0.9, 0.5, 0.6, 0.51]))
    assert figures["confusion_matrix"] == [[1, 1], [1, 2]]
    assert figures["false_negatives"] == 1
    assert figures["recall"] == pytest.approx(2 / 3)
    assert figures["accuracy"] == pytest.approx(3 / 5)


def test_history_csv_round_trips_exact_floats(tmp_path):
    history = {"loss": [0.1 + 0.2, 1 / 3], "val_accuracy": [0.7316400170326233, 0.5]}
    path = write_history_csv(tmp_path / "history.csv", history)
    assert path.read_text().splitlines()[0] == "epoch,loss,val_accuracy"
    assert read_history_csv(path) == history


def test_history_of_unequal_lengths_is_refused(tmp_path):
    with pytest.raises(ValueError, match="different lengths"):
        write_history_csv(tmp_path / "h.csv", {"loss": [1.0], "val_loss": [1.0, 2.0]})


def test_write_run_artifacts_writes_four_files(tmp_path):
    history = {"loss": [0.7, 0.6], "val_loss": [0.72, 0.65], "accuracy": [0.5, 0.6], "val_accuracy": [0.5, 0.7]}
    result = dict(framework="lightning", experiment="5", epochs_run=2, best_epoch=1, best_value=0.7,
                  monitor="val_accuracy", history=history,
                  test=summarize_test(np.array([0, 1]), np.array([0.2, 0.8])),
                  params=parameter_counts(BOOK_VOCABULARIES.sizes()), best_checkpoint=None,
                  run_dir=str(tmp_path), seconds=1.0, device="cpu",
                  stop_reason="completed: 2 of 2 epoch(s)", model=str(tmp_path / "model.keras"),
                  degenerate=False, predicted_positive_share=0.5, precision=32)
    paths = write_run_artifacts(tmp_path, result)
    assert sorted(p.name for p in paths.values()) == \
        ["confusion_matrix.png", "curves.png", "history.csv", "result.json"]
    assert paths["curves"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(paths["result"].read_text())["params"] == \
        {"total": 1341, "trainable": 1201, "non_trainable": 140}
    with pytest.raises(ValueError, match="missing key"):
        write_run_artifacts(tmp_path, {"framework": "keras"})


def test_canonical_weights_are_checked_by_name_and_shape():
    sizes = BOOK_VOCABULARIES.sizes()
    weights = {name: np.zeros(shape) for name, shape in expected_shapes(sizes).items()}
    check_weights(weights, sizes)
    weights["output.kernel"] = np.zeros((1, 70))
    del weights["embedding.hour"]
    with pytest.raises(ValueError) as error:
        check_weights(weights, sizes, source="ckpt")
    assert "missing embedding.hour" in str(error.value)
    assert "output.kernel: ckpt has shape (1, 70), the model expects (70, 1)" in str(error.value)
