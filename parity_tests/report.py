"""The chapter-6 experiments in both frameworks, side by side: `docs/results/`.

    python -m parity_tests.report                                   # experiments 1-5, the table's epochs
    python -m parity_tests.report --experiments 1,3,4,5 --epochs 12 --patience 4
                                                                    # capped: what docs/results/ holds
    python -m parity_tests.report --experiments 1,5 --sample-rows 30000 --epochs 2 --patience 1 \\
        --out-dir /tmp/results                                      # a quick look (what the test runs)
    python -m parity_tests.report --render-only                     # redraw the page from results.json

What it does, in order:

1. loads the prepared dataset once (data.load_prepared; the real TTC
   workbooks via --raw-dir or $STREETCAR_RAW_DIR), takes the seeded
   --sample-rows subset when asked, and shares that one dataset with every
   training run, so all runs see the same rows;
2. for every experiment of --experiments (rows of the table in
   configs/streetcar.yaml) and every framework of --frameworks,
   calls the framework's own `train()` in this process with one seed and
   the shared batch order (general.batch_order: both frameworks draw each
   epoch's batches from data.batches.epoch_permutation), exactly as
   `python -m keras_impl.train` / `python -m lightning_impl.train` would.
   Each run keeps its usual run directory (checkpoints, TensorBoard logs)
   under --runs-dir; only the summaries go to --out-dir;
3. after every experiment (so an interrupted run still leaves what it has)
   writes into --out-dir:

       results.json                     the figures (schema below), the command, the machine
       results.md                       index table, one table per experiment (Keras | Lightning),
                                        the comparison with the book's trends (sentences built
                                        from the numbers) and why each trend does or does not hold
       experiment<ID>_curves.png        val_accuracy and val_loss per epoch, both frameworks overlaid
       experiment<ID>_confusion.png     both test confusion matrices side by side

results.json:

    {"experiments": {"1": {"keras": {"epochs_run", "best_epoch", "val_accuracy_terminal",
                                     "val_accuracy_best", "test_accuracy", "false_negatives",
                                     "recall", "seconds", ...},
                           "lightning": {...}}, ...},
     "command": "...", "machine": {...}, "settings": {...}, "complete": true}

best_epoch is 1-based (as Keras prints epochs): the epoch with the highest
val_accuracy, the epoch val_accuracy_best belongs to.  kept_epoch is the
epoch whose weights were tested: the ModelCheckpoint epoch when the
experiment stops early (for experiment 4 that is the lowest val_loss), else
the last epoch.  Test figures come from experiment.artifacts.summarize_test
(p > 0.5 is "delay"; confusion matrix [[tn, fp], [fn, tp]]).

The full table (≈ 200 epochs per framework on 1.83 M training rows) takes
hours on a small CPU; --epochs caps every experiment's epochs (an
experiment with fewer epochs in the table keeps its own) and the page says
so.  Progress goes to stderr; --json prints results.json's object on stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import io
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from configs.cli import OneLineArgumentParser, RunRequest, non_negative_int, positive_int, resolve_run_request
from configs.loader import load_config
from data.atomic import write_atomic
from experiment.artifacts import write_json
from configs.console import emit_json, run_main, say
from parity_tests.report_reasons import trends_section
from parity_tests.report_story import (FRAMEWORK_LABELS, FRAMEWORKS, format_count, format_ratio, format_seconds,
                                       no_delay_share, trend_checks)

DEFAULT_EXPERIMENTS = ("1", "2", "3", "4", "5")
DEFAULT_OUT_DIR = Path("docs") / "results"
RESULTS_JSON = "results.json"
RESULTS_MARKDOWN = "results.md"
# The keys the issue asks for, per framework and experiment; the rest of a summary is extra context.
SUMMARY_KEYS = ("epochs_run", "best_epoch", "val_accuracy_terminal", "val_accuracy_best", "test_accuracy",
                "false_negatives", "recall", "seconds")
FRAMEWORK_COLOURS = {"keras": "tab:red", "lightning": "tab:blue"}


def curves_file(experiment: str) -> str:
    return f"experiment{experiment}_curves.png"


def confusion_file(experiment: str) -> str:
    return f"experiment{experiment}_confusion.png"


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def comma_list(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list, e.g. 1,2,3")
    return items


def build_argument_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m parity_tests.report",
        description="Run the chapter-6 experiments in Keras 3 and Lightning on one dataset, one seed and the "
                    "shared batch order; write tables, curves, confusion matrices and the comparison with "
                    "the book's trends to docs/results/.",
        epilog=__doc__.split("What it does", 1)[0].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", type=comma_list, default=list(DEFAULT_EXPERIMENTS), metavar="IDS",
                        help="experiment ids from the config's table (default 1,2,3,4,5)")
    parser.add_argument("--frameworks", type=comma_list, default=list(FRAMEWORKS), metavar="NAMES",
                        help="keras, lightning or both (default keras,lightning)")
    parser.add_argument("--epochs", type=positive_int, default=None, metavar="N",
                        help="cap every experiment's epochs at N (default: the table's epochs)")
    parser.add_argument("--patience", type=non_negative_int, default=None, metavar="N",
                        help="EarlyStopping patience for the early-stopping experiments "
                             "(default: hyperparameters.patience_threshold)")
    parser.add_argument("--sample-rows", type=positive_int, default=None, metavar="N",
                        help="use a seeded subset of N prepared rows (quick runs)")
    parser.add_argument("--seed", type=non_negative_int, default=None, metavar="N",
                        help="seed for split, sample, initial weights and batch order (default general.seed)")
    parser.add_argument("--config", default=None, metavar="PATH", help="YAML config (default configs/streetcar.yaml)")
    parser.add_argument("--raw-dir", default=None, metavar="DIR",
                        help="folder of the TTC workbooks (default $STREETCAR_RAW_DIR, else data/raw/)")
    parser.add_argument("--out-dir", default=str(DEFAULT_OUT_DIR), metavar="DIR",
                        help="where results.json, results.md and the PNGs go (default docs/results)")
    parser.add_argument("--runs-dir", default=None, metavar="DIR",
                        help="parent of the per-run directories with checkpoints (default general.out_dir, runs/)")
    parser.add_argument("--accelerator", default="auto", metavar="NAME",
                        help="Lightning accelerator (default auto: a GPU when there is one)")
    parser.add_argument("--initial-weights", choices=INITIAL_WEIGHTS_CHOICES, default="shared",
                        help="shared (default): both frameworks of an experiment start from one set of weights "
                             "drawn from the seed with Keras's initialisers (parity_tests.trajectory."
                             "shared_initial_weights), so their runs differ only by the frameworks' arithmetic; "
                             "seeded: each framework draws its own from the seed, as its train command does")
    parser.add_argument("--render-only", action="store_true",
                        help="train nothing: redraw results.md and the PNGs from --out-dir/results.json")
    parser.add_argument("--json", action="store_true", help="print the results object on stdout")
    return parser


def validate_choices(args: argparse.Namespace, known_experiments: Sequence[str]) -> None:
    """Unknown ids are user errors named with what is valid (ValueError -> one line, exit 2)."""
    unknown = [item for item in args.experiments if item not in known_experiments]
    if unknown:
        raise ValueError(f"unknown experiment id(s) {', '.join(unknown)}; valid: {', '.join(known_experiments)}")
    if len(set(args.experiments)) != len(args.experiments):
        raise ValueError(f"--experiments lists an id twice: {','.join(args.experiments)}")
    unknown = [item for item in args.frameworks if item not in FRAMEWORKS]
    if unknown:
        raise ValueError(f"unknown framework(s) {', '.join(unknown)}; valid: {', '.join(FRAMEWORKS)}")


def command_line(argv: Sequence[str]) -> str:
    return " ".join(["python -m parity_tests.report", *(shlex.quote(item) for item in argv)])


# --------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> dict[str, Any]:
    """What produced the numbers: wall times only mean something with the cores and the load beside them."""
    import importlib.metadata as metadata

    versions = {}
    for package in ("keras", "tensorflow", "torch", "lightning"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


# --------------------------------------------------------------------------
# One training run -> one summary
# --------------------------------------------------------------------------


def one_based(epoch: int | None) -> int | None:
    return None if epoch is None else int(epoch) + 1


def summarize_run(result: Mapping[str, Any], one_weight: float) -> dict[str, Any]:
    """The report's figures of one train() result (see the module docstring for the epoch conventions)."""
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
    return resolve_run_request(namespace)


