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
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from configs.cli import OneLineArgumentParser, RunRequest, add_common_arguments, resolve_run_request
from data.dataset import PreparedDataset
from experiment.artifacts import RESULT_KEYS, create_run_dir, describe_result, summarize_test, write_run_artifacts
from configs.console import emit_json, run_main, say
from experiment.verdict import degenerate_warning, judge_test

FRAMEWORK = "keras"
COMMAND = "keras_impl.train"
VOCABULARY_FILE = "vocabulary.json"
ARCHITECTURE_FILE = "model_architecture.json"
WEIGHTS_FILE = "model.weights.h5"
FINAL_MODEL_FILE = "model.keras"
BACKUP_DIR = "backup"              # keras_impl.callbacks.BACKUP_DIR: RunStateBackup's folder
TRAINING_LOG = "training_log.csv"  # keras_impl.callbacks.TRAINING_LOG: CSVLogger's file
PREDICTION_BATCH_ROWS = 131072

EPILOG = """\
examples:
  python -m keras_impl.train --experiment 0                 1-epoch smoke run on the full data
  python -m keras_impl.train --experiment 5 --json          early stop on val_accuracy; JSON result on stdout
  python -m keras_impl.train --experiment 3 --sample-rows 100000 --epochs 3
                                                            quick class-weighted run on a seeded subset
  python -m keras_impl.train --experiment 9 --seed 7 --out-dir /tmp/runs
  python -m keras_impl.train --resume runs/keras-exp5-20250101-120000
                                                            continue an interrupted run from its backup/

Each run writes runs/keras-exp<ID>-<timestamp>/: the model (best-epoch*.keras
checkpoints with early stopping, else model.keras + model_architecture.json +
model.weights.h5), vocabulary.json, history.csv, training_log.csv, curves.png,
confusion_matrix.png, result.json and tensorboard/.  Score one trip with
  python -m keras_impl.score --model runs/<run>/model.keras --route 501 --direction e --date 2019-06-21 --hour 18
"""


# --------------------------------------------------------------------------
# Steps of a run
# --------------------------------------------------------------------------


def load_run_dataset(request: RunRequest) -> PreparedDataset:
    """The prepared dataset, sampled to --sample-rows rows when asked."""
    from data import load_prepared

    dataset = load_prepared(request.config, raw_dir=request.raw_dir)
    if request.sample_rows is not None:
        dataset = dataset.sample(request.sample_rows, request.config.general.seed)
    return dataset


# [docs:keras-class-weight]
def resolve_class_weight(request: RunRequest, dataset: PreparedDataset) -> dict[int, float]:
    """{0: zero_weight, 1: one_weight}; "balanced" is computed on the train split."""
    settings = request.settings
    if settings.one_weight == "balanced":
        one_weight = dataset.one_weight(request.config.hyperparameters.one_weight_offset, split="train")
    else:
        one_weight = float(settings.one_weight)
    return {0: float(settings.zero_weight), 1: float(one_weight)}
# [/docs:keras-class-weight]


def build_compiled_model(request: RunRequest, dataset: PreparedDataset):
    from keras_impl.model import build_model, compile_model

    hyper = request.config.hyperparameters
    model = build_model(dataset.vocab_sizes, embedding_dim=hyper.embedding_dim,
                        dropout_rate=hyper.dropout_rate, output_activation=hyper.output_activation)
    return compile_model(model, hyper.learning_rate)


# [docs:keras-save]
def save_final_model(model, run_dir: Path) -> Path:
    """The book's §6.10 explicit save (see the module docstring for the Keras 2 -> 3 mapping)."""
    from data.atomic import write_atomic

    write_atomic(run_dir / ARCHITECTURE_FILE, model.to_json())
    model.save_weights(str(run_dir / WEIGHTS_FILE))
    model.save(str(run_dir / FINAL_MODEL_FILE))
    return run_dir / FINAL_MODEL_FILE
# [/docs:keras-save]


def locate_best_checkpoint(request: RunRequest, history: Mapping[str, Sequence[float]],
                           run_dir: Path) -> tuple[int, float, Path]:
    """(best_epoch, best_value, checkpoint path), decided as Keras decides and checked on disk."""
    from keras_impl.callbacks import checkpoint_file_template, format_checkpoint_name, keras_best_epoch

    settings = request.settings
    if settings.monitor not in history:
        raise RuntimeError(f"monitor {settings.monitor!r} is not in the history keys {sorted(history)}")
    values = [float(value) for value in history[settings.monitor]]
    best_epoch = keras_best_epoch(values, settings.mode)
    template = checkpoint_file_template(request.config.callbacks.checkpoint_template, settings.monitor)
    expected = run_dir / format_checkpoint_name(template, best_epoch, settings.monitor, values[best_epoch])
    if not expected.is_file():
        saved = sorted(path.name for path in run_dir.glob(f"*{Path(template).suffix}"))
        raise RuntimeError(f"Keras's best epoch by the history is {best_epoch} (1-based {best_epoch + 1}), "
                           f"but {expected.name} is not in {run_dir}; checkpoints there: {saved}")
    return best_epoch, values[best_epoch], expected


