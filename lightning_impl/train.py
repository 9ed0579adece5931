"""Train, checkpoint and test the streetcar model with PyTorch Lightning: one experiment of chapter 6.

    python -m lightning_impl.train --experiment 0                  # 1-epoch smoke run
    python -m lightning_impl.train --experiment 5 --json | jq .test
    python -m lightning_impl.train --experiment 4 --sample-rows 200000 --epochs 5 --patience 2
    python -m lightning_impl.train --resume runs/lightning-exp5-20250101-120000   # continue from last.ckpt
    python -m lightning_impl.train --experiment 5 --engine fast --accelerator gpu --devices 2 --strategy ddp

The shared flags are those of `python -m keras_impl.train` (configs/cli.py);
every one overrides one key of configs/streetcar.yaml.  A run:

1. loads the prepared dataset (data.load_prepared; --sample-rows takes the
   seeded subset keras_impl takes);
2. seeds Python, NumPy and torch (lightning.seed_everything(seed,
   workers=True)) and turns on torch's deterministic algorithms when
   general.repeatable_run (or --deterministic): two runs with one seed give
   identical histories and bitwise-identical weights on CPU;
3. builds the engine's LightningModule (lightning.engine / --engine):
   "plain" = StreetcarClassifier (lightning_impl.system, the idiomatic port),
   "fast" = FastStreetcarClassifier (lightning_impl.fast: fused network,
   closed-form gradients, --steps-per-execution batches per Lightning step),
   with class_weight {0: zero_weight, 1: one_weight}; "balanced" =
   count_no_delay / count_delay + one_weight_offset on the train split;
4. fits with the shared batch order (lightning_impl.datamodule) and the
   Keras-compatible callbacks (lightning_impl.callbacks): EarlyStopping + a
   best-only checkpoint when the experiment stops early, a last-epoch
   checkpoint always (run_dir/checkpoints/last.ckpt, what --resume continues
   from), ReduceLROnPlateau if enabled; TensorBoard (run_dir/tensorboard, as
   keras_impl writes it) and CSV (run_dir/csv) loggers; a Keras-style summary
   line per epoch on stderr;
5. records the outcome in training_stopped.json (experiment.run_state: a
   resume after this point only tests), loads the best checkpoint (early
   stopping) or keeps the final model, tests
   it on the test split (trainer.test logs test_* figures; the confusion matrix
   comes from experiment.artifacts.summarize_test) and writes history.csv,
   curves.png, confusion_matrix.png and result.json into the run directory,
   with vocabulary.json beside the checkpoints (the vocabularies are also in
   every checkpoint's hyperparameters).

train() only puts the steps together: the framework-neutral ones are in
experiment.run, the module / data module / Trainer builders in
lightning_impl.builders (benchmarks/ builds with them too), fitting and the
choice of the kept model in lightning_impl.fit.

--json prints the result object (experiment.artifacts.RESULT_KEYS) on stdout;
every progress line goes to stderr.  The progress bar (which Lightning draws
on stdout) is shown only without --json and when stderr is a terminal.

Devices: --accelerator/--devices/--strategy/--num-nodes go to lightning.Trainer
unchanged (default auto: a GPU when there is one).  Under DDP each process
takes its share of every epoch's batches (lightning_impl.datamodule); the
fast engine normalises with the whole global batch's statistics, so W
processes train like one, the plain engine with each process's slice (as
Keras's MirroredStrategy does by default).  Process 0 alone writes the run
directory, which it creates before Lightning starts the other processes
(they find it in $STREETCAR_LIGHTNING_RUN_DIR).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from configs.cli import RunRequest, positive_int, resolve_run_request
from configs.loader import ENGINES, override
from data.dataset import PreparedDataset
from experiment.commands import report_result, trainer_parser, training_examples
from configs.console import run_main, say
from experiment.run import RunPlace, build_result, finish_run, open_run, resolve_class_weight, run_dataset
from lightning_impl.builders import (DEFAULT_STEPS_PER_EXECUTION, GRADIENT_CHOICES, build_datamodule, build_module,
                                     build_trainer, engine_options, seed_run, tensorboard_without_tensorflow)

FRAMEWORK = "lightning"
COMMAND = "lightning_impl.train"
REQUEST_FILE = "run_request.json"   # experiment.reliability.REQUEST_FILE
RUN_DIR_ENVIRONMENT_VARIABLE = "STREETCAR_LIGHTNING_RUN_DIR"
# torch intra-op threads for CPU training.  Every op of a step is small (a 1000-row batch, a
# 99-row table), below or near torch's parallel grain, so splitting one saves nothing and the
# hand-over costs: on the 2-core machine, with other processes busy, 2 threads made a step
# ~7x slower than 1 (OpenMP waits for a descheduled worker); 1 thread is never slower.
DEFAULT_CPU_THREADS = 1

EPILOG = training_examples(COMMAND, ("--resume runs/lightning-exp5-20250101-120000",
                                     "continue an interrupted run from its last.ckpt")) + """
