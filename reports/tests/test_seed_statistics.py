"""The seed study's statistics and verdict sentences on synthetic runs (reports.seed_statistics).

The verdict is prose built from numbers, so every test checks that the words
match the figures: "no difference" only when no p < alpha, "cannot detect"
only when no p < alpha was possible, the medians and p-values as computed.
"""

from __future__ import annotations

import numpy as np
import pytest

from reports.seed_statistics import (TESTED_OUTCOMES, compare_frameworks, holm_adjusted,
                                          minimal_detectable_difference, seeds_needed, smallest_possible_p,
                                          summarize_outcomes, verdict_sentences)

# Ten well-spread values per outcome (a fixed pattern, no randomness), one per seed.
PATTERN = np.array([0.0, 0.7, -0.4, 1.1, -1.3, 0.2, 0.9, -0.8, 0.5, -0.1])


def synthetic_runs(seeds: int, recall_shift: float = 0.0, collapsed=(0, 0)) -> list[dict]:
    """Runs of two frameworks from one distribution, Lightning's recall shifted by recall_shift."""
    runs = []
    for framework, shift, collapsed_count, offset in (("keras", 0.0, collapsed[0], 0),
                                                      ("lightning", recall_shift, collapsed[1], 3)):
        for index in range(seeds):
            noise = PATTERN[(index + offset) % len(PATTERN)]
            runs.append({"framework": framework, "seed": index + 1, "epochs_run": 20 + (index + offset) % 5,
                         "kept_epoch": 5 + (index + offset) % 4, "best_val_accuracy": 0.70 + 0.01 * noise,
                         "terminal_val_accuracy": 0.60 + 0.02 * noise, "test_accuracy": 0.70 + 0.01 * noise,
                         "recall": 0.70 + shift + 0.02 * noise, "false_negatives": 200 + int(10 * noise),
                         "predicted_positive_share": 0.30 + 0.01 * noise, "seconds": 100.0,
                         "collapsed": index < collapsed_count})
    return runs


def study(runs):
    summary, tests = summarize_outcomes(runs), compare_frameworks(runs)
    return summary, tests, verdict_sentences(tests, summary)


def test_the_same_distribution_gives_no_difference_and_the_detectable_sizes():
    summary, tests, (outcomes, collapse) = study(synthetic_runs(10))
    assert all(not tests[key]["detected"] for key, _, _ in TESTED_OUTCOMES)
    assert outcomes.startswith("No difference detected at α = 0.05 with 10 seeds per framework in any of the 8 "
                               "outcomes")
    recall_difference = tests["recall"]["minimal_detectable_difference"]
    # Pooled recall residuals span 0.048; a detectable shift lies inside that spread.
    assert 0.0 < recall_difference < 0.048 * 1.001
    assert f"test recall {recall_difference:,.4f}" in outcomes
    assert summary["recall"]["keras"]["n"] == 10 and summary["recall"]["keras"]["median"] == pytest.approx(0.702)
    assert collapse == ("Keras collapsed (a degenerate kept model) in 0 of 10 runs, Lightning in 0 of 10 "
                        "(Fisher's exact p = 1): no difference detected at α = 0.05; the smallest difference "
                        "this could detect is 0 of 10 runs against 5 of 10.")


def test_a_clear_shift_is_detected_and_named_with_its_medians_and_p():
    summary, tests, (outcomes, collapse) = study(synthetic_runs(10, recall_shift=0.1, collapsed=(0, 6)))
    recall = tests["recall"]
    assert recall["detected"] and recall["p_value"] < 0.001 and recall["p_value_holm"] < 0.05
    assert recall["median_difference"] == pytest.approx(0.1)
    assert (f"test recall (Keras median 0.7020, Lightning median 0.8020, p = {recall['p_value']:.3g})"
            in outcomes)
    assert "Difference detected at α = 0.05 with 10 seeds per framework in 1 of 8 outcomes" in outcomes
    assert "1 of them remains: test recall" in outcomes and "No difference detected in the other 7" in outcomes
    assert tests["collapse"]["p_value"] == pytest.approx(0.010836, abs=1e-6)
    assert "Lightning in 6 of 10 (Fisher's exact p = 0.0108): a difference detected" in collapse


def test_two_seeds_cannot_detect_anything_and_the_page_says_so():
    summary, tests, (outcomes, collapse) = study(synthetic_runs(2, recall_shift=0.5, collapsed=(0, 2)))
    assert all(tests[key]["minimal_detectable_difference"] is None for key, _, _ in TESTED_OUTCOMES)
    assert outcomes == ("This study cannot detect any difference between the frameworks: with 2 seeds per "
                        "framework, no two-sided Mann–Whitney test can reach p < 0.05 (the smallest possible p "
                        "is 0.333); it needs at least 4 seeds per framework.")
    assert "with so few runs no collapse rate difference could be detected" in collapse


def test_smallest_possible_p_and_seeds_needed():
    assert smallest_possible_p(2, 2) == pytest.approx(2 / 6)
    assert smallest_possible_p(3, 3) == pytest.approx(2 / 20)
    assert smallest_possible_p(4, 4) == pytest.approx(2 / 70)
    assert seeds_needed(0.05) == 4


def test_minimal_detectable_difference_scales_with_the_spread():
    first, second = PATTERN.copy(), PATTERN[::-1].copy()
    base = minimal_detectable_difference(first, second)
    assert minimal_detectable_difference(first * 10, second * 10) == pytest.approx(10 * base, rel=1e-6)
    assert minimal_detectable_difference(np.zeros(5), np.zeros(5)) == 0.0
    assert minimal_detectable_difference(first[:3], second[:3]) is None


def test_non_finite_values_are_left_out_and_counted():
    runs = synthetic_runs(10)
    runs[0]["terminal_val_accuracy"] = "nan"  # a diverged run, as json_safe writes it
    summary, tests, _ = study(runs)
    assert summary["terminal_val_accuracy"]["keras"]["n"] == 9 and tests["terminal_val_accuracy"]["n_keras"] == 9


def test_holm_adjustment():
    assert holm_adjusted({"a": 0.01, "b": 0.04, "c": 0.03}) == \
        pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06})


def test_an_outcome_without_spread_is_said_to_show_any_shift():
    runs = synthetic_runs(10)
    for run in runs:
        run["epochs_run"] = 50  # every run hit the epoch cap
    summary, tests, (outcomes, _) = study(runs)
    assert tests["epochs_run"]["minimal_detectable_difference"] == 0.0 and not tests["epochs_run"]["detected"]
    assert "epochs run any shift (the values have no spread)" in outcomes
