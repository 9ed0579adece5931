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
import contextlib
import dataclasses
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

# The trip the scorers are timed on: route 501 eastbound, Friday 2019-06-21 at 18:00 (inside the data's dates).
SCORING_TRIP = {"route": 501, "direction": "e", "date": "2019-06-21", "hour": 18}
# The book's experiment 3 of figure 6.21: 50 epochs, balanced class weights, no early stopping.
BENCHMARK_EXPERIMENT = "3"

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
    "one_step_per_batch_check": True,  # fast engine: time the fit again with steps_per_execution 1
    "autograd_variant_check": True,    # fast engine: time the fit again with gradients="autograd"
    "other_engine_check": True,        # time the Lightning fit again on the engine the product does not use
    "pace_dir": None,               # set by benchmarks.run: the folder of the epoch-by-epoch pacing files
}


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def resolve_settings(given: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(given) - set(DEFAULT_SETTINGS))
    if unknown:
        raise ValueError(f"unknown benchmark setting(s) {', '.join(unknown)}; valid: {', '.join(DEFAULT_SETTINGS)}")
    return {**DEFAULT_SETTINGS, **given}


# --------------------------------------------------------------------------
# Pacing: the two frameworks' training epochs, alternated by benchmarks.run
# --------------------------------------------------------------------------
#
# The Keras and Lightning workers run at the same time, but their training
# epochs take turns: before each epoch a worker writes "at-<framework>-<step>"
# into the pace folder and waits for benchmarks.run to write
# "go-<framework>-<step>"; the parent lets one worker run one epoch while the
# other waits.  After its last paced epoch a worker waits at step "rest"
# until the parent lets it finish (validation, scoring, scaling), one worker
# after the other.  So the epochs of the two frameworks are timed in
# alternation, under the same machine conditions, and never overlap - a
# shared or throttled CPU moves both sides of the ratio alike instead of
# whichever phase happened to run second.

PACE_POLL_SECONDS = 0.02     # a waiting worker wakes 50 times a second: ~1 % of a core
# {framework: [(start, end) Unix time of every epoch of the paced fit, warm-up included]}
PACED_INTERVALS: dict[str, list[tuple[float, float]]] = {}
PACE_TIMEOUT_SECONDS = 3600.0


def pace_point(settings: Mapping[str, Any], framework: str, step: str) -> None:
    """Announce `step` and block until benchmarks.run releases it (no-op without a pace folder)."""
    folder = settings.get("pace_dir")
    if not folder:
        return
    folder = Path(folder)
    (folder / f"at-{framework}-{step}").touch()
    release = folder / f"go-{framework}-{step}"
    deadline = time.monotonic() + PACE_TIMEOUT_SECONDS
    while not release.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"benchmark pacing: {release} did not appear within {PACE_TIMEOUT_SECONDS:.0f} s")
        time.sleep(PACE_POLL_SECONDS)


def keras_pacer(settings: Mapping[str, Any]):
    """A Keras callback that waits for its turn before every epoch (listed before the timer)."""
    import keras

    class Pacer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            pace_point(settings, "keras", str(epoch))

    return Pacer()


