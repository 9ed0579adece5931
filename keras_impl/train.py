"""Train, checkpoint and test the streetcar model with Keras 3: one experiment of chapter 6.

    python -m keras_impl.train --experiment 0                  # 1-epoch smoke run
    python -m keras_impl.train --experiment 5 --json | jq .test
    python -m keras_impl.train --experiment 4 --sample-rows 200000 --epochs 5 --patience 2
    python -m keras_impl.train --resume runs/keras-exp5-20250101-120000   # continue an interrupted run

The same flags as `python -m lightning_impl.train` (configs/cli.py); every
flag overrides one key of configs/streetcar.yaml.  A run:

1. loads the prepared dataset (data.load_prepared; --sample-rows takes a
   seeded subset that keeps each row in its split);
2. seeds Python, NumPy, TensorFlow and Keras and makes TensorFlow's ops
   deterministic when general.repeatable_run (the book's repeatable_run), so
   two runs with one seed give identical histories and weights on CPU;
3. builds and compiles the model (keras_impl.model), with class_weight
   {0: zero_weight, 1: one_weight}, one_weight "balanced" =
   count_no_delay / count_delay + one_weight_offset on the train split;
4. fits with the shared batch order (keras_impl.data) and the chapter's
   callbacks (keras_impl.callbacks): EarlyStopping + ModelCheckpoint when the
   experiment stops early, TensorBoard, a CSV log, ReduceLROnPlateau if enabled;
5. saves the model.  With early stopping the best checkpoint is the
   ModelCheckpoint file.  Without it the model is saved explicitly as in the
   book's §6.10, in Keras 3's formats:

       book (Keras 2.2.4)                         here (Keras 3)
       open(...json).write(model.to_json())       model_architecture.json  (same call)
       model.save_weights("...h5")                model.save_weights("model.weights.h5")
                                                  (Keras 3 insists on the .weights.h5 suffix)
       model.save("...h5")  (HDF5, arch+weights)  model.save("model.keras")  (zip: config JSON +
                                                  weights + optimizer state; Keras 3 keeps .h5
                                                  saving only as a deprecated legacy path)

   vocabulary.json (the encoding) is written beside the model in every run;
6. reloads the kept model from disk (keras.models.load_model), predicts the
   test split and writes history.csv, curves.png, confusion_matrix.png and
   result.json (experiment.artifacts) into a fresh run directory.

train() only puts the steps together: the framework-neutral ones are in
experiment.run, fitting, saving and resuming in keras_impl.fit.

--json prints the result object (experiment.artifacts.RESULT_KEYS) on stdout;
Keras's own verbose=2 epoch lines and every other progress line go to stderr.

Interrupted runs (Ctrl-C, SIGTERM, a killed process) continue with
`--resume RUN_DIR` and end with the same stopped epoch, best epoch and
bitwise-identical weights as an uninterrupted run: keras_impl.callbacks.
RunStateBackup is Keras's BackupAndRestore plus the EarlyStopping /
ModelCheckpoint / ReduceLROnPlateau state, dropout seeds and history Keras
does not keep.  Once training is over, training_stopped.json records the
outcome before the test phase, so a run killed anywhere after that resumes
straight to testing the same kept model (experiment.run_state).  A NaN or
infinite loss (or monitored value) stops the run at that epoch; the best
checkpoint from before it is kept and result["stop_reason"] says why the run
stopped (docs/reliability.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from configs.cli import RunRequest, positive_int, resolve_run_request
from data.dataset import PreparedDataset
from experiment.artifacts import summarize_test
from experiment.commands import report_result, trainer_parser, training_examples
from configs.console import run_main, say
from experiment.run import build_result, finish_run, open_run, resolve_class_weight, run_dataset

FRAMEWORK = "keras"
COMMAND = "keras_impl.train"
PREDICTION_BATCH_ROWS = 131072

EPILOG = training_examples(COMMAND, ("--experiment 9 --seed 7 --out-dir /tmp/runs", ""),
                           ("--resume runs/keras-exp5-20250101-120000",
                            "continue an interrupted run from its backup/")) + """
Each run writes runs/keras-exp<ID>-<timestamp>/: the model (best-epoch*.keras
checkpoints with early stopping, else model.keras + model_architecture.json +
model.weights.h5), vocabulary.json, history.csv, training_log.csv, curves.png,
confusion_matrix.png, result.json and tensorboard/.  Score one trip with
  python -m keras_impl.score --model runs/<run>/model.keras --route 501 --direction e --date 2019-06-21 --hour 18
"""


# --------------------------------------------------------------------------
# Steps of a run
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# Builders (benchmarks/ builds its Keras runs with the same ones)
# --------------------------------------------------------------------------


def seed_run(config) -> None:
    """Seed every generator and make TensorFlow's ops deterministic when general.repeatable_run."""
    from keras_impl.runtime import make_repeatable

    # [docs:keras-seed-call]
    if config.general.repeatable_run:
        make_repeatable(config.general.seed)
    # [/docs:keras-seed-call]


