"""Both trainers say when the kept model is degenerate, and name the model file they tested.

    python -m pytest parity_tests/test_degenerate_model.py -q

The degenerate run: the book's unweighted experiment 1 on a 30,000-row seeded
sample, 3 epochs, with learning_rate 0.3 instead of 0.001 so that the output
saturates at "no delay" within 54 SGD steps (the full data needs one epoch of
1,717 steps at the book's rate, which is too long for a test).  Both
frameworks then answer "no delay" for every one of the sample's 5,981 test
rows, missing its 140 delays.  The useful run: experiment 9 (class weights,
early stopping) at the book's rate, where "model" is the best checkpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiment.artifacts import RESULT_KEYS
from experiment.verdict import is_degenerate, predicted_positive_share

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG = PROJECT_ROOT / "configs" / "streetcar.yaml"
# The seeded 30,000-row sample's test split (seed 42): 5,841 trips without a delay, 140 with.
SAMPLE_TEST_MATRIX_ALL_NO_DELAY = [[5841, 0], [140, 0]]


def fast_config(tmp_path: Path) -> Path:
    """configs/streetcar.yaml with learning_rate 0.3 (see the module docstring)."""
    text = CONFIG.read_text(encoding="utf-8")
    assert "  learning_rate: 0.001 " in text
    path = tmp_path / "fast.yaml"
    path.write_text(text.replace("  learning_rate: 0.001 ", "  learning_rate: 0.3   "), encoding="utf-8")
    return path


def run_trainer(framework: str, *arguments: str) -> tuple[dict, str]:
    """`python -m <framework>_impl.train ... --json` as a user runs it: (the JSON object, stderr)."""
    extra = ["--accelerator", "cpu"] if framework == "lightning" else []
    completed = subprocess.run(
        [sys.executable, "-m", f"{framework}_impl.train", *arguments, *extra, "--json"], cwd=PROJECT_ROOT,
        capture_output=True, text=True, timeout=600, env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)))
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 1, f"stdout must hold only the JSON object, got: {completed.stdout[:500]}"
    return json.loads(lines[0]), completed.stderr


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.parametrize("framework", ["keras", "lightning"])
def test_a_model_that_answers_no_delay_everywhere_is_reported_degenerate(framework, tmp_path):
    result, stderr = run_trainer(framework, "--config", str(fast_config(tmp_path)), "--experiment", "1",
                                 "--sample-rows", "30000", "--epochs", "3", "--out-dir", str(tmp_path / "runs"))
    assert list(result) == list(RESULT_KEYS)
    assert result["test"]["confusion_matrix"] == SAMPLE_TEST_MATRIX_ALL_NO_DELAY
    assert result["degenerate"] is True and result["predicted_positive_share"] == 0.0
    # No early stopping: the final model file is the one tested, and it exists.
    run_dir = Path(result["run_dir"])
    expected_model = run_dir / ("model.keras" if framework == "keras" else "checkpoints/last.ckpt")
    assert result["best_checkpoint"] is None and result["model"] == str(expected_model)
    assert expected_model.is_file()
    assert json.loads((run_dir / "result.json").read_text())["degenerate"] is True
    # The warning block ends stderr: what the model does, why, what to try.
    warning = stderr[stderr.index("WARNING: the kept model is degenerate"):]
    assert "it answers 'no delay' for 100.00 % of trips: it catches 0 of 140 delays (recall 0.00000)" in warning
    assert "the test split is 97.66 % 'no delay'" in warning
    assert "not class-weighted (one_weight 1.0)" in warning and "hard_sigmoid output sits at exactly 0 or 1" in warning
    assert "--experiment 5" in warning and "--seed N" in warning
    assert warning.rstrip().endswith("passed with --config PATH")


@pytest.mark.real_data
def test_a_useful_model_gets_no_warning_and_model_names_the_best_checkpoint(tmp_path):
    result, stderr = run_trainer("lightning", "--experiment", "9", "--sample-rows", "30000", "--epochs", "2",
                                 "--patience", "1", "--out-dir", str(tmp_path / "runs"))
    test = result["test"]
    assert result["degenerate"] is False is is_degenerate(test)
    assert result["predicted_positive_share"] == pytest.approx(predicted_positive_share(test))
    assert 0.01 < result["predicted_positive_share"] < 0.99 and test["recall"] >= 0.05
    assert result["model"] == result["best_checkpoint"] and Path(result["model"]).is_file()
    assert "WARNING" not in stderr
