"""The chapter-6 table's runs: every (experiment, framework) trained on one dataset, summarised, written.

`build_report` is the orchestration behind `python -m parity_tests.report`
(reports/results_cli.py holds its flags and the epoch conventions); the
page's words come from reports/results_page.py, the figures from
reports/results_plots.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from configs.cli import RunRequest, resolve_run_request
from configs.loader import load_config, override
from data.atomic import write_atomic
from experiment.artifacts import write_json
from configs.console import say
from experiment.machine import describe_machine
from experiment.weights import shared_initial_weights
from reports.results_companions import read_companions
from reports.results_page import (RESULTS_JSON, RESULTS_MARKDOWN, confusion_file, curves_file, render_markdown,
                                  results_payload)
from reports.results_plots import plot_experiment_confusion, plot_experiment_curves
from reports.results_story import FRAMEWORKS

# The keys every framework's summary of every experiment holds; the rest of a summary is extra context.
SUMMARY_KEYS = ("epochs_run", "best_epoch", "val_accuracy_terminal", "val_accuracy_best", "test_accuracy",
                "false_negatives", "recall", "seconds")
# How the two frameworks of an experiment get their initial weights (--initial-weights).
INITIAL_WEIGHTS_CHOICES = ("shared", "seeded")


def summarize_run(result: Mapping[str, Any], one_weight: float) -> dict[str, Any]:
    """The report's figures of one train() result (epoch conventions: reports/results_cli.py)."""
    history = result["history"]
    val_accuracy = [float(value) for value in history.get("val_accuracy", [])]
    val_loss = [float(value) for value in history.get("val_loss", [])]
    if not val_accuracy:
        raise RuntimeError(f"{result['framework']} experiment {result['experiment']}: no val_accuracy in history")
    best_index = int(np.argmax(val_accuracy))  # first maximum, as Keras's "max" mode keeps the first
    kept_index = result["best_epoch"] if result["best_epoch"] is not None else len(val_accuracy) - 1
    test = result["test"]
    return {
        "epochs_run": int(result["epochs_run"]),
        "best_epoch": best_index + 1,
        "val_accuracy_terminal": val_accuracy[-1],
        "val_accuracy_best": val_accuracy[best_index],
        "test_accuracy": float(test["accuracy"]),
        "false_negatives": int(test["false_negatives"]),
        "recall": float(test["recall"]),
        "seconds": float(result["seconds"]),
        "kept_epoch": int(kept_index) + 1,
        "val_accuracy_kept": val_accuracy[kept_index],
        "monitor": result["monitor"],
        "true_positives": int(test["true_positives"]),
        "precision": float(test["precision"]),
        "confusion_matrix": test["confusion_matrix"],
        "one_weight": float(one_weight),
        "history": {"val_accuracy": val_accuracy, "val_loss": val_loss,
                    "val_recall": [float(value) for value in history.get("val_recall", [])]},
        "run_dir": str(result["run_dir"]),
        "device": str(result["device"]),
    }


def run_request(args: argparse.Namespace, experiment: str, table_epochs: int) -> RunRequest:
    """The request `python -m <framework>.train --experiment ID ...` would resolve, with the epoch cap applied."""
    epochs = None if args.epochs is None else min(args.epochs, table_epochs)
    namespace = argparse.Namespace(config=args.config, experiment=experiment, epochs=epochs,
                                   patience=args.patience, seed=args.seed, sample_rows=None,
                                   raw_dir=args.raw_dir, out_dir=args.runs_dir, json=False)
    request = resolve_run_request(namespace)
    engine = getattr(args, "engine", None)
    if engine is not None:   # --engine: Lightning's engine for every run (Keras has one)
        request = dataclasses.replace(request, config=override(request.config, "lightning.engine", engine))
    return request


def train_one(framework: str, request: RunRequest, dataset, accelerator: str,
              progress: Callable[[str], None], initial_weights: Mapping[str, np.ndarray] | None = None
              ) -> dict[str, Any]:
    if framework == "keras":
        from keras_impl.train import train

        return train(request, dataset=dataset, progress=progress, initial_weights=initial_weights)
    from lightning_impl.train import train

    return train(request, dataset=dataset, accelerator=accelerator, progress_bar=False, progress=progress,
                 initial_weights=initial_weights)


def free_framework_state(framework: str) -> None:
    """Drop the finished run's graphs before the next one: many runs share this process."""
    if framework == "keras" and "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    gc.collect()