Each run writes runs/lightning-exp<ID>-<timestamp>/: checkpoints/ (last.ckpt,
and best-epoch<NN>-<monitor><value>.ckpt with early stopping), vocabulary.json,
run_request.json, history.csv, curves.png, confusion_matrix.png, result.json,
tensorboard/ and csv/.  Score one trip with
  python -m lightning_impl.score --checkpoint runs/<run>/checkpoints/last.ckpt \\
      --route 501 --direction e --date 2019-06-21 --hour 18
"""


# --------------------------------------------------------------------------
# Steps of a run
# --------------------------------------------------------------------------


def is_spawned_process() -> bool:
    """True in the extra processes Lightning's DDP launcher starts (LOCAL_RANK > 0)."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0) > 0


def load_run_request(run_dir: str | Path, *, epochs: int | None = None, json_output: bool = False) -> RunRequest:
    """The request saved in an interrupted lightning run directory, for --resume (experiment.reliability)."""
    from experiment.reliability import load_run_request as load_saved_request

    return load_saved_request(run_dir, framework=FRAMEWORK, command=COMMAND, epochs=epochs,
                              json_output=json_output)


def describe_device(trainer) -> str:
    device = trainer.strategy.root_device
    text = str(device)
    if device.type == "cuda":
        import torch

        text += f" ({torch.cuda.get_device_name(device)})"
    if trainer.world_size > 1:
        text += f" x{trainer.world_size} processes ({type(trainer.strategy).__name__})"
    return text


# --------------------------------------------------------------------------
# Opening a run; the module and the Trainer it trains with
# --------------------------------------------------------------------------


def open_lightning_run(request: RunRequest, dataset: PreparedDataset, resume: str | Path | None) -> RunPlace:
    """experiment.run.open_run; a DDP helper process takes the run directory process 0 made."""
    from lightning_impl.fit import check_resumable

    if resume is None and is_spawned_process() and os.environ.get(RUN_DIR_ENVIRONMENT_VARIABLE):
        return RunPlace(Path(os.environ[RUN_DIR_ENVIRONMENT_VARIABLE]), 0, request.settings.epochs, None, False)
    place = open_run(request, dataset, framework=FRAMEWORK, resume=resume, check_resumable=check_resumable)
    if place.created:
        os.environ[RUN_DIR_ENVIRONMENT_VARIABLE] = str(place.run_dir)  # for the DDP processes Lightning starts
    return place


def prepare_module(request: RunRequest, dataset: PreparedDataset, class_weight: Mapping[int, float], *,
                   engine: str, gradients: str | None, initial_weights: Mapping[str, np.ndarray] | None,
                   progress: Callable[[str], None]) -> tuple[Any, dict[str, int]]:
    """(the engine's module, its parameter counts); `initial_weights` replace the seeded initial weights."""
    from lightning_impl.model import set_canonical_weights

    module = build_module(request, dataset, class_weight, engine=engine, gradients=gradients)
    if initial_weights is not None:
        # By canonical name, every key and shape checked first (experiment.weights.check_weights).
        set_canonical_weights(module.net, initial_weights, source="initial_weights")
        progress("initial weights: the given canonical weights, not the seeded initialisers")
    params = module.parameter_counts()
    progress(f"params: total {params['total']:,} / trainable {params['trainable']:,} / "
             f"non-trainable {params['non_trainable']:,}")
    return module, params


