"""The words of docs/results/results.md: the book's trends judged on the numbers, and why.

Every sentence here that makes a claim about a run is built from that run's
numbers, and a sentence whose premise the numbers do not meet is not written
(reports/tests/test_results_story.py checks the committed page against its
results.json).  The reasons ("*Why:*") are chosen by the same numbers: a
reason that holds for both frameworks is never offered for why they differ.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from reports.study_flags import FRAMEWORKS

FRAMEWORK_LABELS = {"keras": "Keras 3", "lightning": "Lightning"}
# The chapter's own early-stopping example (patience 4) ran 12 epochs and kept 0.73164.
BOOK_PATIENCE_4_EPOCHS = 12
BOOK_PATIENCE_4_VAL_ACCURACY = 0.73164
# The book's experiment 2: "FN about twice TP".  A ratio inside these bounds counts as "about 2".
BOOK_FN_PER_TP = 2.0
FN_PER_TP_BOUNDS = (1.5, 2.5)
MISSING = "–"


def format_ratio(value: float | None, digits: int = 5) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def format_count(value: int | None) -> str:
    return MISSING if value is None else f"{int(value):,}"


def format_seconds(value: float | None) -> str:
    return MISSING if value is None else f"{value:,.0f} s"


# --------------------------------------------------------------------------
# The book's trends, judged on the numbers
# --------------------------------------------------------------------------


def _runs(results: Mapping[str, Any], experiment: str) -> Mapping[str, Mapping[str, Any]]:
    return results["experiments"].get(experiment, {})


def _verdict(flags: Sequence[bool]) -> str:
    if all(flags):
        return "**reproduces** in both frameworks" if len(flags) > 1 else "**reproduces**"
    if not any(flags):
        return "**does not reproduce**"
    return "**reproduces in one framework only**"


def _figures(summary: Mapping[str, Any]) -> str:
    return (f"TP {format_count(summary['true_positives'])}, FN {format_count(summary['false_negatives'])}, "
            f"recall {format_ratio(summary['recall'], 4)}, test accuracy {format_ratio(summary['test_accuracy'])}, "
            f"terminal val_accuracy {format_ratio(summary['val_accuracy_terminal'])}")


# val_accuracy this close to the test split's no-delay share counts as "predicting no delay everywhere";
# the validation split's own share is within a few 1e-4 of it (the split is random over slots).
NO_DELAY_LEVEL_TOLERANCE = 0.0005
# A rise of val_loss by half or more from one epoch to the next is a "jump" worth naming.
LOSS_JUMP_FACTOR = 1.5


def no_delay_share(summary: Mapping[str, Any]) -> float:
    """Accuracy on the test split of a model that always says "no delay": (tn + fp) / rows."""
    (tn, fp), (fn, tp) = summary["confusion_matrix"]
    return (tn + fp) / (tn + fp + fn + tp)


def loss_jumps(summary: Mapping[str, Any]) -> list[str]:
    """'epoch N (before → after)' for every epoch whose val_loss rose by LOSS_JUMP_FACTOR or more."""
    val_loss = summary["history"]["val_loss"]
    return [f"epoch {epoch + 1} ({val_loss[epoch - 1]:.4f} → {val_loss[epoch]:.4f})"
            for epoch in range(1, len(val_loss)) if val_loss[epoch] >= LOSS_JUMP_FACTOR * val_loss[epoch - 1]]


def history_story(summary: Mapping[str, Any]) -> str:
    """Generated: where the validation curve sat at the all-"no delay" level, and where val_loss jumped up."""
    val_accuracy = summary["history"]["val_accuracy"]
    baseline = no_delay_share(summary)
    at_baseline = [epoch + 1 for epoch, value in enumerate(val_accuracy)
                   if abs(value - baseline) <= NO_DELAY_LEVEL_TOLERANCE]
    jumps = loss_jumps(summary)
    parts = [f"always answering \"no delay\" scores {baseline:.5f} on the test split"]
    if at_baseline:
        parts.append(f"val_accuracy was at that level (within {NO_DELAY_LEVEL_TOLERANCE}) at epoch(s) "
                     f"{', '.join(str(epoch) for epoch in at_baseline)} of {len(val_accuracy)}")
    else:
        parts.append("val_accuracy never reached that level")
    if jumps:
        parts.append(f"val_loss jumped up at {', '.join(jumps)}")
    return "; ".join(parts)


# The chapter's trends: id -> (the book's claim, the experiments it needs).
BOOK_TRENDS: dict[str, tuple[str, list[str]]] = {
    "1": ("experiment 1 (10 epochs, no weighting) always predicts \"no delay\": accuracy > 97 %, recall 0", ["1"]),
    "2": ("experiment 2 (50 epochs, no weighting) predicts some delays, but FN ≈ 2 × TP", ["2"]),
    "3": ("experiment 3 (class weights) gives more true positives than false negatives", ["3"]),
    "4": ("experiment 4 (early stop on val_loss) has better recall than experiment 3", ["3", "4"]),
    "5": ("experiment 5 (early stop on val_accuracy) has better recall and better validation accuracy than "
          "experiment 4", ["4", "5"]),
}


def unchecked_trends(results: Mapping[str, Any]) -> list[str]:
    """Generated: the book's trends this run could not test, and which experiment was missing."""
    lines = []
    for trend, (claim, needed) in BOOK_TRENDS.items():
        missing = [experiment for experiment in needed if experiment not in results["experiments"]]
        if missing:
            lines.append(f"- Not checked: {claim} (not in this run: experiment {', '.join(missing)}).")
    return lines