def write_outputs(out_dir: Path, results: Mapping[str, Any]) -> None:
    """results.json, results.md and every experiment's two PNGs (rewritten after each experiment)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {**results, "companions": read_companions(out_dir)}
    for experiment, runs in results["experiments"].items():
        plot_experiment_curves(out_dir / curves_file(experiment), experiment, runs)
        plot_experiment_confusion(out_dir / confusion_file(experiment), experiment, runs)
    write_json(out_dir / RESULTS_JSON, results_payload(results))
    write_atomic(out_dir / RESULTS_MARKDOWN, render_markdown(results).encode("utf-8"))


def dataset_facts(dataset) -> dict[str, Any]:
    report = dataset.report or {}
    date_range = report.get("date_range", {})
    return {"rows": dataset.n_rows, "splits": {name: int(len(rows)) for name, rows in dataset.splits.items()},
            "delay_rate": float(np.mean(dataset.target)), "date_start": date_range.get("start"),
            "date_end": date_range.get("end"), "vocab_sizes": dataset.vocab_sizes}


def validate_choices(args: argparse.Namespace, known_experiments: Sequence[str]) -> None:
    """Unknown ids are user errors named with what is valid (ValueError -> one line, exit 2)."""
    unknown = [item for item in args.experiments if item not in known_experiments]
    if unknown:
        raise ValueError(f"unknown experiment id(s) {', '.join(unknown)}; valid: {', '.join(known_experiments)}")
    if len(set(args.experiments)) != len(args.experiments):
        raise ValueError(f"--experiments lists an id twice: {','.join(args.experiments)}")
    if getattr(args, "parity", "book") == "exact" and args.initial_weights != "shared":
        raise ValueError("--parity exact needs --initial-weights shared: the frameworks' own initial weights "
                         "differ, so their runs could not agree")
    unknown = [item for item in args.frameworks if item not in FRAMEWORKS]
    if unknown:
        raise ValueError(f"unknown framework(s) {', '.join(unknown)}; valid: {', '.join(FRAMEWORKS)}")


def now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def new_results(args: argparse.Namespace, command: str, first: RunRequest, dataset) -> dict[str, Any]:
    """The results object before any run: what was asked, on what machine and data."""
    return {
        "experiments": {},
        "experiment_settings": {},
        "command": command,
        "machine": describe_machine(),
        "started": now(),
        "finished": None,
        "complete": False,
        "raw_dir": str(first.raw_dir or os.environ.get("STREETCAR_RAW_DIR") or "data/raw"),
        "settings": {"experiments": list(args.experiments), "frameworks": list(args.frameworks),
                     "epochs_cap": args.epochs, "patience": args.patience, "sample_rows": args.sample_rows,
                     "seed": first.config.general.seed, "batch_order": first.config.general.batch_order,
                     "output_activation": first.config.hyperparameters.output_activation,
                     "initial_weights": args.initial_weights, "lightning_engine": first.config.lightning.engine},
        "dataset": dataset_facts(dataset),
    }


def experiment_entry(request: RunRequest, table_epochs: int) -> dict[str, Any]:
    """One experiment's settings as the page states them (early-stopping fields only where it stops early)."""
    settings = request.settings
    stops = settings.early_stop
    return {"description": settings.description, "table_epochs": table_epochs, "epochs": settings.epochs,
            "early_stop": stops, "monitor": settings.monitor if stops else None,
            "mode": settings.mode if stops else None, "patience": settings.patience if stops else None,
            "one_weight": settings.one_weight}


def run_experiment(args: argparse.Namespace, request: RunRequest, dataset, progress: Callable[[str], None],
                   started: float) -> dict[str, Any]:
    """Train one experiment in every framework of --frameworks; framework -> summary."""
    settings, hyperparameters = request.settings, request.config.hyperparameters
    one_weight = (dataset.one_weight(hyperparameters.one_weight_offset, split="train")
                  if settings.one_weight == "balanced" else float(settings.one_weight))
    initial_weights = (shared_initial_weights(dataset.vocab_sizes, request.config.general.seed,
                                              hyperparameters.embedding_dim)
                       if args.initial_weights == "shared" else None)
    runs: dict[str, Any] = {}
    for framework in args.frameworks:
        progress(f"report: experiment {settings.experiment} ({settings.description}), {framework}, "
                 f"{settings.epochs} epoch(s); {time.perf_counter() - started:.0f} s so far")
        result = train_one(framework, request, dataset, args.accelerator, progress, initial_weights)
        summary = runs[framework] = summarize_run(result, one_weight)
        free_framework_state(framework)
        progress(f"report: experiment {settings.experiment} {framework}: {summary['epochs_run']} epoch(s), "
                 f"val_accuracy {summary['val_accuracy_terminal']:.5f}, test accuracy "
                 f"{summary['test_accuracy']:.5f}, FN {summary['false_negatives']}, recall "
                 f"{summary['recall']:.4f}, {summary['seconds']:.0f} s")
    return runs


