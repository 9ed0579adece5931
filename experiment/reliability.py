"""What both trainers share to survive interrupts, divergence and test-time faults.

    python -m keras_impl.train --experiment 5 --json            # killed, Ctrl-C'd or SIGTERM'd ...
    python -m keras_impl.train --resume runs/keras-exp5-20250101-120000 --json   # ... ends as if never stopped
    python -m lightning_impl.train --resume runs/lightning-exp5-20250101-120000  # the same in Lightning

    python -m pytest parity_tests/test_resume.py parity_tests/test_divergence.py -q

docs/reliability.md is the user's guide to all of this; this module is the
framework-neutral part of it:

* **Run requests.**  A run directory is created fresh for every run
  (experiment.artifacts.create_run_dir) and never reused, except by
  `--resume RUN_DIR`, which names the one interrupted run to continue.
  `run_request.json` in the run directory holds what a resume needs (the
  resolved config, the experiment settings, the sample) and whether the run
  finished: a finished run is never resumed, so nothing overwrites its
  results.
* **Interrupts.**  SIGINT (Ctrl-C) and SIGTERM (what `kill`, systemd, SLURM
  and Kubernetes send first) end a run with one line saying how to resume it
  and exit status 130 / 143 (128 + the signal number, the shell's
  convention).  Python turns SIGINT into KeyboardInterrupt but lets SIGTERM
  kill the process outright; `sigterm_raises_interrupt` gives SIGTERM the
  same path in keras_impl.  Lightning has its own SIGTERM handler (it sets
  `trainer.received_sigterm` and raises SIGTERMException, a SystemExit, at
  the next batch boundary), which lightning_impl keeps.  A SIGKILL cannot be
  caught: a run survives it because every checkpoint is written atomically
  (temp file + os.replace) at the end of an epoch, so the last complete
  epoch is always on disk.
* **Divergence.**  An epoch whose training loss, or the value early stopping
  monitors, is NaN or infinite raises TrainingDiverged from an epoch-end
  callback that runs before every other one in both frameworks, so no
  checkpoint, log row or early-stopping decision ever sees the diverged
  epoch.  The trainer catches it, keeps the best (or last finite) model and
  reports `stop_reason` "stopped: non-finite loss at epoch N (0-based N-1): loss = nan".
* **Fault injection, for tests only.**  Two environment variables make a
  real run misbehave on cue; nothing reads them unless they are set:

      STREETCAR_FAULT_PAUSE_AT=EPOCH:BATCH   before training batch BATCH of epoch EPOCH (0-based),
                                             write the marker file and wait to be killed (Lightning:
                                             before training step BATCH, a group of --steps-per-execution
                                             batches)
      STREETCAR_FAULT_PAUSE_AT=PHASE         the same at a phase point (PHASES below)
      STREETCAR_FAULT_KILL_AT=EPOCH:BATCH    at the same points, SIGKILL the run itself: a kill at an
      STREETCAR_FAULT_KILL_AT=PHASE          exact place, for parity_tests/test_kill_anywhere.py
      STREETCAR_FAULT_MARKER=PATH            the marker file (default RUN_DIR/fault-paused)
      STREETCAR_FAULT_NAN_AT_EPOCH=EPOCH     at the start of epoch EPOCH, set the output bias to NaN

  The phase points, in the order a run reaches them (experiment.run_state):
  "fit-ended" (training is over, nothing recorded yet), "stopped" (the
  outcome is recorded in training_stopped.json), "test" (testing the kept
  model: Lightning's first test batch), "tested" (the test figures exist,
  result.json does not) and "written" (result.json is written, the run is
  not yet marked completed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from data.atomic import write_atomic
from experiment.artifacts import write_json

REQUEST_FILE = "run_request.json"

PAUSE_VARIABLE = "STREETCAR_FAULT_PAUSE_AT"
KILL_VARIABLE = "STREETCAR_FAULT_KILL_AT"
PHASES = ("fit-ended", "stopped", "test", "tested", "written")
MARKER_VARIABLE = "STREETCAR_FAULT_MARKER"
NAN_VARIABLE = "STREETCAR_FAULT_NAN_AT_EPOCH"
DEFAULT_MARKER_NAME = "fault-paused"
# A paused run waits at most this long for the test to kill it, then goes on.
PAUSE_LIMIT_SECONDS = 300.0


# --------------------------------------------------------------------------
# Run requests: what --resume needs
# --------------------------------------------------------------------------


def save_run_request(run_dir: str | Path, request: Any, *, framework: str, completed: bool = False) -> Path:
    """Write run_request.json (atomically): the resolved config, the settings, the sample, the state."""
    from configs.loader import config_to_dict

    return write_json(Path(run_dir) / REQUEST_FILE, {
        "framework": framework,
        "config": config_to_dict(request.config),
        "settings": dataclasses.asdict(request.settings),
        "sample_rows": request.sample_rows,
        "raw_dir": request.raw_dir,
        "completed": completed,
    })


def load_run_request(run_dir: str | Path, *, framework: str, command: str, epochs: int | None = None,
                     json_output: bool = False):
    """The RunRequest saved in an interrupted run directory, for `--resume RUN_DIR`.

    Refuses (ValueError, one line) a folder that is not a run directory, a
    run of the other framework, a corrupt request file and a finished run.
    `epochs` raises the number of epochs (--epochs given with --resume).
    """
    from configs.cli import RunRequest
    from configs.loader import ConfigError, ExperimentSettings, config_from_dict

    run_dir = Path(run_dir)
    path = run_dir / REQUEST_FILE
    if not run_dir.is_dir():
        raise ValueError(f"--resume: run directory not found: {run_dir}")
    if not path.is_file():
        raise ValueError(f"--resume: {run_dir} has no {REQUEST_FILE}, so it is not a run directory of "
                         f"{command}; name the runs/<framework>-exp<id>-<timestamp> folder to continue")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        recorded = saved.get("framework", framework)
        if recorded != framework:
            raise ValueError(f"--resume: {run_dir} is a {recorded} run; continue it with "
                             f"python -m {recorded}_impl.train --resume {run_dir}")
        config = config_from_dict(saved["config"], source=str(path))
        settings = ExperimentSettings(**saved["settings"])
    except ConfigError as error:
        raise ValueError(f"--resume: {path} holds a config this version rejects: {error}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"--resume: {path} is corrupt ({type(error).__name__}: {error})") from None
    if saved.get("completed"):
        raise ValueError(f"--resume: the run in {run_dir} already finished (see its result.json); "
                         f"a finished run is never overwritten, start a new run instead")
    if epochs is not None:
        settings = dataclasses.replace(settings, epochs=epochs)
    return RunRequest(config=config, settings=settings, sample_rows=saved.get("sample_rows"),
                      raw_dir=saved.get("raw_dir"), json=json_output)


def refuse_flags_beside_resume(parser, args, compatible: Sequence[str]) -> None:
    """--resume continues a run with its saved settings: any other changed flag is an error."""
    defaults = vars(parser.parse_args([]))
    clashing = sorted(name for name, value in vars(args).items()
                      if name not in compatible and value != defaults.get(name))
    if clashing:
        raise ValueError(f"--resume continues a run with the settings saved in it; drop "
                         f"{', '.join('--' + name.replace('_', '-') for name in clashing)} "
                         f"(only {', '.join('--' + name.replace('_', '-') for name in compatible if name != 'resume')}"
                         f" may be given with --resume)")


def check_same_vocabularies(run_dir: str | Path, vocabularies: Any, file_name: str = "vocabulary.json") -> None:
    """A resumed run must see the data the run started with (same vocabularies), or its codes mean other things."""
    from data.vocab import Vocabularies

    path = Path(run_dir) / file_name
    if not path.is_file():
        raise ValueError(f"--resume: {path} is missing; the run directory is incomplete")
    saved = Vocabularies.load(path)
    if saved.to_json_dict() != vocabularies.to_json_dict():
        changed = sorted(column for column in saved.values
                         if list(saved.values[column]) != list(vocabularies.values.get(column, [])))
        raise ValueError(f"--resume: the prepared data's vocabularies differ from {path} (columns "
                         f"{', '.join(changed) or 'set'}); the raw data changed since the run started, "
                         f"so its checkpoints no longer fit: start a new run")


# --------------------------------------------------------------------------
# Interrupts
# --------------------------------------------------------------------------


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by a signal; configs.console.run_main prints the message and exits 128 + signal."""

    def __init__(self, signal_name: str, message: str | None = None) -> None:
        self.signal_name = signal_name
        self.exit_code = 128 + int(getattr(signal, signal_name, signal.SIGINT))
        super().__init__(message or f"interrupted by {signal_name}")