def build_run_trainer(request: RunRequest, dataset: PreparedDataset, place: RunPlace, callbacks, *,
                      resume: str | Path | None, steps_per_execution: int, progress: Callable[[str], None],
                      progress_bar: bool, **devices: Any):
    """The run's Trainer (build_trainer with run_dir): the run's own callbacks, then the Keras-compatible ones.

    `devices` are accelerator / devices / strategy / num_nodes / deterministic, as train() takes them.
    """
    from lightning.pytorch.callbacks import TQDMProgressBar

    from lightning_impl.run_callbacks import build_run_callbacks

    config, settings = request.config, request.settings
    run_callbacks = build_run_callbacks(settings, place.run_dir, progress)
    if progress_bar:
        run_callbacks.append(TQDMProgressBar(refresh_rate=20))
    # The guard first: it must see each epoch before the checkpoints and early stopping do.
    run_callbacks += callbacks.as_list()
    # Lightning's training steps per epoch: batches, grouped steps_per_execution at a time.
    train_steps = math.ceil(math.ceil(len(dataset.splits["train"]) / config.hyperparameters.batch_size)
                            / steps_per_execution)
    trainer = build_trainer(config, callbacks=run_callbacks, max_epochs=place.fit_epochs, progress_bar=progress_bar,
                            run_dir=place.run_dir, resume=resume, log_every_n_steps=max(1, min(50, train_steps)),
                            **devices)
    if config.lightning.engine == "plain" and trainer.world_size > 1:
        progress(f"plain engine on {trainer.world_size} processes: each normalises its own slice of every "
                 f"batch (per-process BatchNorm statistics, Keras MirroredStrategy's default); --engine fast "
                 f"uses the whole batch's and trains like one process")
    return trainer


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------