def build_report(args: argparse.Namespace, command: str, progress: Callable[[str], None] = say) -> dict[str, Any]:
    """Train every (experiment, framework), writing the outputs after each experiment; return the results."""
    from data import load_prepared

    config = load_config(args.config)
    validate_choices(args, list(config.experiments))
    out_dir = Path(args.out_dir)
    started = time.perf_counter()
    # Resolve the first request now: a bad flag fails before minutes of data loading.
    first = run_request(args, args.experiments[0], config.experiments[args.experiments[0]].epochs)
    dataset = load_prepared(first.config, raw_dir=first.raw_dir)
    if args.sample_rows is not None:
        dataset = dataset.sample(args.sample_rows, first.config.general.seed)
    progress(f"report: dataset {dataset.n_rows:,} rows, splits "
             f"{ {name: int(len(rows)) for name, rows in dataset.splits.items()} }; experiments "
             f"{','.join(args.experiments)}; frameworks {','.join(args.frameworks)}; writing to {out_dir}")
    if getattr(args, "parity", "book") == "exact":
        return build_exact_parity(args, command, config, dataset, out_dir, progress, started)
    results = new_results(args, command, first, dataset)
    for experiment in args.experiments:
        table_epochs = config.experiments[experiment].epochs
        request = run_request(args, experiment, table_epochs)
        results["experiments"][experiment] = run_experiment(args, request, dataset, progress, started)
        results["experiment_settings"][experiment] = experiment_entry(request, table_epochs)
        results["machine"]["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
        results["seconds"] = round(time.perf_counter() - started, 1)
        write_outputs(out_dir, results)
    results.update(finished=now(), complete=True, seconds=round(time.perf_counter() - started, 1))
    write_outputs(out_dir, results)
    progress(f"report: done in {results['seconds']:.0f} s; {out_dir / RESULTS_MARKDOWN}")
    return results


def build_exact_parity(args: argparse.Namespace, command: str, config, dataset, out_dir: Path,
                       progress: Callable[[str], None], started: float) -> dict[str, Any]:
    """--parity exact: the runs in reports.exact_parity's setting, kept beside the book-setting results.

    The book-setting results already in --out-dir/results.json stay as they
    are; this run's summaries go under results["exact_parity"].
    """
    from reports.exact_parity import EXACT_KEY, EXACT_PARITY_OVERRIDES, exact_request

    path = out_dir / RESULTS_JSON
    first = exact_request(run_request(args, args.experiments[0], 1))
    results = saved_results(path) if path.is_file() else new_results(args, command, first, dataset)
    results.setdefault(EXACT_KEY, {})
    results["exact_parity_settings"] = exact_settings(results.get("exact_parity_settings"), command, {
        "overrides": dict(EXACT_PARITY_OVERRIDES), "sample_rows": args.sample_rows, "epochs_cap": args.epochs,
        "patience": args.patience, "dataset": dataset_facts(dataset)},
        lightning_engine=first.config.lightning.engine if "lightning" in args.frameworks else None)
    for experiment in args.experiments:
        request = exact_request(run_request(args, experiment, config.experiments[experiment].epochs))
        # Per framework: a --frameworks lightning run keeps the Keras rows an earlier run left, and back.
        results[EXACT_KEY].setdefault(experiment, {}).update(
            run_experiment(args, request, dataset, progress, started))
        write_outputs(out_dir, results)
    results["exact_parity_settings"].update(finished=now(), seconds=round(time.perf_counter() - started, 1))
    write_outputs(out_dir, results)
    progress(f"report: exact parity done in {time.perf_counter() - started:.0f} s; {out_dir / RESULTS_MARKDOWN}")
    return results


def exact_settings(previous: Mapping[str, Any] | None, command: str, setting: dict[str, Any], *,
                   lightning_engine: str | None) -> dict[str, Any]:
    """The exact-parity runs' settings: this call's, with the commands of earlier calls in the same setting.

    Framework by framework (--frameworks keras, then lightning) the rows of
    both calls stand in one table, so the page names every command that
    produced it; a call in another setting starts the list afresh.
    `lightning_engine` is None when this call trains no Lightning run: the
    engine of the Lightning rows is then the earlier call's.
    """
    if previous and all(previous.get(key) == value for key, value in setting.items()):
        commands = list(previous.get("commands") or [previous["command"]])
        return {**setting, "commands": [*commands, command], "started": previous["started"], "finished": None,
                "lightning_engine": lightning_engine or previous.get("lightning_engine")}
    return {**setting, "commands": [command], "started": now(), "finished": None,
            "lightning_engine": lightning_engine}


def saved_results(path: Path) -> dict[str, Any]:
    """results.json as saved, without the parts the page recomputes (results_payload, write_outputs)."""
    results = json.loads(path.read_text(encoding="utf-8"))
    for derived in ("trends", "note", "companions"):
        results.pop(derived, None)
    return results


def render_only(out_dir: Path) -> dict[str, Any]:
    path = out_dir / RESULTS_JSON
    if not path.is_file():
        raise ValueError(f"--render-only: {path} does not exist; run the report first")
    results = saved_results(path)
    write_outputs(out_dir, results)
    return results

