"""The seed study's statistics: per-outcome spread, two-sample tests, power, and the verdict in words.

    summary = summarize_outcomes(runs)        # {outcome: {framework: {n, median, q1, q3, iqr, min, max}}}
    tests = compare_frameworks(runs)          # {outcome: {...Mann-Whitney U...}, "collapse": {...Fisher...}}
    verdict_sentences(tests, summary)         # the page's closing sentences, built from those numbers

`runs` are the per-run records of one study group (one experiment, row count,
epoch cap, patience and batch order; parity_tests.seeds), each with a
"framework" of "keras" or "lightning".

Each outcome is compared with a two-sided Mann-Whitney U test
(scipy.stats.mannwhitneyu, method "auto": exact for small samples without
ties).  A test that finds nothing says little unless it could have found
something, so every test also carries:

* smallest_possible_p: the p-value of a complete separation of the two
  groups, the best any data could give.  With 2 or 3 seeds per framework it
  is >= 0.1, so no difference can ever be detected at alpha = 0.05.
* minimal_detectable_difference: the smallest shift of one framework's values
  that the test would detect in >= 80 % of cases, found by a shift argument on
  the pooled data: each framework's values minus its own median are pooled
  (the spread, with any observed difference removed), split at random
  (RESAMPLES times, fixed seed) into two groups of the study's sizes, one
  group shifted by delta and tested; delta is bisected until 80 % of the
  splits give p < alpha.  Its unit is the outcome's own.

The collapse flag (experiment.verdict: the degenerate model of the trainers)
is compared with Fisher's exact test on the 2 x 2 table of collapsed / not
collapsed runs, with the smallest collapse count ("0 of n vs c of n") it
could detect.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from reports.study_flags import FRAMEWORKS

ALPHA = 0.05
POWER = 0.8
RESAMPLES = 400
RESAMPLE_SEED = 20260601
BISECTION_STEPS = 30
FRAMEWORK_LABELS = {"keras": "Keras", "lightning": "Lightning"}
# (key, label, digits): the outcomes compared between the frameworks.
TESTED_OUTCOMES: tuple[tuple[str, str, int], ...] = (
    ("epochs_run", "epochs run", 1),
    ("kept_epoch", "kept epoch", 1),
    ("best_val_accuracy", "best val_accuracy", 4),
    ("terminal_val_accuracy", "terminal val_accuracy", 4),
    ("test_accuracy", "test accuracy", 4),
    ("recall", "test recall", 4),
    ("false_negatives", "false negatives", 0),
    ("predicted_positive_share", "predicted-positive share", 4),
)
# Summarised, not tested: wall time measures the machine and its load as much as the framework.
DESCRIBED_OUTCOMES: tuple[tuple[str, str, int], ...] = (("seconds", "wall time (s)", 0),)


def finite_values(runs: Sequence[Mapping[str, Any]], framework: str, key: str) -> np.ndarray:
    """One framework's values of one outcome; non-numbers (a diverged run's "nan") are left out."""
    values = [run[key] for run in runs if run["framework"] == framework]
    return np.asarray([float(value) for value in values if isinstance(value, (int, float))
                       and not isinstance(value, bool) and math.isfinite(float(value))], dtype=float)


def describe(values: np.ndarray) -> dict[str, Any]:
    """n, median, quartiles (numpy's linear interpolation), IQR, min and max."""
    if len(values) == 0:
        return {"n": 0, "median": None, "q1": None, "q3": None, "iqr": None, "min": None, "max": None}
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"n": int(len(values)), "median": float(median), "q1": float(q1), "q3": float(q3),
            "iqr": float(q3 - q1), "min": float(values.min()), "max": float(values.max())}


