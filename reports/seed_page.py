"""The seed study's page and figure: seeds.md and seeds.png (parity_tests.seeds).

    render_markdown(study) -> str      one section per study group: settings, the exact commands,
                                       Keras | Lightning per outcome, the tests, the verdict
    write_plot(path, study)            one row per group, one panel per outcome: each run a dot,
                                       a box (median, quartiles) per framework
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from data.atomic import write_atomic
from reports.seed_statistics import (DESCRIBED_OUTCOMES, FRAMEWORK_LABELS, TESTED_OUTCOMES, describe_difference,
                                          finite_values, format_number)
from reports.seed_trends import trend_lines
from reports.results_plots import FRAMEWORK_COLOURS
from reports.study_flags import FRAMEWORKS


def experiment_description(experiment: str) -> str:
    """The config's words for an experiment row (" (…)"), or nothing for an id the config no longer has."""
    from configs.loader import load_config

    row = load_config().experiments.get(str(experiment))
    return f" ({row.description})" if row is not None else ""


def describe_settings(settings: Mapping[str, Any]) -> str:
    rows = "the full data" if settings["sample_rows"] is None else f"{settings['sample_rows']:,} rows"
    return (f"experiment {settings['experiment']}{experiment_description(settings['experiment'])}, {rows}, "
            f"epoch cap {settings['epochs_cap']}, "
            f"patience {settings['patience']}, batch order {settings['batch_order']}")


def spread_cell(figures: Mapping[str, Any], digits: int) -> str:
    """'median [q1–q3] (min–max), n' of one framework and outcome."""
    if not figures["n"]:
        return "–"
    return (f"{format_number(figures['median'], digits)} [{format_number(figures['q1'], digits)}–"
            f"{format_number(figures['q3'], digits)}] ({format_number(figures['min'], digits)}–"
            f"{format_number(figures['max'], digits)}), n = {figures['n']}")


def p_cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def outcome_table(group: Mapping[str, Any]) -> list[str]:
    summary, tests = group["summary"], group["tests"]
    lines = ["| outcome | Keras: median [IQR] (min–max) | Lightning: median [IQR] (min–max) | U | p | "
             "p (Holm) | smallest detectable difference |",
             "|---|---|---|---:|---:|---:|---:|"]
    for key, label, digits in TESTED_OUTCOMES:
        test = tests[key]
        difference = test["minimal_detectable_difference"]
        lines.append(f"| {label} | {spread_cell(summary[key]['keras'], digits)} | "
                     f"{spread_cell(summary[key]['lightning'], digits)} | "
                     f"{format_number(test['u'], 1)} | {p_cell(test['p_value'])} | {p_cell(test['p_value_holm'])} | "
                     f"{describe_difference(difference, digits)} |")
    for key, label, digits in DESCRIBED_OUTCOMES:
        lines.append(f"| {label} (not tested: it measures the machine) | "
                     f"{spread_cell(summary[key]['keras'], digits)} | "
                     f"{spread_cell(summary[key]['lightning'], digits)} | | | | |")
    collapse = group["tests"]["collapse"]
    lines.append(f"| collapsed (degenerate kept model) | {collapse['keras']['collapsed']} of "
                 f"{collapse['keras']['runs']} | {collapse['lightning']['collapsed']} of "
                 f"{collapse['lightning']['runs']} | | {p_cell(collapse['p_value'])} (Fisher) | | |")
    return lines


def runs_table(runs: list[Mapping[str, Any]]) -> list[str]:
    lines = ["| framework | seed | epochs run | kept epoch | best val_acc | terminal val_acc | test acc | recall | "
             "FN | predicted positive | collapsed | wall time | device |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|"]
    for run in sorted(runs, key=lambda item: (item["framework"], item["seed"])):
        lines.append(
            f"| {FRAMEWORK_LABELS[run['framework']]} | {run['seed']} | {run['epochs_run']} | {run['kept_epoch']} | "
            f"{format_ratio(run['best_val_accuracy'])} | {format_ratio(run['terminal_val_accuracy'])} | "
            f"{format_ratio(run['test_accuracy'])} | {format_ratio(run['recall'])} | {run['false_negatives']:,} | "
            f"{format_ratio(run['predicted_positive_share'])} | {'yes' if run['collapsed'] else 'no'} | "
            f"{run['seconds']:,.0f} s | {run['device']} |")
    return lines


def format_ratio(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else str(value)


def machine_line(machine: Mapping[str, Any]) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in sorted(machine["versions"].items()))
    return f"{machine['cpu_model']}, {machine['usable_cores']} usable core(s), {versions}"


