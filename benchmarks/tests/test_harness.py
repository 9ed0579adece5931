"""Tests of the benchmark harness: its statistics, its result object, its page and its command line.

    python -m pytest benchmarks/tests/test_harness.py -q

No test asserts a duration (the machine is shared and timings are noisy):
the statistics are checked on scripted samples, the result object and the
page on scripted phase results, and one real tiny run (--sample-rows) checks
the --json schema end to end.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import results as bench_results
from benchmarks import run as bench_run
from benchmarks.report import render_markdown, summary_lines
from benchmarks.summary import (describe_growth, fit_line, latency_percentiles, median, percentile, ratio,
                                summarize_samples)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------


def test_median_and_percentiles_of_scripted_samples():
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5               # mean of the two middle samples
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 100) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 75) == 4.0
    # Linear interpolation: rank 0.99 * (n - 1) = 98.01 of 0..99 -> 98.01.
    assert percentile([float(value) for value in range(100)], 99) == pytest.approx(98.01)


def test_latency_percentiles_report_the_tail():
    samples = [1.0] * 98 + [50.0, 100.0]
    figures = latency_percentiles(samples)
    assert figures["p50"] == 1.0
    assert figures["count"] == 100
    assert figures["max"] == 100.0
    # p99 lies between the 99th (50) and 100th (100) sample: the tail shows, the median does not move.
    assert 50.0 <= figures["p99"] <= 100.0
    assert figures["p90"] == 1.0


def test_summarize_samples_keeps_the_samples_and_ignores_one_outlier():
    summary = summarize_samples([17.0, 17.4, 60.0])
    assert summary["median"] == 17.4
    assert (summary["min"], summary["max"], summary["count"]) == (17.0, 60.0, 3)
    assert summary["samples"] == [17.0, 17.4, 60.0]


@pytest.mark.parametrize("samples", [[], [1.0, float("nan")], [float("inf")]])
def test_statistics_refuse_empty_or_non_finite_samples(samples):
    with pytest.raises(ValueError):
        summarize_samples(samples)


def test_percentile_rank_out_of_range_is_a_value_error():
    with pytest.raises(ValueError, match="0..100"):
        percentile([1.0], 101)


def test_ratio_is_lightning_over_keras_and_none_when_missing():
    assert ratio(3.4, 17.0) == pytest.approx(0.2)
    assert ratio(None, 17.0) is None
    assert ratio(3.4, None) is None
    with pytest.raises(ValueError):
        ratio(1.0, 0.0)


def test_fit_line_recovers_a_line_and_describes_linear_growth():
    rows = [400_000, 800_000, 1_600_000]
    seconds = [0.2 + 2e-6 * count for count in rows]       # 0.2 s fixed + 2 s per million rows
    fit = fit_line(rows, seconds)
    assert fit.slope == pytest.approx(2e-6)
    assert fit.intercept == pytest.approx(0.2)
    assert fit.r_squared == pytest.approx(1.0)
    assert fit.predict(3_200_000) == pytest.approx(6.6)
    growth = describe_growth(rows, seconds)
    assert growth["seconds_per_million_rows"] == pytest.approx([2.5, 2.25, 2.125])
    assert growth["largest_over_smallest_per_row"] == pytest.approx(2.125 / 2.5)


def test_fit_line_needs_two_different_sizes():
    with pytest.raises(ValueError, match="two different"):
        fit_line([1000, 1000], [1.0, 1.1])
    with pytest.raises(ValueError, match="row counts but"):
        fit_line([1000, 2000], [1.0])


# --------------------------------------------------------------------------
# The result object and the page, from scripted phase results
# --------------------------------------------------------------------------

TRAIN_ROWS = 1_716_824
DAYS_HERE = 2129


def scripted_dataset() -> dict:
    return {"rows": 2_861_376, "splits": {"train": TRAIN_ROWS, "valid": 572_276, "test": 572_276},
            "date_range": {"start": "2014-01-02", "end": "2019-10-31", "days": DAYS_HERE}, "days": DAYS_HERE}


def scripted_phases(*, lightning_epochs=(3.3, 3.1, 9.0), fast_epochs=(2.0, 2.1, 1.9), keras_scoring_ms=None) -> dict:
    keras_scoring_ms = keras_scoring_ms or [1.5] * 99 + [9.0]
    prepare = {"cold_seconds": [3.61, 3.52, 3.9], "cached_seconds": [0.21, 0.19, 0.2], "dataset": scripted_dataset(),
               "raw_files": 6, "raw_rows": 76_891, "peak_rss_mb": 490.0,
               "load_average": {"before": [1.0, 1.0, 1.0], "after": [1.1, 1.0, 1.0]}}
    keras = {"framework": "keras", "device": "cpu", "train_rows": TRAIN_ROWS, "epoch_seconds": [17.2, 16.8, 17.0],
             "validation_seconds": [2.5, 2.4, 2.6], "validation_rows": 572_276,
             "scoring": {"milliseconds": keras_scoring_ms, "call": "keras_impl.score.score_trip",
                         "predict_on_batch_p50_ms": 1.3, "predict_p50_ms": 60.0, "direct_p50_ms_scorer": 30.0},
             "scaling": [{"train_rows": 429_206, "epoch_seconds": [4.4, 4.5]},
                         {"train_rows": 858_412, "epoch_seconds": [8.6, 8.7]},
                         {"train_rows": TRAIN_ROWS, "epoch_seconds": [17.2, 16.8, 17.0]}],
             "peak_rss_mb": 1700.0, "threads": {"intra_op": 0, "inter_op": 0}, "dataset": scripted_dataset(),
             "load_average": {"before": [1.0, 1.0, 1.0], "after": [1.2, 1.0, 1.0]}, "polled_peak_rss_mb": 1750.0}
    lightning = {"framework": "lightning", "device": "cpu", "train_rows": TRAIN_ROWS,
                 "epoch_seconds": list(lightning_epochs), "validation_seconds": [0.8, 0.7, 0.9],
                 "validation_rows": 572_276,
                 "scoring": {"milliseconds": [0.4] * 100, "call": "lightning_impl.score.score_trip"},
                 "scaling": [{"train_rows": 429_206, "epoch_seconds": [0.85]},
                             {"train_rows": 858_412, "epoch_seconds": [1.65]},
                             {"train_rows": TRAIN_ROWS, "epoch_seconds": list(lightning_epochs)}],
                 "peak_rss_mb": 800.0, "threads": {"intra_op": 2, "inter_op": 2}, "dataset": scripted_dataset(),
                 "gpu": None,
                 "profile": {"plain_loop_epoch_seconds": [2.9], "trainer_epoch_seconds": 3.3,
                             "trainer_overhead_seconds": 0.4, "trainer_overhead_ms_per_step": 0.23,
                             "plain_ms_per_step": 1.69, "steps_per_epoch": 1717, "deterministic_algorithms": True,
                             "top_operators": [{"operator": "aten::index_select", "calls": 700,
                                                "self_cpu_ms_per_step": 0.31, "share": 0.2}],
                             "engines": {"plain": [{"operator": "aten::index_select", "calls": 700,
                                                    "self_cpu_ms_per_step": 0.31, "share": 0.2}],
                                         "fast": [{"operator": "aten::view", "calls": 1900,
                                                   "self_cpu_ms_per_step": 0.12, "share": 0.17}]}},
                 "load_average": {"before": [1.0, 1.0, 1.0], "after": [1.1, 1.0, 1.0]}, "polled_peak_rss_mb": 820.0}
    keras["configurations"] = {
        "keras": timing("keras", "Keras default", [17.2, 16.8, 17.0], 1700.0),
        "keras_spe17": timing("keras", "Keras steps_per_execution=17", [9.0, 9.2, 9.1], 1690.0),
        "keras_jit": timing("keras", "Keras jit_compile=True", [12.0, 12.5, 12.2], 1750.0, "different")}
    lightning["engine"] = "plain"
    lightning["configurations"] = {
        "lightning_plain": timing("lightning", "Lightning plain engine", list(lightning_epochs), 800.0),
        "lightning_fast": timing("lightning", "Lightning fast engine", list(fast_epochs), 810.0, "different"),
        "torch_loop": timing("torch", "plain PyTorch loop", [2.9, 3.0, 3.1], 790.0)}
    return {"prepare": prepare, "keras": keras, "lightning": lightning}


def timing(framework: str, label: str, epochs: list, peak: float, updates: str = "same") -> dict:
    return {"framework": framework, "label": label, "options": "--x", "updates": updates,
            "updates_note": f"{updates}: scripted", "overrides": {}, "epoch_seconds": epochs,
            "epoch_cpu_seconds": [value * 0.9 for value in epochs], "validation_seconds": [0.8, 0.7, 0.9],
            "peak_rss_mb": peak}


BOOK_RESULTS = {"command": "python -m parity_tests.report", "started": "2026-11-23T12:09:57", "finished": "2026-11-23T13:20:48",
                "dataset": {"splits": {"train": TRAIN_ROWS}},
                "experiments": {name: {"keras": {"epochs_run": epochs, "seconds": 600.0},
                                       "lightning": {"epochs_run": epochs - 1, "seconds": 120.0}}
                                for name, epochs in (("1", 10), ("2", 50), ("3", 50), ("4", 26), ("5", 38))}}


def scripted_result(book_results=BOOK_RESULTS, **kwargs) -> dict:
    return bench_results.build_result(
        scripted_phases(**kwargs), mode="quick", command="python -m benchmarks.run --quick", book_results=book_results,
        settings={**bench_run.QUICK_SETTINGS, "sample_rows": None},
        machine={"usable_cores": 2, "logical_cores": 2, "cpu_model": "Test CPU", "memory_gb": 23.5,
                 "platform": "Linux"},
        versions={"python": "3.11.7", "keras": "3.15.1", "lightning": "2.6.6"},
        load={"start": [1.5, 1.4, 1.3], "end": [1.6, 1.5, 1.4]}, date="2025-01-01T12:00:00+00:00")


def test_result_has_the_issue_schema_with_medians_and_the_ratio():
    result = scripted_result()
    for key in bench_results.RESULT_KEYS:
        assert key in result, key
    assert result["epoch_seconds"] == {"keras": 17.0, "keras_spe17": 9.1, "keras_jit": 12.2, "keras_best": 9.1,
                                       "lightning_plain": 3.3, "lightning_fast": 2.0, "torch_loop": 3.0,
                                       "lightning": 3.3}
    assert result["keras_best_configuration"] == "keras_spe17"
    assert result["ratio"] == pytest.approx(3.3 / 17.0)
    assert result["ratio_to_best_keras"] == pytest.approx(3.3 / 9.1)
    assert result["configurations"]["lightning_fast"]["ratio_to_best_keras"] == pytest.approx(2.0 / 9.1)
    assert result["configurations"]["keras_jit"]["samples_per_second"] == pytest.approx(TRAIN_ROWS / 12.2)
    assert result["configurations"]["keras_jit"]["validation_seconds"] == 0.8
    assert result["prepare_seconds"] == {"cold": 3.61, "cached": 0.2}
    assert result["score_ms"]["keras"]["p50"] == 1.5
    assert result["score_ms"]["keras"]["p99"] > 1.5                # the one slow call shows in the tail
    assert result["score_ms"]["lightning"]["p50"] == pytest.approx(0.4)
    # Each framework's default configuration's own peak.
    assert result["peak_rss_mb"]["keras"] == 1700.0 and result["peak_rss_mb"]["lightning"] == 800.0
    assert result["train_rows"] == TRAIN_ROWS
    assert result["device"] == "cpu"
    assert result["samples_per_second"]["keras"] == pytest.approx(TRAIN_ROWS / 17.0)
    json.dumps(result, allow_nan=False)                              # plain JSON, nothing exotic


def test_time_to_result_is_measured_and_derived_from_the_book_runs_epochs():
    figures = scripted_result()["time_to_result"]
    assert figures["measured_seconds"] == {"keras": 3000.0, "lightning": 600.0}
    assert figures["epochs_run"] == {"keras": 174, "lightning": 169}
    assert figures["derived_seconds"]["keras"] == pytest.approx(174 * (17.0 + 0.8))
    assert figures["lightning"] == pytest.approx(169 * (3.3 + 0.8))      # the product engine
    assert figures["keras_best"] == pytest.approx(174 * (9.1 + 0.8))
    # A sampled run's epochs are not the book table's: nothing is derived.
    other = dict(BOOK_RESULTS, dataset={"splits": {"train": 12_054}})
    assert scripted_result(book_results=other)["time_to_result"] is None
    assert scripted_result(book_results=None)["time_to_result"] is None


def test_targets_are_judged_on_the_medians():
    met = {target["name"]: target["met"] for target in scripted_result()["targets"]}
    assert met == {"product Lightning engine / fastest Keras configuration": True,
                   "plain engine / Keras default": True,
                   "fast engine / plain engine (the fast engine's code pays at <= 0.8)": True,
                   "cold prepare": True, "cached load": True,
                   "Keras one-off scoring p50": True, "Lightning one-off scoring p50": True,
                   "Lightning training peak RSS": True}
    slow = scripted_result(lightning_epochs=(6.0, 6.1, 5.9), fast_epochs=(5.5, 5.5, 5.5),
                           keras_scoring_ms=[30.0] * 100)
    met = {target["name"]: target["met"] for target in slow["targets"]}
    assert met["product Lightning engine / fastest Keras configuration"] is False     # 6.0 / 9.1 > 0.5
    assert met["plain engine / Keras default"] is True                                 # 6.0 / 17.0
    assert met["fast engine / plain engine (the fast engine's code pays at <= 0.8)"] is False
    assert met["Keras one-off scoring p50"] is False
    # Each miss gets an explanation from the measured comparisons.
    assert any("predict_on_batch" in note for note in slow["notes"])
    assert any("Trainer" in note for note in slow["notes"])


def test_scaling_fits_a_line_and_extrapolates_by_days():
    scaling = scripted_result()["scaling"]["keras"]
    assert [point["train_rows"] for point in scaling["points"]] == [429_206, 858_412, TRAIN_ROWS]
    assert scaling["fit"]["r_squared"] > 0.99
    estimate = scaling["estimate_2014_2024"]
    assert estimate["days"] == 4018                                 # 2014-01-01 .. 2024-12-31
    assert estimate["row_factor"] == pytest.approx(4018 / DAYS_HERE)
    assert estimate["train_rows"] == round(TRAIN_ROWS * 4018 / DAYS_HERE)
    assert 30.0 < estimate["epoch_seconds"] < 34.0                  # ~17 s x 1.89, on the fitted line


def test_a_phase_that_did_not_run_leaves_nulls_not_errors():
    phases = scripted_phases()
    phases["lightning"] = None
    result = bench_results.build_result(phases, mode="quick", command="c", settings=bench_run.QUICK_SETTINGS,
                                        machine={"usable_cores": 2, "cpu_model": "x", "memory_gb": 1, "platform": "p"},
                                    versions={}, load={}, date="d")
    assert result["epoch_seconds"]["lightning"] is None and result["ratio"] is None
    assert result["score_ms"]["lightning"] is None
    assert {target["name"]: target["met"] for target in result["targets"]}["Lightning training peak RSS"] is None
    assert "not measured" in render_markdown(result)


def test_markdown_page_carries_the_measured_numbers_and_the_provenance():
    result = scripted_result()
    page = render_markdown(result)
    for text in ("python -m benchmarks.run --quick", "quick mode", "2025-01-01T12:00:00+00:00", "Test CPU",
                 "1.50 / 1.40 / 1.30", "keras 3.15.1", "lightning 2.6.6",
                 "| 17.00 | 3.30 | 0.19 |",                               # epoch: Keras, Lightning, ratio
                 "3.61", "0.200", "1,700", "800", "0.194 x", "1,716,824",
                 "aten::index_select", "R² =", "2014–2024 estimate", "4,018 days",
                 "**0.363× the fastest Keras configuration** (Keras steps_per_execution=17, 9.10 s)",
                 "| Keras steps_per_execution=17 **(fastest Keras)** | `--x` | 9.10 |",
                 "| Lightning plain engine **(product default)** |",
                 "took 50.0 min in Keras", "| Keras default | 51.6 |"):  # 174 x (17.0 + 0.8) s
        assert text in page, text
    assert "**missed**" not in page
    assert any("ratio to the fastest keras 0.363" in line for line in summary_lines(result))


def test_the_headline_prose_agrees_with_its_numbers():
    # Met: the fast engine is 0.606x plain (39 % faster), over the 20 % bar.
    page = render_markdown(scripted_result())
    assert "Target ≤ 0.5× the fastest Keras: met." in page
    assert "The plain engine takes 0.194× Keras's default (target ≤ 1: met)." in page
    assert "0.606× the plain engine's (39 % faster), which clears the 20 % bar" in page
    assert "Lightning's loop adds 0.30 s an epoch to the plain engine (10 %)" in page
    assert ("The speed path beside it, `--x`, takes 2.00 s: 0.220× the fastest Keras configuration and 0.118× "
            "Keras's default.") in page
    # Missed: the page says by how much; a fast engine within 20 % of plain is called short of the bar.
    slow = render_markdown(scripted_result(lightning_epochs=(6.0, 6.1, 5.9), fast_epochs=(5.5, 5.5, 5.5)))
    assert "Target ≤ 0.5× the fastest Keras: **missed**, 32 % over the limit." in slow      # 6.0 / 9.1 = 0.659
    assert "0.917× the plain engine's (8 % faster), short of the 20 % bar for its extra code: plain is the default" \
        in slow
    assert "which clears" not in slow


def test_markdown_marks_a_missed_target():
    page = render_markdown(scripted_result(keras_scoring_ms=[30.0] * 100))
    assert "| Keras one-off scoring p50 | <= 5 ms | 30.00 ms | **missed** |" in page
    assert "predict_on_batch" in page


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def run_command(*arguments: str, timeout: int = 300) -> subprocess.CompletedProcess:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), environment.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "benchmarks.run", *arguments], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=timeout, env=environment)


def test_bad_phase_is_one_line_and_exit_status_2():
    completed = run_command("--phases", "keras,bogus", timeout=60)
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr.strip().splitlines() == [
        "error: --phases 'keras,bogus': unknown or empty; valid: prepare, keras, lightning"]


def test_missing_raw_folder_is_one_line_and_exit_status_2(tmp_path):
    completed = run_command("--raw-dir", str(tmp_path / "nowhere"), timeout=60)
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nowhere" in lines[0]


@pytest.mark.real_data
@pytest.mark.slow
def test_tiny_real_run_times_every_configuration_and_writes_the_page_only_when_asked(tmp_path):
    page = tmp_path / "bench.md"
    completed = run_command("--quick", "--json", "--sample-rows", "20000", "--score-calls", "20",
                            "--write-page", "--output", str(page))
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout)                          # stdout is exactly one JSON object
    for key in bench_results.RESULT_KEYS:
        assert key in result, key
    for framework in ("keras", "lightning"):
        assert result["epoch_seconds"][framework] > 0
        assert result["peak_rss_mb"][framework] > 0
        assert result["validation_seconds"][framework] > 0
    assert math.isclose(result["ratio"], result["epoch_seconds"]["lightning"] / result["epoch_seconds"]["keras"])
    assert result["prepare_seconds"]["cold"] > 0 and result["prepare_seconds"]["cached"] > 0
    assert set(result["score_ms"]) == {"keras", "lightning"}
    for figures in result["score_ms"].values():
        if figures is not None:                                   # None only while a scorer is absent
            assert figures["count"] == 20 and 0 < figures["p50"] <= figures["p99"]
    assert result["train_rows"] == result["details"]["keras"]["dataset"]["splits"]["train"]
    assert result["device"].startswith("cpu") or "gpu" in result["device"]
    assert len(result["scaling"]["lightning"]["points"]) == 3
    # Every configuration was timed: 12,054 train rows are 13 batches (prime), so the sweep is 13 alone.
    assert set(result["configurations"]) == {"keras", "keras_spe13", "keras_jit", "keras_jit_spe13",
                                             "lightning_plain", "lightning_fast", "lightning_fast_one_step",
                                             "lightning_fast_autograd", "torch_loop"}
    for name, entry in result["configurations"].items():
        assert entry["epoch_seconds"] > 0 and entry["validation_seconds"] > 0 and entry["peak_rss_mb"] > 0, name
    assert result["configurations"]["keras_jit"]["jit_compile"] is True          # XLA really ran
    assert result["configurations"]["keras"]["jit_compile"] is False
    assert result["configurations"]["keras_spe13"]["steps_per_execution"] == 13
    assert result["epoch_seconds"]["keras_best"] == min(result["epoch_seconds"][name] for name in
                                                        ("keras", "keras_spe13", "keras_jit", "keras_jit_spe13"))
    assert math.isclose(result["ratio_to_best_keras"],
                        result["epoch_seconds"]["lightning"] / result["epoch_seconds"]["keras_best"])
    assert result["time_to_result"] is None                        # a sample's epochs are not the book table's
    # The training epochs took turns: 2 paced epochs (warm-up + timed) per configuration, 4 Keras and 5
    # Lightning ones; rounds alternate keras-first and lightning-first, and Lightning's last 2 run alone.
    keras_epochs = result["details"]["keras"]["paced_epoch_intervals"]
    lightning_epochs = result["details"]["lightning"]["paced_epoch_intervals"]
    assert (len(keras_epochs), len(lightning_epochs)) == (8, 10)
    timeline = sorted([(start, end, "keras") for start, end in keras_epochs]
                      + [(start, end, "lightning") for start, end in lightning_epochs])
    expected = [name for round_number in range(10)
                for name in (("keras", "lightning") if round_number % 2 == 0 else ("lightning", "keras"))
                if round_number < (8 if name == "keras" else 10)]
    assert [name for *_, name in timeline] == expected
    assert all(earlier[1] <= later[0] for earlier, later in zip(timeline, timeline[1:]))
    text = page.read_text()
    assert "--sample-rows 20000" in text and f"{result['epoch_seconds']['keras']:,.2f}" in text
    assert "Not computed in this run" in text                      # the time to result, honestly absent


def test_without_write_page_nothing_is_written(tmp_path, monkeypatch):
    # A bad phase list fails before any work; the page argument alone must not create a file either.
    page = tmp_path / "page.md"
    completed = run_command("--phases", "bogus", "--output", str(page), timeout=60)
    assert completed.returncode == 2 and not page.exists()
    arguments = bench_run.build_argument_parser().parse_args(["--quick", "--output", str(page)])
    assert arguments.write_page is False


def test_a_saved_result_redraws_the_page_and_a_bad_one_is_one_line(tmp_path):
    saved, page = tmp_path / "result.json", tmp_path / "page.md"
    saved.write_text(json.dumps(scripted_result()), encoding="utf-8")
    completed = run_command("--from-json", str(saved), "--write-page", "--output", str(page), timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert page.read_text() == render_markdown(json.loads(saved.read_text()))
    assert "ratio to the fastest keras 0.363" in completed.stdout
    (tmp_path / "other.json").write_text('{"mode": "quick"}', encoding="utf-8")
    completed = run_command("--from-json", str(tmp_path / "other.json"), timeout=120)
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --from-json {tmp_path / 'other.json'}: not a benchmark "
                                                   f"result (missing command, date, ")