def predict_probabilities(model, inputs: Mapping[str, np.ndarray],
                          batch_rows: int = PREDICTION_BATCH_ROWS) -> np.ndarray:
    """p(delay) for every row, (n,) float32, in large batches through the compiled predict step."""
    n_rows = len(next(iter(inputs.values())))
    chunks = []
    for start in range(0, n_rows, batch_rows):
        chunk = {column: values[start:start + batch_rows] for column, values in inputs.items()}
        chunks.append(np.asarray(model.predict_on_batch(chunk)).reshape(-1))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def plain_history(history: Mapping[str, Sequence[Any]]) -> dict[str, list[float]]:
    return {key: [float(value) for value in values] for key, values in history.items()}


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
    from keras_impl.runtime import native_logs_silenced, start_tensorflow

    device = device or start_tensorflow()
    with native_logs_silenced(), sigterm_raises_interrupt():
        return run_experiment(request, dataset=dataset, device=device, progress=progress, started=started,
                              initial_weights=initial_weights, resume=resume)


def run_experiment(request: RunRequest, *, dataset: PreparedDataset | None, device: str,
                   progress: Callable[[str], None], started: float,
                   initial_weights: Mapping[str, np.ndarray] | None = None,
                   resume: str | Path | None = None) -> dict[str, Any]:
    """train()'s body: see train() and the module docstring."""
    import keras

    from experiment.reliability import (NoFiniteModel, check_same_vocabularies, interrupted_while_testing,
                                        reach_fault_point, save_run_request)
    from experiment.run_state import (check_every_split_has_rows, read_stopped, record_stopped, resume_note,
                                      stopped_summary)
    from keras_impl.data import split_inputs
    from keras_impl.model import parameter_counts
    from keras_impl.runtime import make_repeatable

    config, settings = request.config, request.settings
    seed = config.general.seed
    if dataset is None:
        dataset = load_run_dataset(request)
    elif request.sample_rows is not None:
        dataset = dataset.sample(request.sample_rows, seed)
    check_every_split_has_rows(dataset, request.sample_rows)  # before any run directory exists
    # [docs:keras-seed-call]
    if config.general.repeatable_run:
        make_repeatable(seed)
    # [/docs:keras-seed-call]

    class_weight = resolve_class_weight(request, dataset)
    first_epoch, fit_epochs, stopped = 0, settings.epochs, None
    if resume is not None:
        # The named run directory, never a new one; first_epoch = epochs its backup holds.
        run_dir = Path(resume)
        # Training already over and recorded: only the test phase is left.
        stopped = read_stopped(run_dir, settings.epochs)
        if stopped is None:
            first_epoch, fit_epochs = prepare_resume(run_dir, dataset, settings)
        else:
            check_same_vocabularies(run_dir, dataset.vocabularies, VOCABULARY_FILE)
    else:
        run_dir = create_run_dir(config.general.out_dir, FRAMEWORK, settings.experiment)
        dataset.vocabularies.save(run_dir / VOCABULARY_FILE)
        save_run_request(run_dir, request, framework=FRAMEWORK)
    sizes = {split: int(len(rows)) for split, rows in dataset.splits.items()}
    progress(f"keras experiment {settings.experiment} ({settings.description}): {settings.epochs} epoch(s), "
             f"rows {sizes}, class_weight {class_weight}, batch order {config.general.batch_order}, "
             f"device {device}, run dir {run_dir}"
             + resume_note(resume is not None and stopped is None, first_epoch, fit_epochs, run_dir / BACKUP_DIR))

    model = build_compiled_model(request, dataset)
    if stopped is None:
        try:
            outcome = fit_and_decide(model, request, dataset, run_dir, class_weight=class_weight,
                                     first_epoch=first_epoch, fit_epochs=fit_epochs,
                                     initial_weights=initial_weights, progress=progress)
        except NoFiniteModel:
            if resume is None:  # a new run whose first epoch diverged holds no model: nothing is kept
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        # Training is over: record the outcome before testing, so that a resume tests the same model.
        record_stopped(run_dir, outcome)
        reach_fault_point("stopped", run_dir)
    else:
        outcome = stopped
        progress(stopped_summary(stopped))
    kept_model_path = outcome["kept_model"]

    try:
        reach_fault_point("test", run_dir)
        # [docs:keras-load-and-test]
        test_inputs, test_target = split_inputs(dataset, "test")
        kept_model = keras.models.load_model(str(kept_model_path))
        test = summarize_test(test_target, predict_probabilities(kept_model, test_inputs))
        # [/docs:keras-load-and-test]
    except KeyboardInterrupt as error:  # Ctrl-C, or SIGTERM through sigterm_raises_interrupt
        raise interrupted_while_testing(getattr(error, "signal_name", "SIGINT"), COMMAND, run_dir) from None
    reach_fault_point("tested", run_dir)

    result = {
        "framework": FRAMEWORK,
        "experiment": settings.experiment,
        "epochs_run": outcome["epochs_run"],
        "best_epoch": outcome["best_epoch"],
        "best_value": outcome["best_value"],
        "monitor": outcome["monitor"],
        "history": outcome["history"],
        "test": test,
        "params": parameter_counts(model),
        "best_checkpoint": str(kept_model_path) if settings.early_stop else None,
        "run_dir": str(run_dir),
        "seconds": round(time.perf_counter() - started, 3),
        "device": device,
        "stop_reason": outcome["stop_reason"],
        "model": str(kept_model_path),  # the file whose test figures these are
        **judge_test(test),  # "degenerate", "predicted_positive_share"
    }
    missing = [key for key in RESULT_KEYS if key not in result]
    if missing:  # pragma: no cover - guards the shared contract
        raise RuntimeError(f"result lacks {missing}")
    write_run_artifacts(run_dir, result)
    reach_fault_point("written", run_dir)
    save_run_request(run_dir, request, framework=FRAMEWORK, completed=True)  # never resumed again
    shutil.rmtree(run_dir / BACKUP_DIR, ignore_errors=True)  # kept until now: a resume needed it
    return result


