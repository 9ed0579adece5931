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

from configs.cli import OneLineArgumentParser, RunRequest, add_common_arguments, positive_int, resolve_run_request
from configs.loader import ENGINES, override
from data.dataset import PreparedDataset
from experiment.artifacts import RESULT_KEYS, create_run_dir, describe_result, summarize_test, write_run_artifacts
from configs.console import emit_json, run_main, say
from experiment.verdict import degenerate_warning, judge_test

FRAMEWORK = "lightning"
COMMAND = "lightning_impl.train"
VOCABULARY_FILE = "vocabulary.json"
REQUEST_FILE = "run_request.json"   # experiment.reliability.REQUEST_FILE
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT_FILE = "last.ckpt"
RUN_DIR_ENVIRONMENT_VARIABLE = "STREETCAR_LIGHTNING_RUN_DIR"
PREDICTION_BATCH_ROWS = 131072
# torch intra-op threads for CPU training.  Every op of a step is small (a 1000-row batch, a
# 99-row table), below or near torch's parallel grain, so splitting one saves nothing and the
# hand-over costs: on the 2-core machine, with other processes busy, 2 threads made a step
# ~7x slower than 1 (OpenMP waits for a descheduled worker); 1 thread is never slower.
DEFAULT_CPU_THREADS = 1
# Fast engine only (lightning_impl.fast): SGD updates per Lightning training step
# (lightning_impl.datamodule, "Steps per execution"): the same batches and updates as 1, with
# Lightning's per-step machinery (timed in docs/benchmarks.md) paid once per 8 batches.  Keras's counterpart,
# compile(steps_per_execution=...), stays at the book's 1 in keras_impl.  The plain engine
# takes one batch per Lightning step.
DEFAULT_STEPS_PER_EXECUTION = 8
# Fast engine only: how a training step gets its gradients (lightning_impl.fast.system):
# closed_form skips the autograd engine (bitwise the same gradients); autograd is loss.backward().
DEFAULT_GRADIENTS = "closed_form"
# lightning_impl.fast.system.GRADIENT_MODES, spelled out so that --help does not import torch.
GRADIENT_CHOICES = ("closed_form", "autograd")
FAST_ENGINE_OPTIONS = ("steps_per_execution", "gradients")

EPILOG = """\
examples:
  python -m lightning_impl.train --experiment 0                 1-epoch smoke run on the full data
  python -m lightning_impl.train --experiment 5 --json          early stop on val_accuracy; JSON result on stdout
  python -m lightning_impl.train --experiment 3 --sample-rows 100000 --epochs 3
                                                                quick class-weighted run on a seeded subset
  python -m lightning_impl.train --resume runs/lightning-exp5-20250101-120000
                                                                continue an interrupted run from its last.ckpt

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


def load_run_dataset(request: RunRequest) -> PreparedDataset:
    """The prepared dataset, sampled to --sample-rows rows when asked (as keras_impl does)."""
    from data import load_prepared

    dataset = load_prepared(request.config, raw_dir=request.raw_dir)
    if request.sample_rows is not None:
        dataset = dataset.sample(request.sample_rows, request.config.general.seed)
    return dataset


# [docs:lightning-class-weight]
def resolve_class_weight(request: RunRequest, dataset: PreparedDataset) -> dict[int, float]:
    """{0: zero_weight, 1: one_weight}; "balanced" is computed on the train split."""
    settings = request.settings
    if settings.one_weight == "balanced":
        one_weight = dataset.one_weight(request.config.hyperparameters.one_weight_offset, split="train")
    else:
        one_weight = float(settings.one_weight)
    return {0: float(settings.zero_weight), 1: float(one_weight)}
# [/docs:lightning-class-weight]


def engine_options(engine: str, steps_per_execution: int | None, gradients: str | None) -> tuple[int, str | None]:
    """(steps_per_execution, gradients) for `engine`; the fast-engine options are refused with the plain one."""
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}; valid: {', '.join(ENGINES)}")
    if engine == "plain":
        given = [name for name, value in zip(FAST_ENGINE_OPTIONS, (steps_per_execution, gradients))
                 if value is not None]
        if given:
            raise ValueError(f"{', '.join('--' + name.replace('_', '-') for name in given)} "
                             f"{'is a fast-engine option' if len(given) == 1 else 'are fast-engine options'}; "
                             f"add --engine fast (or set lightning.engine: fast), or drop it: the plain engine "
                             f"takes one batch per step and autograd gradients")
        return 1, None
    return (DEFAULT_STEPS_PER_EXECUTION if steps_per_execution is None else int(steps_per_execution),
            DEFAULT_GRADIENTS if gradients is None else gradients)


def lightning_module_class(engine: str):
    """The LightningModule class of `engine` (configs.loader.ENGINES); both read each other's checkpoints."""
    if engine == "fast":
        from lightning_impl.fast.system import FastStreetcarClassifier

        return FastStreetcarClassifier
    from lightning_impl.system import StreetcarClassifier

    return StreetcarClassifier