def summarize_outcomes(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {key: {framework: describe(finite_values(runs, framework, key)) for framework in FRAMEWORKS}
            for key, _, _ in (*TESTED_OUTCOMES, *DESCRIBED_OUTCOMES)}


# --------------------------------------------------------------------------
# Tests and power
# --------------------------------------------------------------------------


def mann_whitney_p(first: np.ndarray, second: np.ndarray, axis: int = 0) -> np.ndarray | float:
    from scipy.stats import mannwhitneyu

    return mannwhitneyu(first, second, alternative="two-sided", method="auto", axis=axis).pvalue


def smallest_possible_p(first_count: int, second_count: int) -> float:
    """The p-value of a complete separation: the best any data of these sizes can give."""
    return float(mann_whitney_p(np.arange(first_count, dtype=float),
                                np.arange(first_count, first_count + second_count, dtype=float)))


def minimal_detectable_difference(first: np.ndarray, second: np.ndarray, alpha: float = ALPHA,
                                  power: float = POWER) -> float | None:
    """The smallest shift detected with `power` (module docstring); None when no shift ever is."""
    first_count, second_count = len(first), len(second)
    if min(first_count, second_count) == 0 or smallest_possible_p(first_count, second_count) >= alpha:
        return None
    residuals = np.concatenate([first - np.median(first), second - np.median(second)])
    spread = float(residuals.max() - residuals.min())
    if spread == 0.0:
        return 0.0  # no spread at all: any shift separates the groups completely
    rng = np.random.default_rng(RESAMPLE_SEED)
    orders = np.stack([rng.permutation(len(residuals)) for _ in range(RESAMPLES)])
    group_one, group_two = residuals[orders[:, :first_count]], residuals[orders[:, first_count:]]

    def detected_share(delta: float) -> float:
        return float(np.mean(mann_whitney_p(group_one, group_two + delta, axis=1) < alpha))

    low, high = 0.0, spread * 1.001  # beyond the spread every split is completely separated
    if detected_share(high) < power:
        return None
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        low, high = (low, middle) if detected_share(middle) >= power else (middle, high)
    return high


def compare_outcome(runs: Sequence[Mapping[str, Any]], key: str, alpha: float = ALPHA) -> dict[str, Any]:
    """Mann-Whitney U of Keras vs Lightning for one outcome, with its power figures."""
    keras_values, lightning_values = (finite_values(runs, framework, key) for framework in FRAMEWORKS)
    counts = {"n_keras": int(len(keras_values)), "n_lightning": int(len(lightning_values))}
    if min(len(keras_values), len(lightning_values)) == 0:
        return {**counts, "test": "mann-whitney-u", "u": None, "p_value": None, "detected": False,
                "smallest_possible_p": None, "minimal_detectable_difference": None, "median_difference": None}
    from scipy.stats import mannwhitneyu

    test = mannwhitneyu(keras_values, lightning_values, alternative="two-sided", method="auto")
    return {**counts, "test": "mann-whitney-u", "u": float(test.statistic), "p_value": float(test.pvalue),
            "detected": bool(test.pvalue < alpha),
            "smallest_possible_p": smallest_possible_p(len(keras_values), len(lightning_values)),
            "minimal_detectable_difference": minimal_detectable_difference(keras_values, lightning_values, alpha),
            "median_difference": float(np.median(lightning_values) - np.median(keras_values))}


def smallest_detectable_collapse_count(first_count: int, second_count: int, alpha: float = ALPHA) -> int | None:
    """The least c such that 0 of first_count vs c of second_count collapsed gives Fisher p < alpha."""
    from scipy.stats import fisher_exact

    for collapsed in range(1, second_count + 1):
        if fisher_exact([[0, first_count], [collapsed, second_count - collapsed]]).pvalue < alpha:
            return collapsed
    return None


def compare_collapse(runs: Sequence[Mapping[str, Any]], alpha: float = ALPHA) -> dict[str, Any]:
    """Fisher's exact test on collapsed / not collapsed runs, Keras vs Lightning."""
    from scipy.stats import fisher_exact

    counts = {}
    for framework in FRAMEWORKS:
        flags = [bool(run["collapsed"]) for run in runs if run["framework"] == framework]
        counts[framework] = {"collapsed": int(sum(flags)), "runs": len(flags)}
    keras, lightning = counts["keras"], counts["lightning"]
    if min(keras["runs"], lightning["runs"]) == 0:
        return {"test": "fisher-exact", **counts, "p_value": None, "detected": False,
                "smallest_detectable_count": None}
    table = [[keras["collapsed"], keras["runs"] - keras["collapsed"]],
             [lightning["collapsed"], lightning["runs"] - lightning["collapsed"]]]
    p_value = float(fisher_exact(table).pvalue)
    return {"test": "fisher-exact", **counts, "p_value": p_value, "detected": bool(p_value < alpha),
            "smallest_detectable_count": smallest_detectable_collapse_count(keras["runs"], lightning["runs"], alpha)}


def holm_adjusted(p_values: Mapping[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment for testing several outcomes at once."""
    ordered = sorted(p_values.items(), key=lambda item: item[1])
    adjusted, running = {}, 0.0
    for rank, (key, value) in enumerate(ordered):
        running = max(running, min(1.0, (len(ordered) - rank) * value))
        adjusted[key] = running
    return adjusted


def compare_frameworks(runs: Sequence[Mapping[str, Any]], alpha: float = ALPHA) -> dict[str, Any]:
    tests: dict[str, Any] = {key: compare_outcome(runs, key, alpha) for key, _, _ in TESTED_OUTCOMES}
    adjusted = holm_adjusted({key: test["p_value"] for key, test in tests.items() if test["p_value"] is not None})
    for key, test in tests.items():
        test["p_value_holm"] = adjusted.get(key)
    tests["collapse"] = compare_collapse(runs, alpha)
    tests["alpha"], tests["power"], tests["resamples"] = alpha, POWER, RESAMPLES
    return tests


# --------------------------------------------------------------------------
# The verdict, in words built from the numbers above
# --------------------------------------------------------------------------


def format_number(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def seeds_needed(alpha: float = ALPHA, largest: int = 50) -> int | None:
    """The fewest seeds per framework with which a complete separation reaches p < alpha."""
    return next((count for count in range(2, largest + 1) if smallest_possible_p(count, count) < alpha), None)


def describe_seed_counts(tests: Mapping[str, Any]) -> str:
    keras_runs, lightning_runs = tests["collapse"]["keras"]["runs"], tests["collapse"]["lightning"]["runs"]
    if keras_runs == lightning_runs:
        return f"{keras_runs} seed{'s' if keras_runs != 1 else ''} per framework"
    return f"{keras_runs} Keras and {lightning_runs} Lightning seeds"


def describe_difference(difference: float | None, digits: int) -> str:
    """A smallest detectable difference in words: 0 means the values have no spread at all."""
    if difference is None:
        return "none possible"
    return "any shift (the values have no spread)" if difference == 0.0 else format_number(difference, digits)


def detectable_differences(tests: Mapping[str, Any], keys: Sequence[str]) -> str:
    labels = {key: (label, digits) for key, label, digits in TESTED_OUTCOMES}
    parts = []
    for key in keys:
        label, digits = labels[key]
        difference = tests[key]["minimal_detectable_difference"]
        parts.append(f"{label} {describe_difference(difference, digits)}")
    return "; ".join(parts)


def outcome_verdict(tests: Mapping[str, Any], summary: Mapping[str, Any], alpha: float) -> str:
    labels = {key: (label, digits) for key, label, digits in TESTED_OUTCOMES}
    keys = [key for key, _, _ in TESTED_OUTCOMES]
    seeds = describe_seed_counts(tests)
    testable = [key for key in keys if tests[key]["smallest_possible_p"] is not None
                and tests[key]["smallest_possible_p"] < alpha]
    if not testable:
        possible = [tests[key]["smallest_possible_p"] for key in keys if tests[key]["smallest_possible_p"] is not None]
        best = f"{min(possible):.3f}" if possible else "undefined (no finite values)"
        return (f"This study cannot detect any difference between the frameworks: with {seeds}, no two-sided "
                f"Mann–Whitney test can reach p < {alpha} (the smallest possible p is {best}); it needs at least "
                f"{seeds_needed(alpha)} seeds per framework.")
    detected = [key for key in testable if tests[key]["detected"]]
    undetected = [key for key in testable if not tests[key]["detected"]]
    if not detected:
        return (f"No difference detected at α = {alpha} with {seeds} in any of the {len(testable)} outcomes "
                f"(two-sided Mann–Whitney U); the smallest differences this could detect (80 % power, a shift "
                f"of one framework's values) are: {detectable_differences(tests, undetected)}.")
    described = []
    for key in detected:
        label, digits = labels[key]
        medians = summary[key]
        described.append(f"{label} (Keras median {format_number(medians['keras']['median'], digits)}, Lightning "
                         f"median {format_number(medians['lightning']['median'], digits)}, "
                         f"p = {tests[key]['p_value']:.3g})")
    surviving = [key for key in detected if tests[key]["p_value_holm"] is not None
                 and tests[key]["p_value_holm"] < alpha]
    corrected_count = sum(tests[key]["p_value"] is not None for key in keys)  # what holm_adjusted saw
    remaining = (f"{len(surviving)} of them remain{'s' if len(surviving) == 1 else ''}"
                 + (": " + ", ".join(labels[key][0] for key in surviving) if surviving else ""))
    text = (f"Difference detected at α = {alpha} with {seeds} in {len(detected)} of {len(testable)} outcomes: "
            f"{'; '.join(described)}. After Holm's correction for {corrected_count} tests, {remaining}.")
    if undetected:
        text += (f" No difference detected in the other {len(undetected)}; the smallest differences this could "
                 f"detect there (80 % power) are: {detectable_differences(tests, undetected)}.")
    return text


def collapse_verdict(tests: Mapping[str, Any], alpha: float) -> str:
    collapse = tests["collapse"]
    keras, lightning = collapse["keras"], collapse["lightning"]
    counts = (f"Keras collapsed (a degenerate kept model) in {keras['collapsed']} of {keras['runs']} runs, "
              f"Lightning in {lightning['collapsed']} of {lightning['runs']}")
    if collapse["p_value"] is None:
        return counts + "; no test (a framework has no runs)."
    judged = "a difference detected" if collapse["detected"] else "no difference detected"
    text = f"{counts} (Fisher's exact p = {collapse['p_value']:.3g}): {judged} at α = {alpha}"
    smallest = collapse["smallest_detectable_count"]
    if smallest is None:
        return text + "; with so few runs no collapse rate difference could be detected."
    return text + (f"; the smallest difference this could detect is 0 of {keras['runs']} runs against "
                   f"{smallest} of {lightning['runs']}.")


def verdict_sentences(tests: Mapping[str, Any], summary: Mapping[str, Any]) -> list[str]:
    """The page's verdict: the outcomes' tests, then the collapse rates; every figure is from `tests`/`summary`."""
    alpha = tests["alpha"]
    return [outcome_verdict(tests, summary, alpha), collapse_verdict(tests, alpha)]
