"""The steps of a training run that do not depend on the framework.

keras_impl.train and lightning_impl.train both call these, in this order:

    dataset = run_dataset(request, dataset)             # load (or take) and sample, every split non-empty
    class_weight = resolve_class_weight(request, dataset)
    place = open_run(request, dataset, ...)              # a new run directory, or the one --resume names
    ...the framework fits and tests...
    result = build_result(...)                           # experiment.artifacts.RESULT_KEYS, checked
    finish_run(place.run_dir, request, result, ...)      # artefacts written, the run marked completed

What differs between the frameworks (how a model is built, fitted, saved and
resumed) stays in the trainers; a resume's check is passed in as
`check_resumable` (Keras reads its backup/, Lightning its last.ckpt).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from configs.cli import RunRequest
from data.dataset import PreparedDataset

VOCABULARY_FILE = "vocabulary.json"


def load_run_dataset(request: RunRequest) -> PreparedDataset:
    """The prepared dataset, sampled to --sample-rows rows when asked (a seeded subset, each row in its split)."""
    from data import load_prepared

    dataset = load_prepared(request.config, raw_dir=request.raw_dir)
    if request.sample_rows is not None:
        dataset = dataset.sample(request.sample_rows, request.config.general.seed)
    return dataset


def run_dataset(request: RunRequest, dataset: PreparedDataset | None = None) -> PreparedDataset:
    """`dataset` (tests pass one; still sampled by --sample-rows) or the prepared one; every split must have rows.

    Checked before any run directory exists, so a too-small sample leaves nothing behind.
    """
    from experiment.run_state import check_every_split_has_rows

    if dataset is None:
        dataset = load_run_dataset(request)
    elif request.sample_rows is not None:
        dataset = dataset.sample(request.sample_rows, request.config.general.seed)
    check_every_split_has_rows(dataset, request.sample_rows)
    return dataset


# [docs:class-weight]
def resolve_class_weight(request: RunRequest, dataset: PreparedDataset) -> dict[int, float]:
    """{0: zero_weight, 1: one_weight}; "balanced" is computed on the train split."""
    settings = request.settings
    if settings.one_weight == "balanced":
        one_weight = dataset.one_weight(request.config.hyperparameters.one_weight_offset, split="train")
    else:
        one_weight = float(settings.one_weight)
    return {0: float(settings.zero_weight), 1: float(one_weight)}
# [/docs:class-weight]


def extend_history(history: Mapping[str, list[float]], figures: Mapping[str, float]) -> dict[str, list[float]]:
    """The history plus a diverged epoch's figures (NaN for a key that epoch did not log)."""
    keys = list(history) or list(figures)
    return {key: [*history.get(key, []), float(figures.get(key, float("nan")))] for key in keys}


@dataclass(frozen=True)
class RunPlace:
    """Where a run trains and from which epoch.

    `stopped` is the outcome training_stopped.json recorded when a resumed
    run's training was already over (only the test phase is left), else None;
    `created` is True for a run directory this process made.
    """

    run_dir: Path
    first_epoch: int
    fit_epochs: int
    stopped: dict[str, Any] | None
    created: bool


def open_run(request: RunRequest, dataset: PreparedDataset, *, framework: str, resume: str | Path | None,
             check_resumable: Callable[[Path, PreparedDataset, Any], tuple[int, int]]) -> RunPlace:
    """A new run directory (vocabulary and request saved in it), or the interrupted one `resume` names.

    For a resume, `check_resumable(run_dir, dataset, settings)` returns (the
    epoch training continues at, the epochs to fit to), or raises a one-line
    ValueError; a run whose training was over only checks the vocabulary.
    """
    from experiment.artifacts import create_run_dir
    from experiment.reliability import check_same_vocabularies, save_run_request
    from experiment.run_state import read_stopped

    config, settings = request.config, request.settings
    if resume is not None:
        run_dir = Path(resume)  # the named run directory, never a new one
        stopped = read_stopped(run_dir, settings.epochs)
        if stopped is not None:  # training already over and recorded: only the test phase is left
            check_same_vocabularies(run_dir, dataset.vocabularies, VOCABULARY_FILE)
            return RunPlace(run_dir, 0, settings.epochs, stopped, created=False)
        first_epoch, fit_epochs = check_resumable(run_dir, dataset, settings)
        return RunPlace(run_dir, first_epoch, fit_epochs, None, created=False)
    run_dir = create_run_dir(config.general.out_dir, framework, settings.experiment)
    dataset.vocabularies.save(run_dir / VOCABULARY_FILE)
    save_run_request(run_dir, request, framework=framework)
    return RunPlace(run_dir, 0, settings.epochs, None, created=True)


def build_result(request: RunRequest, *, framework: str, outcome: Mapping[str, Any], test: Mapping[str, Any],
                 params: Mapping[str, int], run_dir: Path, started: float, device: str) -> dict[str, Any]:
    """The result object (experiment.artifacts.RESULT_KEYS) of a tested run; `outcome` is OUTCOME_KEYS."""
    from experiment.artifacts import RESULT_KEYS
    from experiment.verdict import judge_test

    settings = request.settings
    result = {
        "framework": framework,
        "experiment": settings.experiment,
        "epochs_run": outcome["epochs_run"],
        "best_epoch": outcome["best_epoch"],
        "best_value": outcome["best_value"],
        "monitor": outcome["monitor"],
        "history": outcome["history"],
        "test": test,
        "params": params,
        "best_checkpoint": str(outcome["kept_model"]) if settings.early_stop else None,
        "run_dir": str(run_dir),
        "seconds": round(time.perf_counter() - started, 3),
        "device": device,
        "stop_reason": outcome["stop_reason"],
        "model": str(outcome["kept_model"]),  # the file whose test figures these are
        **judge_test(test),  # "degenerate", "predicted_positive_share"
        "precision": request.config.hyperparameters.precision,  # 32 or 64: the float width of the run
    }
    missing = [key for key in RESULT_KEYS if key not in result]
    if missing:  # pragma: no cover - guards the shared contract
        raise RuntimeError(f"result lacks {missing}")
    return result


def finish_run(run_dir: Path, request: RunRequest, result: Mapping[str, Any], *, framework: str) -> None:
    """Write the artefacts, then mark the run completed, so that it is never resumed again."""
    from experiment.artifacts import write_run_artifacts
    from experiment.reliability import reach_fault_point, save_run_request

    write_run_artifacts(run_dir, result)
    reach_fault_point("written", run_dir)
    save_run_request(run_dir, request, framework=framework, completed=True)
