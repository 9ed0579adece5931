"""Benchmark Keras against Lightning on the same prepared data, and write docs/benchmarks.md.

    python -m benchmarks.run                    # full run (~6-10 min on the 2-core CPU); writes docs/benchmarks.md
    python -m benchmarks.run --quick            # one timed epoch per framework (~3 min); writes the page too
    python -m benchmarks.run --quick --json     # the result as one JSON object on stdout, progress on stderr
    python -m benchmarks.run --quick --sample-rows 20000 --output /tmp/bench.md   # a tiny run (the tests' kind)

It measures, in one invocation, each figure as the median of several
repetitions after a warm-up:

* a training epoch of the book's experiment 3 (full training split, batch
  1000, balanced class weights, no early stopping) in Keras (Model.fit) and in
  Lightning (Trainer.fit), with samples/s and the Lightning / Keras ratio;
* a validation pass over the valid split in both;
* data preparation: cold from the six workbooks, and the cached load;
* one-off scoring of a single trip from an already-loaded model, p50 / p99,
  through each framework's scorer (keras_impl.score, lightning_impl.score);
* the peak resident memory of each training process;
* epoch time at 25 %, 50 % and 100 % of the training rows (the scaling
  note) and an estimate for the whole 2014-2024 dataset;
* the device, the library versions and the machine.

Each phase (prepare, keras, lightning) runs in its own subprocess
(benchmarks._worker), so the frameworks never share threads or memory.  The
keras and lightning processes start together and their training epochs take
turns (one trains while the other waits; which goes first alternates epoch by
epoch), so both sides of the ratio are timed under the same machine
conditions - on a shared or throttled CPU, timing one framework's epochs
after the other's moved the ratio by a third between runs.  Each then finishes
its own validation, scoring and scaling alone.  The parent also polls each subprocess's resident memory
(with its children) with psutil as a cross-check of the worker's own
getrusage figure.  With a GPU visible to torch, the Lightning side is timed on
it too (reported as an extra column; the ratio stays CPU vs CPU).

--json prints exactly one JSON object on stdout (schema: RESULT_KEYS, see
build_result); every progress line goes to stderr.  A user error (bad flag,
no raw workbooks) is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from benchmarks.summary import describe_growth, fit_line, latency_percentiles, ratio, summarize_samples
from configs.cli import OneLineArgumentParser, positive_int
from experiment.machine import describe_machine, load_average, package_version

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = PROJECT_ROOT / "docs" / "benchmarks.md"
PHASES = ("prepare", "keras", "lightning")

# Keys every --json object has (the list, plus what the page needs).
RESULT_KEYS = ("mode", "command", "date", "epoch_seconds", "samples_per_second", "ratio", "validation_seconds",
               "prepare_seconds", "score_ms", "peak_rss_mb", "train_rows", "device", "devices", "machine",
               "versions", "load_average", "scaling", "targets", "notes", "settings", "details")

# The targets on the 2-core CPU.
TARGET_RATIO = 0.3                 # Lightning epoch <= 0.3 x Keras epoch
TARGET_PREPARE_COLD_SECONDS = 15.0
TARGET_PREPARE_CACHED_SECONDS = 1.0
TARGET_SCORE_P50_MS = 5.0
TARGET_LIGHTNING_PEAK_RSS_MB = 2048.0   # 2 GB, counted in MiB as ru_maxrss is

# The full 2014-2024 dataset the scaling note extrapolates to: 11 whole years.
FULL_DATASET_FIRST_DAY = dt.date(2014, 1, 1)
FULL_DATASET_LAST_DAY = dt.date(2024, 12, 31)
BOOK_EPOCHS = 50

# Per mode: how many repetitions of what.  Quick: one timed epoch after one
# warm-up epoch per framework, on the full training split (~3 min here).
QUICK_SETTINGS: dict[str, Any] = {
    "warmup_epochs": 1, "timed_epochs": 1,
    "validation_warmup": 1, "validation_repeats": 2,
    "score_warmup_calls": 20, "score_calls": 200, "predict_calls": 10,
    "scaling_warmup_epochs": 1, "scaling_timed_epochs": 1,
    "prepare_cold_warmup": 1, "prepare_cold_repeats": 1,
    "prepare_cached_warmup": 1, "prepare_cached_repeats": 3,
}
FULL_SETTINGS: dict[str, Any] = {
    "warmup_epochs": 1, "timed_epochs": 3,
    "validation_warmup": 1, "validation_repeats": 5,
    "score_warmup_calls": 50, "score_calls": 500, "predict_calls": 20,
    "scaling_warmup_epochs": 1, "scaling_timed_epochs": 2,
    "prepare_cold_warmup": 1, "prepare_cold_repeats": 3,
    "prepare_cached_warmup": 1, "prepare_cached_repeats": 5,
    "thread_variant_check": True,
}
SCALING_FRACTIONS = (0.25, 0.5)
RSS_POLL_SECONDS = 0.1
WORKER_TIMEOUT_SECONDS = 3600
PACE_POLL_SECONDS = 0.005


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Running a phase
# --------------------------------------------------------------------------


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


def wait_for_pace_point(folder: Path, worker: PhaseProcess, step: str) -> None:
    """Block until `worker` has announced `step` (benchmarks._worker.pace_point); fail if it died instead."""
    marker = folder / f"at-{worker.phase}-{step}"
    deadline = time.monotonic() + WORKER_TIMEOUT_SECONDS
    while not marker.exists():
        worker.check_running()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {worker.phase} phase did not reach {step!r} within {WORKER_TIMEOUT_SECONDS} s")
        time.sleep(PACE_POLL_SECONDS)


def run_paced_training_phases(keras_settings: Mapping[str, Any], lightning_settings: Mapping[str, Any],
                              epochs: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The keras and lightning phases at once, their training epochs taking turns (see _worker's pacing).

    Both workers load data and build their models side by side, then wait
    before epoch 0.  Epoch by epoch, one worker trains while the other waits;
    which goes first alternates, so a drift of the machine's speed during
    the run favours neither.  Then Keras finishes its phase alone (validation,
    scoring, scaling) and Lightning after it.
    """
    with tempfile.TemporaryDirectory(prefix="bench-paced-") as name:
        folder = Path(name)
        workers = {phase: PhaseProcess(phase, {**settings, "pace_dir": str(folder)}, folder)
                   for phase, settings in (("keras", keras_settings), ("lightning", lightning_settings))}
        try:
            for worker in workers.values():
                wait_for_pace_point(folder, worker, "0")
            order = ["keras", "lightning"]
            for epoch in range(epochs):
                following = str(epoch + 1) if epoch + 1 < epochs else "rest"
                for phase in (order if epoch % 2 == 0 else order[::-1]):
                    (folder / f"go-{phase}-{epoch}").touch()
                    wait_for_pace_point(folder, workers[phase], following)
                say(f"paced epoch {epoch + 1}/{epochs} done in both frameworks")
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