@contextlib.contextmanager
def sigterm_raises_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises RunInterrupted("SIGTERM") like Ctrl-C raises KeyboardInterrupt.

    Python's default for SIGTERM is to die on the spot (no message, no
    cleanup).  Only the main thread may install handlers; elsewhere this does
    nothing.  The previous handler is restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_interrupt(signum, frame):
        raise RunInterrupted("SIGTERM")

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted_while_testing(signal_name: str, command: str, run_dir: str | Path) -> RunInterrupted:
    """The interrupt of a run stopped in its test phase: training is over and recorded (experiment.run_state)."""
    return RunInterrupted(signal_name, f"interrupted by {signal_name} while testing the kept model; training "
                                       f"is over and saved; finish the run with: "
                                       f"python -m {command} --resume {run_dir}")


def resume_hint(command: str, run_dir: str | Path, completed_epochs: int | None) -> str:
    done = ("no epoch had completed, so nothing can be resumed; start the run again"
            if not completed_epochs else
            f"{completed_epochs} epoch(s) completed and saved; continue with: python -m {command} --resume {run_dir}")
    return done


# --------------------------------------------------------------------------
# Divergence
# --------------------------------------------------------------------------


class TrainingDiverged(RuntimeError):
    """Raised by the non-finite guard at the end of the first epoch with a NaN/inf loss or monitored value.

    `epoch` is 0-based; `figures` are that epoch's logged values (kept for the history).
    """

    def __init__(self, epoch: int, key: str, value: float, figures: Mapping[str, float]) -> None:
        self.epoch, self.key, self.value = int(epoch), key, float(value)
        self.figures = {name: float(number) for name, number in figures.items()}
        super().__init__(non_finite_stop_reason(self.epoch, key, self.value))


