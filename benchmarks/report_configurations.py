"""The page's sections on configurations: the table of every one, the headline, the engines' profiles, time to result.

Every sentence is assembled from the result object's numbers (benchmarks.results),
so the prose cannot contradict the table; benchmarks/tests/test_harness.py checks it.
"""

from __future__ import annotations

from typing import Any, Mapping

from benchmarks.comparison import (FAST_ENGINE_MIN_GAIN, TARGET_PLAIN_TO_KERAS_DEFAULT,
                                   TARGET_PRODUCT_TO_BEST_KERAS)
from benchmarks.report_text import MISSING, integer, number


def configurations_table(result: Mapping[str, Any]) -> list[str]:
    """One row per configuration: epoch wall and CPU, samples/s, validation, peak RSS, ratios, updates."""
    table = result.get("configurations") or {}
    if not table:
        return ["No configuration was timed in this run."]
    best, product = result.get("keras_best_configuration"), result.get("lightning_configuration")
    lines = ["| configuration | option | epoch, s | epoch, CPU s | samples / s | validation, s | peak RSS, MiB "
             "| × Keras default | × fastest Keras | updates vs the framework's default |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, entry in table.items():
        marks = (" **(fastest Keras)**" if name == best else "") + (" **(product default)**" if name == product else "")
        lines.append(f"| {entry['label']}{marks} | `{entry['options']}` | {number(entry['epoch_seconds'])} | "
                     f"{number(entry['epoch_cpu_seconds'])} | {integer(entry['samples_per_second'])} | "
                     f"{number(entry['validation_seconds'])} | {integer(entry['peak_rss_mb'])} | "
                     f"{number(entry['ratio_to_keras'], 3)} | {number(entry['ratio_to_best_keras'], 3)} | "
                     f"{entry['updates']}: {entry['updates_note']} |")
    lines += ["", "¹ needs `general.repeatable_run: false` in the config: Keras turns XLA off while TensorFlow's "
                  "op determinism is on, so the trainer refuses the pair with a one-line error."]
    return lines


def over_by(measured: float, limit: float) -> str:
    return f"{100 * (measured / limit - 1):.0f} % over the limit"


def headline_lines(result: Mapping[str, Any]) -> list[str]:
    """The page's lead: the product engine against the fastest Keras configuration, then the other targets."""
    seconds = result["epoch_seconds"]
    table = result.get("configurations") or {}
    best, product = result.get("keras_best_configuration"), result.get("lightning_configuration")
    if not best or not product or seconds.get("lightning") is None:
        return ["The headline needs both frameworks' epochs; this run lacks one."]
    ratio_best = result["ratio_to_best_keras"]
    sentences = [
        f"The product's default Lightning engine (`{table[product]['options']}`) trains an epoch in "
        f"{number(seconds['lightning'])} s: **{ratio_best:.3f}× the fastest Keras configuration** "
        f"({table[best]['label']}, {number(seconds['keras_best'])} s) and {result['ratio']:.3f}× Keras's "
        f"default ({number(seconds['keras'])} s)."]
    fast = table.get("lightning_fast")
    if fast and product != "lightning_fast" and fast.get("ratio_to_best_keras") is not None:
        sentences.append(f"The speed path beside it, `{fast['options']}`, takes {number(fast['epoch_seconds'])} s: "
                         f"{fast['ratio_to_best_keras']:.3f}× the fastest Keras configuration and "
                         f"{fast['ratio_to_keras']:.3f}× Keras's default.")
    sentences.append(
        f"Target ≤ {TARGET_PRODUCT_TO_BEST_KERAS:g}× the fastest Keras: "
        + ("met." if ratio_best <= TARGET_PRODUCT_TO_BEST_KERAS else
           f"**missed**, {over_by(ratio_best, TARGET_PRODUCT_TO_BEST_KERAS)}."))
    plain_ratio = ((table.get("lightning_plain") or {}).get("ratio_to_keras"))
    if plain_ratio is not None:
        sentences.append(
            f"The plain engine takes {plain_ratio:.3f}× Keras's default (target ≤ "
            f"{TARGET_PLAIN_TO_KERAS_DEFAULT:g}: "
            + ("met)." if plain_ratio <= TARGET_PLAIN_TO_KERAS_DEFAULT else
               f"**missed**, {over_by(plain_ratio, TARGET_PLAIN_TO_KERAS_DEFAULT)})."))
    fast_to_plain = result.get("fast_to_plain")
    if fast_to_plain is not None:
        gain = 1.0 - fast_to_plain
        pays = gain >= FAST_ENGINE_MIN_GAIN
        sentences.append(
            f"The fast engine's epoch is {fast_to_plain:.3f}× the plain engine's ({100 * gain:.0f} % "
            f"{'faster' if gain >= 0 else 'slower'}), "
            + (f"which clears the {100 * FAST_ENGINE_MIN_GAIN:.0f} % bar for its extra code; plain stays the "
               f"default because it is the idiomatic port, and `--engine fast` is the speed path beside it."
               if pays else
               f"short of the {100 * FAST_ENGINE_MIN_GAIN:.0f} % bar for its extra code: plain is the default."))
    torch_loop = table.get("torch_loop")
    if torch_loop and torch_loop.get("epoch_seconds") and table.get("lightning_plain", {}).get("epoch_seconds"):
        plain = table["lightning_plain"]["epoch_seconds"]
        sentences.append(
            f"A plain PyTorch loop over the same network, loss and batches takes "
            f"{number(torch_loop['epoch_seconds'])} s, so Lightning's loop adds "
            f"{number(plain - torch_loop['epoch_seconds'])} s an epoch to the plain engine "
            f"({100 * (plain / torch_loop['epoch_seconds'] - 1):.0f} %).")
    return [" ".join(sentences)]


def engine_profile_lines(result: Mapping[str, Any]) -> list[str]:
    """The torch profiler's top operators per engine (plain steps, self CPU time)."""
    engines = (result.get("profile") or {}).get("engines") or {}
    lines: list[str] = []
    for engine, operators in engines.items():
        if not operators:
            continue
        lines += [f"**{engine} engine**, torch profiler over plain-loop steps, top operators by self CPU time:", "",
                  "| operator | calls | ms per step | share |", "|---|---:|---:|---:|"]
        lines += [f"| `{operator['operator']}` | {operator['calls']} | {operator['self_cpu_ms_per_step']:.3f} | "
                  f"{100 * operator['share']:.1f} % |" for operator in operators]
        lines.append("")
    return lines


def time_to_result_lines(result: Mapping[str, Any]) -> list[str]:
    """The book table (experiments 1-5, full data) end to end: measured in the report run, derived from here."""
    figures = result.get("time_to_result")
    if not figures:
        return ["Not computed in this run: it needs the full training split and the committed "
                "docs/results/results.json (a `--sample-rows` run has neither's epochs)."]
    measured, epochs, source = figures["measured_seconds"], figures["epochs_run"], figures["source"]
    lines = [f"**Measured**: the committed book-table run (`{source['command']}`, {source['started']} → "
             f"{source['finished']}, book settings on the full data) took {number(measured['keras'] / 60, 1)} min in "
             f"Keras (its default configuration) and {number(measured['lightning'] / 60, 1)} min in Lightning "
             f"(the engine of that day, now `--engine fast`; the plain engine did not exist yet), each framework's "
             f"five runs end to end, start-up, checkpoints and testing included.", "",
             f"**Derived from this run**: the same runs' epochs ({epochs['keras']} in Keras, {epochs['lightning']} "
             f"in Lightning) × (one epoch + one validation pass) of each configuration here; training loop only.", "",
             "| configuration | book table, min |", "|---|---:|"]
    table = result.get("configurations") or {}
    for name, seconds in figures["derived_seconds"].items():
        label = (table.get(name) or {}).get("label", name)
        lines.append(f"| {label} | {number(seconds / 60, 1)} |")
    return lines


__all__ = ["configurations_table", "headline_lines", "engine_profile_lines", "time_to_result_lines", "MISSING"]