def train(request: RunRequest, *, dataset: PreparedDataset | None = None, accelerator: str = "auto",
          devices: str | int = "auto", strategy: str = "auto", num_nodes: int = 1,
          resume: str | Path | None = None, deterministic: bool | None = None,
          initial_weights: Mapping[str, np.ndarray] | None = None, progress_bar: bool | None = None,
          cpu_threads: int | None = DEFAULT_CPU_THREADS, steps_per_execution: int | None = None,
          gradients: str | None = None, progress: Callable[[str], None] = say) -> dict[str, Any]:
    """Run one experiment end to end and return the result object (RESULT_KEYS).

    `dataset` skips loading (tests pass a synthetic or pre-loaded one; it is
    still sampled when request.sample_rows is set).  `resume` is the run
    directory of an interrupted run (build the request with
    load_run_request): training continues from its checkpoints/last.ckpt, in
    that directory, and ends as the uninterrupted run would have.
    `initial_weights` (canonical names, experiment.weights) replace the seeded
    initial weights, e.g. to start from the same weights as a Keras run.
    `deterministic` defaults to general.repeatable_run; `progress_bar` to
    "stderr is a terminal and not --json".  `cpu_threads` is torch's
    intra-op thread count while training on a CPU (restored afterwards;
    None leaves torch's default): see DEFAULT_CPU_THREADS.  The engine is
    request.config.lightning.engine; `steps_per_execution` (SGD updates per Lightning
    step, lightning_impl.builders.DEFAULT_STEPS_PER_EXECUTION) and `gradients` ("closed_form" or
    "autograd", DEFAULT_GRADIENTS; the same updates either way) are fast-engine options, a ValueError
    with the plain engine (None: the engine's defaults).  Under DDP only process 0 returns
    the full result and writes artefacts.  A NaN/inf loss (or monitored
    value) ends training at that epoch and keeps the best / last finite model
    (result["stop_reason"] says so); Ctrl-C or SIGTERM raise
    experiment.reliability.RunInterrupted with the line that says how to resume.
    """
    started = time.perf_counter()
    tensorboard_without_tensorflow()
    import torch

    from experiment.reliability import NoFiniteModel, reach_fault_point
    from experiment.run_state import resume_note
    from lightning_impl.callbacks import build_lightning_callbacks
    from lightning_impl.fit import CHECKPOINT_DIR, LAST_CHECKPOINT_FILE, fit_or_reload, test_kept_model

    config, settings, engine = request.config, request.settings, request.config.lightning.engine
    steps_per_execution, gradients = engine_options(engine, steps_per_execution, gradients)
    dataset = run_dataset(request, dataset)
    seed_run(config)
    class_weight = resolve_class_weight(request, dataset)
    if is_spawned_process():
        progress = lambda message: None  # noqa: E731 - process 0 reports for all (DDP)
    place = open_lightning_run(request, dataset, resume)
    run_dir, previous_threads = place.run_dir, None
    try:
        sizes = {split: int(len(rows)) for split, rows in dataset.splits.items()}
        progress(f"lightning experiment {settings.experiment} ({settings.description}): {settings.epochs} epoch(s), "
                 f"rows {sizes}, class_weight {class_weight}, batch order {config.general.batch_order}, "
                 f"engine {engine}, float{config.hyperparameters.precision}, run dir {run_dir}"
                 + resume_note(resume is not None and place.stopped is None, place.first_epoch, place.fit_epochs,
                               run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT_FILE))
        module, params = prepare_module(request, dataset, class_weight, engine=engine, gradients=gradients,
                                        initial_weights=initial_weights, progress=progress)
        datamodule = build_datamodule(request, dataset, class_weight, steps_per_execution=steps_per_execution)
        callbacks = build_lightning_callbacks(settings, config.callbacks, run_dir / CHECKPOINT_DIR)
        if progress_bar is None:
            progress_bar = not request.json and sys.stderr.isatty()
        trainer = build_run_trainer(request, dataset, place, callbacks, resume=resume,
                                    steps_per_execution=steps_per_execution, progress=progress,
                                    progress_bar=progress_bar, accelerator=accelerator, devices=devices,
                                    strategy=strategy, num_nodes=num_nodes, deterministic=deterministic)
        if cpu_threads is not None and trainer.strategy.root_device.type == "cpu":
            previous_threads = torch.get_num_threads()
            torch.set_num_threads(cpu_threads)
        outcome, kept, fit_seconds = fit_or_reload(trainer, module, datamodule, callbacks, settings, place,
                                                   resume=resume, progress=progress)
        test = test_kept_model(trainer, kept, datamodule, dataset, run_dir)
        if test is None:  # a DDP helper process: process 0 reports
            return {"framework": FRAMEWORK, "run_dir": str(run_dir), "rank": trainer.global_rank}
        reach_fault_point("tested", run_dir)
        result = build_result(request, framework=FRAMEWORK, outcome=outcome, test=test, params=params,
                              run_dir=run_dir, started=started, device=describe_device(trainer))
        progress(f"fit took {fit_seconds:.1f} s "
                 f"({fit_seconds / max(outcome['epochs_run'] - place.first_epoch, 1):.2f} s per epoch); "
                 f"{outcome['stop_reason']}")
        finish_run(run_dir, request, result, framework=FRAMEWORK)
        return result
    except NoFiniteModel:
        if place.created:  # a new run whose first epoch diverged holds no model: nothing is kept
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        if place.created:
            os.environ.pop(RUN_DIR_ENVIRONMENT_VARIABLE, None)
        if previous_threads is not None:
            torch.set_num_threads(previous_threads)


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def devices_argument(text: str) -> str | int:
    """--devices: 'auto', a count, or a comma list of indices (Lightning's own syntax)."""
    text = text.strip()
    if text == "auto" or "," in text:
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not 'auto', a number or a list like 0,1") from None
    if value == 0 or value < -1:
        raise argparse.ArgumentTypeError(f"{text} devices: use a number >= 1, -1 for all, or 'auto'")
    return value