# --------------------------------------------------------------------------
# Machine and versions
# --------------------------------------------------------------------------


def library_versions() -> dict[str, str | None]:
    names = ("tensorflow", "keras", "torch", "lightning", "torchmetrics", "numpy", "pandas", "pyarrow",
             "python-calamine")
    return {"python": platform.python_version(), **{name: package_version(name) for name in names}}


# --------------------------------------------------------------------------
# Assembling the result
# --------------------------------------------------------------------------


def median_or_none(samples: Sequence[float] | None) -> float | None:
    return summarize_samples(samples)["median"] if samples else None


def full_dataset_days() -> int:
    return (FULL_DATASET_LAST_DAY - FULL_DATASET_FIRST_DAY).days + 1


def scaling_summary(phase: Mapping[str, Any] | None, days_here: int | None,
                    validation_seconds: float | None) -> dict[str, Any] | None:
    """Epoch seconds at each training size, the fitted line and the 2014-2024 estimate."""
    if not phase or len(phase.get("scaling") or []) < 2:
        return None
    points = sorted(({"train_rows": int(point["train_rows"]),
                      "epoch_seconds": summarize_samples(point["epoch_seconds"])["median"],
                      "epoch_cpu_seconds": median_or_none(point.get("epoch_cpu_seconds")),
                      "repeats": len(point["epoch_seconds"])} for point in phase["scaling"]),
                    key=lambda point: point["train_rows"])
    rows = [point["train_rows"] for point in points]
    seconds = [point["epoch_seconds"] for point in points]
    growth = describe_growth(rows, seconds)
    result: dict[str, Any] = {"points": points, "fit": growth}
    cpu_seconds = [point["epoch_cpu_seconds"] for point in points]
    if all(value is not None for value in cpu_seconds):
        # The same fit on process CPU time: on a shared machine it shows the shape the wall clock blurs.
        result["fit_cpu"] = describe_growth(rows, cpu_seconds)
    if days_here:
        # The grid is days x 24 hours x route/direction pairs, so rows grow with the days covered,
        # assuming the same route/direction pairs and the same 60/20/20 split.
        factor = full_dataset_days() / float(days_here)
        full_rows = max(rows) * factor
        epoch = fit_line(rows, seconds).predict(full_rows)
        validation = validation_seconds * factor if validation_seconds is not None else None
        result["estimate_2014_2024"] = {
            "days": full_dataset_days(), "days_here": days_here, "row_factor": factor,
            "train_rows": int(round(full_rows)), "epoch_seconds": epoch, "validation_seconds": validation,
            "book_epochs": BOOK_EPOCHS,
            "book_run_minutes": BOOK_EPOCHS * (epoch + (validation or 0.0)) / 60.0,
        }
    return result