def fit_and_decide(model, request: RunRequest, dataset: PreparedDataset, run_dir: Path, *,
                   class_weight: Mapping[int, float], first_epoch: int, fit_epochs: int,
                   initial_weights: Mapping[str, np.ndarray] | None,
                   progress: Callable[[str], None]) -> dict[str, Any]:
    """Fit (or continue) the model and decide what the run keeps: experiment.run_state.OUTCOME_KEYS.

    `fit_epochs` is settings.epochs, or first_epoch when the backup's last
    epoch already ended training: fit() then trains nothing, and the backup
    callback only restores the state the run had when training ended.
    """
    import keras

    from experiment.reliability import (NoFiniteModel, RunInterrupted, TrainingDiverged, completed_reason,
                                        early_stop_reason, reach_fault_point, resume_hint)
    from keras_impl.callbacks import add_run_safety_callbacks, build_keras_callbacks
    from keras_impl.data import build_fit_arguments

    config, settings = request.config, request.settings
    hyper, seed = config.hyperparameters, config.general.seed
    # [docs:keras-fit]
    if initial_weights is not None:
        # By canonical name, every key and shape checked first (experiment.weights.check_weights).
        from keras_impl.model import set_canonical_weights

        set_canonical_weights(model, initial_weights, source="initial_weights")
        progress("initial weights: the given canonical weights, not the seeded initialisers")
    callbacks = add_run_safety_callbacks(build_keras_callbacks(settings, config.callbacks, run_dir),
                                         settings, run_dir)
    diverged = None
    try:
        if fit_epochs > first_epoch:
            fit_arguments = build_fit_arguments(
                dataset, batch_size=hyper.batch_size, seed=seed, epochs=fit_epochs,
                class_weight=class_weight, batch_order=config.general.batch_order, first_epoch=first_epoch)
            model.fit(**fit_arguments, callbacks=callbacks, verbose=2)
        else:  # the backup's last epoch ended training: restore, train nothing (experiment.run_state)
            callbacks[-1].restore_without_training(model)
    except TrainingDiverged as error:  # NonFiniteGuard: nothing after it saw the epoch
        diverged = error
    except KeyboardInterrupt as error:  # Ctrl-C, or SIGTERM through sigterm_raises_interrupt
        completed = len(next(iter(callbacks[-1].history.values()), []))
        signal_name = getattr(error, "signal_name", "SIGINT")
        # One line, printed once by configs.console.run_main.
        raise RunInterrupted(signal_name, f"interrupted by {signal_name} during epoch {completed + 1}; "
                                          f"{resume_hint(COMMAND, run_dir, completed)}") from None
    # [/docs:keras-fit]
    reach_fault_point("fit-ended", run_dir)
    # The backup callback's history spans every epoch (a resumed fit returns only its own).
    history = kept_history = plain_history(callbacks[-1].history)
    if diverged is not None:
        history = extend_history(history, diverged.figures)
        progress(f"{diverged}; keeping the model of the last finite epoch")
        if not kept_history:
            raise NoFiniteModel(diverged)
    epochs_run = len(next(iter(history.values()), []))

    if settings.early_stop:
        # Only finite epochs can hold the best checkpoint (the diverged one was never judged).
        best_epoch, best_value, kept_model_path = locate_best_checkpoint(request, kept_history, run_dir)
        monitor = settings.monitor
        progress(f"best epoch {best_epoch + 1} (0-based {best_epoch}): {monitor} = {best_value:.6f}; "
                 f"testing {kept_model_path.name}")
    else:
        best_epoch, best_value, monitor = None, None, None
        if diverged is not None:
            restore_last_finite_weights(model, run_dir, diverged)
        kept_model_path = save_final_model(model, run_dir)
    if diverged is not None:
        stop_reason = str(diverged)
    else:
        stopping = next((c for c in callbacks if isinstance(c, keras.callbacks.EarlyStopping)), None)
        stop_reason = (early_stop_reason(stopping.stopped_epoch, settings.monitor, settings.patience)
                       if stopping is not None and stopping.stopped_epoch > 0
                       else completed_reason(epochs_run, settings.epochs))
    return {"kept_model": kept_model_path, "history": history, "epochs_run": epochs_run, "best_epoch": best_epoch,
            "best_value": best_value, "monitor": monitor, "stop_reason": stop_reason}