def render_markdown(study: Mapping[str, Any]) -> str:
    lines = ["# Seed study: Keras 3 vs Lightning in distribution", "",
             "Each run trains with the book's settings and its own seed (`general.seed`): each framework draws "
             "its own initial weights and dropout masks from its own seeded generators, as a user's runs do. "
             "The data (split and sample) are the same for every run. Generated by `python -m parity_tests.seeds` "
             "(see `parity_tests/seeds.py`; the statistics are explained in `reports/seed_statistics.py`).",
             "", f"Execution: {study['execution']}.", "",
             "Cells: median [first quartile–third quartile] (min–max). p: two-sided Mann–Whitney U; "
             "Holm: adjusted for the outcomes tested together. Smallest detectable difference: the shift of one "
             "framework's values that the test detects in 80 % of random re-splits of the pooled, median-centred "
             "values; \"none possible\" when the seed count is too small for any p < α.", ""]
    if not study["groups"]:
        lines.append("No finished runs yet.")
    for group in study["groups"]:
        runs = [run for run in study["runs"] if all(run[key] == value for key, value in group["settings"].items())]
        lines += [f"## {describe_settings(group['settings'])}", "", "Command(s):", "", "```bash",
                  *group["commands"], "```", "", "**Verdict.** " + " ".join(group["verdict"]), "",
                  *outcome_table(group), "", "<details><summary>Every run</summary>", "", *runs_table(runs), "",
                  "</details>", ""]
    lines += trend_lines(study.get("trends", []))
    if study["groups"]:
        lines += ["![each run a dot, a box per framework and outcome](seeds.png)", ""]
    machines = sorted({machine_line(run["machine"]) for run in study["runs"] if "machine" in run})
    lines += [f"Machine(s) of the runs: {'; '.join(machines) if machines else 'none recorded'}.", ""]
    return "\n".join(lines)


PLOT_COLUMNS = 5


def draw_outcome(axis, runs, key: str, label: str) -> None:
    """One panel: a box (median, quartiles) and a dot per run for each framework."""
    for position, framework in enumerate(FRAMEWORKS):
        values = finite_values(runs, framework, key)
        if len(values):
            axis.boxplot(values, positions=[position], widths=0.5, showfliers=False)
            jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
            axis.scatter(position + jitter, values, s=14, alpha=0.8, color=FRAMEWORK_COLOURS[framework])
    axis.set_title(label, fontsize=9)


def draw_collapse(axis, runs) -> None:
    """The last panel: how many runs of each framework kept a degenerate model."""
    for position, framework in enumerate(FRAMEWORKS):
        flags = [bool(run["collapsed"]) for run in runs if run["framework"] == framework]
        axis.bar(position, sum(flags), width=0.5, color=FRAMEWORK_COLOURS[framework], alpha=0.8)
        axis.text(position, sum(flags), f"{sum(flags)} of {len(flags)}", ha="center", va="bottom", fontsize=8)
    most_runs = max(sum(run["framework"] == framework for run in runs) for framework in FRAMEWORKS)
    axis.set_ylim(0, max(1, most_runs) * 1.2)
    axis.set_title("collapsed runs (degenerate model)", fontsize=9)


def write_plot(path: Path, study: Mapping[str, Any]) -> Path:
    """seeds.png: two rows of panels per study group, one panel per outcome and one for the collapses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outcomes = [*TESTED_OUTCOMES, *DESCRIBED_OUTCOMES]
    rows_per_group = -(-(len(outcomes) + 1) // PLOT_COLUMNS)
    groups = study["groups"] or [None]
    figure, axes = plt.subplots(rows_per_group * len(groups), PLOT_COLUMNS,
                                figsize=(2.6 * PLOT_COLUMNS, 2.7 * rows_per_group * len(groups)), squeeze=False)
    for index, group in enumerate(groups):
        runs = [] if group is None else [run for run in study["runs"]
                                         if all(run[key] == value for key, value in group["settings"].items())]
        panels = [axes[index * rows_per_group + slot // PLOT_COLUMNS][slot % PLOT_COLUMNS]
                  for slot in range(rows_per_group * PLOT_COLUMNS)]
        for axis, (key, label, _) in zip(panels, outcomes):
            draw_outcome(axis, runs, key, label)
        draw_collapse(panels[len(outcomes)], runs)
        for axis in panels[len(outcomes) + 1:]:
            axis.set_visible(False)
        for axis in panels[:len(outcomes) + 1]:
            axis.set_xticks([0, 1], [FRAMEWORK_LABELS[name] for name in FRAMEWORKS], fontsize=8)
            axis.tick_params(axis="y", labelsize=7)
            axis.grid(alpha=0.3, axis="y")
        if group is not None:
            panels[0].set_ylabel(describe_settings(group["settings"]).replace(", ", "\n", 2), fontsize=7)
    figure.suptitle("seed study, Keras (red) vs Lightning (blue): one dot per run, boxes = median and quartiles")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return write_atomic(path, buffer.getvalue())