class NoFiniteModel(ValueError):
    """The first epoch of a new run diverged: there is no model to keep, so the run folder is removed.

    Both trainers raise it and delete the folder they created (it would hold
    no model, only the diverged epoch's logs); configs.console.run_main
    prints the one line and exits 2.
    """

    def __init__(self, diverged: TrainingDiverged) -> None:
        super().__init__(f"training diverged in its first epoch ({diverged}), so no finite model exists and "
                         f"the run folder was removed; lower hyperparameters.learning_rate")


def non_finite_items(figures: Mapping[str, Any], keys: Sequence[str]) -> list[tuple[str, float]]:
    """(key, value) of every watched key whose value is NaN or +-inf, in `keys` order."""
    found = []
    for key in keys:
        if key in figures:
            value = float(figures[key])
            if not math.isfinite(value):
                found.append((key, value))
    return found


def non_finite_stop_reason(epoch: int, key: str, value: float) -> str:
    return f"stopped: non-finite {key} at epoch {epoch + 1} (0-based {epoch}): {key} = {value}"


def early_stop_reason(stopped_epoch: int, monitor: str, patience: int) -> str:
    return (f"stopped: early stopping at epoch {stopped_epoch + 1} (0-based {stopped_epoch}): "
            f"{monitor} did not improve for {patience} epoch(s)")


COMPLETED_PREFIX = "completed:"


def completed_reason(epochs_run: int, epochs: int) -> str:
    return f"{COMPLETED_PREFIX} {epochs_run} of {epochs} epoch(s)"


def guarded_keys(settings: Any) -> tuple[str, ...]:
    """What the non-finite guard watches: the training loss, and the monitored value when stopping early."""
    return ("loss", settings.monitor) if settings.early_stop and settings.monitor != "loss" else ("loss",)