def check_targets(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each of the issue's targets with the measured figure and whether it is met (None: not measured)."""
    def entry(name: str, target: str, measured: float | None, limit: float, unit: str) -> dict[str, Any]:
        return {"name": name, "target": target, "measured": measured, "unit": unit,
                "met": None if measured is None else bool(measured <= limit)}

    score = result["score_ms"]
    return [
        entry("Lightning epoch / Keras epoch", f"<= {TARGET_RATIO}", result["ratio"], TARGET_RATIO, "x"),
        entry("cold prepare", f"<= {TARGET_PREPARE_COLD_SECONDS:g} s", result["prepare_seconds"]["cold"],
              TARGET_PREPARE_COLD_SECONDS, "s"),
        entry("cached load", f"<= {TARGET_PREPARE_CACHED_SECONDS:g} s", result["prepare_seconds"]["cached"],
              TARGET_PREPARE_CACHED_SECONDS, "s"),
        entry("Keras one-off scoring p50", f"<= {TARGET_SCORE_P50_MS:g} ms",
              (score.get("keras") or {}).get("p50"), TARGET_SCORE_P50_MS, "ms"),
        entry("Lightning one-off scoring p50", f"<= {TARGET_SCORE_P50_MS:g} ms",
              (score.get("lightning") or {}).get("p50"), TARGET_SCORE_P50_MS, "ms"),
        entry("Lightning training peak RSS", f"<= {TARGET_LIGHTNING_PEAK_RSS_MB:g} MiB",
              result["peak_rss_mb"].get("lightning"), TARGET_LIGHTNING_PEAK_RSS_MB, "MiB"),
    ]


def build_result(phases: Mapping[str, Mapping[str, Any] | None], *, mode: str, command: str,
                 settings: Mapping[str, Any], machine: Mapping[str, Any], versions: Mapping[str, Any],
                 load: Mapping[str, Any], date: str, prepare_command: Mapping[str, float] | None = None
                 ) -> dict[str, Any]:
    """The --json object from the phases' raw results (a phase that did not run is None)."""
    prepare, keras, lightning = (phases.get(name) for name in PHASES)
    gpu = (lightning or {}).get("gpu")

    epoch_seconds = {"keras": median_or_none((keras or {}).get("epoch_seconds")),
                     "lightning": median_or_none((lightning or {}).get("epoch_seconds"))}
    validation_seconds = {"keras": median_or_none((keras or {}).get("validation_seconds")),
                          "lightning": median_or_none((lightning or {}).get("validation_seconds"))}
    thread_variant = (lightning or {}).get("thread_variant")
    one_step = (lightning or {}).get("one_step_per_batch")
    autograd = (lightning or {}).get("autograd_gradients")
    other_engine = (lightning or {}).get("other_engine")
    if gpu:
        epoch_seconds["lightning_gpu"] = median_or_none(gpu["epoch_seconds"])
        validation_seconds["lightning_gpu"] = median_or_none(gpu["validation_seconds"])
    epoch_cpu_seconds = {"keras": median_or_none((keras or {}).get("epoch_cpu_seconds")),
                         "lightning": median_or_none((lightning or {}).get("epoch_cpu_seconds"))}
    train_rows = next((phase["train_rows"] for phase in (keras, lightning) if phase), None)
    samples_per_second = {name: (train_rows / seconds if seconds and train_rows else None)
                          for name, seconds in epoch_seconds.items()}

    score_ms = {}
    for name, phase in (("keras", keras), ("lightning", lightning)):
        scoring = (phase or {}).get("scoring")
        if scoring and scoring.get("milliseconds"):
            score_ms[name] = {**latency_percentiles(scoring["milliseconds"]), "call": scoring.get("call")}
            extras = {key: value for key, value in scoring.items() if key not in ("milliseconds", "call")}
            score_ms[name].update(extras)
        else:
            score_ms[name] = None

    days_here = next((phase["dataset"].get("days") for phase in (keras, lightning, prepare) if phase), None)
    devices = {"keras": (keras or {}).get("device"), "lightning": (lightning or {}).get("device"),
               "lightning_gpu": gpu["device"] if gpu else None}
    device = "cpu" if not gpu else f"cpu; Lightning also on {gpu['device']}"
    if keras and keras.get("device") not in (None, "cpu"):
        device = f"keras on {keras['device']}; " + device

    result: dict[str, Any] = {
        "mode": mode,
        "command": command,
        "date": date,
        "epoch_seconds": epoch_seconds,
        "samples_per_second": samples_per_second,
        "epoch_cpu_seconds": epoch_cpu_seconds,
        "ratio": ratio(epoch_seconds["lightning"], epoch_seconds["keras"]),
        "ratio_gpu": ratio(epoch_seconds.get("lightning_gpu"), epoch_seconds["keras"]) if gpu else None,
        "validation_seconds": validation_seconds,
        "validation_rows": next((phase["validation_rows"] for phase in (keras, lightning) if phase), None),
        "prepare_seconds": {"cold": median_or_none((prepare or {}).get("cold_seconds")),
                            "cached": median_or_none((prepare or {}).get("cached_seconds"))},
        "prepare_command_seconds": dict(prepare_command) if prepare_command else None,
        "score_ms": score_ms,
        "peak_rss_mb": {"keras": (keras or {}).get("peak_rss_mb"), "lightning": (lightning or {}).get("peak_rss_mb"),
                        "prepare": (prepare or {}).get("peak_rss_mb")},
        "polled_peak_rss_mb": {name: (phase or {}).get("polled_peak_rss_mb")
                               for name, phase in (("keras", keras), ("lightning", lightning), ("prepare", prepare))},
        "train_rows": train_rows,
        "device": device,
        "devices": devices,
        "threads": {"keras": (keras or {}).get("threads"), "lightning": (lightning or {}).get("threads")},
        "machine": dict(machine),
        "versions": dict(versions),
        "load_average": dict(load),
        "scaling": {"keras": scaling_summary(keras, days_here, validation_seconds["keras"]),
                    "lightning": scaling_summary(lightning, days_here, validation_seconds["lightning"])},
        "profile": (lightning or {}).get("profile"),
        "lightning_thread_variant": None if not thread_variant else {
            "torch_threads": thread_variant["torch_threads"],
            "epoch_seconds": median_or_none(thread_variant["epoch_seconds"]),
            "epoch_cpu_seconds": median_or_none(thread_variant["epoch_cpu_seconds"]),
            "ratio": ratio(median_or_none(thread_variant["epoch_seconds"]), epoch_seconds["keras"])},
        "lightning_steps_per_execution": (lightning or {}).get("steps_per_execution"),
        "lightning_one_step_per_batch": None if not one_step else {
            "epoch_seconds": median_or_none(one_step["epoch_seconds"]),
            "epoch_cpu_seconds": median_or_none(one_step["epoch_cpu_seconds"]),
            "ratio": ratio(median_or_none(one_step["epoch_seconds"]), epoch_seconds["keras"])},
        "lightning_engine": (lightning or {}).get("engine"),
        "lightning_other_engine": None if not other_engine else {
            "engine": other_engine["engine"],
            "epoch_seconds": median_or_none(other_engine["epoch_seconds"]),
            "epoch_cpu_seconds": median_or_none(other_engine["epoch_cpu_seconds"]),
            "ratio": ratio(median_or_none(other_engine["epoch_seconds"]), epoch_seconds["keras"])},
        "lightning_gradients": (lightning or {}).get("gradients"),
        "lightning_autograd_gradients": None if not autograd else {
            "epoch_seconds": median_or_none(autograd["epoch_seconds"]),
            "epoch_cpu_seconds": median_or_none(autograd["epoch_cpu_seconds"]),
            "ratio": ratio(median_or_none(autograd["epoch_seconds"]), epoch_seconds["keras"])},
        "settings": dict(settings),
        "details": {name: phase for name, phase in phases.items()},
    }
    result["targets"] = check_targets(result)
    result["notes"] = explain_misses(result)
    return result


def explain_misses(result: Mapping[str, Any]) -> list[str]:
    """Sentences for the page on why a missed target is missed, from the measured comparisons."""
    notes = []
    keras_scoring = result["score_ms"].get("keras") or {}
    on_batch = keras_scoring.get("predict_on_batch_p50_ms")
    if keras_scoring.get("p50") is not None and keras_scoring["p50"] > TARGET_SCORE_P50_MS and on_batch is not None:
        notes.append(
            f"* Keras scoring: `{keras_scoring.get('call')}` takes {keras_scoring['p50']:.2f} ms p50; "
            f"`model.predict_on_batch(inputs)`, which runs the predict function Keras traced once, takes "
            f"{on_batch:.2f} ms p50 on the same loaded model"
            + (", within the target: that is the call the scorer should make." if on_batch <= TARGET_SCORE_P50_MS
               else "."))
    profile = result.get("profile") or {}
    keras_epoch = result["epoch_seconds"].get("keras")
    if result["ratio"] is not None and result["ratio"] > TARGET_RATIO and profile and keras_epoch:
        plain = summarize_samples(profile["plain_loop_epoch_seconds"])["median"]
        notes.append(
            f"* Lightning epoch: the steps themselves (forward, loss, gradients, SGD update, batch gathering) "
            f"take {plain:.2f} s = {plain / keras_epoch:.3f}× the Keras epoch; the remaining "
            f"{profile['trainer_overhead_seconds']:.2f} s ({profile['trainer_overhead_ms_per_step']:.2f} ms per "
            f"step) is the Trainer's per-step machinery: hook and callback dispatch, the LightningOptimizer "
            f"and precision-plugin wrappers around the step, the batch transfer and the loop's progress "
            f"bookkeeping.")
    return notes


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def build_argument_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m benchmarks.run",
        description="Time Keras vs Lightning training, validation, data preparation and one-off scoring on the "
                    "same prepared data; write docs/benchmarks.md.")
    parser.add_argument("--quick", action="store_true",
                        help="one timed epoch per framework after one warm-up epoch (full training split), "
                             "fewer repetitions elsewhere, Lightning-only scaling (~3 min on 2 cores)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), metavar="PATH",
                        help="where to write the Markdown page (default docs/benchmarks.md)")
    parser.add_argument("--no-page", action="store_true", help="do not write the Markdown page")
    parser.add_argument("--sample-rows", type=positive_int, default=None, metavar="N",
                        help="train and validate on a seeded subset of N prepared rows (as the trainers' "
                             "--sample-rows), with minimal repetitions: a smoke test of the harness, not the "
                             "project's figures")
    parser.add_argument("--epochs", type=positive_int, default=None, metavar="N",
                        help="timed epochs per framework (default: 1 with --quick, else 3)")
    parser.add_argument("--score-calls", type=positive_int, default=None, metavar="N",
                        help="timed one-off scoring calls per framework (default: 200 with --quick, else 500)")
    parser.add_argument("--phases", default=",".join(PHASES), metavar="LIST",
                        help=f"comma-separated subset of {','.join(PHASES)} (default: all)")
    parser.add_argument("--raw-dir", default=None, metavar="DIR",
                        help="folder of the TTC workbooks (default: $STREETCAR_RAW_DIR, else data/raw/)")
    parser.add_argument("--config", default=None, metavar="PATH", help="YAML config (default configs/streetcar.yaml)")
    parser.add_argument("--no-gpu", action="store_true", help="do not time Lightning on a GPU even if one is there")
    return parser