def is_spawned_process() -> bool:
    """True in the extra processes Lightning's DDP launcher starts (LOCAL_RANK > 0)."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0) > 0


def load_run_request(run_dir: str | Path, *, epochs: int | None = None, json_output: bool = False) -> RunRequest:
    """The request saved in an interrupted lightning run directory, for --resume (experiment.reliability)."""
    from experiment.reliability import load_run_request as load_saved_request

    return load_saved_request(run_dir, framework=FRAMEWORK, command=COMMAND, epochs=epochs,
                              json_output=json_output)


def check_resumable(run_dir: Path, dataset: PreparedDataset, settings) -> tuple[int, int]:
    """Check an interrupted run directory can continue: (epochs its last.ckpt holds, epochs to fit to).

    The second number is settings.epochs, or the first one when the last
    committed epoch already ended training (early stopping fired, or the
    epoch cap): the resumed fit then trains nothing and only restores the
    state, as the uninterrupted run had it when training ended
    (experiment.run_state).
    """
    import torch

    from experiment.reliability import check_same_vocabularies
    from experiment.run_state import training_is_over

    check_same_vocabularies(run_dir, dataset.vocabularies, VOCABULARY_FILE)
    last = run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT_FILE
    if not last.is_file():
        raise ValueError(f"--resume: {last} does not exist (the run was interrupted before its first epoch "
                         f"ended); start a new run instead")
    try:
        checkpoint = torch.load(str(last), map_location="cpu", weights_only=True)
        completed = int(checkpoint["epoch"]) + 1
    except Exception as error:  # a damaged file: say so in one line
        raise ValueError(f"--resume: cannot read {last}: {str(error).splitlines()[0] if str(error) else error!r}") \
            from None
    early_stopping = next((state for name, state in checkpoint.get("callbacks", {}).items()
                           if "EarlyStopping" in str(name)), None)
    if training_is_over(completed, settings.epochs, early_stopping):
        return completed, completed
    return completed, settings.epochs


def extend_history(history: Mapping[str, list[float]], figures: Mapping[str, float]) -> dict[str, list[float]]:
    """The history plus a diverged epoch's figures (NaN for a key that epoch did not log), as keras_impl does."""
    keys = list(history) or list(figures)
    return {key: [*history.get(key, []), float(figures.get(key, float("nan")))] for key in keys}


def tensorboard_without_tensorflow() -> None:
    """Let TensorBoard's event writer run without importing TensorFlow.

    torch.utils.tensorboard (behind Lightning's TensorBoardLogger) goes through
    tensorboard.compat, which imports all of TensorFlow when it is installed -
    here it is, for keras_impl - costing 5-10 s and a burst of TF log lines per
    run.  tensorboard.compat checks for a marker module
    `tensorboard.compat.notf` and then uses its own TF-free stub (the same
    event files).  The marker is set only when TensorFlow is not loaded
    already, so a process that also runs Keras keeps the real thing.
    """
    import types

    if "tensorflow" not in sys.modules and "tensorboard.compat.notf" not in sys.modules:
        sys.modules["tensorboard.compat.notf"] = types.ModuleType("tensorboard.compat.notf")


def describe_device(trainer) -> str:
    device = trainer.strategy.root_device
    text = str(device)
    if device.type == "cuda":
        import torch

        text += f" ({torch.cuda.get_device_name(device)})"
    if trainer.world_size > 1:
        text += f" x{trainer.world_size} processes ({type(trainer.strategy).__name__})"
    return text