def judge_experiment_1(results: Mapping[str, Any], name: str) -> tuple[bool, str]:
    run = _runs(results, "1")[name]
    tn, fp = run["confusion_matrix"][0]
    always_no_delay = run["true_positives"] == 0 and fp == 0
    flag = always_no_delay and run["test_accuracy"] > 0.97 and run["recall"] == 0.0
    what = "predicts no delay for every test row" if always_no_delay else \
        f"predicts delay for {format_count(run['true_positives'] + fp)} test rows"
    return flag, f"{what}; {_figures(run)}; {history_story(run)}"


def judge_experiment_2(results: Mapping[str, Any], name: str) -> tuple[bool, str]:
    run = _runs(results, "2")[name]
    tp, fn = run["true_positives"], run["false_negatives"]
    low, high = FN_PER_TP_BOUNDS
    flag = tp > 0 and low <= fn / tp <= high
    if not tp:
        ratio = "no true positives at all, so FN/TP is undefined"
    else:
        ratio = f"FN/TP = {fn / tp:.2f} ({'about' if flag else 'not about'} {BOOK_FN_PER_TP:g})"
    return flag, f"{ratio}; {_figures(run)}"


def judge_experiment_3(results: Mapping[str, Any], name: str) -> tuple[bool, str]:
    run = _runs(results, "3")[name]
    tp, fn = run["true_positives"], run["false_negatives"]
    relation = ">" if tp > fn else ("=" if tp == fn else "<")
    text = (f"TP {format_count(tp)} {relation} FN {format_count(fn)} at the last epoch ({run['epochs_run']}); "
            f"recall {format_ratio(run['recall'], 4)}, test accuracy {format_ratio(run['test_accuracy'])}, "
            f"terminal val_accuracy {format_ratio(run['val_accuracy_terminal'])}")
    jumps = loss_jumps(run)
    if jumps:
        text += f"; val_loss jumped up at {', '.join(jumps)}"
    frozen = frozen_sentence(run)
    if frozen:
        text += f"; {frozen}"
    for later in ("4", "5"):
        other = _runs(results, later).get(name)
        if other is not None and other["kept_epoch"] != run["kept_epoch"]:
            # Experiments 4/5 are the same training kept at another epoch (shared_trajectory_lines).
            text += (f"; the same training kept at epoch {other['kept_epoch']} (experiment {later}) has "
                     f"TP {format_count(other['true_positives'])} vs FN {format_count(other['false_negatives'])}")
            break
    return tp > fn, text