# --------------------------------------------------------------------------
# Fault injection (tests)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultPlan:
    """What the environment asks a run to do wrong (see the module docstring)."""

    pause_at: tuple[int, int] | str | None = None
    marker: Path | None = None
    nan_at_epoch: int | None = None
    kill_at: tuple[int, int] | str | None = None

    def marker_path(self, run_dir: str | Path) -> Path:
        return self.marker if self.marker is not None else Path(run_dir) / DEFAULT_MARKER_NAME


def _non_negative(name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"${name}={text!r}: expected an integer >= 0")
    return value


def _fault_point(name: str, text: str) -> tuple[int, int] | str:
    """"EPOCH:BATCH" -> (epoch, batch); a phase name -> itself."""
    if text in PHASES:
        return text
    parts = text.split(":")
    if len(parts) != 2:
        raise ValueError(f"${name}={text!r}: expected EPOCH:BATCH, e.g. 3:2, or one of {', '.join(PHASES)}")
    return (_non_negative(name, parts[0]), _non_negative(name, parts[1]))


def fault_plan_from_environment(environ: Mapping[str, str] | None = None) -> FaultPlan | None:
    """The FaultPlan the environment sets, or None when no fault variable is set (every normal run)."""
    environ = os.environ if environ is None else environ
    pause_text, nan_text, kill_text = environ.get(PAUSE_VARIABLE), environ.get(NAN_VARIABLE), environ.get(KILL_VARIABLE)
    if not pause_text and not nan_text and not kill_text:
        return None
    pause_at = _fault_point(PAUSE_VARIABLE, pause_text) if pause_text else None
    kill_at = _fault_point(KILL_VARIABLE, kill_text) if kill_text else None
    marker = Path(environ[MARKER_VARIABLE]) if environ.get(MARKER_VARIABLE) else None
    nan_at_epoch = _non_negative(NAN_VARIABLE, nan_text) if nan_text else None
    return FaultPlan(pause_at=pause_at, marker=marker, nan_at_epoch=nan_at_epoch, kill_at=kill_at)


def reach_fault_point(point: tuple[int, int] | str, run_dir: str | Path, *, plan: FaultPlan | None = None,
                      stop_waiting: Callable[[], bool] = lambda: False) -> None:
    """The run has reached `point` (a phase name, or (epoch, batch)): kill or pause here if the plan says so.

    `plan` defaults to the environment's; with no fault variable set this does nothing.
    """
    plan = fault_plan_from_environment() if plan is None else plan
    if plan is None:
        return
    if plan.kill_at == point:
        # SIGKILL, not sys.exit: nothing may run after it (no finally, no atexit), as with `kill -9`.
        os.kill(os.getpid(), signal.SIGKILL)
    if plan.pause_at == point:
        pause_until_killed(plan.marker_path(run_dir), stop_waiting=stop_waiting)


def pause_until_killed(marker: Path, *, stop_waiting: Callable[[], bool] = lambda: False,
                       limit_seconds: float = PAUSE_LIMIT_SECONDS) -> None:
    """Write `marker` (atomically, with this process's id) and sleep until a signal ends the run.

    SIGKILL ends the process here; SIGINT / SIGTERM raise out of time.sleep in
    keras_impl; Lightning's SIGTERM handler only sets a flag, so `stop_waiting`
    (trainer.received_sigterm) lets the run reach Lightning's own check.
    """
    write_atomic(marker, f"{os.getpid()}\n".encode())
    deadline = time.monotonic() + limit_seconds
    while time.monotonic() < deadline and not stop_waiting():
        time.sleep(0.02)


__all__ = ["REQUEST_FILE", "FaultPlan", "RunInterrupted", "TrainingDiverged", "check_same_vocabularies",
           "completed_reason", "early_stop_reason", "fault_plan_from_environment", "guarded_keys", "PHASES",
           "reach_fault_point", "interrupted_while_testing", "NoFiniteModel",
           "load_run_request", "non_finite_items", "non_finite_stop_reason", "pause_until_killed",
           "refuse_flags_beside_resume", "resume_hint", "save_run_request", "sigterm_raises_interrupt"]
