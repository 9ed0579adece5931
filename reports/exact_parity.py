"""The book table in the exact-parity setting (`python -m parity_tests.report --parity exact`).

The divergence study (docs/results/divergence.md) measured what separates
the two frameworks' whole runs on the full data: with the book's
hard_sigmoid output they part (|Δloss| > 1e-4) after 164 updates in float32
and 2,212 in float64, because a delay row whose logit sits just above the
lower kink makes its SGD step overshoot and a rounding difference grows; with
the sigmoid output they stay within 9.5e-7 (float32) and 2.2e-15 (float64)
over 5,151 updates.  Float64 alone is not enough for hard_sigmoid, so the
exact setting changes the output to sigmoid, and keeps float64 so that near
ties of the monitored metric over 50 epochs are not decided by float32
rounding.  Dropout is 0 because the two frameworks draw their masks from
different generators.  Everything else is the book's.

results.json keeps these runs beside the book-setting ones:
results["exact_parity"][experiment][framework] holds the same fields as
results["experiments"][experiment][framework].
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from configs.cli import RunRequest
from configs.loader import override
from reports.results_story import FRAMEWORK_LABELS, format_count, format_ratio

# The settings the study shows keep whole runs together (module docstring), as config keys.
EXACT_PARITY_OVERRIDES = {
    "hyperparameters.dropout_rate": 0.0,
    "hyperparameters.output_activation": "sigmoid",
    "hyperparameters.precision": 64,
}
PARITY_CHOICES = ("book", "exact")
EXACT_KEY = "exact_parity"


def exact_request(request: RunRequest) -> RunRequest:
    """`request` with the exact-parity settings in its config."""
    config = request.config
    for key, value in EXACT_PARITY_OVERRIDES.items():
        config = override(config, key, value)
    return dataclasses.replace(request, config=config)


def agreement(runs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Whether Keras and Lightning ran the same epochs, kept the same one and gave the same test matrix."""
    keras, lightning = runs.get("keras"), runs.get("lightning")
    if not keras or not lightning:
        return {"compared": False}
    matrix_difference = max(abs(a - b) for row_a, row_b in zip(keras["confusion_matrix"], lightning["confusion_matrix"])
                            for a, b in zip(row_a, row_b))
    val_loss_difference = max((abs(a - b) for a, b in zip(keras["history"]["val_loss"],
                                                          lightning["history"]["val_loss"])), default=None)
    return {"compared": True,
            "same_epochs_run": keras["epochs_run"] == lightning["epochs_run"],
            "same_kept_epoch": keras["kept_epoch"] == lightning["kept_epoch"],
            "same_confusion_matrix": matrix_difference == 0,
            "largest_confusion_cell_difference": matrix_difference,
            "largest_val_loss_difference": val_loss_difference,
            "recall_difference": abs(keras["recall"] - lightning["recall"])}


def agreement_sentence(experiment: str, runs: Mapping[str, Mapping[str, Any]]) -> str:
    """One sentence per experiment, built from the numbers (never claims what they do not show)."""
    figures = agreement(runs)
    if not figures["compared"]:
        return f"Experiment {experiment}: only one framework ran; nothing to compare."
    keras, lightning = runs["keras"], runs["lightning"]
    if figures["same_epochs_run"] and figures["same_kept_epoch"] and figures["same_confusion_matrix"]:
        return (f"Experiment {experiment}: the same {keras['epochs_run']} epochs, the same kept epoch "
                f"({keras['kept_epoch']}) and the same test confusion matrix in both frameworks "
                f"(largest val_loss difference {figures['largest_val_loss_difference']:.1e}).")
    parts = []
    if not figures["same_epochs_run"]:
        parts.append(f"epochs run {keras['epochs_run']} vs {lightning['epochs_run']}")
    if not figures["same_kept_epoch"]:
        parts.append(f"kept epoch {keras['kept_epoch']} vs {lightning['kept_epoch']}")
    if not figures["same_confusion_matrix"]:
        parts.append(f"test confusion matrices differ by up to {figures['largest_confusion_cell_difference']} "
                     f"rows per cell (recall {keras['recall']:.4f} vs {lightning['recall']:.4f})")
    return (f"Experiment {experiment} differs: {'; '.join(parts)}; the largest per-epoch val_loss difference was "
            f"{figures['largest_val_loss_difference']:.1e}.")


