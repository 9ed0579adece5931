"""docs/benchmarks.md from one benchmark result (the object `python -m benchmarks.run --json` prints).

    from benchmarks.report import render_markdown, write_page
    write_page("docs/benchmarks.md", render_markdown(result))

The page is generated, never edited by hand: it says which command and mode
produced it, when, on which machine and under which load, and every number in
it comes from the result object.  The "reading" paragraphs are assembled from
the same numbers (which target is met, what the profile says), so they cannot
drift from the table.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from data.atomic import write_atomic

from benchmarks.report_configurations import (configurations_table, engine_profile_lines, headline_lines,
                                               time_to_result_lines)
from benchmarks.report_frame import METHOD_LINES, header_lines
from benchmarks.report_text import MISSING, integer, load_text, median_of, number, verdict


def repeats_text(result: Mapping[str, Any]) -> str:
    settings = result["settings"]
    return (f"median of {settings['timed_epochs']} timed epoch(s) after {settings['warmup_epochs']} warm-up "
            f"epoch(s)")


def scoring_figure(result: Mapping[str, Any], framework: str, key: str) -> float | None:
    scoring = result["score_ms"].get(framework)
    return None if not scoring else scoring.get(key)


def results_table(result: Mapping[str, Any]) -> list[str]:
    epoch, validation = result["epoch_seconds"], result["validation_seconds"]
    speed, rss = result["samples_per_second"], result["peak_rss_mb"]
    gpu = "lightning_gpu" in epoch
    header = "| | Keras | Lightning | Lightning / Keras |" + (" Lightning on GPU |" if gpu else "")
    rule = "|---|---:|---:|---:|" + ("---:|" if gpu else "")

    def row(label: str, keras: str, lightning: str, relation: str, on_gpu: str = MISSING) -> str:
        return f"| {label} | {keras} | {lightning} | {relation} |" + (f" {on_gpu} |" if gpu else "")

    def relation(a: float | None, b: float | None, digits: int = 2) -> str:
        return MISSING if a is None or b is None or b == 0 else f"{a / b:.{digits}f}"

    validation_rows = result.get("validation_rows")
    return [
        header, rule,
        row(f"training epoch, s ({integer(result['train_rows'])} rows, batch 1000)", number(epoch["keras"]),
            number(epoch["lightning"]), relation(epoch["lightning"], epoch["keras"]),
            number(epoch.get("lightning_gpu"), 3)),
        row("training epoch, process CPU s (all threads)", number((result.get("epoch_cpu_seconds") or {}).get("keras")),
            number((result.get("epoch_cpu_seconds") or {}).get("lightning")),
            relation((result.get("epoch_cpu_seconds") or {}).get("lightning"),
                     (result.get("epoch_cpu_seconds") or {}).get("keras"))),
        row("training samples / s", integer(speed["keras"]), integer(speed["lightning"]),
            relation(speed["lightning"], speed["keras"]), integer(speed.get("lightning_gpu"))),
        row(f"validation pass, s ({integer(validation_rows)} rows)", number(validation["keras"]),
            number(validation["lightning"]), relation(validation["lightning"], validation["keras"]),
            number(validation.get("lightning_gpu"), 3)),
        row("one-off scoring p50, ms", number(scoring_figure(result, "keras", "p50")),
            number(scoring_figure(result, "lightning", "p50")),
            relation(scoring_figure(result, "lightning", "p50"), scoring_figure(result, "keras", "p50"), 3)),
        row("one-off scoring p99, ms", number(scoring_figure(result, "keras", "p99")),
            number(scoring_figure(result, "lightning", "p99")),
            relation(scoring_figure(result, "lightning", "p99"), scoring_figure(result, "keras", "p99"), 3)),
        row("peak RSS of the training process, MiB", integer(rss["keras"]), integer(rss["lightning"]),
            relation(rss["lightning"], rss["keras"])),
    ]


def targets_table(result: Mapping[str, Any]) -> list[str]:
    lines = ["| target | limit | measured | |", "|---|---|---:|---|"]
    for target in result["targets"]:
        digits = 3 if target["unit"] == "x" else (0 if target["unit"] == "MiB" else 2)
        measured = number(target["measured"], digits)
        unit = "" if target["measured"] is None else f" {target['unit']}"
        lines.append(f"| {target['name']} | {target['target']} | {measured}{unit} | {verdict(target['met'])} |")
    return lines


def prepare_lines(result: Mapping[str, Any]) -> list[str]:
    prepare = result["prepare_seconds"]
    details = (result["details"].get("prepare") or {})
    settings = result["settings"]
    lines = ["| | in-process, s | |", "|---|---:|---|",
             f"| cold: six workbooks -> encoded Parquet cache | {number(prepare['cold'])} | median of "
             f"{settings['prepare_cold_repeats']} after {settings['prepare_cold_warmup']} warm-up |",
             f"| cached load | {number(prepare['cached'], 3)} | median of {settings['prepare_cached_repeats']} after "
             f"{settings['prepare_cached_warmup']} warm-up |"]
    command = result.get("prepare_command_seconds")
    if command:
        lines += ["", f"The command `python -m data.prepare --json --quiet`, interpreter start-up and imports "
                      f"included, took {number(command['cold'])} s cold (`--rebuild`) and "
                      f"{number(command['cached'])} s cached."]
    if details.get("raw_rows") is not None:
        lines += ["", f"{details.get('raw_files', MISSING)} workbooks, {integer(details['raw_rows'])} raw rows -> "
                      f"{integer(details['dataset']['rows'])} prepared rows (slots); peak RSS of the prepare "
                      f"process {integer(details.get('peak_rss_mb'))} MiB."]
    return lines


def scaling_lines(result: Mapping[str, Any]) -> list[str]:
    scaling = result["scaling"]
    frameworks = [name for name in ("keras", "lightning") if scaling.get(name)]
    if not frameworks:
        return ["Not measured in this run."]
    lines = ["| framework | train rows | epochs timed | epoch, s | s per million rows | epoch, CPU s |",
             "|---|---:|---:|---:|---:|---:|"]
    for name in frameworks:
        entry = scaling[name]
        per_million = entry["fit"]["seconds_per_million_rows"]
        for point, cost in zip(entry["points"], per_million):
            lines.append(f"| {name} | {integer(point['train_rows'])} | {point.get('repeats', MISSING)} | "
                         f"{number(point['epoch_seconds'])} | {number(cost)} | "
                         f"{number(point.get('epoch_cpu_seconds'))} |")
    lines.append("")
    for name in frameworks:
        entry = scaling[name]
        intercept, slope, r_squared, per_row, growth = fit_figures(entry["fit"])
        lines.append(f"* **{name}**: epoch ≈ {intercept} s + {slope} s per million rows (least squares on the wall "
                     f"medians, R² = {r_squared}); the cost per row at the largest size is {per_row}× that at the "
                     f"smallest ({growth}).")
        if entry.get("fit_cpu"):
            intercept, slope, r_squared, per_row, growth = fit_figures(entry["fit_cpu"])
            lines.append(f"  On process CPU time: {intercept} s + {slope} s per million rows, R² = {r_squared}, "
                         f"per-row cost ratio {per_row} ({growth}).")
        estimate = entry.get("estimate_2014_2024")
        if estimate:
            lines.append(f"  2014–2024 estimate: {integer(estimate['train_rows'])} training rows "
                         f"(×{estimate['row_factor']:.3f}), epoch ≈ {number(estimate['epoch_seconds'], 1)} s, "
                         f"validation ≈ {number(estimate['validation_seconds'], 1)} s, so the book's "
                         f"{estimate['book_epochs']}-epoch run ≈ {number(estimate['book_run_minutes'], 1)} min.")
    estimate = next((scaling[name].get("estimate_2014_2024") for name in frameworks
                     if scaling[name].get("estimate_2014_2024")), None)
    if estimate:
        lines += ["", f"Assumption of the estimate: the prepared rows are a grid of days × 24 hours × route/"
                      f"direction pairs, so they grow with the days covered — {integer(estimate['days'])} days for "
                      f"2014-01-01..2024-12-31 against {integer(estimate['days_here'])} here "
                      f"({estimate['days_here'] / 365.25:.2f} years) — with the same route/direction pairs and the "
                      f"same 60/20/20 split; epoch time follows the fitted line."]
    return lines


def linear_enough(fit: Mapping[str, Any]) -> bool:
    """Linear for the page's wording: the points fit a line, and the per-row cost varies by < 25 %."""
    spread = fit.get("largest_over_smallest_per_row")
    return fit["r_squared"] >= 0.98 and spread is not None and 0.8 <= spread <= 1.25