def build_compiled_model(request: RunRequest, dataset: PreparedDataset):
    """The book's model (keras_impl.model) for `dataset`'s vocabularies, compiled with the config's learning rate."""
    from keras_impl.model import build_model, compile_model

    hyper = request.config.hyperparameters
    model = build_model(dataset.vocab_sizes, embedding_dim=hyper.embedding_dim,
                        dropout_rate=hyper.dropout_rate, output_activation=hyper.output_activation)
    return compile_model(model, hyper.learning_rate, steps_per_execution=request.config.keras.steps_per_execution,
                         jit_compile=request.config.keras.jit_compile)


def build_fit(request: RunRequest, dataset: PreparedDataset, class_weight: Mapping[int, float], *, epochs: int,
              first_epoch: int = 0) -> dict[str, Any]:
    """model.fit's arguments: the shared batch order, class weights as per-row sample weights (keras_impl.data)."""
    from keras_impl.data import build_fit_arguments

    config = request.config
    return build_fit_arguments(dataset, batch_size=config.hyperparameters.batch_size, seed=config.general.seed,
                               epochs=epochs, class_weight=class_weight, batch_order=config.general.batch_order,
                               first_epoch=first_epoch)


def predict_probabilities(model, inputs: Mapping[str, np.ndarray],
                          batch_rows: int = PREDICTION_BATCH_ROWS) -> np.ndarray:
    """p(delay) for every row, (n,) float32, in large batches through the compiled predict step."""
    n_rows = len(next(iter(inputs.values())))
    chunks = []
    for start in range(0, n_rows, batch_rows):
        chunk = {column: values[start:start + batch_rows] for column, values in inputs.items()}
        chunks.append(np.asarray(model.predict_on_batch(chunk)).reshape(-1))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------


def train(request: RunRequest, *, dataset: PreparedDataset | None = None,
          device: str | None = None, progress: Callable[[str], None] = say,
          initial_weights: Mapping[str, np.ndarray] | None = None,
          resume: str | Path | None = None) -> dict[str, Any]:
    """Run one experiment end to end; return the result object (RESULT_KEYS).

    `dataset` skips loading (tests pass a synthetic or pre-loaded one; it is
    still sampled when request.sample_rows is set).  `initial_weights`, a
    canonical weight mapping (experiment.weights: every name, Keras layouts,
    BatchNorm moving statistics included), replaces the freshly initialised
    weights before fit: the parity suite starts Keras and Lightning from the
    same point this way (parity_tests/trajectory.py).  Keras prints its
    verbose=2 epoch lines and callback messages on stdout, which belongs to
    --json, so the whole run writes to stderr and TensorFlow's native log
    lines are dropped (keras_impl.runtime.native_logs_silenced).

    `resume` is the run directory of an interrupted run (build the request
    with experiment.reliability.load_run_request): training continues in it
    from its backup/ (keras_impl.callbacks.RunStateBackup) and ends as the
    uninterrupted run would.  SIGTERM raises RunInterrupted like Ctrl-C does,
    so both end with a line saying how to resume (docs/reliability.md).
    """
    started = time.perf_counter()
    from experiment.reliability import sigterm_raises_interrupt
    from keras_impl.precision import keras_float_type
    from keras_impl.runtime import native_logs_silenced, start_tensorflow

    device = device or start_tensorflow()
    # --precision 64: floatx and the dtype policy for the whole run, restored afterwards (keras_impl.precision).
    with native_logs_silenced(), sigterm_raises_interrupt(), \
            keras_float_type(request.config.hyperparameters.precision):
        return run_experiment(request, dataset=dataset, device=device, progress=progress, started=started,
                              initial_weights=initial_weights, resume=resume)