def build_argument_parser() -> argparse.ArgumentParser:
    parser = trainer_parser(COMMAND, "PyTorch Lightning", EPILOG)
    group = parser.add_argument_group("Lightning options")
    group.add_argument("--accelerator", default="auto", metavar="NAME",
                       help="cpu, gpu, cuda, mps or auto (default: auto = a GPU when there is one)")
    group.add_argument("--devices", type=devices_argument, default="auto", metavar="N",
                       help="devices per node: a count, -1 for all, a list like 0,1, or auto (default)")
    group.add_argument("--strategy", default="auto", metavar="NAME",
                       help="Lightning strategy, e.g. ddp, ddp_spawn (default: auto)")
    group.add_argument("--num-nodes", type=positive_int, default=1, metavar="N", help="nodes (default 1)")
    group.add_argument("--resume", default=None, metavar="RUN_DIR",
                       help="continue an interrupted run from RUN_DIR/checkpoints/last.ckpt, with the settings "
                            "saved in that run (only --epochs and --json may be given with it)")
    group.add_argument("--deterministic", action="store_true",
                       help="torch deterministic algorithms even when general.repeatable_run is false")
    group.add_argument("--cpu-threads", type=positive_int, default=DEFAULT_CPU_THREADS, metavar="N",
                       help=f"torch intra-op threads when training on a CPU (default {DEFAULT_CPU_THREADS}: "
                            f"this model's ops are too small to gain from more)")
    group.add_argument("--engine", choices=ENGINES, default=None,
                       help="plain: the idiomatic port (stock modules, automatic optimisation); fast: the same "
                            "model through a fused kernel with hand-written gradients (lightning_impl/fast/).  "
                            "Default: lightning.engine of the config (plain)")
    group.add_argument("--steps-per-execution", type=positive_int, default=None, metavar="K",
                       help=f"fast engine only: SGD updates (batches) per Lightning training step, like Keras's "
                            f"compile(steps_per_execution=K); the same updates for every K, Lightning's per-step "
                            f"overhead paid once per K batches (default {DEFAULT_STEPS_PER_EXECUTION})")
    group.add_argument("--gradients", choices=GRADIENT_CHOICES, default=None,
                       help="fast engine only: closed_form (default): the training step writes every gradient "
                            "itself, bitwise what autograd computes, without the autograd engine's per-step cost; "
                            "autograd: loss.backward() through Lightning's manual_backward.  DDP and mixed "
                            "precision always use autograd")
    return parser


RESUME_COMPATIBLE_FLAGS = ("epochs", "json", "resume", "accelerator", "devices", "strategy", "num_nodes",
                           "deterministic", "cpu_threads", "steps_per_execution", "gradients")


def main(argv: Sequence[str] | None = None) -> int:
    from experiment.reliability import refuse_flags_beside_resume
    from experiment.run_state import hold_run_lock

    parser = build_argument_parser()
    args = parser.parse_args(argv)
    if args.resume is not None:
        refuse_flags_beside_resume(parser, args, RESUME_COMPATIBLE_FLAGS)
        request = load_run_request(args.resume, epochs=args.epochs, json_output=args.json)
        if not is_spawned_process():  # DDP's extra processes run inside process 0's lock
            hold_run_lock(args.resume, COMMAND)
    else:
        request = resolve_run_request(args)
        if args.engine is not None:
            request = dataclasses.replace(request, config=override(request.config, "lightning.engine", args.engine))
    result = train(request, accelerator=args.accelerator, devices=args.devices, strategy=args.strategy,
                   num_nodes=args.num_nodes, resume=args.resume, deterministic=True if args.deterministic else None,
                   cpu_threads=args.cpu_threads, steps_per_execution=args.steps_per_execution,
                   gradients=args.gradients)
    if "experiment" not in result:  # a DDP helper process: process 0 reports
        return 0
    report_result(result, request)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