def parse_phases(text: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in chosen if name not in PHASES]
    if unknown or not chosen:
        raise ValueError(f"--phases {text!r}: unknown or empty; valid: {', '.join(PHASES)}")
    return tuple(name for name in PHASES if name in chosen)


def plan_settings(arguments: argparse.Namespace) -> dict[str, Any]:
    settings = dict(QUICK_SETTINGS if arguments.quick else FULL_SETTINGS)
    if arguments.epochs is not None:
        settings["timed_epochs"] = arguments.epochs
    if arguments.sample_rows is not None:
        # A sampled run is a smoke test of the harness (its figures are not the project's): the fewest
        # repetitions that still exercise every measurement.
        settings.update({"prepare_cold_warmup": 0, "prepare_cold_repeats": 1, "prepare_cached_warmup": 0,
                         "prepare_cached_repeats": 1, "validation_repeats": 1, "profile_steps": 20,
                         "thread_variant_check": False, "one_step_per_batch_check": False,
                         "autograd_variant_check": False, "other_engine_check": False})
    if arguments.score_calls is not None:
        settings["score_calls"] = arguments.score_calls
        settings["score_warmup_calls"] = min(settings["score_warmup_calls"], arguments.score_calls)
        settings["predict_calls"] = min(settings["predict_calls"], arguments.score_calls)
    # The workers run in the project root: paths given relative to the caller's folder are made absolute.
    def absolute(path: str | None) -> str | None:
        return None if path is None else str(Path(path).resolve())

    settings.update({"config": absolute(arguments.config), "raw_dir": absolute(arguments.raw_dir),
                     "sample_rows": arguments.sample_rows, "use_gpu": not arguments.no_gpu})
    return settings