def judge_experiment_4(results: Mapping[str, Any], name: str) -> tuple[bool, str]:
    run, before = _runs(results, "4")[name], _runs(results, "3")[name]
    flag = run["recall"] > before["recall"]
    return flag, (f"recall {format_ratio(run['recall'], 4)} (exp 4, kept epoch {run['kept_epoch']} of "
                  f"{run['epochs_run']}) vs {format_ratio(before['recall'], 4)} (exp 3)")


def judge_experiment_5(results: Mapping[str, Any], name: str) -> tuple[bool, str]:
    run, before = _runs(results, "5")[name], _runs(results, "4")[name]
    better_recall = run["recall"] > before["recall"]
    better_accuracy = run["val_accuracy_terminal"] > before["val_accuracy_terminal"]
    return better_recall and better_accuracy, (
        f"recall {format_ratio(run['recall'], 4)} vs {format_ratio(before['recall'], 4)} "
        f"({'better' if better_recall else 'not better'}); terminal val_accuracy "
        f"{format_ratio(run['val_accuracy_terminal'])} vs {format_ratio(before['val_accuracy_terminal'])} "
        f"({'better' if better_accuracy else 'not better'}); kept (best) val_accuracy "
        f"{format_ratio(run['val_accuracy_kept'])} vs {format_ratio(before['val_accuracy_kept'])}"
        + (f"; both kept epoch {run['kept_epoch']}: the lowest val_loss and the highest val_accuracy fell "
           f"on the same epoch" if run["kept_epoch"] == before["kept_epoch"] else
           f"; kept epoch {run['kept_epoch']} vs {before['kept_epoch']}"))


def judge_patience_example(results: Mapping[str, Any], name: str) -> tuple[bool, str]:
    run = _runs(results, "5")[name]
    return (abs(run["val_accuracy_kept"] - BOOK_PATIENCE_4_VAL_ACCURACY) < 0.01, (
        f"ran {run['epochs_run']} epoch(s) (book {BOOK_PATIENCE_4_EPOCHS}): val_accuracy peaked at epoch "
        f"{run['kept_epoch']} and did not improve in the {run['epochs_run'] - run['kept_epoch']} epoch(s) after; "
        f"kept val_accuracy {format_ratio(run['val_accuracy_kept'])} (book {BOOK_PATIENCE_4_VAL_ACCURACY}; "
        f"within 0.01 counts as reproduced)"))


# Each book trend's judge: (reproduced?, the evidence sentence) for one framework.
JUDGES: dict[str, Callable[[Mapping[str, Any], str], tuple[bool, str]]] = {
    "1": judge_experiment_1, "2": judge_experiment_2, "3": judge_experiment_3, "4": judge_experiment_4,
    "5": judge_experiment_5,
}
PATIENCE_4_CLAIM = (f"early stopping on val_accuracy with patience 4 runs {BOOK_PATIENCE_4_EPOCHS} epochs "
                    f"and keeps val_accuracy {BOOK_PATIENCE_4_VAL_ACCURACY}")


def trend_check(results: Mapping[str, Any], trend: str, claim: str, needed: Sequence[str],
                judge: Callable[[Mapping[str, Any], str], tuple[bool, str]]) -> dict[str, Any] | None:
    """One trend judged in every framework that ran its experiments (None when none did)."""
    frameworks = [name for name in FRAMEWORKS if all(name in _runs(results, exp) for exp in needed)]
    if not frameworks:
        return None
    evidence = {name: judge(results, name) for name in frameworks}
    return {"trend": trend, "claim": claim, "experiments": list(needed),
            "reproduced": {name: bool(flag) for name, (flag, _) in evidence.items()},
            "evidence": {name: text for name, (_, text) in evidence.items()},
            "verdict": _verdict([flag for flag, _ in evidence.values()])}


