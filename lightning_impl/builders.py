"""The pieces a Lightning run is built from, one builder each: benchmarks/ builds its runs with them too.

    seed_run(config)                                   # lightning.seed_everything when general.repeatable_run
    steps_per_execution, gradients = engine_options(engine, None, None)
    module = build_module(request, dataset, class_weight, engine=engine, gradients=gradients)
    datamodule = build_datamodule(request, dataset, class_weight, steps_per_execution=steps_per_execution)
    trainer = build_trainer(config, callbacks=[...], max_epochs=5, run_dir=run_dir)   # or run_dir=None

lightning_impl.train puts them together into a run (checkpoints, loggers,
resume, testing); benchmarks/ times the same module, data module and Trainer
without the run's outputs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping

from configs.cli import RunRequest
from configs.loader import ENGINES
from data.dataset import PreparedDataset

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


def csv_version(run_dir: Path, resume: str | Path | None) -> str:
    """CSVLogger's sub-folder: csv/ for a new run, csv/resumed-N/ for the N-th resume (Lightning would
    otherwise replace the interrupted part's metrics.csv; history.csv always holds every epoch)."""
    if resume is None:
        return ""
    existing = sorted(run_dir.glob("csv/resumed-*"))
    return f"resumed-{len(existing) + 1}"


def seed_run(config) -> None:
    """Seed every generator when general.repeatable_run (Keras's counterpart: keras_impl.runtime.make_repeatable)."""
    import lightning as L

    # [docs:lightning-seed-call]
    if config.general.repeatable_run:
        # The book's repeatable_run: seed Python, NumPy and torch (and dataloader workers).
        L.seed_everything(config.general.seed, workers=True, verbose=False)
    # [/docs:lightning-seed-call]


def build_module(request: RunRequest, dataset: PreparedDataset, class_weight: Mapping[int, float], *,
                 engine: str, gradients: str | None):
    """The engine's LightningModule with the config's hyperparameters; `gradients` from engine_options."""
    hyper = request.config.hyperparameters
    # [docs:lightning-module]
    module = lightning_module_class(engine)(
        dataset.vocab_sizes, dataset.vocabularies.to_json_dict(), embedding_dim=hyper.embedding_dim,
        dropout_rate=hyper.dropout_rate, output_activation=hyper.output_activation,
        learning_rate=hyper.learning_rate, zero_weight=class_weight[0], one_weight=class_weight[1],
        **({"gradients": gradients} if engine == "fast" else {}))
    # [/docs:lightning-module]
    return module


def build_datamodule(request: RunRequest, dataset: PreparedDataset, class_weight: Mapping[int, float], *,
                     steps_per_execution: int):
    """The shared batch order over `dataset` (lightning_impl.datamodule), steps_per_execution batches a step."""
    from lightning_impl.datamodule import StreetcarDataModule

    config = request.config
    # [docs:lightning-datamodule]
    datamodule = StreetcarDataModule(dataset, batch_size=config.hyperparameters.batch_size,
                                     batch_order=config.general.batch_order, seed=config.general.seed,
                                     class_weight=class_weight, steps_per_execution=steps_per_execution,
                                     precision=config.hyperparameters.precision)
    # [/docs:lightning-datamodule]
    return datamodule


def build_trainer(config, *, callbacks: list, max_epochs: int, accelerator: str = "auto",
                  devices: str | int = "auto", strategy: str = "auto", num_nodes: int = 1,
                  deterministic: bool | None = None, progress_bar: bool = False, run_dir: Path | None = None,
                  resume: str | Path | None = None, log_every_n_steps: int = 50, **options: Any):
    """A lightning Trainer as a run uses it; `options` go to L.Trainer as they are (e.g. limit_val_batches=0).

    With `run_dir` it writes the run's checkpoints and logs there; without,
    it writes nothing (no logger, no checkpointing): the benchmarks time
    training alone this way.  `deterministic` defaults to general.repeatable_run.
    """
    import lightning as L

    from lightning_impl.run_callbacks import AtomicCheckpointIO

    if run_dir is None:
        outputs: dict[str, Any] = dict(logger=False, enable_checkpointing=False)
    else:
        from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

        outputs = dict(
            # Checkpoints go to a temp file beside the target and are renamed into place, so a killed
            # run always leaves a whole last.ckpt to --resume from (docs/reliability.md).
            plugins=[AtomicCheckpointIO()], default_root_dir=str(run_dir), log_every_n_steps=log_every_n_steps,
            # [docs:lightning-loggers]
            logger=[TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=""),
                    CSVLogger(save_dir=str(run_dir), name="csv", version=csv_version(run_dir, resume))],
            # [/docs:lightning-loggers]
        )
    # [docs:lightning-trainer]
    return L.Trainer(
        accelerator=accelerator, devices=devices, strategy=strategy, num_nodes=num_nodes, max_epochs=max_epochs,
        deterministic=config.general.repeatable_run if deterministic is None else deterministic,
        # hyperparameters.precision 64: "64-true" casts the module and every floating batch to float64,
        # what Keras's floatx and dtype policy do on the other side (keras_impl.precision).
        precision=f"{config.hyperparameters.precision}-true",
        callbacks=callbacks,
        # Keras runs no validation before training; a sanity pass would also feed the callbacks.
        num_sanity_val_steps=0,
        # The data module splits batches between DDP processes itself (see its docstring).
        use_distributed_sampler=False,
        enable_progress_bar=bool(progress_bar),
        # Lightning's summary counts parameters only (1.2 K); the Keras counts are printed above.
        enable_model_summary=False,
        **outputs, **options)
    # [/docs:lightning-trainer]