def why_these_settings(companions: Mapping[str, Any]) -> str:
    """The divergence study's figures behind the setting, read from divergence.json (never typed in)."""
    study = companions.get("divergence") or {}
    needed = ("hard_sigmoid-float32", "hard_sigmoid-float64", "sigmoid-float64")
    if not all(setting in study for setting in needed):
        return ("Why these settings: run `python -m parity_tests.divergence` (with `--out-dir` this folder) "
                "for the measurements.")
    parted = [study[setting]["first_update_over_threshold"] for setting in needed[:2]]
    if None in parted:
        return ("Why these settings: in [divergence](divergence.md) a hard_sigmoid run did not part, so "
                "the study no longer supports changing the output; rerun it and revisit this setting.")
    return (f"Why these settings: with hard_sigmoid the two frameworks' full-data runs part (|Δloss| > 1e-4) "
            f"after {format_count(parted[0])} updates in float32 and {format_count(parted[1])} in float64 "
            f"([divergence](divergence.md)); with sigmoid in float64 their losses stay within "
            f"{study['sigmoid-float64']['largest_loss_difference']:.1e}.")


def commands_text(meta: Mapping[str, Any]) -> str:
    """The command(s) that produced the exact-parity table, each in backticks, in the order they ran."""
    commands = meta.get("commands") or [meta.get("command", "python -m parity_tests.report --parity exact")]
    return " then ".join(f"`{command}`" for command in commands)


def exact_parity_headline(results: Mapping[str, Any]) -> list[str]:
    """One bullet for the page's top: how many experiments agree in the exact-parity setting (none without runs)."""
    runs_by_experiment = results.get(EXACT_KEY) or {}
    compared = {experiment: agreement(runs) for experiment, runs in runs_by_experiment.items()}
    compared = {experiment: figures for experiment, figures in compared.items() if figures["compared"]}
    if not compared:
        return []
    same = [experiment for experiment, figures in compared.items()
            if figures["same_epochs_run"] and figures["same_kept_epoch"] and figures["same_confusion_matrix"]]
    differ = [experiment for experiment in compared if experiment not in same]
    text = (f"- **Exact-parity setting** ([below](#the-exact-parity-setting)): {len(same)} of {len(compared)} "
            f"experiments run the same epochs, keep the same epoch and give the same test confusion matrix in "
            f"both frameworks")
    return [text + (f"; experiment(s) {', '.join(differ)} differ." if differ else ".")]


def exact_parity_section(results: Mapping[str, Any]) -> list[str]:
    """The page's section for the exact-parity runs (empty when there are none)."""
    runs_by_experiment = results.get(EXACT_KEY) or {}
    if not runs_by_experiment:
        return []
    meta = results.get("exact_parity_settings") or {}
    settings = ", ".join(f"`{key.split('.')[-1]}: {value}`" for key, value in EXACT_PARITY_OVERRIDES.items())
    lines = ["## The exact-parity setting", "",
             f"The same experiments with {settings}, both frameworks from the same initial weights and batches "
             f"({commands_text(meta)}; Lightning's "
             f"{meta.get('lightning_engine', 'plain')} engine; "
             f"{meta.get('started', '?')} to {meta.get('finished') or 'not finished'}).  "
             f"{why_these_settings(results.get('companions') or {})}",
             "", "| exp | framework | epochs run | kept epoch | test accuracy | FN | TP | recall |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for experiment, runs in runs_by_experiment.items():
        for framework, summary in runs.items():
            lines.append(f"| {experiment} | {FRAMEWORK_LABELS[framework]} | {summary['epochs_run']} | "
                         f"{summary['kept_epoch']} | {format_ratio(summary['test_accuracy'])} | "
                         f"{format_count(summary['false_negatives'])} | {format_count(summary['true_positives'])} | "
                         f"{format_ratio(summary['recall'], 4)} |")
    lines += ["", *(f"* {agreement_sentence(experiment, runs)}" for experiment, runs in runs_by_experiment.items()),
              ""]
    return lines