def fit_figures(fit: Mapping[str, Any]) -> tuple[str, str, str, str, str]:
    """A scaling fit as the page writes it: intercept s, slope s per million rows, R², per-row cost ratio, verdict."""
    return (number(fit["intercept_seconds"]), number(fit["slope_seconds_per_million_rows"]),
            f"{fit['r_squared']:.4f}", number(fit["largest_over_smallest_per_row"]), growth_words(fit))


def growth_words(fit: Mapping[str, Any]) -> str:
    if linear_enough(fit):
        return "linear growth"
    if fit["r_squared"] < 0.9:
        return "the points scatter too much for a verdict: noise from the shared machine"
    return "a line with a fixed per-epoch cost: see the intercept"


def profile_lines(result: Mapping[str, Any]) -> list[str]:
    profile = result.get("profile")
    lines: list[str] = []
    if profile:
        plain_wall = median_of(profile["plain_loop_epoch_seconds"])
        plain_cpu = median_of(profile.get("plain_loop_epoch_cpu_seconds") or [])
        overhead = profile["trainer_overhead_seconds"]
        overhead_cpu = profile.get("trainer_overhead_cpu_seconds")
        if overhead < 0 or (overhead_cpu is not None and overhead_cpu < 0):
            verdict_text = ("the difference is within the noise of this run (a single epoch on a shared "
                            "machine): no Trainer overhead can be read from it")
        else:
            verdict_text = (f"so the Trainer's own loop adds {number(overhead)} s "
                            f"({number(profile['trainer_overhead_ms_per_step'])} ms per step)"
                            + (f"; in CPU time {number(overhead_cpu)} s "
                               f"({number(profile.get('trainer_overhead_cpu_ms_per_step'))} ms per step)"
                               if overhead_cpu is not None else ""))
        lines.append(f"* **Lightning epoch**: {number(profile['trainer_epoch_seconds'])} s "
                     f"({number(profile.get('trainer_epoch_cpu_seconds'))} CPU s) through Trainer.fit; the same "
                     f"{integer(profile['steps_per_epoch'])} steps ({step_description(profile)}) in "
                     f"a plain loop over the same DataLoader take {number(plain_wall)} s "
                     f"({number(plain_cpu)} CPU s, {number(profile['plain_ms_per_step'])} ms per step), "
                     f"{verdict_text}.  Deterministic algorithms "
                     f"{'on' if profile['deterministic_algorithms'] else 'off'} and "
                     f"{'manual' if profile.get('manual_optimization') else 'automatic'} optimisation, as "
                     f"lightning_impl.train and lightning_impl.system run them.")
        lines += ["", *engine_profile_lines(result)]
    variant = result.get("lightning_thread_variant")
    if variant and result["epoch_seconds"].get("lightning"):
        threads = ((result.get("threads") or {}).get("lightning") or {}).get("intra_op", MISSING)
        lines += ["", f"* **torch threads**: lightning_impl.train trains on a CPU with {threads} torch thread(s); "
                      f"the same fit with torch's default {variant['torch_threads']} threads takes "
                      f"{number(variant['epoch_seconds'])} s per epoch ({number(variant['epoch_cpu_seconds'])} CPU s, "
                      f"{number(variant['ratio'], 3)}× Keras) against {number(result['epoch_seconds']['lightning'])} s.  "
                      f"The operations of this model are small (a batch is 1000 × 7 codes), so a second intra-op "
                      f"thread gains little, and on a busy machine each parallel operation waits for a descheduled "
                      f"peer thread."]
    keras_scoring = result["score_ms"].get("keras")
    if keras_scoring:
        lines += ["", f"* **Keras one-off scoring** goes through `{keras_scoring.get('call')}`: p50 "
                      f"{number(keras_scoring['p50'])} ms.  For comparison on the same loaded model: "
                      f"`model.predict` on one row {number(keras_scoring.get('predict_p50_ms'))} ms, "
                      f"`model.predict_on_batch` {number(keras_scoring.get('predict_on_batch_p50_ms'))} ms, "
                      f"eager `model(inputs)` {number(keras_scoring.get('direct_p50_ms_scorer'))} ms."]
    notes = result.get("notes") or []
    lines += ["", *notes] if notes else []
    return lines or ["No profile in this run."]