# --------------------------------------------------------------------------
# Resume and divergence (docs/reliability.md)
# --------------------------------------------------------------------------


def prepare_resume(run_dir: Path, dataset: PreparedDataset, settings) -> tuple[int, int]:
    """Check an interrupted run directory can continue: (epoch it continues at, 0-based; epochs to fit to).

    The second number is settings.epochs, or the first one when the backup's
    last epoch already ended training (early stopping fired, or the epoch
    cap): fit() then trains nothing (experiment.run_state).  Also cuts
    training_log.csv back to the epochs the backup holds: an epoch that ended
    after the last backup (the process died in between) is run again and
    logged again.
    """
    from experiment.reliability import check_same_vocabularies
    from experiment.run_state import training_is_over
    from keras_impl.callbacks import read_backup_metadata

    check_same_vocabularies(run_dir, dataset.vocabularies, VOCABULARY_FILE)
    metadata = read_backup_metadata(run_dir / BACKUP_DIR)
    if metadata is None:
        raise ValueError(f"--resume: {run_dir / BACKUP_DIR} holds no backup (the run was interrupted before its "
                         f"first epoch ended); start a new run instead")
    first_epoch = int(metadata["epoch"])
    trim_training_log(run_dir / TRAINING_LOG, first_epoch)
    early_stopping = metadata["project_state"]["callbacks"].get("EarlyStopping")
    if training_is_over(first_epoch, settings.epochs, early_stopping):
        return first_epoch, first_epoch
    return first_epoch, settings.epochs


def trim_training_log(path: Path, epochs: int) -> None:
    """Keep the header and the rows of epochs 0..epochs-1 of Keras's CSVLogger file (atomically)."""
    from data.atomic import write_atomic

    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:] if line.split(",", 1)[0].strip().isdigit()
                        and int(line.split(",", 1)[0]) < epochs]
    write_atomic(path, "".join(kept).encode("utf-8"))


def extend_history(history: Mapping[str, list[float]], figures: Mapping[str, float]) -> dict[str, list[float]]:
    """The history plus the diverged epoch's figures (NaN for a key that epoch did not log)."""
    keys = list(history) or list(figures)
    return {key: [*history.get(key, []), float(figures.get(key, float("nan")))] for key in keys}


def restore_last_finite_weights(model, run_dir: Path, diverged) -> None:
    """After divergence without early stopping, put back the weights of the last finite epoch (the backup)."""
    from keras_impl.callbacks import read_backup_metadata

    metadata = read_backup_metadata(run_dir / BACKUP_DIR)
    if metadata is None:
        raise ValueError(f"training diverged in its first epoch ({diverged}), so no finite model exists; "
                         f"lower hyperparameters.learning_rate")
    model.load_weights(str(run_dir / BACKUP_DIR / metadata["weights"]))


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def build_argument_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m keras_impl.train",
        description="Train the streetcar-delay model with Keras 3 (one experiment of the book's chapter 6), "
                    "test the kept model and write a run directory.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    # The same flag as python -m lightning_impl.train --resume (docs/reliability.md).
    parser.add_argument("--resume", default=None, metavar="RUN_DIR",
                        help="continue an interrupted run in RUN_DIR from its backup/, with the settings saved "
                             "in that run (only --epochs and --json may be given with it)")
    return parser


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
        request = resolve_run_request(args)
    result = train(request, resume=args.resume)
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
