"""Phase lightning: the same experiment through lightning_impl (see benchmarks._worker's docstring).

Module, data module and Trainer come from lightning_impl.builders, the
builders lightning_impl.train uses; the Trainer is built without the run's
outputs (no logger, no checkpoints).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from benchmarks import say
from benchmarks.configurations import LIGHTNING_CONFIGURATIONS, Configuration, describe
from benchmarks.lightning_profile import profile_lightning, torch_profile_steps
from experiment.machine import load_average
from benchmarks.measure import (SCORING_TRIP, EpochClock, MemoryWatch, benchmark_request, current_rss_mb,
                                dataset_facts, load_config_for, load_dataset, peak_rss_mb,
                                time_scaling, timed_calls, timed_milliseconds)
from benchmarks.pacing import PACED_INTERVALS, PaceSteps, lightning_pacer
from benchmarks.torch_loop import time_validation, torch_loop_epochs

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
    """A real lightning Trainer from lightning_impl.builders.build_trainer, without the run's outputs.

    No run directory: progress bar, logger, checkpointing and model summary
    are off, as they are the run's outputs, not its training cost.  Validation
    during fit is off so that an epoch is training only (the validation pass
    is timed on its own).  Deterministic algorithms when general.repeatable_run,
    as in lightning_impl.train.
    """
    from lightning_impl.builders import build_trainer

    options = {} if validate_during_fit else {"limit_val_batches": 0}
    return build_trainer(load_config_for(settings), callbacks=callbacks, max_epochs=int(epochs),
                         accelerator=accelerator, devices=1, **options)


def product_engine(settings: Mapping[str, Any]) -> str:
    """The engine lightning_impl.train trains with: lightning.engine of the config (configs.loader.ENGINES)."""
    return load_config_for(settings).lightning.engine


def engine_settings(engine: str, steps_per_execution: int | None = None, gradients: str | None = None
                    ) -> tuple[int, str]:
    """(SGD updates per Lightning step, how gradients are computed) as lightning_impl.train runs `engine`."""
    from lightning_impl.builders import engine_options

    steps, gradient_mode = engine_options(engine, steps_per_execution, gradients)
    return steps, gradient_mode or "autograd"      # the plain engine: loss.backward() in Lightning's loop


def lightning_module_and_data(settings: Mapping[str, Any], dataset, epochs: int, steps_per_execution: int | None = None,
                              gradients: str | None = None, engine: str | None = None):
    """The project's LightningModule and DataModule for experiment 3, from lightning_impl.train's builders.

    engine None: the product's (the config's lightning.engine); steps_per_execution /
    gradients None: that engine's defaults (fast-engine options: an error with the plain one).
    """
    from experiment.run import resolve_class_weight
    from lightning_impl.builders import build_datamodule, build_module, engine_options, seed_run

    request = benchmark_request(settings, epochs)
    engine = engine or request.config.lightning.engine
    steps_per_execution, gradients = engine_options(engine, steps_per_execution, gradients)
    seed_run(request.config)
    class_weight = resolve_class_weight(request, dataset)
    module = build_module(request, dataset, class_weight, engine=engine, gradients=gradients)
    datamodule = build_datamodule(request, dataset, class_weight, steps_per_execution=steps_per_execution)
    return module, datamodule


def lightning_fit_epochs(settings: Mapping[str, Any], dataset, warmup: int, timed: int,
                         accelerator: str = "cpu", steps_per_execution: int | None = None,
                         pace: PaceSteps | None = None, gradients: str | None = None, engine: str | None = None
                         ) -> tuple[Any, Any, Any, list[float], list[float]]:
    """Trainer.fit for warmup + timed epochs: (trainer, module, datamodule, wall and CPU seconds of the timed epochs)."""
    module, datamodule = lightning_module_and_data(settings, dataset, warmup + timed, steps_per_execution, gradients,
                                                   engine)
    timer = lightning_epoch_timer()
    callbacks = [lightning_pacer(pace), timer] if pace else [timer]
    trainer = lightning_trainer(settings, accelerator, warmup + timed, callbacks, validate_during_fit=False)
    trainer.fit(module, datamodule=datamodule)
    if pace:
        PACED_INTERVALS.setdefault("lightning", []).extend(timer.intervals)
    return trainer, module, datamodule, timer.seconds[warmup:], timer.cpu_seconds[warmup:]


def fit_configuration(settings: Mapping[str, Any], dataset, configuration: Configuration, pace: PaceSteps
                      ) -> dict[str, Any]:
    """One Lightning configuration (or the plain torch loop): paced epochs, then its validation pass."""
    warmup, timed = settings["warmup_epochs"], settings["timed_epochs"]
    if configuration.framework == "torch":
        module, datamodule = lightning_module_and_data(settings, dataset, warmup + timed, engine="plain")
        loop = torch_loop_epochs(module, datamodule, module.hparams.learning_rate, warmup + timed,
                                 before_epoch=pace.wait_turn)
        PACED_INTERVALS.setdefault("lightning", []).extend(loop["intervals"])
        validation = time_validation(loop["network"], datamodule, settings["validation_warmup"],
                                     settings["validation_repeats"], timed_calls)
        return {"trainer": None, "module": module, "datamodule": datamodule, "validation_seconds": validation,
                "epoch_seconds": loop["epoch_seconds"][warmup:], "epoch_cpu_seconds": loop["epoch_cpu_seconds"][warmup:]}
    trainer, module, datamodule, wall, cpu = lightning_fit_epochs(
        settings, dataset, warmup, timed, "cpu", configuration.steps_per_execution, pace, configuration.gradients,
        configuration.engine)
    validation = run_lightning_validation(settings, module, datamodule, "cpu")
    return {"trainer": trainer, "module": module, "datamodule": datamodule, "validation_seconds": validation,
            "epoch_seconds": wall, "epoch_cpu_seconds": cpu}


def time_lightning_configurations(settings: Mapping[str, Any], dataset, product: str, pace: PaceSteps
                                  ) -> dict[str, Any]:
    """Each configuration of LIGHTNING_CONFIGURATIONS timed; the fits kept for scoring and profiling."""
    timings, fits = {}, {}
    for configuration in LIGHTNING_CONFIGURATIONS:
        with MemoryWatch() as memory:
            fit = fit_configuration(settings, dataset, configuration, pace)
        steps, gradients = (engine_settings(configuration.engine, configuration.steps_per_execution,
                                            configuration.gradients) if configuration.framework == "lightning"
                            else (1, "autograd"))
        timings[configuration.name] = {
            **describe(configuration), "epoch_seconds": fit["epoch_seconds"],
            "epoch_cpu_seconds": fit["epoch_cpu_seconds"], "validation_seconds": fit["validation_seconds"],
            "peak_rss_mb": memory.peak_mb, "engine": configuration.engine, "steps_per_execution": steps,
            "gradients": gradients, "product_default": configuration.name == f"lightning_{product}"}
        fits[configuration.name] = fit
        say(f"lightning, {configuration.label}: epochs {[round(value, 2) for value in fit['epoch_seconds']]} s, "
            f"validation {[round(value, 2) for value in fit['validation_seconds']]} s")
    return {"configurations": timings, "fits": fits}


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


def time_on_gpu(settings: Mapping[str, Any], dataset) -> dict[str, Any] | None:
    """The epoch and the validation pass again on the first GPU, when torch sees one (None otherwise)."""
    import torch

    if not torch.cuda.is_available():
        return None
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
    return gpu


def quiet_lightning_logs() -> None:
    import logging
    import warnings

    import lightning  # noqa: F401 - first: importing it sets its loggers to INFO

    # Lightning's INFO lines ("GPU available: False", tips, "max_epochs reached") repeat for every
    # Trainer this phase builds; warnings and errors still show.
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Lightning's advice lines (num_workers, GPU available but unused) are about other set-ups.
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def lightning_versions() -> dict[str, str]:
    import lightning
    import torch

    versions = {"torch": torch.__version__, "lightning": lightning.__version__}
    try:
        import torchmetrics

        versions["torchmetrics"] = torchmetrics.__version__
    except ImportError:
        pass
    return versions


def time_thread_variant(settings: Mapping[str, Any], dataset, threads: int) -> dict[str, Any]:
    """The same fit with `threads` torch threads (torch's default), to show what the product's setting is worth."""
    with torch_threads(threads):
        *_, wall, cpu = lightning_fit_epochs(settings, dataset, settings["warmup_epochs"], settings["timed_epochs"],
                                             "cpu")
    say(f"lightning, {threads} torch threads: epochs {[round(value, 2) for value in wall]} s")
    return {"torch_threads": threads, "epoch_seconds": wall, "epoch_cpu_seconds": cpu}


def run_lightning(settings: Mapping[str, Any]) -> dict[str, Any]:
    load_before = load_average()
    import torch

    quiet_lightning_logs()
    dataset = load_dataset(settings)
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
        say(f"lightning: {settings['warmup_epochs']} warm-up + {settings['timed_epochs']} timed epoch(s) per "
            f"configuration on {train_rows:,} train rows, cpu, {used_threads} torch thread(s); the product "
            f"trains with the {engine} engine")
        pace = PaceSteps(settings, "lightning")
        timed = time_lightning_configurations(settings, dataset, engine, pace)
        pace.rest()
        training_peak = peak_rss_mb()
        product = timed["fits"][f"lightning_{engine}"]
        trainer, module, datamodule = product["trainer"], product["module"], product["datamodule"]
        epoch_seconds, epoch_cpu_seconds = product["epoch_seconds"], product["epoch_cpu_seconds"]
        validation_seconds = product["validation_seconds"]
        say("lightning: scoring")
        scoring = run_lightning_scoring(settings, trainer, dataset)
        say("lightning: profile")
        profile = profile_lightning(settings, module, datamodule, float(np.median(epoch_seconds)),
                                    float(np.median(epoch_cpu_seconds)))
        other = timed["fits"]["lightning_fast" if engine == "plain" else "lightning_plain"]
        profile["engines"] = {engine: profile["top_operators"],
                              ("fast" if engine == "plain" else "plain"): torch_profile_steps(
                                  other["module"], other["datamodule"], int(settings["profile_steps"]))}
        say(f"lightning: the same steps without the Trainer "
            f"{[round(value, 2) for value in profile['plain_loop_epoch_seconds']]} s")
        scaling = time_scaling(
            settings, dataset, "lightning",
            lambda subset, warmup, timed: lightning_fit_epochs(settings, subset, warmup, timed, "cpu")[3:],
            (epoch_seconds, epoch_cpu_seconds))

    thread_variant = time_thread_variant(settings, dataset, default_threads) \
        if settings["thread_variant_check"] and default_threads != used_threads else None
    gpu = time_on_gpu(settings, dataset) if settings["use_gpu"] else None
    threads = {"intra_op": used_threads, "inter_op": torch.get_num_interop_threads(),
               "torch_default": default_threads,
               "note": "intra-op threads as lightning_impl.train sets them for CPU training"}
    return {"framework": "lightning", "device": "cpu", "train_rows": train_rows, "epoch_seconds": epoch_seconds,
            "epoch_cpu_seconds": epoch_cpu_seconds,
            "validation_seconds": validation_seconds, "validation_rows": int(len(dataset.splits["valid"])),
            "scoring": scoring, "scaling": scaling, "peak_rss_mb": training_peak, "profile": profile,
            "thread_variant": thread_variant, "steps_per_execution": steps_per_execution, "gradients": gradients,
            "engine": engine, "configurations": timed["configurations"],
            "rss_before_training_mb": rss_before_training, "peak_rss_mb_end": peak_rss_mb(), "gpu": gpu,
            "threads": threads, "versions": lightning_versions(), "dataset": dataset_facts(dataset),
            "load_average": {"before": load_before, "after": load_average()}}
