"""What every benchmark phase measures with: clocks, memory, the dataset and the experiment it trains.

The phases (benchmarks._worker, benchmarks.keras_phase, benchmarks.lightning_phase)
time the book's experiment 3 (BENCHMARK_EXPERIMENT) on the prepared data, and
score SCORING_TRIP; each epoch is timed on an EpochClock.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from benchmarks import say


# The trip the scorers are timed on: route 501 eastbound, Friday 2019-06-21 at 18:00 (inside the data's dates).
SCORING_TRIP = {"route": 501, "direction": "e", "date": "2019-06-21", "hour": 18}
# The book's experiment 3 of figure 6.21: 50 epochs, balanced class weights, no early stopping.
BENCHMARK_EXPERIMENT = "3"


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def timed_calls(call: Callable[[], Any], warmup: int, repeats: int) -> list[float]:
    """Seconds of each of `repeats` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return seconds


def timed_milliseconds(call: Callable[[], Any], warmup: int, repeats: int) -> list[float]:
    return [value * 1000.0 for value in timed_calls(call, warmup, repeats)]


class EpochClock:
    """Wall time, process CPU time (all threads: less moved by neighbours) and the Unix-time interval
    (comparable across processes) of each epoch; the framework callbacks below call start / stop."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []
        self.intervals: list[tuple[float, float]] = []
        self._clock = self._started = self._cpu_started = 0.0

    def start(self) -> None:
        self._clock = time.time()
        self._started, self._cpu_started = time.perf_counter(), time.process_time()

    def stop(self) -> None:
        self.seconds.append(time.perf_counter() - self._started)
        self.cpu_seconds.append(time.process_time() - self._cpu_started)
        self.intervals.append((self._clock, time.time()))


class MemoryWatch:
    """The peak resident memory of this process (MiB) while the block runs.

    getrusage's peak only grows over the process's life; this gives each
    configuration timed in one worker its own peak, polled by the sampler the
    parent uses on whole workers (benchmarks.processes.TreeMemorySampler).
    """

    def __init__(self, interval: float = 0.05) -> None:
        from benchmarks.processes import TreeMemorySampler

        self.peak_mb = 0.0
        self._sampler = TreeMemorySampler(os.getpid(), interval)

    def __enter__(self) -> "MemoryWatch":
        self._sampler.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.peak_mb = max(self._sampler.stop(), current_rss_mb())


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def load_config_for(settings: Mapping[str, Any]):
    from configs.loader import load_config

    return load_config(settings["config"])


def load_dataset(settings: Mapping[str, Any]):
    """The prepared dataset the trainers use (default cache), sampled when settings ask."""
    from data import load_prepared

    config = load_config_for(settings)
    dataset = load_prepared(config, raw_dir=settings["raw_dir"], progress=False)
    if settings["sample_rows"] is not None:
        dataset = dataset.sample(int(settings["sample_rows"]), config.general.seed)
    return dataset


def with_train_rows(dataset, rows: int, seed: int):
    """The dataset with its train split cut to a seeded subset of `rows` rows (valid and test kept).

    The subset keeps stored order, as the full split does, so the shared
    batch order is drawn over it exactly as over the full split.
    """
    train = dataset.splits["train"]
    if not 1 <= rows <= len(train):
        raise ValueError(f"train rows must be within 1..{len(train)}, got {rows}")
    if rows == len(train):
        return dataset
    chosen = np.sort(np.random.default_rng(seed).choice(train, size=rows, replace=False))
    return dataclasses.replace(dataset, splits={**dataset.splits, "train": chosen})


def scaling_row_counts(train_rows: int, fractions: Sequence[float]) -> list[int]:
    counts = []
    for fraction in fractions:
        if not 0 < float(fraction) < 1:
            raise ValueError(f"scaling fractions must be within (0, 1), got {fraction}")
        counts.append(max(1, int(round(train_rows * float(fraction)))))
    return counts


def benchmark_request(settings: Mapping[str, Any], epochs: int, overrides: Mapping[str, Any] | None = None):
    """The RunRequest of experiment 3 with `epochs` epochs and a configuration's config `overrides`."""
    from configs.cli import RunRequest
    from configs.loader import override, resolve_experiment

    config = load_config_for(settings)
    for key, value in (overrides or {}).items():
        config = override(config, key, value)
    experiment = resolve_experiment(config, BENCHMARK_EXPERIMENT)
    if experiment.early_stop:
        raise ValueError(f"experiment {BENCHMARK_EXPERIMENT} must not stop early for a per-epoch benchmark")
    experiment = dataclasses.replace(experiment, epochs=int(epochs))
    return RunRequest(config=config, settings=experiment, sample_rows=None,
                      raw_dir=settings["raw_dir"], json=True)


def dataset_facts(dataset) -> dict[str, Any]:
    report = dataset.report
    date_range = report.get("date_range") or {}
    return {"rows": dataset.n_rows, "splits": {name: int(len(rows)) for name, rows in dataset.splits.items()},
            "date_range": date_range, "days": date_range.get("days")}


def time_scaling(settings: Mapping[str, Any], dataset, framework: str,
                 fit_epochs: Callable[[Any, int, int], tuple[list[float], list[float]]],
                 full: tuple[list[float], list[float]]) -> list[dict[str, Any]]:
    """Epoch seconds on seeded subsets of the train rows (settings "scaling_fractions"), then the full split's.

    `fit_epochs(subset, warmup, timed)` returns (wall, CPU) seconds of the timed
    epochs; `full` is what the phase measured on the whole split.
    """
    seed = load_config_for(settings).general.seed
    train_rows = int(len(dataset.splits["train"]))
    scaling = []
    for rows in scaling_row_counts(train_rows, settings["scaling_fractions"]):
        seconds, cpu_seconds = fit_epochs(with_train_rows(dataset, rows, seed), settings["scaling_warmup_epochs"],
                                          settings["scaling_timed_epochs"])
        say(f"{framework} scaling: {rows:,} rows {[round(value, 2) for value in seconds]} s")
        scaling.append({"train_rows": rows, "epoch_seconds": seconds, "epoch_cpu_seconds": cpu_seconds})
    scaling.append({"train_rows": train_rows, "epoch_seconds": full[0], "epoch_cpu_seconds": full[1]})
    return scaling