def predict_probabilities(net, features: np.ndarray, device, batch_rows: int = PREDICTION_BATCH_ROWS) -> np.ndarray:
    """p(delay) of every row, (n,) float32: the network called directly in inference mode."""
    import torch

    net.eval()
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(features), batch_rows):
            batch = torch.as_tensor(np.ascontiguousarray(features[start:start + batch_rows]), device=device)
            chunks.append(net(batch).reshape(-1).float().cpu().numpy())
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def checkpoint_epoch(path: str | Path) -> int:
    """The 0-based epoch whose end a Lightning checkpoint was saved at (its "epoch" entry)."""
    import torch

    checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    return int(checkpoint["epoch"])


def fit_and_decide(trainer, module, datamodule, callbacks, settings, run_dir: Path, *,
                   resume: str | Path | None, progress: Callable[[str], None]) -> tuple[dict[str, Any], Any, float]:
    """Fit (or continue) the model and decide what the run keeps: (outcome, kept module, fit seconds).

    The outcome holds experiment.run_state.OUTCOME_KEYS, what training_stopped.json records.
    """
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from experiment.reliability import (NoFiniteModel, RunInterrupted, TrainingDiverged, completed_reason,
                                        early_stop_reason, reach_fault_point, resume_hint)
    module_class = type(module)  # the engine's LightningModule; both engines read each other's checkpoints
    checkpoint_dir = run_dir / CHECKPOINT_DIR
    last_checkpoint = checkpoint_dir / LAST_CHECKPOINT_FILE
    fit_started = time.perf_counter()
    diverged = None
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(last_checkpoint) if resume is not None else None)
    except TrainingDiverged as error:  # NonFiniteGuard: nothing after it saw the epoch
        diverged = error
    except (KeyboardInterrupt, SIGTERMException, SystemExit) as error:
        # Ctrl-C: Lightning shuts down and calls sys.exit(1); SIGTERM: its handler raises
        # SIGTERMException at the next batch boundary.  Both become one resume line, printed
        # once, by configs.console.run_main.
        if isinstance(error, SystemExit) and not isinstance(error, SIGTERMException) \
                and trainer.state.status != "interrupted":
            raise
        signal_name = "SIGTERM" if isinstance(error, SIGTERMException) or trainer.received_sigterm else "SIGINT"
        completed = len(module.history.get("loss", []))
        raise RunInterrupted(signal_name, f"interrupted by {signal_name} during epoch {completed + 1}; "
                                          f"{resume_hint(COMMAND, run_dir, completed)}") from None
    reach_fault_point("fit-ended", run_dir)
    fit_seconds = time.perf_counter() - fit_started
    if trainer.world_size > 1:
        # Every process says where its training ended (say, not progress: only process 0
        # reports otherwise), so a DDP run shows that EarlyStopping stopped them together.
        say(f"process {trainer.global_rank}/{trainer.world_size}: training ended after epoch "
            f"{trainer.current_epoch}")
    history = {key: list(values) for key, values in module.history.items()}
    if diverged is not None:
        progress(f"{diverged}; keeping the model of the last finite epoch")
    epochs_run = len(history.get("loss", [])) + (1 if diverged is not None else 0)

    if settings.early_stop:
        best_path = Path(callbacks.best_checkpoint.best_model_path or checkpoint_dir / "missing")
        if not best_path.is_file():
            if diverged is not None:
                raise NoFiniteModel(diverged)
            raise ValueError(f"early stopping is on but no best checkpoint was written in {checkpoint_dir}")
        best_epoch = checkpoint_epoch(best_path)
        best_value = float(history[settings.monitor][best_epoch])
        score = callbacks.best_checkpoint.best_model_score
        if score is not None and np.float32(float(score)) != np.float32(best_value) \
                and not (math.isnan(float(score)) and math.isnan(best_value)):
            raise RuntimeError(f"the best checkpoint {best_path.name} holds epoch {best_epoch} with "
                               f"{settings.monitor} = {float(score)}, but the history says {best_value}")
        monitor = settings.monitor
        # [docs:lightning-load-best]
        kept = module_class.load_from_checkpoint(str(best_path), map_location="cpu", weights_only=True)
        # [/docs:lightning-load-best]
        progress(f"best epoch {best_epoch + 1} (0-based {best_epoch}): {monitor} = {best_value:.6f}; "
                 f"testing {best_path.name}")
    else:
        best_path, best_epoch, best_value, monitor = None, None, None, None
        kept = module
        if diverged is not None:
            # last.ckpt was last written at the end of the last finite epoch.
            if not last_checkpoint.is_file():
                raise NoFiniteModel(diverged)
            kept = module_class.load_from_checkpoint(str(last_checkpoint), map_location="cpu", weights_only=True)
    if diverged is not None:
        history = extend_history(history, diverged.figures)
        stop_reason = str(diverged)
    elif callbacks.early_stopping is not None and callbacks.early_stopping.stopped_epoch > 0:
        stop_reason = early_stop_reason(callbacks.early_stopping.stopped_epoch, settings.monitor,
                                        settings.patience)
    else:
        stop_reason = completed_reason(epochs_run, settings.epochs)

    kept_model = best_path if settings.early_stop else last_checkpoint
    outcome = {"kept_model": kept_model, "history": history, "epochs_run": epochs_run, "best_epoch": best_epoch,
               "best_value": best_value, "monitor": monitor, "stop_reason": stop_reason}
    return outcome, kept, fit_seconds


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
    step, DEFAULT_STEPS_PER_EXECUTION) and `gradients` ("closed_form" or "autograd",
    DEFAULT_GRADIENTS; the same updates either way) are fast-engine options, a ValueError
    with the plain engine (None: the engine's defaults).  Under DDP only process 0 returns
    the full result and writes artefacts.  A NaN/inf loss (or monitored
    value) ends training at that epoch and keeps the best / last finite model
    (result["stop_reason"] says so); Ctrl-C or SIGTERM raise
    experiment.reliability.RunInterrupted with the line that says how to resume.
    """
    started = time.perf_counter()
    tensorboard_without_tensorflow()
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import TQDMProgressBar
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from experiment.reliability import (NoFiniteModel, check_same_vocabularies, interrupted_while_testing,
                                        reach_fault_point, save_run_request)
    from experiment.run_state import (check_every_split_has_rows, read_stopped, record_stopped, resume_note,
                                      stopped_summary)
    from lightning_impl.callbacks import build_lightning_callbacks
    from lightning_impl.datamodule import StreetcarDataModule
    from lightning_impl.model import set_canonical_weights
    from lightning_impl.run_callbacks import AtomicCheckpointIO, build_run_callbacks

    config, settings = request.config, request.settings
    engine = config.lightning.engine
    steps_per_execution, gradients = engine_options(engine, steps_per_execution, gradients)
    module_class = lightning_module_class(engine)
    hyper, seed = config.hyperparameters, config.general.seed
    if dataset is None:
        dataset = load_run_dataset(request)
    elif request.sample_rows is not None:
        dataset = dataset.sample(request.sample_rows, seed)
    check_every_split_has_rows(dataset, request.sample_rows)  # before any run directory exists
    if deterministic is None:
        deterministic = config.general.repeatable_run
    # [docs:lightning-seed-call]
    if config.general.repeatable_run:
        # The book's repeatable_run: seed Python, NumPy and torch (and dataloader workers).
        L.seed_everything(seed, workers=True, verbose=False)
    # [/docs:lightning-seed-call]

    class_weight = resolve_class_weight(request, dataset)
    spawned = is_spawned_process()
    if spawned:
        progress = lambda message: None  # noqa: E731 - process 0 reports for all (DDP)
    created_here = False
    previous_threads = None
    first_epoch, fit_epochs, stopped = 0, settings.epochs, None
    if resume is not None:
        run_dir = Path(resume)
        # Training already over and recorded: only the test phase is left.
        stopped = read_stopped(run_dir, settings.epochs)
        if stopped is None:
            first_epoch, fit_epochs = check_resumable(run_dir, dataset, settings)
        else:
            check_same_vocabularies(run_dir, dataset.vocabularies, VOCABULARY_FILE)
    elif spawned and os.environ.get(RUN_DIR_ENVIRONMENT_VARIABLE):
        run_dir = Path(os.environ[RUN_DIR_ENVIRONMENT_VARIABLE])
    else:
        run_dir = create_run_dir(config.general.out_dir, FRAMEWORK, settings.experiment)
        os.environ[RUN_DIR_ENVIRONMENT_VARIABLE] = str(run_dir)  # for the DDP processes Lightning starts
        created_here = True
    checkpoint_dir = run_dir / CHECKPOINT_DIR
    last_checkpoint = checkpoint_dir / LAST_CHECKPOINT_FILE
    try:
        if created_here:
            dataset.vocabularies.save(run_dir / VOCABULARY_FILE)
            save_run_request(run_dir, request, framework=FRAMEWORK)
        sizes = {split: int(len(rows)) for split, rows in dataset.splits.items()}
        progress(f"lightning experiment {settings.experiment} ({settings.description}): {settings.epochs} epoch(s), "
                 f"rows {sizes}, class_weight {class_weight}, batch order {config.general.batch_order}, "
                 f"engine {engine}, "
                 f"run dir {run_dir}"
                 + resume_note(resume is not None and stopped is None, first_epoch, fit_epochs, last_checkpoint))

        # [docs:lightning-fit]
        # [docs:lightning-module]
        module = module_class(
            dataset.vocab_sizes, dataset.vocabularies.to_json_dict(), embedding_dim=hyper.embedding_dim,
            dropout_rate=hyper.dropout_rate, output_activation=hyper.output_activation,
            learning_rate=hyper.learning_rate, zero_weight=class_weight[0], one_weight=class_weight[1],
            **({"gradients": gradients} if engine == "fast" else {}))
        # [/docs:lightning-module]
        if initial_weights is not None:
            # By canonical name, every key and shape checked first (experiment.weights.check_weights).
            set_canonical_weights(module.net, initial_weights, source="initial_weights")
            progress("initial weights: the given canonical weights, not the seeded initialisers")
        params = module.parameter_counts()
        progress(f"params: total {params['total']:,} / trainable {params['trainable']:,} / "
                 f"non-trainable {params['non_trainable']:,}")
        # [docs:lightning-datamodule]
        datamodule = StreetcarDataModule(dataset, batch_size=hyper.batch_size, batch_order=config.general.batch_order,
                                         seed=seed, class_weight=class_weight, steps_per_execution=steps_per_execution)
        # [/docs:lightning-datamodule]
        callbacks = build_lightning_callbacks(settings, config.callbacks, checkpoint_dir)
        if progress_bar is None:
            progress_bar = not request.json and sys.stderr.isatty()
        run_callbacks = build_run_callbacks(settings, run_dir, progress)
        if progress_bar:
            run_callbacks.append(TQDMProgressBar(refresh_rate=20))
        # Lightning's training steps per epoch: batches, grouped steps_per_execution at a time.
        train_batches = math.ceil(math.ceil(len(dataset.splits["train"]) / hyper.batch_size) / steps_per_execution)
        # [docs:lightning-trainer]
        trainer = L.Trainer(
            accelerator=accelerator, devices=devices, strategy=strategy, num_nodes=num_nodes,
            max_epochs=fit_epochs, deterministic=deterministic,
            # The guard first: it must see each epoch before the checkpoints and early stopping do.
            callbacks=[*run_callbacks, *callbacks.as_list()],
            # Checkpoints go to a temp file beside the target and are renamed into place, so a killed
            # run always leaves a whole last.ckpt to --resume from (docs/reliability.md).
            plugins=[AtomicCheckpointIO()],
            # [docs:lightning-loggers]
            logger=[TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=""),
                    CSVLogger(save_dir=str(run_dir), name="csv", version=csv_version(run_dir, resume))],
            # [/docs:lightning-loggers]
            default_root_dir=str(run_dir),
            # Keras runs no validation before training; a sanity pass would also feed the callbacks.
            num_sanity_val_steps=0,
            # The data module splits batches between DDP processes itself (see its docstring).
            use_distributed_sampler=False,
            enable_progress_bar=bool(progress_bar),
            # Lightning's summary counts parameters only (1.2 K); the Keras counts are printed above.
            enable_model_summary=False,
            log_every_n_steps=max(1, min(50, train_batches)),
        )
        # [/docs:lightning-trainer]
        if engine == "plain" and trainer.world_size > 1:
            progress(f"plain engine on {trainer.world_size} processes: each normalises its own slice of every "
                     f"batch (per-process BatchNorm statistics, Keras MirroredStrategy's default); --engine fast "
                     f"uses the whole batch's and trains like one process")
        if cpu_threads is not None and trainer.strategy.root_device.type == "cpu":
            previous_threads = torch.get_num_threads()
            torch.set_num_threads(cpu_threads)
        if stopped is None:
            outcome, kept, fit_seconds = fit_and_decide(trainer, module, datamodule, callbacks, settings, run_dir,
                                                        resume=resume, progress=progress)
            # Training is over: record the outcome before testing, so that a resume tests the same model.
            if trainer.global_rank == 0:  # process 0 alone writes the run directory
                record_stopped(run_dir, outcome)
            reach_fault_point("stopped", run_dir)
        else:
            outcome, fit_seconds = stopped, 0.0
            progress(stopped_summary(stopped))
            kept = module_class.load_from_checkpoint(str(stopped["kept_model"]), map_location="cpu",
                                                     weights_only=True)
        history, epochs_run, stop_reason = outcome["history"], outcome["epochs_run"], outcome["stop_reason"]
        best_epoch, best_value, monitor = outcome["best_epoch"], outcome["best_value"], outcome["monitor"]
        best_path = outcome["kept_model"] if settings.early_stop else None

        try:
            # [docs:lightning-load-and-test]
            trainer.test(kept, datamodule=datamodule, verbose=False)
            if trainer.global_rank != 0:
                return {"framework": FRAMEWORK, "run_dir": str(run_dir), "rank": trainer.global_rank}
            test_features, test_target = dataset.split_arrays("test")
            probabilities = predict_probabilities(kept.net, test_features, trainer.strategy.root_device)
            test = summarize_test(test_target, probabilities)
            # [/docs:lightning-load-and-test]
        except (KeyboardInterrupt, SIGTERMException, SystemExit) as error:
            # The same shutdown paths as in fit (fit_and_decide); the outcome is recorded, so the
            # resume only tests again.
            if isinstance(error, SystemExit) and not isinstance(error, SIGTERMException) \
                    and trainer.state.status != "interrupted":
                raise
            signal_name = "SIGTERM" if isinstance(error, SIGTERMException) or trainer.received_sigterm else "SIGINT"
            raise interrupted_while_testing(signal_name, COMMAND, run_dir) from None
        reach_fault_point("tested", run_dir)
        result = {
            "framework": FRAMEWORK,
            "experiment": settings.experiment,
            "epochs_run": epochs_run,
            "best_epoch": best_epoch,
            "best_value": best_value,
            "monitor": monitor,
            "history": history,
            "test": test,
            "params": params,
            "best_checkpoint": None if best_path is None else str(best_path),
            "run_dir": str(run_dir),
            "seconds": round(time.perf_counter() - started, 3),
            "device": describe_device(trainer),
            "stop_reason": stop_reason,
            "model": str(outcome["kept_model"]),  # the file whose test figures these are
            **judge_test(test),  # "degenerate", "predicted_positive_share"
        }
        missing = [key for key in RESULT_KEYS if key not in result]
        if missing:  # pragma: no cover - guards the shared contract
            raise RuntimeError(f"result lacks {missing}")
        progress(f"fit took {fit_seconds:.1f} s ({fit_seconds / max(epochs_run - first_epoch, 1):.2f} s per epoch); "
                 f"{stop_reason}")
        write_run_artifacts(run_dir, result)
        reach_fault_point("written", run_dir)
        save_run_request(run_dir, request, framework=FRAMEWORK, completed=True)  # never resumed again
        return result
    except NoFiniteModel:
        if created_here:  # a new run whose first epoch diverged holds no model: nothing is kept
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        if created_here:
            os.environ.pop(RUN_DIR_ENVIRONMENT_VARIABLE, None)
        if previous_threads is not None:
            torch.set_num_threads(previous_threads)


def csv_version(run_dir: Path, resume: str | Path | None) -> str:
    """CSVLogger's sub-folder: csv/ for a new run, csv/resumed-N/ for the N-th resume (Lightning would
    otherwise replace the interrupted part's metrics.csv; history.csv always holds every epoch)."""
    if resume is None:
        return ""
    existing = sorted(run_dir.glob("csv/resumed-*"))
    return f"resumed-{len(existing) + 1}"


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
    parser = OneLineArgumentParser(
        prog="python -m lightning_impl.train",
        description="Train the streetcar-delay model with PyTorch Lightning (one experiment of the book's "
                    "chapter 6), test the kept model and write a run directory.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
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
    if request.json:
        emit_json({key: result[key] for key in RESULT_KEYS})
    else:
        print(describe_result(result), flush=True)
    warning = degenerate_warning(result, request)
    if warning is not None:  # last, on stderr, so that it is what the user reads
        say(warning)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