def trend_checks(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One entry per book trend whose experiments ran: the claim, per-framework evidence, the verdict."""
    checks = [trend_check(results, trend, *BOOK_TRENDS[trend], judge) for trend, judge in JUDGES.items()]
    if results["settings"].get("patience") == 4:
        checks.append(trend_check(results, "5-patience-4", PATIENCE_4_CLAIM, ["5"], judge_patience_example))
    return [check for check in checks if check is not None]


def shared_trajectory_lines(results: Mapping[str, Any]) -> list[str]:
    """Generated: experiments 3, 4 and 5 differ only in callbacks, so with one seed they train identically.

    Same initial weights (one seed), same class weight, same batch order: the
    epochs they have in common should be the same epochs, and then 4 and 5
    differ from 3 only in when they stop and which epoch they keep.  The book
    ran each experiment as its own run; there, the differences also hold
    run-to-run noise.  Checked on the numbers, not assumed.
    """
    lines = []
    for framework in FRAMEWORKS:
        present = [experiment for experiment in ("3", "4", "5") if framework in _runs(results, experiment)]
        if len(present) < 2:
            continue
        histories = {experiment: _runs(results, experiment)[framework]["history"]["val_accuracy"]
                     for experiment in present}
        common = min(len(values) for values in histories.values())
        largest = max(abs(histories[experiment][epoch] - histories[present[0]][epoch])
                      for experiment in present[1:] for epoch in range(common))
        kept = ", ".join(f"{experiment}: kept epoch {_runs(results, experiment)[framework]['kept_epoch']} of "
                         f"{_runs(results, experiment)[framework]['epochs_run']}" for experiment in present)
        if largest == 0.0:
            lines.append(f"- {FRAMEWORK_LABELS[framework]}: experiments {', '.join(present)} have identical "
                         f"val_accuracy over their {common} common epoch(s), so they are one training run that "
                         f"differs only in when it stops and which epoch it keeps ({kept}).")
        else:
            lines.append(f"- {FRAMEWORK_LABELS[framework]}: experiments {', '.join(present)} differ by up to "
                         f"{largest:.6f} in val_accuracy over their {common} common epoch(s) ({kept}).")
    if lines:
        lines.insert(0, "Experiments 3, 4 and 5 share the seed, the class weight and the batch order and differ "
                        "only in their callbacks, so 4 and 5 can improve on 3 only by keeping a different epoch "
                        "of the same training (the book's separate runs also differed by chance):")
        lines.insert(1, "")
    return lines


def framework_agreement(results: Mapping[str, Any]) -> list[str]:
    """Generated sentences: how far apart the two frameworks ended on each experiment."""
    lines = []
    for experiment, runs in results["experiments"].items():
        if not all(name in runs for name in FRAMEWORKS):
            continue
        keras, lightning = runs["keras"], runs["lightning"]
        lines.append(
            f"- Experiment {experiment}: terminal val_accuracy differs by "
            f"{abs(keras['val_accuracy_terminal'] - lightning['val_accuracy_terminal']):.5f}, test accuracy by "
            f"{abs(keras['test_accuracy'] - lightning['test_accuracy']):.5f}, recall by "
            f"{abs(keras['recall'] - lightning['recall']):.4f}; epochs run {keras['epochs_run']} vs "
            f"{lightning['epochs_run']}, kept epoch {keras['kept_epoch']} vs {lightning['kept_epoch']}; "
            f"wall time {format_seconds(keras['seconds'])} vs {format_seconds(lightning['seconds'])}.")
    return lines


def frozen_epochs(summary: Mapping[str, Any]) -> tuple[int, int] | None:
    """(first, last) 1-based epochs of the longest stretch, 3 epochs or more, of identical val_accuracy and val_loss."""
    history = summary["history"]
    pairs = list(zip(history["val_accuracy"], history["val_loss"]))
    best, start = None, 0
    for epoch in range(1, len(pairs) + 1):
        if epoch == len(pairs) or pairs[epoch] != pairs[start]:
            if epoch - start >= 3 and (best is None or epoch - start > best[1] - best[0] + 1):
                best = (start + 1, epoch)
            start = epoch
    return best


def frozen_sentence(summary: Mapping[str, Any]) -> str | None:
    span = frozen_epochs(summary)
    if span is None:
        return None
    first, last = span
    val_accuracy, val_loss = summary["history"]["val_accuracy"][first - 1], summary["history"]["val_loss"][first - 1]
    return (f"val_accuracy {val_accuracy:.5f} and val_loss {val_loss:.5f} are identical from epoch {first} to "
            f"epoch {last}")
