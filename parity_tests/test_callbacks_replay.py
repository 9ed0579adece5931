"""Keras EarlyStopping/ModelCheckpoint vs the project's Lightning callbacks, scenario by scenario.

    python -m pytest parity_tests/test_callbacks_replay.py -q

Every scenario runs the real `keras.callbacks.EarlyStopping` +
`ModelCheckpoint(save_best_only=True)` in a Keras `Model.fit` and the
project's Lightning callbacks in a `Trainer.fit`, with the monitored metric
scripted (see reports/replay.py).  Each row states what both frameworks
must do -- epochs run and the 0-based epoch the best checkpoint holds -- and
the test asserts both, plus `agree`.  The expectations were worked out by hand
from Keras's rule (first value = best, `wait += 1` unless strictly better by
more than min_delta, stop when `wait >= patience`; ModelCheckpoint saves on a
strict improvement without min_delta) and are written down, not computed.

The second half shows each documented inherent difference with *stock*
Lightning callbacks (`lightning_defaults=True`) next to what the project's
configuration does about it (docs/differences.md rows in brackets).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reports.replay import replay
from reports.replay_cli import format_table, main
from reports.replay_rigs import prepare
from reports.replay_values import ReplayError, json_safe

NAN, INF = math.nan, math.inf
KERAS_DOC = [10, 9, 8, 9, 8.9, 8.8, 8.7, 8.6, 8.5]  # keras.callbacks.EarlyStopping docstring
REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def frameworks() -> None:
    """Import TensorFlow/Keras and Lightning and build the tiny Keras model once (~15 s)."""
    prepare()


# (id, values, monitor, mode, patience, min_delta, keras (epochs_run, best_epoch), lightning (epochs_run, best_epoch))
SCENARIOS = [
    # Keras's own patience example [differences.md row 20]: stops at idx 3, 3, 4, 5.
    ("keras-doc-patience-0", KERAS_DOC, "val_loss", "min", 0, 0.0, (4, 2), (4, 2)),
    ("keras-doc-patience-1", KERAS_DOC, "val_loss", "min", 1, 0.0, (4, 2), (4, 2)),
    ("keras-doc-patience-2", KERAS_DOC, "val_loss", "min", 2, 0.0, (5, 2), (5, 2)),
    ("keras-doc-patience-3", KERAS_DOC, "val_loss", "min", 3, 0.0, (6, 2), (6, 2)),
    ("keras-doc-train-loss", KERAS_DOC, "loss", "min", 3, 0.0, (6, 2), (6, 2)),
    # Ties with the best are not improvements [differences.md, "What is the same"].
    ("tie-min", [3, 2, 2, 2, 1], "val_loss", "min", 2, 0.0, (4, 1), (4, 1)),
    ("tie-max", [0.5, 0.75, 0.75, 1.0, 1.0], "val_accuracy", "max", 2, 0.0, (5, 3), (5, 3)),
    ("tie-at-once", [0.5, 0.5], "val_accuracy", "max", 1, 0.0, (2, 0), (2, 0)),
    # min_delta: a change of exactly min_delta is not an improvement [differences.md row 19];
    # ModelCheckpoint has no min_delta, so it may keep an epoch ES did not count.
    ("min-delta-min-exact-p1", [2, 1.5, 1, 0.75, 0.25], "val_loss", "min", 1, 0.5, (2, 1), (2, 1)),
    ("min-delta-min-exact-p2", [2, 1.5, 1, 0.75, 0.25], "val_loss", "min", 2, 0.5, (5, 4), (5, 4)),
    ("min-delta-max-exact-p1", [0.5, 0.75, 1.0, 1.125, 1.5], "val_accuracy", "max", 1, 0.25, (2, 1), (2, 1)),
    ("min-delta-max-exact-p2", [0.5, 0.75, 1.0, 1.125, 1.5], "val_accuracy", "max", 2, 0.25, (5, 4), (5, 4)),
    ("min-delta-decimal", [0.7, 0.75, 0.8, 0.85, 0.9], "val_accuracy", "max", 1, 0.05, (2, 1), (2, 1)),
    ("min-delta-float32-edge", [0.5, 0.55, 0.6, 0.65, 0.7, 0.75], "val_accuracy", "max", 2, 0.1, (3, 2), (3, 2)),
    # Plateaus.
    ("plateau-after-rise", [0.5, 0.6, 0.6, 0.6, 0.6, 0.6], "val_accuracy", "max", 3, 0.0, (5, 1), (5, 1)),
    ("plateau-from-start", [1, 1, 1, 1], "val_loss", "min", 2, 0.0, (3, 0), (3, 0)),
    ("book-style-patience-4", [0.70, 0.72, 0.7316, 0.73, 0.72, 0.71, 0.73, 0.7316], "val_accuracy", "max", 4, 0.0,
     (7, 2), (7, 2)),
    # Monotone improving: never stops, best is the last epoch.
    ("improving-max-p0", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], "val_accuracy", "max", 0, 0.0, (8, 7), (8, 7)),
    ("improving-min-p1", [8, 7, 6, 5, 4, 3], "val_loss", "min", 1, 0.0, (6, 5), (6, 5)),
    # Never improving: stops after `patience` epochs, best is idx 0.
    ("worsening-max-p2", [0.9, 0.8, 0.7, 0.6, 0.5], "val_accuracy", "max", 2, 0.0, (3, 0), (3, 0)),
    ("worsening-min-p0", [1, 2, 3, 4], "val_loss", "min", 0, 0.0, (2, 0), (2, 0)),
    # NaN [differences.md rows 17, 18]: first -> Keras's unbeatable best; later -> never an improvement.
    ("nan-first", [NAN, 0.6, 0.7, 0.8, 0.9], "val_accuracy", "max", 2, 0.0, (3, 0), (3, 0)),
    ("nan-first-p0", [NAN, 1, 0.5], "val_loss", "min", 0, 0.0, (2, 0), (2, 0)),
    ("nan-middle-p3", [3, 2, NAN, 1, 0.5], "val_loss", "min", 3, 0.0, (5, 4), (5, 4)),
    ("nan-middle-p1", [3, 2, NAN, 1, 0.5], "val_loss", "min", 1, 0.0, (3, 1), (3, 1)),
    ("nan-end", [3, 2, 1, NAN], "val_loss", "min", 5, 0.0, (4, 2), (4, 2)),
    ("nan-end-stops", [0.5, 0.6, 0.7, NAN, 0.8], "val_accuracy", "max", 1, 0.0, (4, 2), (4, 2)),
    ("all-nan", [NAN, NAN, NAN], "val_loss", "min", 1, 0.0, (2, 0), (2, 0)),
    # +-inf compare as numbers; the first one is always the best.
    ("inf-first-min", [INF, 3, 2, 1], "val_loss", "min", 1, 0.0, (4, 3), (4, 3)),
    ("inf-first-max", [INF, 0.5, 0.6], "val_accuracy", "max", 1, 0.0, (2, 0), (2, 0)),
    ("neg-inf-first-min", [-INF, 3, 2, 1], "val_loss", "min", 2, 0.0, (3, 0), (3, 0)),
    ("neg-inf-first-max", [-INF, 0.5, 0.6], "val_accuracy", "max", 1, 0.0, (3, 2), (3, 2)),
    ("inf-middle-max", [0.5, INF, 0.6, 0.7], "val_accuracy", "max", 2, 0.0, (4, 1), (4, 1)),
    ("neg-inf-middle-min", [3, -INF, 2, 1, 0], "val_loss", "min", 2, 0.0, (4, 1), (4, 1)),
    ("inf-end-min", [3, 2, 1, INF], "val_loss", "min", 1, 0.0, (4, 2), (4, 2)),
    ("neg-inf-end-max", [0.5, 0.6, -INF], "val_accuracy", "max", 1, 0.0, (3, 1), (3, 1)),
    # One-epoch runs and patience longer than the run.
    ("one-epoch", [0.7], "val_accuracy", "max", 0, 0.0, (1, 0), (1, 0)),
    ("one-epoch-nan", [NAN], "val_accuracy", "max", 0, 0.0, (1, 0), (1, 0)),
    ("patience-longer-worsening", [0.9, 0.8, 0.7], "val_accuracy", "max", 15, 0.0, (3, 0), (3, 0)),
    ("patience-longer-late-best", [0.5, 0.4, 0.3, 0.6], "val_accuracy", "max", 15, 0.0, (4, 3), (4, 3)),
]


def outcome(side: dict[str, Any]) -> tuple[int, int | None]:
    return side["epochs_run"], side["best_epoch"]


@pytest.mark.parametrize(("values", "monitor", "mode", "patience", "min_delta", "keras_expected",
                          "lightning_expected"), [row[1:] for row in SCENARIOS], ids=[row[0] for row in SCENARIOS])
def test_project_callbacks_match_keras(values: list[float], monitor: str, mode: str, patience: int,
                                       min_delta: float, keras_expected: tuple[int, int],
                                       lightning_expected: tuple[int, int]) -> None:
    result = replay(values, monitor, mode, patience, min_delta)
    assert outcome(result["keras"]) == keras_expected, result
    assert outcome(result["lightning"]) == lightning_expected, result
    assert result["agree"] is True, result["notes"]
    best_epoch = keras_expected[1]
    assert result["keras"]["best_value"] == result["lightning"]["best_value"] == json_safe(values[best_epoch])
    # Same file name stem in both: the template with Keras's 1-based epoch.
    assert result["keras"]["best_file"].removesuffix(".weights.h5") == result["lightning"]["best_file"].removesuffix(
        ".ckpt")


# --------------------------------------------------------------------------
# Documented differences: stock Lightning vs Keras vs the project
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("values", "monitor", "mode", "patience", "keras_expected", "stock_expected"), [
    # NaN first [differences.md rows 17, 18]: Keras's unbeatable best; stock check_finite stops at idx 0.
    ([NAN, 0.6, 0.7, 0.8, 0.9], "val_accuracy", "max", 2, (3, 0), (1, 0)),
    # +inf first in min mode [differences.md row 17]: Keras's first best; stock stops at idx 0.
    ([INF, 3, 2, 1], "val_loss", "min", 1, (4, 3), (1, 0)),
    # NaN in the middle [differences.md row 18]: Keras runs on; stock stops at the NaN epoch.
    ([3, 2, NAN, 1, 0.5], "val_loss", "min", 3, (5, 4), (3, 1)),
], ids=["nan-first", "inf-first-min", "nan-middle"])
def test_non_finite_values_stock_lightning_vs_project(values: list[float], monitor: str, mode: str, patience: int,
                                                      keras_expected: tuple[int, int],
                                                      stock_expected: tuple[int, int]) -> None:
    stock = replay(values, monitor, mode, patience, lightning_defaults=True)
    assert outcome(stock["keras"]) == keras_expected
    assert outcome(stock["lightning"]) == stock_expected
    assert stock["agree"] is False
    assert any("check_finite=True" in note for note in stock["notes"][1:]), stock["notes"]

    project = replay(values, monitor, mode, patience)
    assert outcome(project["lightning"]) == keras_expected and project["agree"] is True


def test_default_mode_is_min_in_lightning_auto_in_keras() -> None:
    """[differences.md row 16] val_accuracy without a mode: Keras 'auto' maximises, Lightning minimises
    and stops early."""
    rising = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    stock = replay(rising, "val_accuracy", None, 2, lightning_defaults=True)
    assert outcome(stock["keras"]) == (6, 5) and stock["keras"]["mode"] == "max"
    assert outcome(stock["lightning"]) == (3, 0) and stock["lightning"]["mode"] == "min"
    assert stock["agree"] is False
    assert any("silently used its default 'min'" in note for note in stock["notes"])
    # The project refuses to guess: a mode is required ...
    with pytest.raises(ReplayError, match="mode is required"):
        replay(rising, "val_accuracy", None, 2)
    # ... and with it both frameworks agree.
    project = replay(rising, "val_accuracy", "max", 2)
    assert outcome(project["lightning"]) == (6, 5) and project["agree"] is True


def test_negative_min_delta_is_a_tolerance_in_lightning_and_refused_by_the_project() -> None:
    """[differences.md row 19] Keras uses abs(-0.5); Lightning lets values up to 0.5 worse count as improvements."""
    worsening = [2, 2.25, 2.5, 2.75, 3]
    stock = replay(worsening, "val_loss", "min", 1, min_delta=-0.5, lightning_defaults=True)
    assert outcome(stock["keras"]) == (2, 0)
    assert outcome(stock["lightning"]) == (5, 0)  # never stops; its checkpoint (no min_delta) keeps idx 0
    assert stock["agree"] is False
    assert any("tolerance" in note for note in stock["notes"])
    with pytest.raises(ValueError, match="min_delta must be >= 0"):
        replay(worsening, "val_loss", "min", 1, min_delta=-0.5)


def test_checkpoint_file_names_use_kerass_one_based_epoch() -> None:
    """[differences.md row 22] Best idx 3: Keras and the project write epoch04; stock Lightning writes epoch=3."""
    values = [0.5, 0.6, 0.65, 0.7316, 0.7]
    project = replay(values, "val_accuracy", "max", 5)
    assert project["keras"]["best_file"] == "best-epoch04-val_accuracy0.7316.weights.h5"
    assert project["lightning"]["best_file"] == "best-epoch04-val_accuracy0.7316.ckpt"
    assert project["lightning"]["files"] == ["best-epoch04-val_accuracy0.7316.ckpt", "last.ckpt"]
    # Keras keeps one file per improvement [differences.md row 23]; the best epoch is the same.
    assert len(project["keras"]["files"]) == 4 and project["agree"] is True

    stock = replay(values, "val_accuracy", "max", 5, lightning_defaults=True)
    assert stock["lightning"]["best_epoch"] == 3
    assert stock["lightning"]["best_file"] == "epoch=3-step=8.ckpt"  # 0-based epoch, 2 steps per epoch
    assert stock["agree"] is True  # same epoch, different name
    assert any("Checkpoint names differ" in note for note in stock["notes"])


# --------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------


def run_cli(*arguments: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "parity_tests.replay", *arguments], cwd=REPOSITORY,
                          capture_output=True, text=True, env=environment, timeout=300)


def test_cli_json_runs_both_frameworks_quietly() -> None:
    completed = run_cli("--monitor", "val_loss", "--mode", "min", "--patience", "2",
                        "--values", ",".join(map(str, KERAS_DOC)), "--json")
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert outcome(result["keras"]) == outcome(result["lightning"]) == (5, 2)
    assert result["keras"]["best_value"] == 8.0 and result["agree"] is True
    assert "GPU available" not in completed.stdout + completed.stderr
    assert "cudart" not in completed.stderr


@pytest.mark.parametrize(("arguments", "message"), [
    (["--mode", "max", "--patience", "1", "--values", "0.5,abc"], "cannot read value 2 ('abc')"),
    (["--mode", "max", "--patience", "1", "--values", " , "], "no values given"),
    (["--mode", "mid", "--patience", "1", "--values", "0.5"], "mode must be 'min' or 'max'"),
    (["--patience", "1", "--values", "0.5"], "mode is required"),
    (["--mode", "max", "--patience", "1", "--values-file", "/nonexistent/curve.txt"], "values file not found"),
    (["--mode", "max", "--patience", "-1", "--values", "0.5"], "patience must be an integer >= 0"),
    (["--mode", "max", "--patience", "1"], "one of the arguments --values --values-file is required"),
], ids=["unparseable", "empty", "bad-mode", "no-mode", "missing-file", "negative-patience", "no-values"])
def test_cli_bad_input_exits_2_with_one_message(arguments: list[str], message: str) -> None:
    completed = run_cli("--monitor", "val_accuracy", *arguments)
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert message in completed.stderr and len(completed.stderr.strip().splitlines()) == 1, completed.stderr


def test_main_prints_a_table_from_a_values_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    curve = tmp_path / "curve.txt"
    curve.write_text("nan\n0.6, 0.7\n0.8 0.9\n")
    assert main(["--monitor", "val_accuracy", "--mode", "max", "--patience", "2", "--values-file", str(curve),
                 "--lightning-defaults"]) == 0
    table = capsys.readouterr().out
    assert "agree: NO" in table and "keras" in table and "lightning" in table
    assert "nothing can beat NaN" in table


def test_main_refuses_negative_min_delta(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--monitor", "val_loss", "--mode", "min", "--patience", "1", "--values", "1,2",
                 "--min-delta", "-0.5"]) == 2
    assert "min_delta must be >= 0" in capsys.readouterr().err


def test_json_safe_values() -> None:
    assert [json_safe(value) for value in (NAN, INF, -INF, None, 0.7315999865531921)] == [
        "nan", "inf", "-inf", None, 0.7316]
    table = format_table(replay([0.5], "val_accuracy", "max", 0))
    assert "agree: yes" in table


def test_main_refuses_a_monitor_the_trainers_do_not_log(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--monitor", "foo", "--mode", "max", "--patience", "1", "--values", "1,2"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "--monitor 'foo'" in lines[0]
    assert "valid: loss, accuracy, recall, val_loss, val_accuracy, val_recall" in lines[0]