def step_description(profile: Mapping[str, Any]) -> str:
    """What one plain-loop step runs, by the profile's gradient mode."""
    if profile.get("gradients") == "closed_form":
        return "closed_form_step: forward, loss and gradients without autograd; SGD step"
    return "training_step, zero_grad, backward, SGD step"


def reading_lines(result: Mapping[str, Any]) -> list[str]:
    epoch = result["epoch_seconds"]
    lines = []
    validation = result["validation_seconds"]
    if validation["keras"] is not None and validation["lightning"] is not None:
        lines.append(f"A validation pass costs {number(validation['keras'])} s in Keras (default) and "
                     f"{number(validation['lightning'])} s in Lightning (product engine).")
    if "lightning_gpu" in epoch:
        lines.append(f"On {result['devices']['lightning_gpu']} a Lightning epoch takes "
                     f"{number(epoch['lightning_gpu'], 3)} s ({number(result.get('ratio_gpu'), 3)}× the Keras CPU "
                     f"epoch); the model is tiny, so the GPU run is bound by per-step launch and Python costs.")
    missed = [target for target in result["targets"] if target["met"] is False]
    not_measured = [target["name"] for target in result["targets"] if target["met"] is None]
    if missed:
        lines.append("Missed: " + "; ".join(f"{target['name']} ({number(target['measured'], 3)} {target['unit']}, "
                                            f"target {target['target']})" for target in missed)
                     + ". See *Where the time goes* for the training epoch.")
    else:
        lines.append("Every measured target is met.")
    if not_measured:
        lines.append("Not measured in this run: " + ", ".join(not_measured) + ".")
    return [" ".join(lines)]


