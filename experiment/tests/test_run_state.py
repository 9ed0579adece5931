"""experiment.run_state and the pieces of the run lifecycle that need no training run.

    python -m pytest experiment/tests/test_run_state.py -q      # a few seconds

The end-to-end promises (a kill anywhere resumes to the same outcome, in
both frameworks) are in parity_tests/test_kill_anywhere.py; these are the
parts each of them stands on.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from experiment.reliability import PHASES, FaultPlan, fault_plan_from_environment, reach_fault_point
from experiment.run_state import (STOPPED_FILE, check_every_split_has_rows, hold_run_lock, read_stopped,
                                  record_stopped, release_run_lock, training_is_over)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def outcome(run_dir: Path) -> dict:
    kept = run_dir / "checkpoints" / "best-epoch02-val_accuracy0.7000.ckpt"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_bytes(b"model")
    return {"kept_model": kept, "history": {"loss": [0.7, 0.6, float("nan")], "val_accuracy": [0.6, 0.7, 0.5]},
            "epochs_run": 3, "best_epoch": 1, "best_value": 0.7, "monitor": "val_accuracy",
            "stop_reason": "stopped: non-finite loss at epoch 3 (0-based 2): loss = nan"}


def test_the_stopped_record_round_trips_with_a_relative_path_and_nan(tmp_path):
    run_dir = tmp_path / "run"
    record_stopped(run_dir, outcome(run_dir))
    saved = json.loads((run_dir / STOPPED_FILE).read_text())
    assert saved["kept_model"] == "checkpoints/best-epoch02-val_accuracy0.7000.ckpt"
    moved = tmp_path / "moved"
    run_dir.rename(moved)
    loaded = read_stopped(moved)
    assert loaded["kept_model"] == moved / "checkpoints" / "best-epoch02-val_accuracy0.7000.ckpt"
    assert loaded["history"]["val_accuracy"] == [0.6, 0.7, 0.5] and math.isnan(loaded["history"]["loss"][2])
    assert (loaded["epochs_run"], loaded["best_epoch"], loaded["best_value"]) == (3, 1, 0.7)
    assert read_stopped(tmp_path / "elsewhere") is None


def test_a_damaged_or_escaping_stopped_record_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    record_stopped(run_dir, outcome(run_dir))
    path = run_dir / STOPPED_FILE
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({**saved, "kept_model": "../other-run/checkpoints/last.ckpt"}))
    with pytest.raises(ValueError, match="is not a path inside the run directory"):
        read_stopped(run_dir)
    path.write_text(json.dumps({**saved, "kept_model": "checkpoints/gone.ckpt"}))
    with pytest.raises(ValueError, match="names the kept model checkpoints/gone.ckpt, which is missing"):
        read_stopped(run_dir)
    path.write_text(path.read_text()[:30])
    with pytest.raises(ValueError, match="is corrupt"):
        read_stopped(run_dir)


def test_training_is_over_at_the_epoch_cap_or_when_early_stopping_fired():
    assert training_is_over(5, 5, None)
    assert training_is_over(3, 5, {"stopped_epoch": 2})
    assert not training_is_over(3, 5, {"stopped_epoch": 0, "wait": 1})
    assert not training_is_over(3, 5, None)


def test_kill_and_pause_points_parse_and_fire(tmp_path):
    plan = fault_plan_from_environment({"STREETCAR_FAULT_KILL_AT": "stopped", "STREETCAR_FAULT_PAUSE_AT": "2:1"})
    assert plan == FaultPlan(pause_at=(2, 1), kill_at="stopped")
    assert fault_plan_from_environment({"STREETCAR_FAULT_KILL_AT": "3:0"}).kill_at == (3, 0)
    with pytest.raises(ValueError, match="expected EPOCH:BATCH, e.g. 3:2, or one of fit-ended, stopped, test"):
        fault_plan_from_environment({"STREETCAR_FAULT_KILL_AT": "after-test"})
    assert PHASES == ("fit-ended", "stopped", "test", "tested", "written")
    reach_fault_point("tested", tmp_path, plan=plan)  # not this point: nothing happens
    script = ("from experiment.reliability import reach_fault_point; reach_fault_point('tested', '.'); "
              "print('not killed')")
    killed = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            env={**os.environ, "STREETCAR_FAULT_KILL_AT": "tested"}, timeout=60)
    assert killed.returncode == -signal.SIGKILL and "not killed" not in killed.stdout


def test_a_second_process_cannot_take_a_held_run_lock(tmp_path):
    hold_run_lock(tmp_path, "lightning_impl.train")
    try:
        script = ("from experiment.run_state import hold_run_lock; import sys; "
                  "hold_run_lock(sys.argv[1], 'lightning_impl.train')")
        second = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=PROJECT_ROOT,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode != 0
        assert f"--resume: {tmp_path} is in use by process {os.getpid()}" in second.stderr
    finally:
        release_run_lock(tmp_path)
    free = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert free.returncode == 0, free.stderr


def test_a_sample_with_an_empty_split_is_refused():
    class Sampled:
        splits = {"train": [0], "valid": [], "test": []}

    with pytest.raises(ValueError, match=r"--sample-rows 1 leaves the valid and test split\(s\) empty"):
        check_every_split_has_rows(Sampled(), 1)
    Sampled.splits = {"train": [0], "valid": [1], "test": [2]}
    check_every_split_has_rows(Sampled(), 3)


def test_checkpoint_state_names_files_relative_to_the_run_folder(tmp_path):
    from lightning_impl.callbacks import KerasCompatibleModelCheckpoint
    from lightning_impl.run_callbacks import LastEpochCheckpoint

    original, copy = tmp_path / "run" / "checkpoints", tmp_path / "copy" / "checkpoints"
    writer = KerasCompatibleModelCheckpoint(original, monitor="val_accuracy", mode="max",
                                            template="best-epoch{epoch:02d}-{monitor}{value:.4f}")
    best = str(original / "best-epoch04-val_accuracy0.7316.ckpt")
    writer.best_model_path, writer.kth_best_model_path, writer.best_k_models = best, best, {best: 0.7316}
    state = writer.state_dict()
    assert state["best_model_path"] == "best-epoch04-val_accuracy0.7316.ckpt" and state["dirpath"] == "."
    assert list(state["best_k_models"]) == ["best-epoch04-val_accuracy0.7316.ckpt"]
    reader = KerasCompatibleModelCheckpoint(copy, monitor="val_accuracy", mode="max",
                                            template="best-epoch{epoch:02d}-{monitor}{value:.4f}")
    reader.load_state_dict(state)
    assert reader.best_model_path == str(copy / "best-epoch04-val_accuracy0.7316.ckpt")
    assert list(reader.best_k_models) == [str(copy / "best-epoch04-val_accuracy0.7316.ckpt")]
    # A state saved before paths were relative (absolute, in its old folder) moves over too.
    old_state = {**state, "dirpath": str(original), "best_model_path": best, "best_k_models": {best: 0.7316}}
    reader.load_state_dict(old_state)
    assert reader.best_model_path == str(copy / "best-epoch04-val_accuracy0.7316.ckpt")
    last = LastEpochCheckpoint(dirpath=str(copy), filename="last", monitor=None, mode="min")
    last.last_model_path = str(copy / "last.ckpt")
    assert last.state_dict()["last_model_path"] == "last.ckpt"


def test_a_record_of_a_run_that_reached_a_lower_epoch_cap_gives_way_to_more_epochs(tmp_path):
    run_dir = tmp_path / "run"
    record_stopped(run_dir, {**outcome(run_dir), "stop_reason": "completed: 3 of 3 epoch(s)"})
    assert read_stopped(run_dir, 3)["epochs_run"] == 3   # the same cap: only the test phase is left
    assert read_stopped(run_dir, 5) is None                # --resume --epochs 5: train on
    assert not (run_dir / STOPPED_FILE).exists()
    record_stopped(run_dir, outcome(run_dir))             # stopped by divergence: more epochs change nothing
    assert read_stopped(run_dir, 5)["epochs_run"] == 3