def run_experiment(request: RunRequest, *, dataset: PreparedDataset | None, device: str,
                   progress: Callable[[str], None], started: float,
                   initial_weights: Mapping[str, np.ndarray] | None = None,
                   resume: str | Path | None = None) -> dict[str, Any]:
    """train()'s body: see train() and the module docstring."""
    import keras

    from experiment.reliability import NoFiniteModel, interrupted_while_testing, reach_fault_point
    from experiment.run_state import record_stopped, resume_note, stopped_summary
    from keras_impl.callbacks import BACKUP_DIR
    from keras_impl.data import check_steps_per_execution, split_inputs
    from keras_impl.fit import fit_and_decide, prepare_resume
    from keras_impl.model import parameter_counts

    config, settings = request.config, request.settings
    dataset = run_dataset(request, dataset)
    check_steps_per_execution(len(dataset.splits["train"]), config.hyperparameters.batch_size,
                              config.keras.steps_per_execution, config.general.batch_order)
    seed_run(config)
    class_weight = resolve_class_weight(request, dataset)
    place = open_run(request, dataset, framework=FRAMEWORK, resume=resume, check_resumable=prepare_resume)
    run_dir = place.run_dir
    sizes = {split: int(len(rows)) for split, rows in dataset.splits.items()}
    progress(f"keras experiment {settings.experiment} ({settings.description}): {settings.epochs} epoch(s), "
             f"rows {sizes}, class_weight {class_weight}, batch order {config.general.batch_order}, "
             f"float{config.hyperparameters.precision}, device {device}, run dir {run_dir}"
             + resume_note(resume is not None and place.stopped is None, place.first_epoch, place.fit_epochs,
                           run_dir / BACKUP_DIR))

    model = build_compiled_model(request, dataset)
    if place.stopped is None:
        try:
            outcome = fit_and_decide(model, request, dataset, run_dir, class_weight=class_weight,
                                     first_epoch=place.first_epoch, fit_epochs=place.fit_epochs,
                                     initial_weights=initial_weights, progress=progress)
        except NoFiniteModel:
            if place.created:  # a new run whose first epoch diverged holds no model: nothing is kept
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        # Training is over: record the outcome before testing, so that a resume tests the same model.
        record_stopped(run_dir, outcome)
        reach_fault_point("stopped", run_dir)
    else:
        outcome = place.stopped
        progress(stopped_summary(outcome))

    try:
        reach_fault_point("test", run_dir)
        # [docs:keras-load-and-test]
        test_inputs, test_target = split_inputs(dataset, "test")
        kept_model = keras.models.load_model(str(outcome["kept_model"]))
        test = summarize_test(test_target, predict_probabilities(kept_model, test_inputs))
        # [/docs:keras-load-and-test]
    except KeyboardInterrupt as error:  # Ctrl-C, or SIGTERM through sigterm_raises_interrupt
        raise interrupted_while_testing(getattr(error, "signal_name", "SIGINT"), COMMAND, run_dir) from None
    reach_fault_point("tested", run_dir)
    result = build_result(request, framework=FRAMEWORK, outcome=outcome, test=test, params=parameter_counts(model),
                          run_dir=run_dir, started=started, device=device)
    finish_run(run_dir, request, result, framework=FRAMEWORK)
    shutil.rmtree(run_dir / BACKUP_DIR, ignore_errors=True)  # kept until now: a resume needed it
    return result


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def jit_compile_choice(text: str) -> bool | str:
    """--jit-compile's value as Model.compile takes it: "auto", True or False."""
    choices = {"auto": "auto", "true": True, "false": False}
    if text.lower() not in choices:
        raise argparse.ArgumentTypeError(f"invalid choice {text!r}; valid: auto, true, false")
    return choices[text.lower()]


def build_argument_parser() -> argparse.ArgumentParser:
    parser = trainer_parser(COMMAND, "Keras 3", EPILOG)
    group = parser.add_argument_group("Keras options")
    # The same flag as python -m lightning_impl.train --resume (docs/reliability.md).
    group.add_argument("--resume", default=None, metavar="RUN_DIR",
                       help="continue an interrupted run in RUN_DIR from its backup/, with the settings saved "
                            "in that run (only --epochs and --json may be given with it)")
    group.add_argument("--steps-per-execution", type=positive_int, default=None, metavar="K",
                       help="batches per call of Keras's compiled train function (Model.compile's "
                            "steps_per_execution; default keras.steps_per_execution, the book's 1). The same "
                            "updates, fewer Python round trips; batch-level callbacks see every K-th batch")
    group.add_argument("--jit-compile", type=jit_compile_choice, default=None, metavar="{auto,true,false}",
                       help="compile the train function with XLA (Model.compile's jit_compile; default "
                            "keras.jit_compile, auto = Keras's default: off on a CPU-only machine)")
    return parser


def apply_keras_options(request: RunRequest, args: argparse.Namespace) -> RunRequest:
    """--steps-per-execution and --jit-compile over the config's keras section."""
    from configs.loader import override

    config = request.config
    if args.steps_per_execution is not None:
        config = override(config, "keras.steps_per_execution", args.steps_per_execution)
    if args.jit_compile is not None:
        config = override(config, "keras.jit_compile", args.jit_compile)
    return dataclasses.replace(request, config=config)


RESUME_COMPATIBLE_FLAGS = ("epochs", "json", "resume")


def main(argv: Sequence[str] | None = None) -> int:
    from experiment.reliability import load_run_request, refuse_flags_beside_resume
    from experiment.run_state import hold_run_lock

    parser = build_argument_parser()
    args = parser.parse_args(argv)
    if args.resume is not None:
        refuse_flags_beside_resume(parser, args, RESUME_COMPATIBLE_FLAGS)
        request = load_run_request(args.resume, framework=FRAMEWORK, command=COMMAND,
                                   epochs=args.epochs, json_output=args.json)
        hold_run_lock(args.resume, COMMAND)
    else:
        request = apply_keras_options(resolve_run_request(args), args)
    result = train(request, resume=args.resume)
    report_result(result, request)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
