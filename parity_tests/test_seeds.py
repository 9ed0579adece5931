"""`python -m parity_tests.seeds` on a tiny case: the JSON fields, the page, and a rerun that skips.

    python -m pytest parity_tests/test_seeds.py -q

2 seeds x 2 frameworks of experiment 5 on a 4,000-row seeded sample, 2
epochs, patience 1; then the same command again, which must train nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiment.verdict import is_degenerate, predicted_positive_share
from parity_tests.seeds import RUN_KEYS, RUNS_FOLDER

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def run_seeds(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "parity_tests.seeds", *arguments], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)))


@pytest.mark.real_data
@pytest.mark.slow
def test_a_tiny_study_writes_every_field_and_a_rerun_skips_finished_runs(tmp_path):
    out = tmp_path / "study"
    arguments = ["--seeds", "2", "--sample-rows", "4000", "--epochs", "2", "--patience", "1", "--out", str(out),
                 "--runs-dir", str(tmp_path / "runs"), "--accelerator", "cpu", "--json"]
    first = run_seeds(*arguments)
    assert first.returncode == 0, first.stderr[-3000:]
    lines = first.stdout.strip().splitlines()
    assert len(lines) == 1, f"stdout must hold only the JSON object, got: {first.stdout[:500]}"
    study = json.loads(lines[0])
    assert json.loads((out / "seeds.json").read_text()) == study
    assert "4 run(s) planned, 0 already in" in first.stderr and "4 to train" in first.stderr

    runs = study["runs"]
    assert sorted((run["framework"], run["seed"]) for run in runs) == \
        [("keras", 1), ("keras", 2), ("lightning", 1), ("lightning", 2)]
    for run in runs:
        assert set(RUN_KEYS) <= set(run)
        assert (run["sample_rows"], run["experiment"], run["epochs_cap"], run["patience"], run["batch_order"]) == \
            (4000, "5", 2, 1, "shared")
        assert 1 <= run["kept_epoch"] <= run["epochs_run"] <= 2
        assert run["best_val_accuracy"] >= run["terminal_val_accuracy"]
        test = {"confusion_matrix": run["confusion_matrix"]}
        assert run["collapsed"] is is_degenerate(test)
        assert run["predicted_positive_share"] == pytest.approx(predicted_positive_share(test))
        assert run["false_negatives"] == run["confusion_matrix"][1][0] and run["seconds"] > 0
        assert Path(run["model"]).is_file() and run["device"]
    # Each framework drew its own initial weights: the two runs of one seed differ.
    by_key = {(run["framework"], run["seed"]): run for run in runs}
    assert by_key["keras", 1]["confusion_matrix"] != by_key["lightning", 1]["confusion_matrix"]

    assert set(study["tests"]) >= {"recall", "best_val_accuracy", "collapse", "alpha"}
    assert study["tests"]["recall"]["smallest_possible_p"] == pytest.approx(1 / 3)
    assert study["summary"]["recall"]["keras"]["n"] == 2
    (group,) = study["groups"]
    assert group["verdict"][0].startswith("This study cannot detect any difference between the frameworks: "
                                          "with 2 seeds per framework")
    assert study["execution"].startswith("sequential")
    page = (out / "seeds.md").read_text()
    assert "python -m parity_tests.seeds --seeds 2 --sample-rows 4000 --epochs 2 --patience 1" in page
    assert group["verdict"][0] in page and "Execution: sequential" in page
    assert (out / "seeds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    run_files = sorted((out / RUNS_FOLDER).glob("*.json"))
    before = {path.name: path.read_bytes() for path in run_files}
    assert len(before) == 4
    second = run_seeds(*arguments)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "4 run(s) planned, 4 already in" in second.stderr and "0 to train" in second.stderr
    assert "Epoch 1/2" not in second.stderr  # nothing trained
    assert {path.name: path.read_bytes() for path in (out / RUNS_FOLDER).glob("*.json")} == before
    assert json.loads(second.stdout)["runs"] == runs


@pytest.mark.parametrize("arguments, message", [
    (["--frameworks", "keras,torch"], "--frameworks keras,torch: use keras, lightning or keras,lightning"),
    (["--experiment", "7"], "7"),
    (["--seed-list", "1,1"], "lists a seed twice"),
])
def test_bad_flags_are_one_line_errors(tmp_path, arguments, message):
    completed = run_seeds(*arguments, "--out", str(tmp_path / "study"))
    assert completed.returncode == 2 and message in completed.stderr
    assert not (tmp_path / "study").exists()


def test_render_only_needs_a_study(tmp_path):
    completed = run_seeds("--render-only", "--out", str(tmp_path))
    assert completed.returncode == 2
    assert completed.stderr.strip() == f"error: --render-only: {tmp_path / RUNS_FOLDER} does not exist; run a " \
                                       f"study into --out {tmp_path} first"


def test_execution_is_computed_from_the_recorded_run_times():
    """Two study processes side by side overlap their runs; the page must say so, not assume sequential."""
    from parity_tests.seeds import describe_execution

    def run(framework, started, finished, seconds=60.0):
        return {"framework": framework, "started_at": started, "finished_at": finished, "seconds": seconds}

    alone = [run("keras", "2026-12-01T10:00:00+0000", "2026-12-01T10:01:00+0000"),
             run("lightning", "2026-12-01T10:01:00+0000", "2026-12-01T10:02:00+0000")]
    assert describe_execution(alone) == "sequential: no two of the 2 timed runs overlapped in time"
    side_by_side = alone + [run("lightning", "2026-12-01T10:00:30+0000", "2026-12-01T10:00:50+0000")]
    assert describe_execution(side_by_side).startswith("2 of 3 timed runs overlapped in time")
    # A file from before "started_at" was recorded: its start is finished_at - seconds.
    old = {"framework": "keras", "finished_at": "2026-12-01T10:01:30+0000", "seconds": 45.0}
    assert describe_execution([alone[1], old]).startswith("2 of 2 timed runs overlapped")
