"""reports.seed_trends: the book's trends across experiments, paired seed by seed.

    python -m pytest reports/tests/test_seed_trends.py -q
"""

from __future__ import annotations

import pytest

from reports.seed_trends import book_trends, compare_trend, trend_sentence


def make_run(framework, experiment, seed, recall, sample_rows=500000):
    return {"framework": framework, "experiment": experiment, "seed": seed, "recall": recall,
            "sample_rows": sample_rows, "epochs_cap": 50, "patience": 15, "batch_order": "shared"}


def test_a_clean_sweep_of_five_seeds_holds_at_one_over_thirty_two():
    runs = [make_run("keras", "3", seed, 0.70) for seed in range(1, 6)]
    runs += [make_run("keras", "4", seed, 0.70 + 0.01 * seed) for seed in range(1, 6)]
    trend = compare_trend(runs, "keras", "3", "4")
    assert (trend["n"], trend["wins"], trend["losses"], trend["ties"]) == (5, 5, 0, 0)
    assert trend["p_value"] == pytest.approx(1 / 32) and trend["smallest_possible_p"] == pytest.approx(1 / 32)
    assert trend["holds"] is True
    assert trend["median_difference"] == pytest.approx(0.03)
    sentence = trend_sentence(trend)
    assert sentence.startswith("Keras: experiment 4 kept a model with better test recall than experiment 3 for "
                               "5 of 5 seeds (0 worse, 0 equal; median difference +0.0300")
    assert sentence.endswith("p = 0.031 < α = 0.05: the trend holds.")


def test_ties_are_dropped_and_too_few_differing_seeds_cannot_show_anything():
    # Seeds 1-3 kept the same epoch in both experiments (equal recall); 4 and 5 improved.
    runs = [make_run("lightning", "4", seed, 0.72) for seed in range(1, 6)]
    runs += [make_run("lightning", "5", seed, 0.72 + (0.02 if seed > 3 else 0.0)) for seed in range(1, 6)]
    trend = compare_trend(runs, "lightning", "4", "5")
    assert (trend["wins"], trend["ties"]) == (2, 3)
    assert trend["smallest_possible_p"] == pytest.approx(0.25) and trend["p_value"] == pytest.approx(0.25)
    assert trend["holds"] is False
    assert "even a clean sweep gives p = 0.250 ≥ α = 0.05, so this study cannot show the trend" in \
        trend_sentence(trend)


def test_a_worse_later_experiment_is_not_shown_and_unpaired_runs_are_ignored():
    runs = [make_run("keras", "4", seed, 0.75) for seed in range(1, 7)]
    runs += [make_run("keras", "5", seed, 0.74 - 0.001 * seed) for seed in range(1, 7)]
    runs += [make_run("keras", "5", 99, 0.99),                       # no experiment-4 partner
             make_run("keras", "4", 1, 0.10, sample_rows=None)]       # other rows: another group
    (trend,) = [item for item in book_trends(runs) if item["later"] == "5"]
    assert trend["n"] == 6 and trend["seeds"] == [1, 2, 3, 4, 5, 6] and trend["losses"] == 6
    assert trend["p_value"] == pytest.approx(1.0) and trend["holds"] is False
    assert trend_sentence(trend).endswith("p = 1.000 ≥ α = 0.05: the trend is not shown in distribution.")
    # No experiment-3 runs: that trend is left out rather than reported on nothing.
    assert [(item["earlier"], item["later"]) for item in book_trends(runs)] == [("4", "5")]


def test_every_seed_keeping_the_same_epoch_says_so():
    runs = [make_run("keras", experiment, seed, 0.7) for experiment in ("3", "4") for seed in (1, 2)]
    trend = compare_trend(runs, "keras", "3", "4")
    assert trend["p_value"] is None and trend["holds"] is False
    assert trend_sentence(trend).endswith("every seed kept the same epoch, so the trend cannot hold.")