# How the two frameworks of an experiment get their initial weights (--initial-weights).
INITIAL_WEIGHTS_CHOICES = ("shared", "seeded")


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


# --------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return write_atomic(path, buffer.getvalue())


def plot_experiment_curves(path: Path, experiment: str, runs: Mapping[str, Mapping[str, Any]]) -> Path:
    """val_accuracy and val_loss per epoch, one line per framework, the kept epoch marked."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, key in zip(axes, ("val_accuracy", "val_loss")):
        for framework, summary in runs.items():
            values = summary["history"][key]
            style = "-o" if framework == "keras" else "--s"
            axis.plot(np.arange(1, len(values) + 1), values, style, markersize=4,
                      color=FRAMEWORK_COLOURS[framework], label=FRAMEWORK_LABELS[framework])
            axis.axvline(summary["kept_epoch"], color=FRAMEWORK_COLOURS[framework], linestyle=":", alpha=0.6,
                         label=f"{FRAMEWORK_LABELS[framework]} kept epoch {summary['kept_epoch']}")
        baseline = no_delay_share(next(iter(runs.values())))
        highest = max(max(summary["history"][key]) for summary in runs.values())
        if key == "val_accuracy" and highest >= baseline - 0.02:
            # Only where the curves come near it: else the line would squash them against the axis.
            axis.axhline(baseline, color="grey", linestyle="--", linewidth=1,
                         label=f"always \"no delay\" ({baseline:.5f} on test)")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        axis.set_xlabel("epoch (1-based, as Keras prints it)")
        axis.set_ylabel(key)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(f"experiment {experiment}: validation curves, Keras 3 vs Lightning")
    figure.tight_layout()
    return _save(figure, path)


def plot_experiment_confusion(path: Path, experiment: str, runs: Mapping[str, Mapping[str, Any]]) -> Path:
    """Both test confusion matrices side by side, in the book's seaborn style."""
    import seaborn as sns

    plt = _pyplot()
    figure, axes = plt.subplots(1, len(runs), figsize=(4.8 * len(runs), 4), squeeze=False)
    for axis, (framework, summary) in zip(axes[0], runs.items()):
        sns.heatmap(np.asarray(summary["confusion_matrix"]), annot=True, fmt="d", cmap="Blues", cbar=False,
                    ax=axis, xticklabels=["no delay", "delay"], yticklabels=["no delay", "delay"])
        axis.set_xlabel("predicted")
        axis.set_ylabel("actual")
        axis.set_title(f"{FRAMEWORK_LABELS[framework]} (kept epoch {summary['kept_epoch']})")
    figure.suptitle(f"experiment {experiment}: test confusion matrices")
    figure.tight_layout()
    return _save(figure, path)


