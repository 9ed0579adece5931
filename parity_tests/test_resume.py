"""Resume with the same outcome: a real run killed mid-training ends as if it had never stopped.

    python -m pytest parity_tests/test_resume.py -q        # real workbooks; ~6-10 min on 2 busy CPU cores

For each framework a seeded run of experiment 5 (early stopping on
val_accuracy, patience 2) on a 50,000-row sample runs once uninterrupted.
The same run is then started again with STREETCAR_FAULT_PAUSE_AT, which makes
it write a marker file and wait at batch 2 of the epoch after the first
non-improving one - so EarlyStopping's wait is 1 and ModelCheckpoint's best
is an older epoch when it dies, exactly the state Keras's BackupAndRestore
would lose - and the test kills it from outside:

    kill -9 (keras and lightning)        nothing can be caught; the last checkpoint must be whole
    SIGTERM (lightning)                  Lightning's own handler: exit 143 with a resume hint
    SIGINT  (lightning)                  Ctrl-C: exit 130 with a resume hint (printed once)

test_ctrl_c_while_testing_says_so_once_and_the_resume_only_tests: Ctrl-C
while the kept model is tested (STREETCAR_FAULT_PAUSE_AT=test) ends with one
line and exit 130; the resume trains nothing and tests the recorded model.

`--resume RUN_DIR` then continues in the same directory and must end with
the same stopped epoch, the same best epoch, the same history (every figure
of every epoch, exactly), the same best-checkpoint files and bitwise-identical
canonical best weights (CPU).  A finished run is never resumed again, and no
second run directory appears.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest

from parity_tests.reliability_support import (TRAINERS, canonical_best_weights, checkpoint_names,
                                              first_non_improving_epoch, interrupt, only_run_dir, run_cli,
                                              run_json, start_cli, wait_for_marker, write_config)

pytestmark = [pytest.mark.real_data, pytest.mark.slow]

SAMPLE_ROWS = 50000
EPOCHS = 14
PATIENCE = 2
# The book's 0.001 improves val_accuracy for 10+ epochs on this sample; 0.003
# makes early stopping trigger around epoch 6-9 in both frameworks.
LEARNING_RATE = 0.003
PAUSE_BATCH = 2   # the epoch being killed has done 2 of its ~30 steps: partial work that must be discarded
EXPECTED_STATUS = {"SIGKILL": -signal.SIGKILL, "SIGTERM": 128 + signal.SIGTERM, "SIGINT": 128 + signal.SIGINT}
CASES = [("keras", "SIGKILL"), ("lightning", "SIGKILL"), ("lightning", "SIGTERM"), ("lightning", "SIGINT")]
# The SIGKILL cases are the long tier (`python -m pytest -m long`): test_kill_anywhere.py, also long,
# kills both frameworks at ten points each; SIGTERM and SIGINT, handled by the trainers, stay in every run.
CASE_PARAMS = [pytest.param(framework, signal_name, id=f"{framework}-{signal_name}",
                            marks=[pytest.mark.long] if signal_name == "SIGKILL" else [])
               for framework, signal_name in CASES]


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("config") / "resume.yaml", learning_rate=LEARNING_RATE)


def run_arguments(config_path: Path, out_dir: Path) -> list[str]:
    return ["--config", config_path, "--experiment", "5", "--sample-rows", SAMPLE_ROWS, "--epochs", EPOCHS,
            "--patience", PATIENCE, "--accelerator", "cpu", "--out-dir", out_dir]


def trainer_arguments(framework: str, config_path: Path, out_dir: Path) -> list[str]:
    arguments = run_arguments(config_path, out_dir)
    if framework == "keras":  # keras_impl.train has no --accelerator (TensorFlow picks its device)
        index = arguments.index("--accelerator")
        del arguments[index:index + 2]
    return arguments


_uninterrupted: dict[str, dict] = {}


def uninterrupted_run(framework: str, config_path: Path, tmp_path_factory) -> dict:
    """The reference: the same seeded run, never interrupted (computed once per framework)."""
    if framework not in _uninterrupted:
        out_dir = tmp_path_factory.mktemp(f"{framework}-whole")
        _uninterrupted[framework] = run_json(TRAINERS[framework], trainer_arguments(framework, config_path, out_dir))
    return _uninterrupted[framework]


@pytest.mark.parametrize("framework, signal_name", CASE_PARAMS)
def test_killed_run_resumes_to_the_same_outcome(framework, signal_name, config_path, tmp_path, tmp_path_factory):
    whole = uninterrupted_run(framework, config_path, tmp_path_factory)
    monitored = whole["history"][whole["monitor"]]
    stopped_epoch = whole["epochs_run"] - 1
    assert whole["stop_reason"].startswith("stopped: early stopping"), whole["stop_reason"]
    # Die in the epoch after the first non-improving one: EarlyStopping's wait is 1 by then.
    first_stall = first_non_improving_epoch(monitored, "max")
    assert first_stall is not None and first_stall + 1 <= stopped_epoch, \
        f"no epoch to interrupt with early-stopping state in {monitored}"
    kill_epoch = first_stall + 1

    out_dir, marker, log = tmp_path / "runs", tmp_path / "paused", tmp_path / "interrupted.log"
    module = TRAINERS[framework]
    process = start_cli(module, [*trainer_arguments(framework, config_path, out_dir), "--json"],
                        env={"STREETCAR_FAULT_PAUSE_AT": f"{kill_epoch}:{PAUSE_BATCH}",
                             "STREETCAR_FAULT_MARKER": str(marker)}, log=log)
    pid = wait_for_marker(process, marker, log)
    status, output = interrupt(process, pid, getattr(signal, signal_name), log)
    run_dir = only_run_dir(out_dir)

    assert status == EXPECTED_STATUS[signal_name], output[-3000:]
    assert not (run_dir / "result.json").exists()
    assert json.loads((run_dir / "run_request.json").read_text())["completed"] is False
    if signal_name != "SIGKILL":
        last_line = output.strip().splitlines()[-1]
        assert f"--resume {run_dir}" in last_line and signal_name in last_line, last_line
        assert output.count("--resume") == 1, f"the resume line is printed more than once:\n{output[-3000:]}"
        assert "Traceback" not in output, output[-3000:]

    resumed = run_json(module, ["--resume", run_dir])
    print(f"{framework} {signal_name}: uninterrupted stopped/best epoch {stopped_epoch}/{whole['best_epoch']}, "
          f"killed in epoch {kill_epoch} (batch {PAUSE_BATCH}), resumed stopped/best epoch "
          f"{resumed['epochs_run'] - 1}/{resumed['best_epoch']} (0-based)")
    assert resumed["run_dir"] == str(run_dir)
    assert only_run_dir(out_dir) == run_dir  # continued in place, no new directory
    assert resumed["epochs_run"] == whole["epochs_run"]
    assert resumed["best_epoch"] == whole["best_epoch"]
    assert resumed["stop_reason"] == whole["stop_reason"]
    assert resumed["history"] == whole["history"]
    assert checkpoint_names(framework, run_dir) == checkpoint_names(framework, Path(whole["run_dir"]))
    expected = canonical_best_weights(framework, whole["best_checkpoint"])
    actual = canonical_best_weights(framework, resumed["best_checkpoint"])
    assert sorted(actual) == sorted(expected)
    different = [name for name in expected if not np.array_equal(actual[name], expected[name])]
    assert not different, f"best weights differ bitwise in {different}"

    # A finished run is never resumed (so never overwritten).
    again = run_cli(module, ["--resume", run_dir])
    assert again.returncode == 2 and "already finished" in again.stderr, again.stderr[-2000:]


# Experiment 3 keeps the final model (no early stopping): the resume must test that one, from
# last.ckpt / model.keras; parity_tests/test_kill_anywhere.py covers the best checkpoint of experiment 5.
TEST_PHASE_ARGUMENTS = ["--experiment", "3", "--sample-rows", "20000", "--epochs", "2"]


@pytest.mark.parametrize("framework", ["keras", "lightning"])
def test_ctrl_c_while_testing_says_so_once_and_the_resume_only_tests(framework, tmp_path):
    """SIGINT in the test phase: one line, exit 130, a resume hint; the resume trains nothing and finishes."""
    out_dir, marker, log = tmp_path / "runs", tmp_path / "paused", tmp_path / "interrupted.log"
    module = TRAINERS[framework]
    process = start_cli(module, [*TEST_PHASE_ARGUMENTS, "--out-dir", out_dir, "--json"],
                        env={"STREETCAR_FAULT_PAUSE_AT": "test", "STREETCAR_FAULT_MARKER": str(marker)}, log=log)
    pid = wait_for_marker(process, marker, log)
    status, output = interrupt(process, pid, signal.SIGINT, log)
    run_dir = only_run_dir(out_dir)

    assert status == 128 + signal.SIGINT, output[-3000:]
    assert output.strip().splitlines()[-1] == (
        f"interrupted by SIGINT while testing the kept model; training is over and saved; finish the run with: "
        f"python -m {module} --resume {run_dir}")
    assert output.count("--resume") == 1 and "Traceback" not in output, output[-3000:]
    assert not (run_dir / "result.json").exists()
    recorded = json.loads((run_dir / "training_stopped.json").read_text())

    resumed = run_cli(module, ["--resume", run_dir, "--json"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "training had already ended" in resumed.stderr and "Epoch 1/2" not in resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["history"] == recorded["history"] and result["epochs_run"] == recorded["epochs_run"] == 2
    assert result["stop_reason"] == recorded["stop_reason"] == "completed: 2 of 2 epoch(s)"
    assert recorded["kept_model"] == ("model.keras" if framework == "keras" else "checkpoints/last.ckpt")
