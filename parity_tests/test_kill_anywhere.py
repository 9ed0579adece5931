"""A kill at any point of a run resumes to the same outcome: the randomized kill test.

    python -m pytest -m long parity_tests/test_kill_anywhere.py -q   # the long tier; see docs/reliability.md

For each framework, a seeded run of experiment 5 on a 20,000-row sample
(learning rate 0.03, patience 1, so that early stopping fires within a few
epochs) runs once uninterrupted.  The same run is then killed with SIGKILL
ten times in a row, each time at a different point, and resumed with
`--resume` after each kill; the last resume runs to the end.  The kill points
come from STREETCAR_FAULT_KILL_AT (experiment.reliability), which makes the
run SIGKILL itself at an exact place, so the test does not depend on timing:

* five training batches drawn at random (a fixed seed) from epochs 1 and
  later (a kill in epoch 0 leaves nothing to resume: the run starts again);
* every phase point after training: "fit-ended" (early stopping has fired,
  nothing is recorded yet: the window where a resume used to train on to the
  epoch cap), "stopped", "test" (while testing the kept model), "tested" and
  "written" (result.json written, the run not yet marked completed).

Between kills the run folder is moved (`mv`) or copied (`cp -a`, then the
original deleted), so every resume also proves that the saved state points
into the folder where the run is now, not where it was.

The final result must equal the uninterrupted run's: the history (every
figure of every epoch, exactly), the epochs run, the kept (best) epoch, the
stop reason and every test figure, confusion matrix included.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from math import ceil
from pathlib import Path

import pytest

from parity_tests.reliability_support import TRAINERS, only_run_dir, run_cli, write_config

# Minutes per framework (twelve trainer processes each): the long tier, `python -m pytest -m long`.
pytestmark = [pytest.mark.real_data, pytest.mark.slow, pytest.mark.long]

SAMPLE_ROWS = 20000
EPOCHS = 8
PATIENCE = 1
LEARNING_RATE = 0.03
BATCH_SIZE = 1000                 # configs/streetcar.yaml hyperparameters.batch_size
LIGHTNING_STEPS_PER_EXECUTION = 1  # the plain engine (lightning.engine default): one batch per training step
BATCH_KILLS = 5
PHASE_KILLS = ("fit-ended", "stopped", "test", "tested", "written")  # experiment.reliability.PHASES, in order
KILL_SEED = 18
SIGKILL_STATUS = -9


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("config") / "kill.yaml", learning_rate=LEARNING_RATE)


def trainer_arguments(framework: str, config_path: Path, out_dir: Path) -> list[str]:
    arguments = ["--config", config_path, "--experiment", "5", "--sample-rows", SAMPLE_ROWS, "--epochs", EPOCHS,
                 "--patience", PATIENCE, "--out-dir", out_dir]
    return [*arguments, "--accelerator", "cpu"] if framework == "lightning" else arguments


def steps_per_epoch(framework: str, train_rows: int) -> int:
    """The training steps a kill point counts: Keras batches, Lightning training steps (one batch each)."""
    batches = ceil(train_rows / BATCH_SIZE)
    return ceil(batches / LIGHTNING_STEPS_PER_EXECUTION) if framework == "lightning" else batches


def choose_kill_points(framework: str, epochs_run: int, train_rows: int) -> list[str]:
    """BATCH_KILLS random "EPOCH:STEP" points from epochs 1.. (in run order), then every phase point."""
    steps = steps_per_epoch(framework, train_rows)
    candidates = [(epoch, step) for epoch in range(1, epochs_run) for step in range(steps)]
    chosen = sorted(random.Random(KILL_SEED).sample(candidates, BATCH_KILLS))
    return [f"{epoch}:{step}" for epoch, step in chosen] + list(PHASE_KILLS)


def relocate(run_dir: Path, kill_index: int) -> Path:
    """Move the run folder (odd kills) or copy it and delete the original (even kills)."""
    target = run_dir.with_name(f"{run_dir.name.split('~')[0]}~{kill_index}")
    if kill_index % 2:
        run_dir.rename(target)
    else:
        subprocess.run(["cp", "-a", str(run_dir), str(target)], check=True)
        shutil.rmtree(run_dir)
    return target


def finished_result(completed: subprocess.CompletedProcess, what: str) -> dict:
    assert completed.returncode == 0, f"{what} exited {completed.returncode}:\n{completed.stderr[-4000:]}"
    return json.loads(completed.stdout)


@pytest.mark.parametrize("framework", ["keras", "lightning"])
def test_killed_anywhere_resumes_to_the_same_outcome(framework, config_path, tmp_path):
    module = TRAINERS[framework]
    whole_run = run_cli(module, [*trainer_arguments(framework, config_path, tmp_path / "whole"), "--json"])
    whole = finished_result(whole_run, "the uninterrupted run")
    assert whole["stop_reason"].startswith("stopped: early stopping"), whole["stop_reason"]
    train_rows = int(re.search(r"'train': (\d+)", whole_run.stderr).group(1))
    points = choose_kill_points(framework, whole["epochs_run"], train_rows)
    assert len(points) >= 10

    out_dir, run_dir = tmp_path / "killed", None
    for index, point in enumerate(points):
        arguments = trainer_arguments(framework, config_path, out_dir) if run_dir is None else ["--resume", run_dir]
        killed = run_cli(module, [*arguments, "--json"], env={"STREETCAR_FAULT_KILL_AT": point})
        assert killed.returncode == SIGKILL_STATUS, \
            f"kill {index} at {point}: exit {killed.returncode}, not SIGKILL:\n{killed.stderr[-3000:]}"
        run_dir = relocate(only_run_dir(out_dir) if run_dir is None else run_dir, index)
        assert not (run_dir / "run_request.json").read_text().count('"completed": true'), point
    resumed = finished_result(run_cli(module, ["--resume", run_dir, "--json"]), "the last resume")

    print(f"{framework}: killed at {points}; uninterrupted and resumed both ran {whole['epochs_run']} epochs, "
          f"kept epoch {whole['best_epoch']}")
    assert resumed["history"] == whole["history"]
    assert resumed["epochs_run"] == whole["epochs_run"]
    assert resumed["best_epoch"] == whole["best_epoch"]
    assert resumed["stop_reason"] == whole["stop_reason"]
    assert resumed["test"] == whole["test"]
    # The copy tested its own kept model, in the folder where the run is now.
    assert Path(resumed["best_checkpoint"]).parent in (run_dir, run_dir / "checkpoints")
    assert resumed["run_dir"] == str(run_dir)
