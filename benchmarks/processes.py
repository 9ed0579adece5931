"""Running benchmark phases: one subprocess each (benchmarks._worker), its memory watched, the training epochs paced.

    result = run_phase("prepare", settings)
    keras, lightning = run_paced_training_phases(keras_settings, lightning_settings)

benchmarks.run plans the phases; this module starts them, polls each
process tree's resident memory (psutil, a cross-check of the worker's own
getrusage figure) and lets the Keras and Lightning workers' training epochs
take turns (benchmarks.pacing has the worker's side).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Mapping

from benchmarks import say

PROJECT_ROOT = Path(__file__).resolve().parent.parent

RSS_POLL_SECONDS = 0.1
WORKER_TIMEOUT_SECONDS = 3600
PACE_POLL_SECONDS = 0.005


class TreeMemorySampler(threading.Thread):
    """Polls the resident memory of a process and all its descendants; keeps the peak (MiB)."""

    def __init__(self, pid: int, interval: float = RSS_POLL_SECONDS):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_mb = 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop_event.is_set():
            total = 0
            try:
                for process in [root, *root.children(recursive=True)]:
                    try:
                        total += process.memory_info().rss
                    except psutil.Error:
                        continue  # a child that ended between listing and reading
            except psutil.Error:
                return  # the worker itself has ended
            self.peak_mb = max(self.peak_mb, total / 2**20)
            self._stop_event.wait(self.interval)

    def stop(self) -> float:
        self._stop_event.set()
        self.join(timeout=5)
        return self.peak_mb


class PhaseProcess:
    """One `python -m benchmarks._worker PHASE` process, its memory sampler and its result file."""

    def __init__(self, phase: str, settings: Mapping[str, Any], folder: Path) -> None:
        self.phase = phase
        self.result_path = folder / f"{phase}-result.json"
        command = [sys.executable, "-m", "benchmarks._worker", phase, "--settings", json.dumps(dict(settings)),
                   "--result", str(self.result_path)]
        self.started = time.perf_counter()
        # The worker's stdout (Keras and Lightning print there) joins our stderr: stdout is --json's.
        self.process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=sys.stderr, stderr=sys.stderr,
                                        env=worker_environment())
        self.sampler = TreeMemorySampler(self.process.pid)
        self.sampler.start()

    def check_running(self) -> None:
        code = self.process.poll()
        if code is not None:
            self.sampler.stop()
            raise RuntimeError(f"the {self.phase} phase ended early (exit status {code}); its messages are above")

    def finish(self) -> dict[str, Any]:
        try:
            code = self.process.wait(timeout=WORKER_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"the {self.phase} phase ran past {WORKER_TIMEOUT_SECONDS} s and was stopped")
        finally:
            polled_peak = self.sampler.stop()
        if code != 0:
            raise RuntimeError(f"the {self.phase} phase failed (exit status {code}); its messages are above")
        result = json.loads(self.result_path.read_text(encoding="utf-8"))
        result["polled_peak_rss_mb"] = polled_peak
        result["process_seconds"] = time.perf_counter() - self.started
        return result

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def run_phase(phase: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Run one phase in a fresh `python -m benchmarks._worker` process; its result plus the polled peak RSS."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{phase}-") as folder:
        worker = PhaseProcess(phase, settings, Path(folder))
        try:
            return worker.finish()
        finally:
            worker.kill()


def wait_for_pace_point(folder: Path, worker: PhaseProcess, *steps: str) -> str:
    """Block until `worker` has announced one of `steps` (benchmarks.pacing.pace_point); which one; fail if it died."""
    deadline = time.monotonic() + WORKER_TIMEOUT_SECONDS
    while True:
        for step in steps:
            if (folder / f"at-{worker.phase}-{step}").exists():
                return step
        worker.check_running()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {worker.phase} phase did not reach {' or '.join(steps)} "
                               f"within {WORKER_TIMEOUT_SECONDS} s")
        time.sleep(PACE_POLL_SECONDS)


def run_paced_training_phases(keras_settings: Mapping[str, Any], lightning_settings: Mapping[str, Any]
                              ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The keras and lightning phases at once, their training epochs taking turns (see benchmarks.pacing).

    Both workers load data and build their first model side by side, then
    wait before their first paced epoch.  Round by round, each worker with
    epochs left trains one while the other waits; which goes first
    alternates, so a drift of the machine's speed favours neither.  Then
    Keras finishes its phase alone (scoring, scaling) and Lightning after it.
    """
    with tempfile.TemporaryDirectory(prefix="bench-paced-") as name:
        folder = Path(name)
        workers = {phase: PhaseProcess(phase, {**settings, "pace_dir": str(folder)}, folder)
                   for phase, settings in (("keras", keras_settings), ("lightning", lightning_settings))}
        try:
            order = ["keras", "lightning"]
            waiting = {phase: wait_for_pace_point(folder, workers[phase], "0", "rest") for phase in order}
            round_number = 0
            while any(step != "rest" for step in waiting.values()):
                for phase in (order if round_number % 2 == 0 else order[::-1]):
                    step = waiting[phase]
                    if step == "rest":
                        continue
                    (folder / f"go-{phase}-{step}").touch()
                    waiting[phase] = wait_for_pace_point(folder, workers[phase], str(int(step) + 1), "rest")
                round_number += 1
                if round_number % 5 == 0:
                    say(f"paced round {round_number} done")
            results = {}
            for phase in order:
                (folder / f"go-{phase}-rest").touch()
                results[phase] = workers[phase].finish()
            return results["keras"], results["lightning"]
        finally:
            for worker in workers.values():
                worker.kill()


def worker_environment() -> dict[str, str]:
    environment = dict(os.environ)
    # The worker must import this checkout's packages even when the project is not pip-installed.
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), environment.get("PYTHONPATH")]))
    return environment


def time_prepare_command(raw_dir: str | None, config: str | None) -> dict[str, float]:
    """Wall time of `python -m data.prepare --json --quiet`, cold (--rebuild) and cached, start-up included."""
    seconds = {}
    with tempfile.TemporaryDirectory(prefix="bench-prepare-cli-") as cache_dir:
        for label, extra in (("cold", ["--rebuild"]), ("cached", [])):
            command = [sys.executable, "-m", "data.prepare", "--cache-dir", cache_dir, "--json", "--quiet", *extra]
            if raw_dir is not None:
                command += ["--raw-dir", raw_dir]
            if config is not None:
                command += ["--config", config]
            started = time.perf_counter()
            completed = subprocess.run(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                       text=True, env=worker_environment())
            if completed.returncode != 0:
                raise RuntimeError(f"{shlex.join(command)} failed: {completed.stderr.strip()}")
            seconds[label] = time.perf_counter() - started
    return seconds