def lightning_pacer(settings: Mapping[str, Any]):
    """A Lightning callback that waits for its turn before every training epoch (listed before the timer)."""
    import lightning as L

    class Pacer(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            pace_point(settings, "lightning", str(trainer.current_epoch))

    return Pacer()


# --------------------------------------------------------------------------
# Measuring helpers
# --------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


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


def benchmark_request(settings: Mapping[str, Any], epochs: int):
    """The RunRequest of experiment 3 with `epochs` epochs: what both trainers are given."""
    from configs.cli import RunRequest
    from configs.loader import resolve_experiment

    config = load_config_for(settings)
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


# --------------------------------------------------------------------------
# Phase: keras
# --------------------------------------------------------------------------


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


def keras_epoch_timer():
    """A Keras callback that times each epoch (on_epoch_begin -> on_epoch_end) on an EpochClock."""
    import keras

    class EpochTimer(keras.callbacks.Callback, EpochClock):
        def __init__(self):
            keras.callbacks.Callback.__init__(self)
            EpochClock.__init__(self)

        def on_epoch_begin(self, epoch, logs=None):
            self.start()

        def on_epoch_end(self, epoch, logs=None):
            self.stop()

    return EpochTimer()


def keras_fit_epochs(settings: Mapping[str, Any], dataset, warmup: int,
                     timed: int, paced: bool = False) -> tuple[Any, list[float], list[float]]:
    """Fit a fresh model for warmup + timed epochs on the train split: (model, wall and CPU seconds of the timed epochs)."""
    from keras_impl.data import build_fit_arguments
    from keras_impl.runtime import make_repeatable
    from keras_impl.train import build_compiled_model, resolve_class_weight

    request = benchmark_request(settings, warmup + timed)
    config = request.config
    if config.general.repeatable_run:
        make_repeatable(config.general.seed)   # as keras_impl.train does (deterministic TF ops)
    class_weight = resolve_class_weight(request, dataset)
    model = build_compiled_model(request, dataset)
    arguments = build_fit_arguments(dataset, batch_size=config.hyperparameters.batch_size, seed=config.general.seed,
                                    epochs=warmup + timed, class_weight=class_weight,
                                    batch_order=config.general.batch_order)
    # Training only: the validation pass is timed separately (run_keras_validation).
    arguments.pop("validation_data")
    arguments.pop("validation_batch_size")
    timer = keras_epoch_timer()
    model.fit(**arguments, callbacks=[keras_pacer(settings), timer] if paced else [timer], verbose=0)
    if paced:
        PACED_INTERVALS["keras"] = timer.intervals
    return model, timer.seconds[warmup:], timer.cpu_seconds[warmup:]


def run_keras_validation(settings: Mapping[str, Any], model, dataset) -> list[float]:
    from keras_impl.data import split_inputs

    config = load_config_for(settings)
    inputs, target = split_inputs(dataset, "valid")
    batch_size = config.hyperparameters.batch_size
    return timed_calls(lambda: model.evaluate(inputs, target, batch_size=batch_size, verbose=0),
                       settings["validation_warmup"], settings["validation_repeats"])


def run_keras_scoring(settings: Mapping[str, Any], model, dataset) -> dict[str, Any]:
    """Save and reload the model, then time keras_impl.score.TripScorer.score on one trip.

    TripScorer is the project's call for scoring trips one at a time from an
    already-loaded model: the model call traced once with tf.function.  The
    other Keras calls are timed on the same loaded model for the comparison
    the issue asks for (model.predict on one row, predict_on_batch, an eager
    model(inputs) - the one-shot CLI's call, which pays no trace).
    """
    from keras_impl.score import (TripScorer, check_vocabulary_fits, load_scoring_model, measure_scoring_latency,
                                  resolve_vocabulary, trip_inputs)
    from data.vocab import encode_trip

    with tempfile.TemporaryDirectory(prefix="bench-keras-score-") as folder:
        model_path = Path(folder) / "model.keras"
        model.save(str(model_path))
        dataset.vocabularies.save(Path(folder) / "vocabulary.json")
        started = time.perf_counter()
        loaded = load_scoring_model(model_path)
        vocabularies = resolve_vocabulary(model_path)
        check_vocabulary_fits(loaded, vocabularies, str(model_path))
        load_seconds = time.perf_counter() - started
    scorer = TripScorer(loaded, vocabularies)
    started = time.perf_counter()
    result = scorer.score(**SCORING_TRIP)          # the first call traces the model once
    first_call_seconds = time.perf_counter() - started
    milliseconds = timed_milliseconds(lambda: scorer.score(**SCORING_TRIP),
                                      settings["score_warmup_calls"], settings["score_calls"])
    encoded = encode_trip(vocabularies, **SCORING_TRIP)
    # measure_scoring_latency times `repeats` eager calls and max(3, repeats // 10) model.predict calls.
    comparison = measure_scoring_latency(
        loaded, encoded, repeats=min(settings["score_calls"], max(10, settings["predict_calls"] * 10)))
    inputs = trip_inputs(encoded)
    # predict_on_batch runs the compiled predict function (traced once) without predict()'s data pipeline.
    on_batch = timed_milliseconds(lambda: loaded.predict_on_batch(inputs), settings["score_warmup_calls"],
                                  settings["score_calls"])
    return {"milliseconds": milliseconds, "load_seconds": load_seconds, "probability": result["probability"],
            "call": "keras_impl.score.TripScorer.score", "first_call_seconds": first_call_seconds,
            "predict_p50_ms": comparison["predict_p50_ms"], "direct_p50_ms_scorer": comparison["direct_p50_ms"],
            "predict_on_batch_p50_ms": float(np.median(on_batch))}


def run_keras(settings: Mapping[str, Any]) -> dict[str, Any]:
    from keras_impl.runtime import native_logs_silenced, start_tensorflow

    load_before = load_average()
    device = start_tensorflow()
    with native_logs_silenced():
        import keras
        import tensorflow as tf

        dataset = load_dataset(settings)
        seed = load_config_for(settings).general.seed
        rss_before_training = current_rss_mb()
        train_rows = int(len(dataset.splits["train"]))
        say(f"keras: {settings['warmup_epochs']} warm-up + {settings['timed_epochs']} timed epoch(s) "
            f"on {train_rows:,} train rows, device {device}")
        model, epoch_seconds, epoch_cpu_seconds = keras_fit_epochs(settings, dataset, settings["warmup_epochs"],
                                                                   settings["timed_epochs"], paced=True)
        training_peak = peak_rss_mb()
        pace_point(settings, "keras", "rest")
        say(f"keras: epochs {[round(value, 2) for value in epoch_seconds]} s; validation pass")
        validation_seconds = run_keras_validation(settings, model, dataset)
        say(f"keras: validation {[round(value, 2) for value in validation_seconds]} s; scoring")
        scoring = run_keras_scoring(settings, model, dataset)
        scaling = []
        for rows in scaling_row_counts(train_rows, settings["scaling_fractions"]):
            subset = with_train_rows(dataset, rows, seed)
            _, seconds, cpu_seconds = keras_fit_epochs(settings, subset, settings["scaling_warmup_epochs"],
                                                       settings["scaling_timed_epochs"])
            say(f"keras scaling: {rows:,} rows {[round(value, 2) for value in seconds]} s")
            scaling.append({"train_rows": rows, "epoch_seconds": seconds, "epoch_cpu_seconds": cpu_seconds})
        scaling.append({"train_rows": train_rows, "epoch_seconds": epoch_seconds,
                        "epoch_cpu_seconds": epoch_cpu_seconds})
        threads = {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                   "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
                   "note": "0 = TensorFlow's default: one thread per core"}
        versions = {"tensorflow": tf.__version__, "keras": keras.__version__}
    return {"framework": "keras", "device": device, "train_rows": train_rows, "epoch_seconds": epoch_seconds,
            "epoch_cpu_seconds": epoch_cpu_seconds,
            "validation_seconds": validation_seconds, "validation_rows": int(len(dataset.splits["valid"])),
            "scoring": scoring, "scaling": scaling, "peak_rss_mb": training_peak,
            "rss_before_training_mb": rss_before_training, "peak_rss_mb_end": peak_rss_mb(),
            "threads": threads, "versions": versions, "dataset": dataset_facts(dataset),
            "load_average": {"before": load_before, "after": load_average()}}


# --------------------------------------------------------------------------
# Phase: lightning
# --------------------------------------------------------------------------


def lightning_epoch_timer():
    """A Lightning callback that times each training epoch (start -> end hook) on an EpochClock."""
    import lightning as L

    class EpochTimer(L.Callback, EpochClock):
        def __init__(self):
            L.Callback.__init__(self)
            EpochClock.__init__(self)

        def on_train_epoch_start(self, trainer, pl_module):
            self.start()

        def on_train_epoch_end(self, trainer, pl_module):
            self.stop()

    return EpochTimer()


def lightning_trainer(settings: Mapping[str, Any], accelerator: str, epochs: int, callbacks: list, *,
                      validate_during_fit: bool):
    """A real lightning Trainer as lightning_impl.train builds one, minus the run's outputs.

    Progress bar, logger, checkpointing and model summary are off: they are
    the run's outputs, not its training cost.  Validation during fit is off
    so that an epoch is training only (the validation pass is timed on its own).
    """
    import lightning as L

    config = load_config_for(settings)
    # As lightning_impl.train: deterministic algorithms when general.repeatable_run.
    options = dict(accelerator=accelerator, devices=1, max_epochs=int(epochs), logger=False,
                   deterministic=bool(config.general.repeatable_run),
                   enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                   num_sanity_val_steps=0, use_distributed_sampler=False, callbacks=callbacks)
    if not validate_during_fit:
        options["limit_val_batches"] = 0
    return L.Trainer(**options)


def product_engine(settings: Mapping[str, Any]) -> str:
    """The engine lightning_impl.train trains with: lightning.engine of the config (configs.loader.ENGINES)."""
    return load_config_for(settings).lightning.engine


def engine_settings(engine: str, steps_per_execution: int | None = None, gradients: str | None = None
                    ) -> tuple[int, str]:
    """(SGD updates per Lightning step, how gradients are computed) as lightning_impl.train runs `engine`."""
    from lightning_impl.train import engine_options

    steps, gradient_mode = engine_options(engine, steps_per_execution, gradients)
    return steps, gradient_mode or "autograd"      # the plain engine: loss.backward() in Lightning's loop


def lightning_module_and_data(settings: Mapping[str, Any], dataset, epochs: int, steps_per_execution: int | None = None,
                              gradients: str | None = None, engine: str | None = None):
    """The project's LightningModule and DataModule for experiment 3, as lightning_impl.train makes them.

    engine None: the product's (the config's lightning.engine); steps_per_execution /
    gradients None: that engine's defaults (fast-engine options: an error with the plain one).
    """
    import lightning as L

    from lightning_impl.datamodule import StreetcarDataModule
    from lightning_impl.train import engine_options, lightning_module_class, resolve_class_weight

    request = benchmark_request(settings, epochs)
    config = request.config
    hyper = config.hyperparameters
    engine = engine or config.lightning.engine
    steps_per_execution, gradients = engine_options(engine, steps_per_execution, gradients)
    if config.general.repeatable_run:
        L.seed_everything(config.general.seed, workers=True, verbose=False)
    class_weight = resolve_class_weight(request, dataset)
    module = lightning_module_class(engine)(
        dataset.vocab_sizes, dataset.vocabularies.to_json_dict(), embedding_dim=hyper.embedding_dim,
        dropout_rate=hyper.dropout_rate, output_activation=hyper.output_activation,
        learning_rate=hyper.learning_rate, zero_weight=class_weight[0], one_weight=class_weight[1],
        **({"gradients": gradients} if engine == "fast" else {}))
    datamodule = StreetcarDataModule(dataset, batch_size=hyper.batch_size, batch_order=config.general.batch_order,
                                     seed=config.general.seed, class_weight=class_weight,
                                     steps_per_execution=steps_per_execution)
    return module, datamodule


def lightning_fit_epochs(settings: Mapping[str, Any], dataset, warmup: int, timed: int,
                         accelerator: str = "cpu", steps_per_execution: int | None = None, paced: bool = False,
                         gradients: str | None = None, engine: str | None = None
                         ) -> tuple[Any, Any, Any, list[float], list[float]]:
    """Trainer.fit for warmup + timed epochs: (trainer, module, datamodule, wall and CPU seconds of the timed epochs)."""
    module, datamodule = lightning_module_and_data(settings, dataset, warmup + timed, steps_per_execution, gradients,
                                                   engine)
    timer = lightning_epoch_timer()
    callbacks = [lightning_pacer(settings), timer] if paced else [timer]
    trainer = lightning_trainer(settings, accelerator, warmup + timed, callbacks, validate_during_fit=False)
    trainer.fit(module, datamodule=datamodule)
    if paced:
        PACED_INTERVALS["lightning"] = timer.intervals
    return trainer, module, datamodule, timer.seconds[warmup:], timer.cpu_seconds[warmup:]


def run_lightning_validation(settings: Mapping[str, Any], module, datamodule, accelerator: str) -> list[float]:
    trainer = lightning_trainer(settings, accelerator, 1, [], validate_during_fit=True)
    return timed_calls(lambda: trainer.validate(module, datamodule=datamodule, verbose=False),
                       settings["validation_warmup"], settings["validation_repeats"])


def run_lightning_scoring(settings: Mapping[str, Any], trainer, dataset) -> dict[str, Any]:
    """Save a checkpoint, load it with lightning_impl.score, and time score_trip on one trip."""
    from lightning_impl.score import load_scoring_model, score_trip

    with tempfile.TemporaryDirectory(prefix="bench-lightning-score-") as folder:
        checkpoint = Path(folder) / "model.ckpt"
        trainer.save_checkpoint(str(checkpoint))
        started = time.perf_counter()
        net, vocabularies = load_scoring_model(checkpoint)
        load_seconds = time.perf_counter() - started
    result = score_trip(net, vocabularies, **SCORING_TRIP)
    milliseconds = timed_milliseconds(lambda: score_trip(net, vocabularies, **SCORING_TRIP),
                                      settings["score_warmup_calls"], settings["score_calls"])
    return {"milliseconds": milliseconds, "load_seconds": load_seconds, "probability": result["probability"],
            "call": "lightning_impl.score.score_trip"}


@contextlib.contextmanager
def torch_threads(count: int | None):
    """Run the block with `count` torch intra-op threads (None: leave them), restoring them after."""
    import torch

    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def product_cpu_threads() -> int | None:
    """The torch thread count lightning_impl.train trains with on a CPU (None: torch's default)."""
    import lightning_impl.train as lightning_train

    # getattr: an older lightning_impl.train without the setting trains with torch's default.
    return getattr(lightning_train, "DEFAULT_CPU_THREADS", None)


@contextlib.contextmanager
def detached_from_trainer(module):
    """The module with no Trainer attached, so that training_step only computes the loss.

    The fast engine (lightning_impl.fast.system) optimises manually: attached
    to a Trainer, its training_step also runs zero_grad, backward and the SGD
    step; detached it only computes the loss, as the plain engine's does,
    which is what a plain loop needs.
    """
    attached = getattr(module, "_trainer", None)
    module.trainer = None
    try:
        yield module
    finally:
        module.trainer = attached


def plain_training_steps(module, datamodule, epoch: int, steps: int | None = None) -> tuple[float, float, int]:
    """(wall s, CPU s, steps) of Keras's train step over the same DataLoader, without the Trainer.

    Each step is what Trainer.fit makes the module do for one batch (a list
    of batches from steps_per_execution > 1 is taken batch by batch): with
    closed-form gradients (fast engine) the module's closed_form_step
    (forward, loss, gradients, metric bookkeeping) and one SGD step; with
    autograd (either engine) the loss (forward, metric bookkeeping),
    zero_grad, backward and one SGD step.
    """
    optimizer = module.configure_optimizers()
    loader = datamodule.train_dataloader()
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    module.train()
    done = 0
    closed_form = module.hparams.get("gradients") == "closed_form"
    with detached_from_trainer(module):
        started, cpu_started = time.perf_counter(), time.process_time()
        for group in loader:
            if steps is not None and done >= steps:
                break                              # not only the group: the loader gathers every group it yields
            for batch in (group if isinstance(group, list) else (group,)):
                if steps is not None and done >= steps:
                    break
                if closed_form:
                    module.closed_form_step(batch)
                else:
                    loss = module.training_step(batch, done)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                optimizer.step()
                done += 1
        module.train_metrics.compute()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    module.train_metrics.reset()
    return wall, cpu, done


def torch_profile_steps(module, datamodule, steps: int, top: int = 8) -> list[dict[str, Any]]:
    """The torch profiler's top operators by self CPU time over `steps` plain training steps."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        _, _, done = plain_training_steps(module, datamodule, 0, steps)
    events = sorted(profiler.key_averages(), key=lambda event: event.self_cpu_time_total, reverse=True)
    total = sum(event.self_cpu_time_total for event in events) or 1.0
    # self_cpu_time_total is in microseconds.
    return [{"operator": event.key, "calls": int(event.count),
             "self_cpu_ms_per_step": event.self_cpu_time_total / 1000.0 / max(done, 1),
             "share": event.self_cpu_time_total / total} for event in events[:top]]


def profile_lightning(settings: Mapping[str, Any], module, datamodule, trainer_epoch_seconds: float,
                      trainer_epoch_cpu_seconds: float) -> dict[str, Any]:
    """Where a Lightning epoch goes: the same steps without the Trainer, and the torch profiler's top operators.

    The overhead is given in wall and in process CPU time: on a shared
    machine the wall figure of a single epoch moves with the neighbours' load,
    the CPU figure much less.
    """
    import torch

    plain = [plain_training_steps(module, datamodule, epoch)[:2]
             for epoch in range(int(settings["profile_plain_epochs"]))]
    plain_wall = float(np.median([wall for wall, _ in plain]))
    plain_cpu = float(np.median([cpu for _, cpu in plain]))
    batches = len(datamodule.train_dataloader().sampler)     # SGD steps (batches), not Lightning steps
    return {"plain_loop_epoch_seconds": [wall for wall, _ in plain],
            "plain_loop_epoch_cpu_seconds": [cpu for _, cpu in plain],
            "trainer_epoch_seconds": trainer_epoch_seconds, "trainer_epoch_cpu_seconds": trainer_epoch_cpu_seconds,
            "trainer_overhead_seconds": trainer_epoch_seconds - plain_wall,
            "trainer_overhead_cpu_seconds": trainer_epoch_cpu_seconds - plain_cpu,
            "trainer_overhead_ms_per_step": (trainer_epoch_seconds - plain_wall) * 1000.0 / max(batches, 1),
            "trainer_overhead_cpu_ms_per_step": (trainer_epoch_cpu_seconds - plain_cpu) * 1000.0 / max(batches, 1),
            "plain_ms_per_step": plain_wall * 1000.0 / max(batches, 1),
            "plain_cpu_ms_per_step": plain_cpu * 1000.0 / max(batches, 1), "steps_per_epoch": batches,
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "manual_optimization": not getattr(module, "automatic_optimization", True),
            "gradients": module.hparams.get("gradients", "autograd"),
            "top_operators": torch_profile_steps(module, datamodule, int(settings["profile_steps"]))}


def run_lightning(settings: Mapping[str, Any]) -> dict[str, Any]:
    import logging
    import warnings

    load_before = load_average()
    import lightning
    import torch

    # Lightning's INFO lines ("GPU available: False", tips, "max_epochs reached") repeat for every
    # Trainer this phase builds; warnings and errors still show.
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Lightning's advice lines (num_workers, GPU available but unused) are about other set-ups.
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")

    dataset = load_dataset(settings)
    seed = load_config_for(settings).general.seed
    rss_before_training = current_rss_mb()
    train_rows = int(len(dataset.splits["train"]))
    default_threads = torch.get_num_threads()
    # CPU work runs with the thread count lightning_impl.train sets for CPU training (and
    # lightning_impl.score for scoring): that is the product path being timed.
    cpu_threads = product_cpu_threads()
    engine = product_engine(settings)
    steps_per_execution, gradients = engine_settings(engine)
    with torch_threads(cpu_threads):
        used_threads = torch.get_num_threads()
        say(f"lightning: {settings['warmup_epochs']} warm-up + {settings['timed_epochs']} timed epoch(s) "
            f"on {train_rows:,} train rows, cpu, {used_threads} torch thread(s), {engine} engine, "
            f"{steps_per_execution} batch(es) per Lightning step, {gradients} gradients")
        trainer, module, datamodule, epoch_seconds, epoch_cpu_seconds = lightning_fit_epochs(
            settings, dataset, settings["warmup_epochs"], settings["timed_epochs"], "cpu", paced=True)
        training_peak = peak_rss_mb()
        pace_point(settings, "lightning", "rest")
        say(f"lightning: epochs {[round(value, 2) for value in epoch_seconds]} s; validation pass")
        validation_seconds = run_lightning_validation(settings, module, datamodule, "cpu")
        say(f"lightning: validation {[round(value, 2) for value in validation_seconds]} s; scoring")
        scoring = run_lightning_scoring(settings, trainer, dataset)
        say("lightning: profile")
        profile = profile_lightning(settings, module, datamodule, float(np.median(epoch_seconds)),
                                    float(np.median(epoch_cpu_seconds)))
        say(f"lightning: the same steps without the Trainer "
            f"{[round(value, 2) for value in profile['plain_loop_epoch_seconds']]} s")
        scaling = []
        for rows in scaling_row_counts(train_rows, settings["scaling_fractions"]):
            subset = with_train_rows(dataset, rows, seed)
            *_, seconds, cpu_seconds = lightning_fit_epochs(settings, subset, settings["scaling_warmup_epochs"],
                                                            settings["scaling_timed_epochs"], "cpu")
            say(f"lightning scaling: {rows:,} rows {[round(value, 2) for value in seconds]} s")
            scaling.append({"train_rows": rows, "epoch_seconds": seconds, "epoch_cpu_seconds": cpu_seconds})
        scaling.append({"train_rows": train_rows, "epoch_seconds": epoch_seconds,
                        "epoch_cpu_seconds": epoch_cpu_seconds})
        # The same fit with one Lightning step per batch: what the grouping is worth.
        one_step = None
        if steps_per_execution != 1 and settings["one_step_per_batch_check"]:
            *_, one_wall, one_cpu = lightning_fit_epochs(settings, dataset, settings["warmup_epochs"],
                                                         settings["timed_epochs"], "cpu", steps_per_execution=1)
            one_step = {"steps_per_execution": 1, "epoch_seconds": one_wall, "epoch_cpu_seconds": one_cpu}
            say(f"lightning, one Lightning step per batch: epochs {[round(value, 2) for value in one_wall]} s")
        # The same fit with loss.backward(): what the closed-form gradients are worth.
        autograd = None
        if engine == "fast" and gradients != "autograd" and settings["autograd_variant_check"]:
            *_, autograd_wall, autograd_cpu = lightning_fit_epochs(
                settings, dataset, settings["warmup_epochs"], settings["timed_epochs"], "cpu", gradients="autograd")
            autograd = {"gradients": "autograd", "epoch_seconds": autograd_wall, "epoch_cpu_seconds": autograd_cpu}
            say(f"lightning, autograd gradients: epochs {[round(value, 2) for value in autograd_wall]} s")
        # The same fit on the other engine with its defaults: what the fast engine is worth.
        other_engine = None
        if settings["other_engine_check"]:
            other = "fast" if engine == "plain" else "plain"
            *_, other_wall, other_cpu = lightning_fit_epochs(
                settings, dataset, settings["warmup_epochs"], settings["timed_epochs"], "cpu", engine=other)
            other_engine = {"engine": other, "steps_per_execution": engine_settings(other)[0],
                            "gradients": engine_settings(other)[1], "epoch_seconds": other_wall,
                            "epoch_cpu_seconds": other_cpu}
            say(f"lightning, {other} engine: epochs {[round(value, 2) for value in other_wall]} s")

    # The same fit with torch's default thread count, to show what the product's setting is worth.
    thread_variant = None
    if settings["thread_variant_check"] and default_threads != used_threads:
        with torch_threads(default_threads):
            *_, variant_wall, variant_cpu = lightning_fit_epochs(settings, dataset, settings["warmup_epochs"],
                                                                 settings["timed_epochs"], "cpu")
        thread_variant = {"torch_threads": default_threads, "epoch_seconds": variant_wall,
                          "epoch_cpu_seconds": variant_cpu}
        say(f"lightning, {default_threads} torch threads: epochs {[round(value, 2) for value in variant_wall]} s")

    gpu = None
    if settings["use_gpu"] and torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        say(f"lightning: GPU {name}: {settings['warmup_epochs']} warm-up + {settings['timed_epochs']} timed epoch(s)")
        torch.cuda.reset_peak_memory_stats()
        _, gpu_module, gpu_datamodule, gpu_epochs, _ = lightning_fit_epochs(
            settings, dataset, settings["warmup_epochs"], settings["timed_epochs"], "gpu")
        gpu_validation = run_lightning_validation(settings, gpu_module, gpu_datamodule, "gpu")
        gpu = {"device": f"cuda:0 ({name})", "epoch_seconds": gpu_epochs, "validation_seconds": gpu_validation,
               "peak_gpu_memory_mb": torch.cuda.max_memory_allocated() / 2**20}
        say(f"lightning GPU: epochs {[round(value, 3) for value in gpu_epochs]} s, "
            f"validation {[round(value, 3) for value in gpu_validation]} s")
    threads = {"intra_op": used_threads, "inter_op": torch.get_num_interop_threads(),
               "torch_default": default_threads,
               "note": "intra-op threads as lightning_impl.train sets them for CPU training"}
    versions = {"torch": torch.__version__, "lightning": lightning.__version__}
    try:
        import torchmetrics

        versions["torchmetrics"] = torchmetrics.__version__
    except ImportError:
        pass
    return {"framework": "lightning", "device": "cpu", "train_rows": train_rows, "epoch_seconds": epoch_seconds,
            "epoch_cpu_seconds": epoch_cpu_seconds,
            "validation_seconds": validation_seconds, "validation_rows": int(len(dataset.splits["valid"])),
            "scoring": scoring, "scaling": scaling, "peak_rss_mb": training_peak, "profile": profile,
            "thread_variant": thread_variant, "steps_per_execution": steps_per_execution,
            "one_step_per_batch": one_step, "gradients": gradients, "autograd_gradients": autograd,
            "engine": engine, "other_engine": other_engine,
            "rss_before_training_mb": rss_before_training, "peak_rss_mb_end": peak_rss_mb(), "gpu": gpu,
            "threads": threads, "versions": versions, "dataset": dataset_facts(dataset),
            "load_average": {"before": load_before, "after": load_average()}}


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
