"""The book's trends across experiments, tested seed by seed in each framework.

    trends = book_trends(runs)        # [{framework, earlier, later, n, wins, ..., p_value, holds}, ...]
    trend_sentences(trends)           # one sentence per framework and trend, built from those numbers

The book reports, one run each, that experiment 4 (early stop on val_loss)
has better test recall than experiment 3 (50 epochs, class weights), and
experiment 5 (early stop on val_accuracy) better than 4.  A seed study
(parity_tests.seeds) run for experiments 3, 4 and 5 with the same seeds, rows,
epoch cap, patience and batch order lets us ask whether that holds in
distribution.

The comparison is paired, not two-sample: with one seed, one class weight and
one batch order, experiments 3, 4 and 5 are the same training and differ only
in when it stops and which epoch's weights are kept (Keras and Lightning
alike; docs/results/results.md shows their val_accuracy identical over the
common epochs).  So the right question is "for the same training, does the
later experiment's rule keep a model with better recall?", answered by the
per-seed differences later - earlier:

* wins: seeds where the later experiment's recall is higher; ties are
  equal recalls (the same epoch kept);
* a one-sided Wilcoxon signed-rank test (scipy.stats.wilcoxon,
  alternative "greater", zero differences dropped as in its default
  zero_method "wilcox"): the book's claim is directional.  With n non-zero
  pairs the smallest possible p is 1 / 2**n (all differences positive), so
  with fewer than 5 pairs no result can reach alpha = 0.05, and the sentence
  says so.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from reports.seed_statistics import ALPHA, FRAMEWORK_LABELS, FRAMEWORKS

# (earlier experiment, later experiment): the book says the later has better recall.
BOOK_TRENDS: tuple[tuple[str, str], ...] = (("3", "4"), ("4", "5"))
# Runs of different experiments are paired only when everything else matches.
PAIRING_KEYS = ("framework", "seed", "sample_rows", "epochs_cap", "patience", "batch_order")
OUTCOME = "recall"


def paired_recalls(runs: Sequence[Mapping[str, Any]], framework: str, earlier: str,
                   later: str) -> list[tuple[int, float, float]]:
    """(seed, earlier recall, later recall) for each seed run in both experiments with matching settings."""
    def key(run: Mapping[str, Any]) -> tuple:
        return tuple(run[name] for name in PAIRING_KEYS)

    earlier_runs = {key(run): run for run in runs
                    if run["framework"] == framework and str(run["experiment"]) == earlier}
    pairs = []
    for run in runs:
        if run["framework"] == framework and str(run["experiment"]) == later and key(run) in earlier_runs:
            pairs.append((int(run["seed"]), float(earlier_runs[key(run)][OUTCOME]), float(run[OUTCOME])))
    return sorted(pairs)


def one_sided_signed_rank_p(differences: np.ndarray) -> float | None:
    """p of "later > earlier" (Wilcoxon signed-rank, zero differences dropped); None without non-zero pairs."""
    from scipy.stats import wilcoxon

    non_zero = differences[differences != 0]
    if len(non_zero) == 0:
        return None
    return float(wilcoxon(non_zero, alternative="greater").pvalue)


def compare_trend(runs: Sequence[Mapping[str, Any]], framework: str, earlier: str, later: str,
                  alpha: float = ALPHA) -> dict[str, Any]:
    pairs = paired_recalls(runs, framework, earlier, later)
    differences = np.array([later_recall - earlier_recall for _, earlier_recall, later_recall in pairs])
    non_zero = int(np.count_nonzero(differences))
    p_value = one_sided_signed_rank_p(differences) if len(differences) else None
    smallest_possible_p = 0.5 ** non_zero if non_zero else None
    return {
        "framework": framework, "earlier": earlier, "later": later, "n": len(pairs),
        "seeds": [seed for seed, _, _ in pairs],
        "wins": int(np.sum(differences > 0)), "losses": int(np.sum(differences < 0)),
        "ties": int(np.sum(differences == 0)),
        "median_difference": float(np.median(differences)) if len(differences) else None,
        "min_difference": float(differences.min()) if len(differences) else None,
        "max_difference": float(differences.max()) if len(differences) else None,
        "p_value": p_value, "smallest_possible_p": smallest_possible_p, "alpha": alpha,
        "holds": p_value is not None and p_value < alpha,
    }


def book_trends(runs: Sequence[Mapping[str, Any]], alpha: float = ALPHA) -> list[dict[str, Any]]:
    """Every book trend in every framework and study setting (rows, cap, patience, order) with paired runs."""
    setting_keys = PAIRING_KEYS[2:]
    trends = []
    for setting in sorted({tuple(run[key] for key in setting_keys) for run in runs}, key=repr):
        members = [run for run in runs if tuple(run[key] for key in setting_keys) == setting]
        for framework in FRAMEWORKS:
            for earlier, later in BOOK_TRENDS:
                trend = compare_trend(members, framework, earlier, later, alpha)
                if trend["n"]:
                    trends.append({**trend, "settings": dict(zip(setting_keys, setting))})
    return trends


def trend_sentence(trend: Mapping[str, Any]) -> str:
    """One sentence, every number from `trend`."""
    label, earlier, later = FRAMEWORK_LABELS[trend["framework"]], trend["earlier"], trend["later"]
    head = (f"{label}: experiment {later} kept a model with better test recall than experiment {earlier} for "
            f"{trend['wins']} of {trend['n']} seeds ({trend['losses']} worse, {trend['ties']} equal; median "
            f"difference {trend['median_difference']:+.4f}, range {trend['min_difference']:+.4f} to "
            f"{trend['max_difference']:+.4f})")
    alpha = trend["alpha"]
    if trend["p_value"] is None:
        return f"{head}: every seed kept the same epoch, so the trend cannot hold."
    if trend["smallest_possible_p"] >= alpha:
        return (f"{head}; with {trend['n'] - trend['ties']} seed(s) that differ, even a clean sweep gives "
                f"p = {trend['smallest_possible_p']:.3f} ≥ α = {alpha}, so this study cannot show the trend "
                f"either way (observed one-sided Wilcoxon p = {trend['p_value']:.3f}).")
    if trend["holds"]:
        return f"{head}; one-sided Wilcoxon signed-rank p = {trend['p_value']:.3f} < α = {alpha}: the trend holds."
    return (f"{head}; one-sided Wilcoxon signed-rank p = {trend['p_value']:.3f} ≥ α = {alpha}: the trend is not "
            f"shown in distribution.")


def trend_sentences(trends: Sequence[Mapping[str, Any]]) -> list[str]:
    return [trend_sentence(trend) for trend in trends]


def trend_lines(trends: Sequence[Mapping[str, Any]]) -> list[str]:
    """The study page's section on the book's trends (empty when no experiments were paired)."""
    if not trends:
        return []
    lines = ["## The book's trends, seed by seed", "",
             "The book reports that experiment 4 has better test recall than 3, and 5 better than 4. With one "
             "seed, experiments 3, 4 and 5 are one training that keeps different epochs, so each seed gives a "
             "pair; p is a one-sided Wilcoxon signed-rank test on the per-seed differences (see "
             "`reports/seed_trends.py`).", ""]
    return lines + [trend_item(trend) for trend in trends] + [""]


def trend_item(trend: Mapping[str, Any]) -> str:
    """A list item: the study group's settings, then the trend's sentence."""
    settings = trend["settings"]
    rows = "all rows" if settings["sample_rows"] is None else f"{settings['sample_rows']:,} rows"
    return f"- ({rows}, epoch cap {settings['epochs_cap']}, patience {settings['patience']}) {trend_sentence(trend)}"