def render_markdown(result: Mapping[str, Any]) -> str:
    """The whole page for one result."""
    lines = [
        *header_lines(result),
        "## Headline",
        "",
        *headline_lines(result),
        "",
        "## Every configuration",
        "",
        f"Training: the book's experiment 3 (balanced class weights, batch 1000, shared batch order, no early "
        f"stopping) on the full training split, {repeats_text(result)} per configuration, all in one paced run "
        f"(see *How it is measured*).  \"Same\" updates are bit for bit the framework default's; \"different\" "
        f"ones are the same model rounded differently (the note names the test).",
        "",
        *configurations_table(result),
        "",
        "## Time to result: the book table",
        "",
        *time_to_result_lines(result),
        "",
        "## Keras default against the product's Lightning engine",
        "",
        f"Training: the book's experiment 3 (balanced class weights, batch 1000, shared batch order, no early "
        f"stopping) on the full training split; {repeats_text(result)}.  Validation and scoring: median / "
        f"percentiles after warm-up calls.",
        "",
        *results_table(result),
        "",
        "## Targets (2-core CPU)",
        "",
        *targets_table(result),
        "",
        "## Reading",
        "",
        *reading_lines(result),
        "",
        "## Where the time goes",
        "",
        *profile_lines(result),
        "",
        "## Data preparation",
        "",
        *prepare_lines(result),
        "",
        "## Scaling",
        "",
        *scaling_lines(result),
        "",
        "## How it is measured",
        "",
        *METHOD_LINES,
        "",
    ]
    return "\n".join(lines)


def summary_lines(result: Mapping[str, Any]) -> list[str]:
    """The few lines `python -m benchmarks.run` prints without --json."""
    epoch, prepare = result["epoch_seconds"], result["prepare_seconds"]
    lines = [f"{result['mode']} run, load average {load_text(result['load_average'].get('start'))} -> "
             f"{load_text(result['load_average'].get('end'))}",
             f"epoch: keras {number(epoch['keras'])} s, fastest keras ({result.get('keras_best_configuration')}) "
             f"{number(epoch.get('keras_best'))} s, lightning {number(epoch['lightning'])} s; ratio to the fastest "
             f"keras {number(result.get('ratio_to_best_keras'), 3)}, to keras default {number(result['ratio'], 3)}",
             f"prepare: cold {number(prepare['cold'])} s, cached {number(prepare['cached'], 3)} s",
             f"scoring p50/p99 ms: keras {number(scoring_figure(result, 'keras', 'p50'))}/"
             f"{number(scoring_figure(result, 'keras', 'p99'))}, lightning "
             f"{number(scoring_figure(result, 'lightning', 'p50'))}/"
             f"{number(scoring_figure(result, 'lightning', 'p99'))}",
             f"peak RSS MiB: keras {integer(result['peak_rss_mb']['keras'])}, lightning "
             f"{integer(result['peak_rss_mb']['lightning'])}"]
    for target in result["targets"]:
        lines.append(f"target {target['name']} {target['target']}: {verdict(target['met']).strip('*')}")
    return lines


def write_page(path: str | os.PathLike, text: str) -> Path:
    """Write the page atomically (a reader never sees half a page)."""
    return write_atomic(path, text)


__all__ = ["render_markdown", "write_page", "summary_lines", "number"]
