"""What a run directory records about its own progress, so that a killed run resumes to the same end.

    python -m keras_impl.train --experiment 5 --sample-rows 50000 --json     # killed anywhere ...
    python -m keras_impl.train --resume runs/keras-exp5-20250101-120000     # ... ends as if never stopped

    python -m pytest parity_tests/test_kill_anywhere.py -q                  # the randomized kill test

A run has three phases, and the run directory says durably which one it is in:

1. **training**: every finished epoch is committed atomically (Keras:
   backup/training_metadata.json; Lightning: checkpoints/last.ckpt), and
   with it the early-stopping state.  A resume continues after the last
   committed epoch.  When that epoch already ended training (early stopping
   fired, or it was the last epoch), the resume trains nothing: it restores
   the state and goes on to phase 2, exactly as the uninterrupted run did.
2. **stopped**: training is over.  Before testing, `training_stopped.json`
   (STOPPED_FILE, written atomically) records the outcome: the kept model
   (a path *relative to the run directory*), the history, the epochs run,
   the best epoch and value, and the stop reason.  A resume that finds it
   skips training altogether and tests the same kept model, so it can never
   train past an early stop, nor re-run a diverged epoch.
3. **finished**: result.json is written, then run_request.json says
   "completed": true, and the run is never resumed again.

Paths saved in a run directory are relative to it, so a run folder can be
moved (`mv`) or copied (`cp -a`) and resumed where it now is; a copy tests
its own checkpoints, never the original's.

`hold_run_lock` makes a second process that tries to continue the same run
directory (two `--resume` of one folder) stop at once with one line, instead
of both writing the same checkpoints.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import IO, Any, Mapping

from data.atomic import write_atomic

STOPPED_FILE = "training_stopped.json"
LOCK_FILE = ".run.lock"
OUTCOME_KEYS = ("kept_model", "history", "epochs_run", "best_epoch", "best_value", "monitor", "stop_reason")

# Open lock files, by run directory: a lock lasts as long as this process (or until released).
_held_locks: dict[str, IO[str]] = {}


# --------------------------------------------------------------------------
# Paths relative to the run directory
# --------------------------------------------------------------------------


def path_in_run(run_dir: str | Path, path: str | Path) -> str:
    """`path` (a file inside `run_dir`) as a POSIX path relative to `run_dir`, for saving."""
    run_dir, path = Path(run_dir).resolve(), Path(path).resolve()
    try:
        return path.relative_to(run_dir).as_posix()
    except ValueError:
        raise ValueError(f"{path} is not inside the run directory {run_dir}; a run keeps its files inside it") \
            from None


def resolve_in_run(run_dir: str | Path, relative: str, source: str | Path) -> Path:
    """A saved relative path, resolved against where the run directory is *now*; refuses `..` escapes."""
    if not isinstance(relative, str) or not relative or Path(relative).is_absolute() \
            or ".." in Path(relative).parts:
        raise ValueError(f"{source}: {relative!r} is not a path inside the run directory")
    return Path(run_dir) / relative


# --------------------------------------------------------------------------
# Phase 2: "stopped"
# --------------------------------------------------------------------------


def record_stopped(run_dir: str | Path, outcome: Mapping[str, Any]) -> Path:
    """Write training_stopped.json (atomically): the outcome of training, before the test phase.

    `outcome` holds OUTCOME_KEYS; its "kept_model" is a path inside the run
    directory and is saved relative to it.  NaN and infinities (a diverged
    epoch's figures) are kept as JSON's NaN / Infinity so that the history
    comes back bit for bit.
    """
    missing = [key for key in OUTCOME_KEYS if key not in outcome]
    if missing:  # pragma: no cover - guards the trainers' contract
        raise RuntimeError(f"the training outcome lacks {missing}")
    payload = {key: outcome[key] for key in OUTCOME_KEYS}
    payload["kept_model"] = path_in_run(run_dir, outcome["kept_model"])
    payload["history"] = {key: [float(value) for value in values] for key, values in outcome["history"].items()}
    text = json.dumps(payload, indent=1, allow_nan=True)
    return write_atomic(Path(run_dir) / STOPPED_FILE, text)


def read_stopped(run_dir: str | Path, epochs: int | None = None) -> dict[str, Any] | None:
    """The recorded outcome (kept_model resolved against the run directory's current place), or None.

    `epochs` is the resumed run's epoch count: a run that had stopped at its
    epoch cap and is now given more epochs (`--resume RUN_DIR --epochs N`)
    trains on, so its record no longer holds and is removed (None).
    ValueError (one line) when the file is damaged or the kept model it names is missing.
    """
    path = Path(run_dir) / STOPPED_FILE
    if not path.is_file():
        return None
    if epochs is not None and _stopped_at_a_lower_cap(path, epochs):
        path.unlink()
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        outcome = {key: saved[key] for key in OUTCOME_KEYS}
        history = {str(key): [float(value) for value in values] for key, values in outcome["history"].items()}
        epochs_run = int(outcome["epochs_run"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"--resume: {path} is corrupt ({type(error).__name__}: {error}); the run cannot "
                         f"be finished, start a new run") from None
    kept = resolve_in_run(run_dir, outcome["kept_model"], path)
    if not kept.is_file():
        raise ValueError(f"--resume: {path} names the kept model {outcome['kept_model']}, which is missing "
                         f"from {run_dir}; the run cannot be finished, start a new run")
    best_value = outcome["best_value"]
    return {**outcome, "kept_model": kept, "history": history, "epochs_run": epochs_run,
            "best_value": None if best_value is None else float(best_value)}


def _stopped_at_a_lower_cap(path: Path, epochs: int) -> bool:
    from experiment.reliability import COMPLETED_PREFIX

    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        return str(saved["stop_reason"]).startswith(COMPLETED_PREFIX) and int(saved["epochs_run"]) < epochs
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        return False  # read_stopped reports the damage


def training_is_over(completed_epochs: int, epochs: int, early_stopping_state: Mapping[str, Any] | None) -> bool:
    """Whether the last committed epoch already ended training: the epoch cap, or early stopping fired.

    Both frameworks set EarlyStopping.stopped_epoch (0-based) when it fires,
    and never at epoch 0 (the first value is always an improvement), so a
    positive stopped_epoch means "fired".
    """
    stopped_epoch = (early_stopping_state or {}).get("stopped_epoch") or 0
    return completed_epochs >= epochs or int(stopped_epoch) > 0


def resume_note(resuming: bool, first_epoch: int, fit_epochs: int, source: str | Path) -> str:
    """The end of a trainer's first progress line: where a resume continues (empty for a new run)."""
    if not resuming:
        return ""
    if fit_epochs <= first_epoch:
        return f", training had ended after epoch {first_epoch}: restoring its state from {source}"
    return f", resuming at epoch {first_epoch + 1} from {source}"


def stopped_summary(outcome: Mapping[str, Any]) -> str:
    """The progress line of a resume that finds training already over."""
    best = ("" if outcome["best_epoch"] is None else
            f", best epoch {int(outcome['best_epoch']) + 1} ({outcome['monitor']} = {outcome['best_value']})")
    return f"training had already ended ({outcome['stop_reason']}{best}); testing the kept model"


# --------------------------------------------------------------------------
# What a run needs before it starts
# --------------------------------------------------------------------------

SPLITS = ("train", "valid", "test")


def check_every_split_has_rows(dataset: Any, sample_rows: int | None) -> None:
    """Every split (train, valid, test) needs at least one row, or the run would train or test on nothing.

    With --sample-rows 1 Lightning used to run zero training steps and exit 0
    with an empty history; Keras failed deep inside TensorFlow.  Both trainers
    call this right after sampling, before a run directory exists.
    """
    sizes = {split: int(len(dataset.splits.get(split, ()))) for split in SPLITS}
    empty = [split for split, size in sizes.items() if size == 0]
    if not empty:
        return
    total = sum(sizes.values())
    what = f"--sample-rows {sample_rows}" if sample_rows is not None else "the prepared data"
    raise ValueError(f"{what} leaves the {' and '.join(empty)} split(s) empty (rows per split: {sizes} of {total}); "
                     f"a run needs at least one row in each of train, valid and test, so pass a larger "
                     f"--sample-rows, e.g. 1000")


# --------------------------------------------------------------------------
# One process per run directory
# --------------------------------------------------------------------------


def hold_run_lock(run_dir: str | Path, command: str) -> None:
    """Take the run directory's lock for the rest of this process, or raise ValueError (one line).

    fcntl.flock on RUN_DIR/.run.lock, non-blocking: the kernel releases it
    when the process ends, however it ends (a SIGKILL included), so a stale
    lock never blocks a resume.  A second `--resume` of the same folder while
    the first still runs stops here, before loading any data.
    """
    run_dir = Path(run_dir)
    key = str(run_dir.resolve())
    if key in _held_locks:
        return
    stream = open(run_dir / LOCK_FILE, "a+", encoding="utf-8")
    try:
        fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        stream.seek(0)
        holder = stream.read().strip() or "another process"
        stream.close()
        raise ValueError(f"--resume: {run_dir} is in use by {holder}; wait until it ends (one process per run "
                         f"directory), then run python -m {command} --resume {run_dir} again") from None
    stream.seek(0)
    stream.truncate()
    stream.write(f"process {os.getpid()}\n")
    stream.flush()
    _held_locks[key] = stream


def release_run_lock(run_dir: str | Path) -> None:
    """Let go of the lock hold_run_lock took (tests; a CLI process just ends)."""
    stream = _held_locks.pop(str(Path(run_dir).resolve()), None)
    if stream is not None:
        stream.close()


__all__ = ["LOCK_FILE", "OUTCOME_KEYS", "STOPPED_FILE", "check_every_split_has_rows", "hold_run_lock",
           "path_in_run", "read_stopped", "record_stopped", "release_run_lock", "resolve_in_run", "resume_note",
           "stopped_summary", "training_is_over"]
