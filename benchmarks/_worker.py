"""One benchmark phase in one process: what `python -m benchmarks.run` actually times.

    python -m benchmarks._worker prepare   --settings '{"prepare_cold_repeats": 1}' --result /tmp/p.json
    python -m benchmarks._worker keras     --settings '{"timed_epochs": 1}'         --result /tmp/k.json
    python -m benchmarks._worker lightning --settings '{"timed_epochs": 1}'         --result /tmp/l.json

benchmarks.run starts one of these per phase, so TensorFlow and torch never
share a process: each has its own thread pools, and the peak resident memory
a phase reports (getrusage's ru_maxrss) is that framework's alone.  The
result goes to the --result file as JSON (stdout is not used: Keras and
Lightning print there); progress lines go to stderr.

What each phase measures, every figure after a warm-up:

prepare    data.prepare.load_prepared(rebuild=True) into a temporary cache:
           cold, from the six workbooks (read, clean, grid, encode, split,
           write Parquet); then load_prepared() from that cache: cached load.
keras      the book's experiment 3 (balanced class weights, batch 1000, no
           early stopping) through the project's Keras path: build_model +
           compile_model, keras_impl.data.build_fit_arguments (shared batch
           order, class weights as per-row sample weights), Model.fit; each
           epoch timed by a callback from on_epoch_begin to on_epoch_end.
           fit runs without validation data so that an epoch is training
           only; the validation pass is timed on its own (model.evaluate on
           the valid split, batch 1000).  Then one-off scoring through
           keras_impl.score (load_scoring_model, score_trip) on a saved and
           reloaded model.
lightning  the same experiment through lightning_impl: its LightningModule
           and DataModule in a real lightning Trainer.fit (progress bar,
           logger and checkpointing off, validation off during fit), each
           epoch timed by a callback from on_train_epoch_start to
           on_train_epoch_end; trainer.validate for the validation pass; one-off
           scoring through lightning_impl.score on a saved checkpoint; all
           with the torch thread count lightning_impl.train sets for CPU
           training (DEFAULT_CPU_THREADS).  Then where the epoch goes: the
           same steps in a plain loop without the Trainer and under the torch
           profiler; in the full run also the fit with torch's default thread
           count.  With a GPU, the epoch and the validation pass are measured
           again on it.

Both training phases also time epochs on seeded subsets of the training rows
(settings "scaling_fractions") for the scaling note.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from benchmarks import say
from benchmarks.keras_phase import run_keras
from benchmarks.lightning_phase import run_lightning
from experiment.machine import load_average
from benchmarks.measure import dataset_facts, load_config_for, peak_rss_mb, timed_calls
from benchmarks.pacing import PACED_INTERVALS

DEFAULT_SETTINGS: dict[str, Any] = {
    "config": None,                 # YAML path; None = configs/streetcar.yaml
    "raw_dir": None,                # None = $STREETCAR_RAW_DIR / data/raw/ (data.paths)
    "sample_rows": None,            # a seeded subset of prepared rows (dataset.sample), for tests
    "warmup_epochs": 1,
    "timed_epochs": 3,
    "validation_warmup": 1,
    "validation_repeats": 3,
    "score_warmup_calls": 20,
    "score_calls": 300,
    "predict_calls": 20,            # Keras model.predict on one row, for the comparison only (slow)
    "scaling_fractions": [0.25, 0.5],
    "scaling_warmup_epochs": 1,
    "scaling_timed_epochs": 1,
    "prepare_cold_warmup": 1,
    "prepare_cold_repeats": 2,
    "prepare_cached_warmup": 1,
    "prepare_cached_repeats": 5,
    "use_gpu": True,                # measure Lightning on a GPU too when torch sees one
    "profile_plain_epochs": 1,      # epochs of the same steps without the Trainer (Lightning's overhead)
    "profile_steps": 100,           # training steps under the torch profiler
    "thread_variant_check": False,  # time the Lightning fit again with torch's default thread count
    "pace_dir": None,               # set by benchmarks.run: the folder of the epoch-by-epoch pacing files
}


def resolve_settings(given: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(given) - set(DEFAULT_SETTINGS))
    if unknown:
        raise ValueError(f"unknown benchmark setting(s) {', '.join(unknown)}; valid: {', '.join(DEFAULT_SETTINGS)}")
    return {**DEFAULT_SETTINGS, **given}


# --------------------------------------------------------------------------
# Phase: prepare
# --------------------------------------------------------------------------


def run_prepare(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Cold preparation from the workbooks and cached load, into a temporary cache folder."""
    from data.prepare import load_prepared

    config = load_config_for(settings)
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as cache_dir:
        def cold():
            return load_prepared(config, raw_dir=settings["raw_dir"], cache_dir=cache_dir, progress=False,
                                 rebuild=True)

        def cached():
            dataset = load_prepared(config, raw_dir=settings["raw_dir"], cache_dir=cache_dir, progress=False)
            if not dataset.report["cache"]["hit"]:
                raise RuntimeError("the cached load rebuilt the dataset instead of reading the cache")
            return dataset

        say(f"prepare: cold x{settings['prepare_cold_repeats']} after {settings['prepare_cold_warmup']} warm-up")
        cold_seconds = timed_calls(cold, settings["prepare_cold_warmup"], settings["prepare_cold_repeats"])
        say(f"prepare: cached x{settings['prepare_cached_repeats']}")
        cached_seconds = timed_calls(cached, settings["prepare_cached_warmup"], settings["prepare_cached_repeats"])
        dataset = cached()
    return {"cold_seconds": cold_seconds, "cached_seconds": cached_seconds, "dataset": dataset_facts(dataset),
            "raw_files": len(dataset.report.get("raw_files", [])), "raw_rows": dataset.report.get("raw_rows"),
            "peak_rss_mb": peak_rss_mb(), "load_average": {"before": load_before, "after": load_average()}}


PHASES: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "prepare": run_prepare,
    "keras": run_keras,
    "lightning": run_lightning,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._worker",
                                     description="Run one benchmark phase and write its measurements as JSON.")
    parser.add_argument("phase", choices=sorted(PHASES))
    parser.add_argument("--settings", default="{}", help="JSON object overriding DEFAULT_SETTINGS")
    parser.add_argument("--result", required=True, help="where to write the phase's JSON result")
    arguments = parser.parse_args(argv)
    settings = resolve_settings(json.loads(arguments.settings))
    started = time.perf_counter()
    result = PHASES[arguments.phase](settings)
    result["phase_seconds"] = time.perf_counter() - started
    if arguments.phase in PACED_INTERVALS:
        result["paced_epoch_intervals"] = PACED_INTERVALS[arguments.phase]
    result["python"] = platform.python_version()
    Path(arguments.result).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
