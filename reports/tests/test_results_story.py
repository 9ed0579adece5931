"""The results page never says what its own numbers contradict.

    python -m pytest reports/tests/test_results_story.py -q

Two kinds of check, no training:

* the committed docs/results/results.md against its results.json: the page
  must be exactly what the renderer makes of the numbers, and every
  sentence whose premise is a number (a capped run, "the same epoch", FN
  about twice TP, identical epochs, a shared setting as the cause of a
  difference) appears only where the numbers meet that premise;
* hand-made results that meet each premise, so each sentence is shown to
  appear when it should (a check that could never fire proves nothing).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from reports import results_page, results_reasons, results_story
from reports.study_flags import FRAMEWORKS

RESULTS_DIR = Path(__file__).resolve().parents[2] / "docs" / "results"


@pytest.fixture(scope="module")
def committed():
    """(results.json's numbers without the derived keys, the committed page)."""
    results = json.loads((RESULTS_DIR / results_page.RESULTS_JSON).read_text(encoding="utf-8"))
    for derived in ("trends", "note"):
        results.pop(derived, None)
    return results, (RESULTS_DIR / results_page.RESULTS_MARKDOWN).read_text(encoding="utf-8")


def test_the_committed_page_is_what_its_numbers_render_to(committed):
    results, page = committed
    assert results_page.render_markdown(results) == page


def test_a_capped_run_is_named_only_when_an_experiment_was_capped(committed):
    results, page = committed
    capped = [experiment for experiment in results["experiments"] if results_reasons.was_capped(results, experiment)]
    assert capped == []  # the committed run used the table's epochs: 50 of 50 for experiment 2
    assert "capped" not in page.split("## Compared with the book")[1].split("### How this setup")[0]
    assert "| epoch cap (table → run) |" in page


def test_the_same_epoch_sentence_needs_the_same_kept_epoch(committed):
    results, page = committed
    for framework in FRAMEWORKS:
        label = results_story.FRAMEWORK_LABELS[framework]
        kept_4 = results["experiments"]["4"][framework]["kept_epoch"]
        kept_5 = results["experiments"]["5"][framework]["kept_epoch"]
        same_sentence = f"{label}: experiments 4 and 5 are one training and kept the same epoch"
        assert (same_sentence in page) == (kept_4 == kept_5), framework
    assert "fell on the same epoch" not in page  # kept epochs 11 vs 23 and 9 vs 10


def test_fn_about_twice_tp_is_claimed_only_inside_the_bounds(committed):
    results, page = committed
    low, high = results_story.FN_PER_TP_BOUNDS
    for match in re.finditer(r"FN/TP = ([0-9.]+) \((about|not about) 2\)", page):
        ratio, claim = float(match.group(1)), match.group(2)
        assert (claim == "about") == (low <= ratio <= high), match.group(0)
    trend = next(check for check in results_story.trend_checks(results) if check["trend"] == "2")
    for framework, reproduced in trend["reproduced"].items():
        run = results["experiments"]["2"][framework]
        tp, fn = run["true_positives"], run["false_negatives"]
        assert reproduced == (tp > 0 and low <= fn / tp <= high), framework
    assert trend["reproduced"]["keras"] is False  # FN/TP = 4.02 is not "about 2"


def test_a_shared_setting_is_never_the_reason_the_frameworks_differ(committed):
    results, page = committed
    for check in results_story.trend_checks(results):
        reasons = results_reasons.reasons_for(check, results)
        if results_reasons.frameworks_split(check):
            assert results_reasons.parted_sentence(results) in reasons, check["trend"]
            assert results_reasons.SHARED_SETTINGS_REASON not in reasons, check["trend"]
    assert "Where it does not: The book needed" not in page
    assert "When the run here is capped" not in page


def test_identical_epochs_are_reported_from_the_history(committed):
    results, page = committed
    lightning_3 = results["experiments"]["3"]["lightning"]
    first, last = results_story.frozen_epochs(lightning_3)
    history = lightning_3["history"]
    frozen = {(history["val_accuracy"][epoch], history["val_loss"][epoch]) for epoch in range(first - 1, last)}
    assert len(frozen) == 1 and (first, last) == (39, 50)
    assert history["val_loss"][first - 2] != history["val_loss"][first - 1]
    assert "val_accuracy 0.54793 and val_loss 7.20782 are identical from epoch 39 to epoch 50" in page
    assert results_story.frozen_epochs(results["experiments"]["3"]["keras"]) is None


def _with(results, experiment, framework, **changes):
    changed = copy.deepcopy(results)
    changed["experiments"][experiment][framework].update(changes)
    return changed


def test_each_premised_sentence_appears_when_its_premise_holds(committed):
    results, _ = committed
    capped = copy.deepcopy(results)
    capped["experiment_settings"]["2"]["epochs"] = 12
    assert "This run capped experiment 2's epochs" in results_page.render_markdown(capped)

    kept = results["experiments"]["4"]["keras"]["kept_epoch"]
    same = _with(results, "5", "keras", kept_epoch=kept, recall=results["experiments"]["4"]["keras"]["recall"])
    assert f"Keras 3: experiments 4 and 5 are one training and kept the same epoch ({kept})" in \
        results_page.render_markdown(same)

    about_twice = _with(results, "2", "keras", true_positives=4000, false_negatives=8505)
    about_twice = _with(about_twice, "2", "lightning", true_positives=4000, false_negatives=8505)
    check = next(check for check in results_story.trend_checks(about_twice) if check["trend"] == "2")
    assert check["verdict"] == "**reproduces** in both frameworks"
    assert "FN/TP = 2.13 (about 2)" in check["evidence"]["keras"]