# --------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------


# (label, summary key, formatter) of a per-experiment table's rows.
TABLE_ROWS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("epochs run", "epochs_run", format_count),
    ("best epoch (highest val_accuracy)", "best_epoch", format_count),
    ("kept epoch (tested weights)", "kept_epoch", format_count),
    ("val_accuracy, terminal", "val_accuracy_terminal", format_ratio),
    ("val_accuracy, best", "val_accuracy_best", format_ratio),
    ("test accuracy", "test_accuracy", format_ratio),
    ("false negatives (test)", "false_negatives", format_count),
    ("true positives (test)", "true_positives", format_count),
    ("recall (test)", "recall", format_ratio),
    ("wall time", "seconds", format_seconds),
)


def experiment_table(runs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    frameworks = list(runs)
    lines = ["| | " + " | ".join(FRAMEWORK_LABELS[name] for name in frameworks) + " |",
             "|---|" + "---:|" * len(frameworks)]
    for label, key, formatter in TABLE_ROWS:
        lines.append(f"| {label} | " + " | ".join(formatter(runs[name].get(key)) for name in frameworks) + " |")
    return lines


def index_table(results: Mapping[str, Any]) -> list[str]:
    lines = ["| exp | what | epoch cap (table → run) | framework | epochs run | best epoch | val_acc terminal | "
             "val_acc best | test acc | FN | TP | recall | wall time | figures |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for experiment, runs in results["experiments"].items():
        entry = results["experiment_settings"][experiment]
        for framework in FRAMEWORKS:
            if framework not in runs:
                continue
            summary = runs[framework]
            figures = (f"[curves]({curves_file(experiment)}), [confusion]({confusion_file(experiment)})"
                       if framework == next(iter(runs)) else "")
            lines.append(
                f"| {experiment} | {entry['description']} | {entry['table_epochs']} → {entry['epochs']} | "
                f"{FRAMEWORK_LABELS[framework]} | {summary['epochs_run']} | {summary['best_epoch']} | "
                f"{format_ratio(summary['val_accuracy_terminal'])} | {format_ratio(summary['val_accuracy_best'])} | "
                f"{format_ratio(summary['test_accuracy'])} | {format_count(summary['false_negatives'])} | "
                f"{format_count(summary['true_positives'])} | {format_ratio(summary['recall'], 4)} | "
                f"{format_seconds(summary['seconds'])} | {figures} |")
    return lines

def render_markdown(results: Mapping[str, Any]) -> str:
    settings, machine = results["settings"], results["machine"]
    load_start = " / ".join(f"{value:.2f}" for value in machine.get("load_average_at_start", []))
    load_end = " / ".join(f"{value:.2f}" for value in machine.get("load_average_at_end", []) or [])
    rows_text = ("all prepared rows" if settings["sample_rows"] is None
                 else f"{settings['sample_rows']:,} sampled rows")
    patience_text = "from the config" if settings["patience"] is None else str(settings["patience"])
    epochs_text = "as in the table" if settings["epochs_cap"] is None else f"capped at {settings['epochs_cap']}"
    lines = ["# Chapter 6 experiments: Keras 3 and Lightning side by side", "",
             "Generated by `python -m parity_tests.report`; do not edit by hand (every number and every "
             "sentence with a number comes from `results.json`).", "",
             f"- Command: `{results['command']}`" + (f" (data: `STREETCAR_RAW_DIR={results['raw_dir']}`)"
                                                       if results.get("raw_dir") else ""),
             f"- Date: {results['started']} to {results.get('finished') or 'not finished'}"
             + (f" (wall time {results['seconds'] / 60:.1f} min)" if results.get("seconds") else "")
             + ("" if results.get("complete") else " — **incomplete run: only the experiments below finished**"),
             f"- Machine: {machine['cpu_model']}, {machine['usable_cores']} usable core(s) of "
             f"{machine['logical_cores']}, load average (1/5/15 min) {load_start} at start"
             + (f", {load_end} at the end" if load_end else "") + f"; {machine['platform']}, Python "
             f"{machine['python']}, " + ", ".join(f"{name} {version}" for name, version in machine["versions"].items()),
             f"- Settings: seed {settings['seed']}, batch order `{settings['batch_order']}`, output activation "
             f"`{settings['output_activation']}`, {rows_text}, patience {patience_text}, epochs {epochs_text}, "
             f"initial weights `{settings.get('initial_weights', 'seeded')}`.",
             ]
    if settings["epochs_cap"] is not None or settings["patience"] is not None or settings["sample_rows"] is not None:
        lines.append(f"- **{scope_note(settings)[0].upper() + scope_note(settings)[1:]}.**")
    lines += ["", "## All experiments", "", *index_table(results), ""]
    for experiment, runs in results["experiments"].items():
        entry = results["experiment_settings"][experiment]
        lines += [f"## Experiment {experiment}: {entry['description']}", "",
                  f"Early stop: {'on ' + entry['monitor'] + ' (' + entry['mode'] + '), patience ' + str(entry['patience']) if entry['early_stop'] else 'no'}; "
                  f"one_weight {entry['one_weight']}; epochs {entry['epochs']} (table: {entry['table_epochs']}).", "",
                  *experiment_table(runs), "",
                  f"![validation curves, experiment {experiment}]({curves_file(experiment)})", "",
                  f"![test confusion matrices, experiment {experiment}]({confusion_file(experiment)})", ""]
    lines += trends_section(results)
    return "\n".join(lines).rstrip() + "\n"


def results_payload(results: Mapping[str, Any]) -> dict[str, Any]:
    """results.json's object: the results plus what is derived from them (note, trend verdicts)."""
    payload = dict(results)
    payload["note"] = scope_note(results["settings"])
    payload["trends"] = trend_checks(results)
    return payload


def write_outputs(out_dir: Path, results: Mapping[str, Any]) -> None:
    """results.json, results.md and every experiment's two PNGs (rewritten after each experiment)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for experiment, runs in results["experiments"].items():
        plot_experiment_curves(out_dir / curves_file(experiment), experiment, runs)
        plot_experiment_confusion(out_dir / confusion_file(experiment), experiment, runs)
    write_json(out_dir / RESULTS_JSON, results_payload(results))
    write_atomic(out_dir / RESULTS_MARKDOWN, render_markdown(results).encode("utf-8"))


# --------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------


def scope_note(settings: Mapping[str, Any]) -> str:
    """What this run left out of the full report, and the command that does not (stored and printed)."""
    parts = []
    if settings.get("epochs_cap") is not None:
        parts.append(f"epochs capped at {settings['epochs_cap']}")
    if settings.get("patience") is not None:
        parts.append(f"patience {settings['patience']}")
    if settings.get("sample_rows") is not None:
        parts.append(f"{settings['sample_rows']:,} sampled rows")
    dropped = [experiment for experiment in DEFAULT_EXPERIMENTS if experiment not in settings["experiments"]]
    if dropped:
        parts.append(f"experiment(s) {', '.join(dropped)} dropped")
    if not parts:
        return "the table's epochs and patience, all rows, experiments 1-5"
    note = ", ".join(parts) + " for time; the uncapped command is `python -m parity_tests.report`"
    if "2" in dropped and settings.get("epochs_cap") is not None:
        # Why 2 is the one to drop: it differs from 1 only by its epochs, which the cap takes away.
        cap = settings["epochs_cap"]
        same_as_1 = (f"experiment 1 plus {cap - 10} epoch(s)" if cap > 10 else "the same run as experiment 1")
        note += (f". Experiment 2 is experiment 1 run for 50 epochs instead of 10; capped at {cap} it would be "
                 f"{same_as_1}, so it could not show what the book uses it for (delays predicted after long "
                 f"unweighted training)")
    return note


def dataset_facts(dataset) -> dict[str, Any]:
    report = dataset.report or {}
    date_range = report.get("date_range", {})
    return {"rows": dataset.n_rows, "splits": {name: int(len(rows)) for name, rows in dataset.splits.items()},
            "delay_rate": float(np.mean(dataset.target)), "date_start": date_range.get("start"),
            "date_end": date_range.get("end"), "vocab_sizes": dataset.vocab_sizes}


def build_report(args: argparse.Namespace, argv: Sequence[str], progress: Callable[[str], None] = say) -> dict[str, Any]:
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

    results: dict[str, Any] = {
        "experiments": {},
        "experiment_settings": {},
        "command": command_line(argv),
        "machine": describe_machine(),
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "finished": None,
        "complete": False,
        "raw_dir": str(first.raw_dir or os.environ.get("STREETCAR_RAW_DIR") or "data/raw"),
        "settings": {"experiments": list(args.experiments), "frameworks": list(args.frameworks),
                     "epochs_cap": args.epochs, "patience": args.patience, "sample_rows": args.sample_rows,
                     "seed": first.config.general.seed, "batch_order": first.config.general.batch_order,
                     "output_activation": first.config.hyperparameters.output_activation,
                     "initial_weights": args.initial_weights},
        "dataset": dataset_facts(dataset),
    }
    for experiment in args.experiments:
        table = config.experiments[experiment]
        table_epochs = table.epochs
        request = run_request(args, experiment, table_epochs)
        settings = request.settings
        entry = {"description": settings.description, "table_epochs": table_epochs, "epochs": settings.epochs,
                 "early_stop": settings.early_stop, "monitor": settings.monitor if settings.early_stop else None,
                 "mode": settings.mode if settings.early_stop else None,
                 "patience": settings.patience if settings.early_stop else None,
                 "one_weight": settings.one_weight}
        runs: dict[str, Any] = {}
        one_weight = (dataset.one_weight(request.config.hyperparameters.one_weight_offset, split="train")
                      if settings.one_weight == "balanced" else float(settings.one_weight))
        initial_weights = None
        if args.initial_weights == "shared":
            from parity_tests.trajectory import shared_initial_weights

            initial_weights = shared_initial_weights(dataset.vocab_sizes, request.config.general.seed,
                                                     request.config.hyperparameters.embedding_dim)
        for framework in args.frameworks:
            progress(f"report: experiment {experiment} ({settings.description}), {framework}, "
                     f"{settings.epochs} epoch(s); {time.perf_counter() - started:.0f} s so far")
            result = train_one(framework, request, dataset, args.accelerator, progress, initial_weights)
            runs[framework] = summarize_run(result, one_weight)
            free_framework_state(framework)
            summary = runs[framework]
            progress(f"report: experiment {experiment} {framework}: {summary['epochs_run']} epoch(s), "
                     f"val_accuracy {summary['val_accuracy_terminal']:.5f}, test accuracy "
                     f"{summary['test_accuracy']:.5f}, FN {summary['false_negatives']}, recall "
                     f"{summary['recall']:.4f}, {summary['seconds']:.0f} s")
        results["experiments"][experiment] = runs
        results["experiment_settings"][experiment] = entry
        results["machine"]["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
        results["seconds"] = round(time.perf_counter() - started, 1)
        write_outputs(out_dir, results)
    results["finished"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    results["complete"] = True
    results["seconds"] = round(time.perf_counter() - started, 1)
    write_outputs(out_dir, results)
    progress(f"report: done in {results['seconds']:.0f} s; {out_dir / RESULTS_MARKDOWN}")
    return results


def render_only(out_dir: Path) -> dict[str, Any]:
    path = out_dir / RESULTS_JSON
    if not path.is_file():
        raise ValueError(f"--render-only: {path} does not exist; run the report first")
    results = json.loads(path.read_text(encoding="utf-8"))
    for derived in ("trends", "note"):  # recomputed from the numbers by results_payload
        results.pop(derived, None)
    write_outputs(out_dir, results)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_argument_parser().parse_args(argv)
    if args.render_only:
        results = render_only(Path(args.out_dir))
    else:
        results = build_report(args, argv)
    if args.json:
        emit_json(results_payload(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
