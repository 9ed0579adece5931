"""Every configuration side by side: the table, the headline ratios, the speed targets and the book table's time to result.

    configurations = summarize_configurations(keras_phase, lightning_phase, train_rows)
    headline = headline_figures(configurations, product_engine="plain")
    time_to_result(configurations, headline, book_results, train_rows)   # docs/results/results.json's epochs

The targets are judged on medians of the same paced run (benchmarks.processes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from benchmarks.summary import ratio, summarize_samples

# The speed targets, each on the same paced run.
TARGET_PRODUCT_TO_BEST_KERAS = 0.5     # the product's Lightning engine <= 0.5 x the fastest Keras configuration
TARGET_PLAIN_TO_KERAS_DEFAULT = 1.0    # the plain engine <= 1.0 x Keras's default
FAST_ENGINE_MIN_GAIN = 0.2             # the fast engine must be >= 20 % faster than plain to be worth its code

BOOK_RESULTS_PATH = Path(__file__).resolve().parent.parent / "docs" / "results" / "results.json"
BOOK_EXPERIMENTS = ("1", "2", "3", "4", "5")


def median(samples) -> float | None:
    return summarize_samples(samples)["median"] if samples else None


def summarize_configurations(keras: Mapping[str, Any] | None, lightning: Mapping[str, Any] | None,
                             train_rows: int | None) -> dict[str, dict[str, Any]]:
    """{name: medians of epoch wall/CPU, validation, samples/s, peak RSS, and the configuration's description}."""
    table: dict[str, dict[str, Any]] = {}
    for phase in (keras, lightning):
        for name, timing in ((phase or {}).get("configurations") or {}).items():
            epoch = median(timing["epoch_seconds"])
            table[name] = {
                **{key: value for key, value in timing.items()
                   if key not in ("epoch_seconds", "epoch_cpu_seconds", "validation_seconds")},
                "epoch_seconds": epoch, "epoch_cpu_seconds": median(timing["epoch_cpu_seconds"]),
                "validation_seconds": median(timing["validation_seconds"]),
                "samples_per_second": train_rows / epoch if epoch and train_rows else None,
                "epoch_samples": list(timing["epoch_seconds"])}
    keras_default = (table.get("keras") or {}).get("epoch_seconds")
    best = fastest_keras(table)
    for entry in table.values():
        entry["ratio_to_keras"] = ratio(entry["epoch_seconds"], keras_default)
        entry["ratio_to_best_keras"] = ratio(entry["epoch_seconds"], table[best]["epoch_seconds"]) if best else None
    return table


def fastest_keras(table: Mapping[str, Mapping[str, Any]]) -> str | None:
    timed = {name: entry["epoch_seconds"] for name, entry in table.items()
             if entry.get("framework") == "keras" and entry.get("epoch_seconds")}
    return min(timed, key=timed.get) if timed else None


def headline_figures(table: Mapping[str, Mapping[str, Any]], product_engine: str | None) -> dict[str, Any]:
    """epoch_seconds with every configuration plus the names keras, keras_best, lightning and
    lightning_plain, and the ratios the page leads with."""
    def seconds(name: str | None) -> float | None:
        return (table.get(name) or {}).get("epoch_seconds") if name else None

    best = fastest_keras(table)
    product = f"lightning_{product_engine}" if product_engine else None
    epoch_seconds = {name: entry["epoch_seconds"] for name, entry in table.items()}
    epoch_seconds.update({"keras": seconds("keras"), "keras_best": seconds(best), "lightning": seconds(product),
                          "lightning_plain": seconds("lightning_plain")})
    return {"epoch_seconds": epoch_seconds, "keras_best_configuration": best, "lightning_configuration": product,
            "ratio_to_best_keras": ratio(seconds(product), seconds(best)),
            "ratio": ratio(seconds(product), seconds("keras")),
            "fast_to_plain": ratio(seconds("lightning_fast"), seconds("lightning_plain"))}


def speed_targets(headline: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The speed targets: measured figure, limit, met (None: not measured)."""
    seconds = headline["epoch_seconds"]
    plain_ratio = ratio(seconds.get("lightning_plain"), seconds.get("keras"))

    def entry(name: str, limit: float, measured: float | None) -> dict[str, Any]:
        return {"name": name, "target": f"<= {limit:g}", "measured": measured, "unit": "x",
                "met": None if measured is None else bool(measured <= limit)}

    return [entry("product Lightning engine / fastest Keras configuration", TARGET_PRODUCT_TO_BEST_KERAS,
                  headline["ratio_to_best_keras"]),
            entry("plain engine / Keras default", TARGET_PLAIN_TO_KERAS_DEFAULT, plain_ratio),
            entry("fast engine / plain engine (the fast engine's code pays at <= 0.8)", 1.0 - FAST_ENGINE_MIN_GAIN,
                  headline["fast_to_plain"])]


def load_book_results(path: str | Path = BOOK_RESULTS_PATH) -> dict[str, Any] | None:
    """The committed book-table run (python -m parity_tests.report), or None when absent or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def time_to_result(table: Mapping[str, Mapping[str, Any]], headline: Mapping[str, Any],
                   book: Mapping[str, Any] | None, train_rows: int | None) -> dict[str, Any] | None:
    """The whole book table (experiments 1-5, full data) per framework: measured, and derived from this run.

    Measured: the wall seconds each framework's five runs took in the committed
    report run.  Derived: each experiment's epochs run in that report times
    (epoch + validation pass) of a configuration here - the training loop only,
    without start-up, data loading and testing.
    """
    if not book or not all(name in book.get("experiments", {}) for name in BOOK_EXPERIMENTS):
        return None
    if train_rows != ((book.get("dataset") or {}).get("splits") or {}).get("train"):
        return None        # a sampled benchmark: its epochs are not the book table's
    experiments = book["experiments"]
    measured = {framework: sum(float(experiments[name][framework]["seconds"]) for name in BOOK_EXPERIMENTS)
                for framework in ("keras", "lightning")}
    epochs = {framework: sum(int(experiments[name][framework]["epochs_run"]) for name in BOOK_EXPERIMENTS)
              for framework in ("keras", "lightning")}
    derived = {}
    for name, entry in table.items():
        if entry.get("epoch_seconds") is None or entry.get("validation_seconds") is None:
            continue
        framework = "keras" if entry.get("framework") == "keras" else "lightning"
        derived[name] = epochs[framework] * (entry["epoch_seconds"] + entry["validation_seconds"])
    return {"measured_seconds": measured, "epochs_run": epochs, "derived_seconds": derived,
            "source": {"command": book.get("command"), "started": book.get("started"),
                       "finished": book.get("finished")},
            "keras_best": derived.get(headline.get("keras_best_configuration") or ""),
            "lightning": derived.get(headline.get("lightning_configuration") or "")}
