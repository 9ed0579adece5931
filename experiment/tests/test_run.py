"""The trainers' shared steps (experiment.run) and command-line pieces (experiment.commands)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from configs.cli import RunRequest
from configs.loader import load_config, resolve_experiment
from experiment.commands import training_examples
from experiment.run import build_result, extend_history, open_run, resolve_class_weight


def test_a_diverged_epoch_extends_every_key_and_fills_missing_ones_with_nan():
    history = {"loss": [0.5, 0.4], "val_loss": [0.6, 0.5]}
    extended = extend_history(history, {"loss": float("inf")})
    assert extended["loss"] == [0.5, 0.4, float("inf")]
    assert extended["val_loss"][:2] == [0.6, 0.5] and math.isnan(extended["val_loss"][2])
    # A first epoch that diverged: the figures give the keys.
    assert extend_history({}, {"loss": float("nan")}).keys() == {"loss"}


def request_for(experiment: str) -> RunRequest:
    config = load_config(None)
    return RunRequest(config=config, settings=resolve_experiment(config, experiment), sample_rows=None,
                      raw_dir=None, json=True)


def test_class_weight_is_the_experiments_or_balanced_on_the_train_split():
    dataset = SimpleNamespace(one_weight=lambda offset, split: 20.0 + offset if split == "train" else -1.0)
    # Experiment 0 weights both classes 1; experiment 3 is "balanced": the train split's ratio + the offset.
    assert resolve_class_weight(request_for("0"), dataset) == {0: 1.0, 1: 1.0}
    request = request_for("3")
    offset = request.config.hyperparameters.one_weight_offset
    assert resolve_class_weight(request, dataset) == {0: 1.0, 1: 20.0 + offset}


def test_a_resume_of_a_folder_without_a_run_is_refused_by_the_framework_check(tmp_path):
    def refuse(run_dir, dataset, settings):
        raise ValueError(f"--resume: {run_dir} holds no backup")

    with pytest.raises(ValueError, match="holds no backup"):
        open_run(request_for("5"), SimpleNamespace(), framework="keras", resume=tmp_path, check_resumable=refuse)


def test_the_result_names_the_kept_model_and_lacks_no_key(tmp_path):
    outcome = {"kept_model": tmp_path / "best.keras", "history": {"loss": [0.5]}, "epochs_run": 1,
               "best_epoch": 0, "best_value": 0.7, "monitor": "val_accuracy", "stop_reason": "completed 1 epoch"}
    test = {"confusion_matrix": [[5, 1], [2, 2]], "recall": 0.5, "saturated_share": 0.0}
    result = build_result(request_for("5"), framework="keras", outcome=outcome, test=test,
                          params={"total": 1341}, run_dir=tmp_path, started=0.0, device="cpu")
    assert result["best_checkpoint"] == result["model"] == str(tmp_path / "best.keras")
    assert result["experiment"] == "5" and result["framework"] == "keras"


def test_training_examples_line_the_descriptions_up_in_one_column():
    text = training_examples("x.train", ("--resume runs/a-very-long-run-directory-name-here", "continue it"),
                             ("--seed 7", ""))
    lines = text.splitlines()
    assert lines[0] == "examples:"
    column = len("  python -m x.train ") + 31
    assert lines[1] == "  python -m x.train --experiment 0".ljust(column) + "1-epoch smoke run on the full data"
    # Too long for the column: the description goes on the next line, in the column.
    assert lines[3] == "  python -m x.train --experiment 3 --sample-rows 100000 --epochs 3"
    assert lines[4] == " " * column + "quick class-weighted run on a seeded subset"
    assert lines[5:] == ["  python -m x.train --resume runs/a-very-long-run-directory-name-here",
                         " " * column + "continue it", "  python -m x.train --seed 7"]