def check_inputs(arguments: argparse.Namespace) -> None:
    """Fail fast, before any subprocess, on what the user can fix: the config and the raw workbooks."""
    from configs.loader import load_config
    from data.paths import find_raw_files

    config = load_config(arguments.config)
    find_raw_files(arguments.raw_dir if arguments.raw_dir is not None else config.data.raw_dir)
    if arguments.output and not arguments.no_page and Path(arguments.output).is_dir():
        raise ValueError(f"--output {arguments.output} is a folder; give a file path such as docs/benchmarks.md")


def phase_settings(phase: str, settings: Mapping[str, Any], quick: bool) -> dict[str, Any]:
    """What one worker is given: the shared settings, with the scaling sizes it should time."""
    chosen = dict(settings)
    # Keras's scaling points cost ~0.75 of a Keras epoch each: only the full run times them.
    fractions = list(SCALING_FRACTIONS) if (phase == "lightning" or not quick) else []
    chosen["scaling_fractions"] = fractions
    return chosen


def run_benchmark(arguments: argparse.Namespace, command: str) -> dict[str, Any]:
    phases_to_run = parse_phases(arguments.phases)
    check_inputs(arguments)
    settings = plan_settings(arguments)
    mode = "quick" if arguments.quick else "full"
    started = time.perf_counter()
    load = {"start": load_average()}
    say(f"{mode} run: phases {', '.join(phases_to_run)}; load average {load['start']}")
    results: dict[str, Any] = {name: None for name in PHASES}
    paced = "keras" in phases_to_run and "lightning" in phases_to_run
    for phase in phases_to_run:
        if paced and phase == "keras":
            say("--- keras and lightning (one process each), training epochs taking turns")
            epochs = settings["warmup_epochs"] + settings["timed_epochs"]
            results["keras"], results["lightning"] = run_paced_training_phases(
                phase_settings("keras", settings, arguments.quick),
                phase_settings("lightning", settings, arguments.quick), epochs)
            load["keras"], load["lightning"] = (results[name].get("load_average") for name in ("keras", "lightning"))
            continue
        if paced and phase == "lightning":
            continue
        say(f"--- {phase} (own process)")
        results[phase] = run_phase(phase, phase_settings(phase, settings, arguments.quick))
        load[phase] = results[phase].get("load_average")
    prepare_command = None
    if "prepare" in phases_to_run and not arguments.quick:
        say("--- python -m data.prepare, cold and cached, start-up included")
        prepare_command = time_prepare_command(settings["raw_dir"], settings["config"])
    load["end"] = load_average()
    result = build_result(results, mode=mode, command=command, settings=settings, machine=describe_machine(),
                          versions=library_versions(), load=load,
                          date=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                          prepare_command=prepare_command)
    result["total_seconds"] = time.perf_counter() - started
    return result


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.report import render_markdown, write_page
    from configs.console import emit_json

    arguments = build_argument_parser().parse_args(argv)
    command = "python -m benchmarks.run" + ("" if argv is None and len(sys.argv) < 2 else
                                            " " + shlex.join(list(argv if argv is not None else sys.argv[1:])))
    try:
        result = run_benchmark(arguments, command)
    except RuntimeError as error:  # a phase failed: its own messages are above; one line and status 1 here
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    if not arguments.no_page:
        path = write_page(arguments.output, render_markdown(result))
        say(f"wrote {path}")
    if arguments.json:
        emit_json(result)
    else:
        from benchmarks.report import summary_lines

        print("\n".join(summary_lines(result)), flush=True)
    return 0


if __name__ == "__main__":
    from configs.console import run_main

    raise SystemExit(run_main(main))
