"""The degenerate-model check and the trainers' warning block (experiment.verdict)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from configs.loader import load_config, override, resolve_experiment
from experiment.artifacts import summarize_test
from experiment.verdict import degenerate_warning, format_percent, is_degenerate, judge_test

# A measured degenerate run of the README default (seed 42): kept epoch 31, it catches 31 of 12,505 delays.
COLLAPSED_MATRIX = [[559576, 195], [12474, 31]]
# A useful experiment-5 model (the README's 200,000-row example run).
USEFUL_MATRIX = [[25062, 13918], [216, 696]]


def figures_of(matrix, saturated_share=0.0):
    (tn, fp), (fn, tp) = matrix
    return {"confusion_matrix": matrix, "recall": tp / (tp + fn), "saturated_share": saturated_share}


def request_for(experiment: str, **hyperparameters):
    config = load_config()
    for key, value in hyperparameters.items():
        config = override(config, f"hyperparameters.{key}", value)
    return SimpleNamespace(config=config, settings=resolve_experiment(config, experiment))


def result_for(matrix, *, best_epoch=30, epochs_run=46, saturated_share=0.0):
    test = figures_of(matrix, saturated_share)
    return {"test": test, "best_epoch": best_epoch, "epochs_run": epochs_run, "model": "runs/x/best.ckpt",
            **judge_test(test)}


def test_the_issue_run_is_degenerate_with_its_share():
    judged = judge_test(figures_of(COLLAPSED_MATRIX))
    assert judged["degenerate"] is True
    assert judged["predicted_positive_share"] == pytest.approx(226 / 572276)


def test_a_useful_model_is_not_degenerate():
    judged = judge_test(figures_of(USEFUL_MATRIX))
    assert judged == {"degenerate": False, "predicted_positive_share": pytest.approx(14614 / 39892)}


@pytest.mark.parametrize("matrix, degenerate", [
    ([[980, 10], [5, 5]], False),     # 98.5 % "no delay", recall 0.5: a poor model, not a degenerate one
    ([[990, 0], [10, 0]], True),      # all "no delay"
    ([[0, 990], [0, 10]], True),      # all "delay": one class for 100 % of rows
    ([[5, 985], [0, 10]], True),      # "delay" for 99.5 %
    ([[15, 975], [0, 10]], False),    # "delay" for 98.5 %: below the 99 % line, recall 1
    ([[500, 490], [96, 4]], True),    # half called "delay", but recall 0.04 < 0.05
    ([[500, 490], [95, 5]], False),   # recall exactly 0.05 is not below the line
    ([[980, 20], [0, 0]], False),     # no delays in the test split: recall says nothing
])
def test_degenerate_thresholds(matrix, degenerate):
    assert is_degenerate({"confusion_matrix": matrix}) is degenerate


def test_percent_never_rounds_a_partial_share_to_all_or_nothing():
    assert format_percent(559771 / 572276) == "97.81 %"
    assert format_percent(0.999605) == "99.96 %"
    assert format_percent(0.99999) == "more than 99.99 %"
    assert format_percent(1.0) == "100.00 %"
    assert format_percent(0.00001) == "less than 0.01 %"


def test_warning_for_the_issue_run_says_what_why_and_what_to_try():
    text = degenerate_warning(result_for(COLLAPSED_MATRIX, saturated_share=0.873), request_for("5"))
    assert "answers 'no delay' for 99.96 % of trips: it catches 31 of 12,505 delays (recall 0.00248)" in text
    assert "the test split is 97.81 % 'no delay'" in text and "0.97815 accuracy" in text
    assert "best val_accuracy (epoch 31 of 46), a metric that rewards that answer" in text
    assert "hard_sigmoid output sits at exactly 0 or 1 for 87.30 % of test rows" in text
    assert "--experiment 4" in text and "monitor: val_loss" in text and "--seed N" in text
    assert "the recipe beyond the book: --experiment 6" in text
    assert "output_activation: sigmoid" in text and "--config PATH" in text
    assert "not class-weighted" not in text  # experiment 5 is weighted
    assert "runs/x/best.ckpt" in text


def test_warning_for_an_unweighted_run_without_early_stopping():
    matrix = [[559771, 0], [12505, 0]]
    text = degenerate_warning(result_for(matrix, best_epoch=None, epochs_run=10), request_for("1"))
    assert "answers 'no delay' for 100.00 % of trips: it catches 0 of 12,505 delays" in text
    assert "no early stopping: the model after the last of 10 epoch(s) was kept" in text
    assert "not class-weighted (one_weight 1.0)" in text and "--experiment 5" in text
    assert "sits at exactly" not in text  # no saturation measured


def test_warning_for_an_all_delay_model_and_no_sigmoid_advice_when_already_sigmoid():
    text = degenerate_warning(result_for([[5, 985], [0, 10]]), request_for("5", output_activation="sigmoid"))
    assert "answers 'delay' for 99.50 % of trips: it catches 10 of 10 delays, and calls 985 of 990" in text
    assert "output_activation: sigmoid" not in text


def test_no_warning_for_a_useful_model():
    assert degenerate_warning(result_for(USEFUL_MATRIX), request_for("5")) is None


def test_summarize_test_counts_saturated_outputs():
    figures = summarize_test(np.array([0, 0, 1, 0]), np.array([0.0, 0.3, 1.0, 0.0], dtype=np.float32))
    assert figures["saturated_share"] == pytest.approx(0.75)
    assert judge_test(figures) == {"degenerate": False, "predicted_positive_share": 0.25}


def test_closing_lines_name_the_final_model_when_there_is_no_best_checkpoint():
    from experiment.artifacts import describe_result

    result = {**result_for(COLLAPSED_MATRIX, best_epoch=None, epochs_run=1), "experiment": "1", "seconds": 43.7,
              "device": "cpu", "monitor": None, "best_value": None, "best_checkpoint": None,
              "history": {"val_accuracy": [0.97815]}, "run_dir": "runs/x",
              "model": "runs/x/checkpoints/last.ckpt"}
    result["test"].update(accuracy=0.97815, false_negatives=12474)
    assert describe_result(result).splitlines()[1] == "kept the final model: runs/x/checkpoints/last.ckpt"
