"""Phase keras: the book's experiment 3 through the project's Keras path (see benchmarks._worker's docstring).

Model, class weights and fit arguments come from keras_impl.train and
keras_impl.fit, the builders the trainer itself uses.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from benchmarks import say
from experiment.machine import load_average
from benchmarks.configurations import describe, keras_configurations
from benchmarks.measure import (SCORING_TRIP, EpochClock, MemoryWatch, benchmark_request, current_rss_mb,
                                dataset_facts, load_config_for, load_dataset, peak_rss_mb,
                                time_scaling, timed_calls, timed_milliseconds)
from benchmarks.pacing import PACED_INTERVALS, PaceSteps, keras_pacer

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


def keras_fit_epochs(settings: Mapping[str, Any], dataset, warmup: int, timed: int,
                     pace: PaceSteps | None = None, overrides: Mapping[str, Any] | None = None
                     ) -> tuple[Any, list[float], list[float]]:
    """Fit a fresh model for warmup + timed epochs on the train split: (model, wall and CPU seconds of the timed epochs).

    `overrides` are a configuration's config keys (benchmarks.configurations).
    With `pace`, every epoch waits for its turn (benchmarks.pacing).
    """
    import keras

    from experiment.run import resolve_class_weight
    from keras_impl.train import build_compiled_model, build_fit, seed_run

    request = benchmark_request(settings, warmup + timed, overrides)
    seed_run(request.config)   # as keras_impl.train does (deterministic TF ops when repeatable_run)
    if not request.config.general.repeatable_run:
        keras.utils.set_random_seed(request.config.general.seed)   # seeded, without op determinism
    class_weight = resolve_class_weight(request, dataset)
    model = build_compiled_model(request, dataset)
    arguments = build_fit(request, dataset, class_weight, epochs=warmup + timed)
    # Training only: the validation pass is timed separately (run_keras_validation).
    arguments.pop("validation_data")
    arguments.pop("validation_batch_size")
    timer = keras_epoch_timer()
    model.fit(**arguments, callbacks=[keras_pacer(pace), timer] if pace else [timer], verbose=0)
    if pace:
        PACED_INTERVALS.setdefault("keras", []).extend(timer.intervals)
    return model, timer.seconds[warmup:], timer.cpu_seconds[warmup:]


def time_keras_configurations(settings: Mapping[str, Any], dataset, pace: PaceSteps) -> dict[str, Any]:
    """Each Keras configuration: paced epochs, its validation pass and its peak memory; the default's model.

    The XLA configurations go first: Keras drops XLA once TensorFlow's op
    determinism is on (the others' general.repeatable_run), and the public
    API cannot turn it off again.
    """
    from keras_impl.data import batches_per_epoch

    config = load_config_for(settings)
    batches = batches_per_epoch(len(dataset.splits["train"]), config.hyperparameters.batch_size)
    configurations = sorted(keras_configurations(batches), key=lambda item: "keras.jit_compile" not in item.overrides)
    timings, default_model = {}, None
    for configuration in configurations:
        with MemoryWatch() as memory:
            model, wall, cpu = keras_fit_epochs(settings, dataset, settings["warmup_epochs"],
                                                settings["timed_epochs"], pace, configuration.overrides)
            validation = run_keras_validation(settings, model, dataset)
        timings[configuration.name] = {
            **describe(configuration), "epoch_seconds": wall, "epoch_cpu_seconds": cpu,
            "validation_seconds": validation, "peak_rss_mb": memory.peak_mb,
            "steps_per_execution": int(model.steps_per_execution), "jit_compile": bool(model.jit_compile)}
        say(f"keras, {configuration.label}: epochs {[round(value, 2) for value in wall]} s, "
            f"validation {[round(value, 2) for value in validation]} s")
        if configuration.name == "keras":
            default_model = model
    return {"configurations": timings, "default_model": default_model}


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
    the page shows (model.predict on one row, predict_on_batch, an eager
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
        rss_before_training = current_rss_mb()
        train_rows = int(len(dataset.splits["train"]))
        say(f"keras: {settings['warmup_epochs']} warm-up + {settings['timed_epochs']} timed epoch(s) "
            f"on {train_rows:,} train rows, device {device}")
        timed = time_keras_configurations(settings, dataset, PaceSteps(settings, "keras"))
        PaceSteps(settings, "keras").rest()
        training_peak = peak_rss_mb()
        model, default = timed["default_model"], timed["configurations"]["keras"]
        epoch_seconds, epoch_cpu_seconds = default["epoch_seconds"], default["epoch_cpu_seconds"]
        validation_seconds = default["validation_seconds"]
        say("keras: scoring")
        scoring = run_keras_scoring(settings, model, dataset)
        scaling = time_scaling(settings, dataset, "keras",
                               lambda subset, warmup, timed: keras_fit_epochs(settings, subset, warmup, timed)[1:],
                               (epoch_seconds, epoch_cpu_seconds))
        threads = {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                   "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
                   "note": "0 = TensorFlow's default: one thread per core"}
        versions = {"tensorflow": tf.__version__, "keras": keras.__version__}
    return {"framework": "keras", "device": device, "train_rows": train_rows, "epoch_seconds": epoch_seconds,
            "epoch_cpu_seconds": epoch_cpu_seconds, "configurations": timed["configurations"],
            "validation_seconds": validation_seconds, "validation_rows": int(len(dataset.splits["valid"])),
            "scoring": scoring, "scaling": scaling, "peak_rss_mb": training_peak,
            "rss_before_training_mb": rss_before_training, "peak_rss_mb_end": peak_rss_mb(),
            "threads": threads, "versions": versions, "dataset": dataset_facts(dataset),
            "load_average": {"before": load_before, "after": load_average()}}
