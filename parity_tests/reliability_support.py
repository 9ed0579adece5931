"""Helpers for the reliability tests: run the real CLIs in subprocesses, read what they leave behind.

Used by parity_tests/test_resume.py, test_divergence.py, test_bad_input.py and
lightning_impl/tests/test_ddp.py.  Every run is a real `python -m <package>.<command>`
process started from the project root, as a user would start it; the tests
look only at exit codes, stdout/stderr and files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRAINERS = {"keras": "keras_impl.train", "lightning": "lightning_impl.train"}
PROCESS_TIMEOUT_SECONDS = 600
MARKER_TIMEOUT_SECONDS = 420


def write_config(path: Path, **hyperparameters: Any) -> Path:
    """configs/streetcar.yaml with some `hyperparameters` keys changed, written to `path`."""
    config = yaml.safe_load((PROJECT_ROOT / "configs" / "streetcar.yaml").read_text(encoding="utf-8"))
    config["hyperparameters"].update(hyperparameters)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("STREETCAR_FAULT_")}
    env.update(extra or {})
    return env


def run_cli(module: str, arguments: Sequence[str], *, env: Mapping[str, str] | None = None,
            timeout: float = PROCESS_TIMEOUT_SECONDS) -> subprocess.CompletedProcess:
    """`python -m module arguments...` from the project root; output captured as text."""
    return subprocess.run([sys.executable, "-m", module, *map(str, arguments)], cwd=PROJECT_ROOT,
                          env=environment(env), capture_output=True, text=True, timeout=timeout)


def run_json(module: str, arguments: Sequence[str], **kwargs) -> dict[str, Any]:
    """Run a trainer with --json and return its result object; fail with its stderr if it did not exit 0."""
    completed = run_cli(module, [*arguments, "--json"], **kwargs)
    if completed.returncode != 0:
        raise AssertionError(f"{module} {' '.join(map(str, arguments))} exited {completed.returncode}:\n"
                             f"{completed.stderr[-4000:]}")
    return json.loads(completed.stdout)


def default_interrupt_handling() -> None:
    """In the child before exec: SIGINT back to its default, as in a terminal.

    A test suite started as a background job (`cmd &`, nohup, some CI runners) inherits SIGINT
    *ignored*, and Python then never turns SIGINT into KeyboardInterrupt, so a test that sends
    Ctrl-C would wait for a run that cannot hear it.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(module: str, arguments: Sequence[str], *, env: Mapping[str, str], log: Path) -> subprocess.Popen:
    """Start a trainer in the background, stdout and stderr into `log`."""
    stream = open(log, "w", encoding="utf-8")
    process = subprocess.Popen([sys.executable, "-m", module, *map(str, arguments)], cwd=PROJECT_ROOT,
                               env=environment(env), stdout=stream, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=default_interrupt_handling)
    process.log_stream = stream  # closed by finish()
    return process


def wait_for_marker(process: subprocess.Popen, marker: Path, log: Path,
                    timeout: float = MARKER_TIMEOUT_SECONDS) -> int:
    """Wait until the paused run writes `marker`; return the pid written in it (the training process)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker.is_file():
            text = marker.read_text(encoding="utf-8").strip()
            if text:
                return int(text)
        if process.poll() is not None:
            raise AssertionError(f"the run ended (exit {process.returncode}) before pausing:\n"
                                 f"{log.read_text(encoding='utf-8')[-4000:]}")
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"the run did not pause within {timeout} s:\n{log.read_text(encoding='utf-8')[-4000:]}")


def interrupt(process: subprocess.Popen, pid: int, signal_number: int, log: Path,
              timeout: float = 180) -> tuple[int, str]:
    """Send `signal_number` to the paused training process; return (exit status, output)."""
    os.kill(pid, signal_number)
    try:
        returncode = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"the run did not end within {timeout} s of {signal.Signals(signal_number).name}")
    process.log_stream.close()
    return returncode, log.read_text(encoding="utf-8")


def only_run_dir(out_dir: Path) -> Path:
    runs = [path for path in out_dir.iterdir() if path.is_dir()]
    if len(runs) != 1:
        raise AssertionError(f"expected exactly one run directory in {out_dir}, found {sorted(p.name for p in runs)}")
    return runs[0]


def first_non_improving_epoch(values: Sequence[float], mode: str) -> int | None:
    """0-based epoch of the first value that is not a strict improvement (early stopping's wait becomes 1)."""
    best = None
    for epoch, value in enumerate(values):
        if best is None or (value > best if mode == "max" else value < best):
            best = value
        else:
            return epoch
    return None


def canonical_best_weights(framework: str, path: str | Path) -> dict[str, np.ndarray]:
    """experiment.weights canonical arrays of a saved best model (Keras .keras / Lightning .ckpt)."""
    if framework == "keras":
        from keras_impl.model import get_canonical_weights
        from keras_impl.score import load_keras_model

        return get_canonical_weights(load_keras_model(Path(path)))
    from lightning_impl.model import get_canonical_weights
    from lightning_impl.score import load_scoring_model

    net, _ = load_scoring_model(path)
    return get_canonical_weights(net)


def checkpoint_names(framework: str, run_dir: Path) -> list[str]:
    """Best-checkpoint files a run left (Keras: every improvement; Lightning: the best only)."""
    folder = run_dir if framework == "keras" else run_dir / "checkpoints"
    suffix = ".keras" if framework == "keras" else ".ckpt"
    return sorted(path.name for path in folder.glob(f"best-*{suffix}"))


def assert_one_error_line(completed: subprocess.CompletedProcess, *fragments: str,
                          progress_prefix: str | None = None) -> str:
    """Exit status 2 and stderr exactly one line 'error: ...' holding every fragment; no traceback.

    `progress_prefix`: lines starting with it (the command's own progress) may precede the error.
    """
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert completed.returncode == 2, f"exit {completed.returncode}, stderr:\n{completed.stderr[-3000:]}"
    assert "Traceback" not in completed.stderr, completed.stderr[-3000:]
    if progress_prefix is not None:
        lines = [line for line in lines if not line.startswith(progress_prefix)]
    assert len(lines) == 1 and lines[0].startswith("error: "), f"stderr is not one error line:\n{completed.stderr}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def real_data_available() -> bool:
    """The TTC workbooks are where $STREETCAR_RAW_DIR points (the root conftest sets it when it can)."""
    from data.paths import list_workbooks

    folder = Path(os.environ.get("STREETCAR_RAW_DIR", "") or "/nonexistent")
    return folder.is_dir() and bool(list_workbooks(folder))


def files_under(folder: Path) -> list[str]:
    """Every file below `folder` (relative paths), for "nothing was left behind" checks."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()) \
        if folder.exists() else []
