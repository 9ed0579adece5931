"""Is the kept model any use?  The degenerate-model check and its warning, for both trainers.

On the streetcar data about 97.8 % of the (date, hour, route, direction)
slots have no delay, so a model that answers "no delay" for every trip scores
about 0.978 accuracy while catching no delay at all.  A run can end there (the
book's unweighted experiments do, and so can early stopping on val_accuracy,
which rewards that answer), and its figures then look normal.  Both
`python -m keras_impl.train` and `python -m lightning_impl.train` therefore
judge the kept model on the test split:

    degenerate = one class for >= 99 % of the test rows,
                 or recall < 0.05 while the test split has delays

    judge_test(result["test"])      -> {"degenerate": ..., "predicted_positive_share": ...}
    degenerate_warning(result, request)  -> the plain warning block, or None

The warning says what the model does, why it can end so (the monitored
metric, the class balance, the class weights, a saturated output) and what to
try, naming only flags and config keys that exist (configs/cli.py,
configs/streetcar.yaml).
"""

from __future__ import annotations

from typing import Any, Mapping

# A model answering one class for at least this share of the test rows is degenerate.
ONE_CLASS_SHARE = 0.99
# ... and so is one that catches fewer than this share of the test split's delays.
MINIMUM_RECALL = 0.05
# Above this share of saturated test outputs the warning names the saturation as a cause.
SATURATION_WORTH_SAYING = 0.5


def predicted_positive_share(test: Mapping[str, Any]) -> float:
    """Share of test rows the model calls "delay": (fp + tp) / rows, from the confusion matrix."""
    (tn, fp), (fn, tp) = test["confusion_matrix"]
    rows = tn + fp + fn + tp
    return (fp + tp) / rows if rows else float("nan")


def is_degenerate(test: Mapping[str, Any]) -> bool:
    """One class for >= 99 % of the test rows, or recall < 0.05 while the test split has delays."""
    (tn, fp), (fn, tp) = test["confusion_matrix"]
    if tn + fp + fn + tp == 0:
        return False
    share = predicted_positive_share(test)
    one_class = share >= ONE_CLASS_SHARE or 1.0 - share >= ONE_CLASS_SHARE
    misses_delays = (fn + tp) > 0 and tp / (fn + tp) < MINIMUM_RECALL
    return bool(one_class or misses_delays)


def judge_test(test: Mapping[str, Any]) -> dict[str, Any]:
    """The result keys "degenerate" and "predicted_positive_share" (test split), in RESULT_KEYS order."""
    return {"degenerate": is_degenerate(test), "predicted_positive_share": predicted_positive_share(test)}


# --------------------------------------------------------------------------
# The warning block
# --------------------------------------------------------------------------


def format_percent(share: float) -> str:
    """0.999605 -> '99.96 %'; never rounds a partial share to '100.00 %' or '0.00 %'."""
    text = f"{100 * share:.2f} %"
    if text == "100.00 %" and share < 1.0:
        return "more than 99.99 %"
    if text == "0.00 %" and share > 0.0:
        return "less than 0.01 %"
    return text


def describe_behaviour(test: Mapping[str, Any]) -> str:
    """What the model does, in the reader's words: "answers 'no delay' for 99.96 % of trips: ..."."""
    (tn, fp), (fn, tp) = test["confusion_matrix"]
    delays, positive_share = fn + tp, predicted_positive_share(test)
    catches = f"it catches {tp:,} of {delays:,} delays" if delays else "the test split has no delays"
    if positive_share >= 0.5:
        return (f"answers 'delay' for {format_percent(positive_share)} of trips: {catches}, "
                f"and calls {fp:,} of {tn + fp:,} trips without delay delayed")
    return f"answers 'no delay' for {format_percent(1.0 - positive_share)} of trips: {catches}"


def explain_causes(result: Mapping[str, Any], settings, output_activation: str) -> list[str]:
    """Why a run can end with this model: class balance, monitored metric, class weights, saturation."""
    test = result["test"]
    (tn, fp), (fn, tp) = test["confusion_matrix"]
    rows = tn + fp + fn + tp
    causes = [f"the test split is {format_percent((tn + fp) / rows)} 'no delay', so answering 'no delay' "
              f"everywhere already scores {(tn + fp) / rows:.5f} accuracy."]
    if settings.early_stop:
        causes.append(f"early stopping kept the epoch with the best {settings.monitor} "
                      f"(epoch {result['best_epoch'] + 1} of {result['epochs_run']})"
                      + (", a metric that rewards that answer." if settings.monitor == "val_accuracy" else "."))
    else:
        causes.append(f"there is no early stopping: the model after the last of {result['epochs_run']} "
                      f"epoch(s) was kept.")
    if settings.one_weight != "balanced" and float(settings.one_weight) <= 1.0:
        causes.append(f"the loss is not class-weighted (one_weight {settings.one_weight}), so a missed delay "
                      f"costs no more than a false alarm.")
    saturated = test.get("saturated_share")
    if saturated is not None and saturated >= SATURATION_WORTH_SAYING and output_activation.startswith("hard"):
        causes.append(f"the {output_activation} output sits at exactly 0 or 1 for {format_percent(saturated)} "
                      f"of test rows, where its gradient is zero: those rows no longer move the weights.")
    return causes


def suggest_settings(settings, output_activation: str) -> list[str]:
    """What to try, each with the real flag or config key (configs/cli.py, configs/streetcar.yaml)."""
    suggestions = []
    if settings.experiment != "6":
        suggestions.append("the recipe beyond the book: --experiment 6 (class weights, the sigmoid output and "
                           "early stopping on val_loss; docs/results/seeds.md measures it)")
    if settings.one_weight != "balanced" and float(settings.one_weight) <= 1.0:
        suggestions.append("class weights: --experiment 5 (the book's recipe: balanced class weights, early "
                           "stopping), or one_weight: balanced on your experiment's row of the config")
    if not settings.early_stop or settings.monitor == "val_accuracy":
        suggestions.append("early stopping on val_loss, which does not reward the all-'no delay' answer: "
                           "--experiment 4, or monitor: val_loss and mode: min on your experiment's row of "
                           "a copy of configs/streetcar.yaml, passed with --config PATH")
    suggestions.append("another seed: --seed N (it also redraws the 60/20/20 split)")
    if output_activation != "sigmoid":
        suggestions.append("the smooth output, whose gradient never reaches zero: hyperparameters."
                           "output_activation: sigmoid in a copy of configs/streetcar.yaml, passed with "
                           "--config PATH")
    return suggestions


def degenerate_warning(result: Mapping[str, Any], request) -> str | None:
    """The trainers' closing warning block when result["degenerate"]; None otherwise.

    `request` is the configs.cli.RunRequest of the run: its experiment row
    and hyperparameters say why the run could end so and what to change.
    """
    if not result.get("degenerate"):
        return None
    test = result["test"]
    output_activation = request.config.hyperparameters.output_activation
    lines = ["WARNING: the kept model is degenerate (one class for >= 99 % of test rows, or recall < 0.05).",
             f"  What it does: it {describe_behaviour(test)} (recall {test['recall']:.5f}).",
             f"  Model: {result.get('model')}",
             "  Why:"]
    lines += [f"    - {cause}" for cause in explain_causes(result, request.settings, output_activation)]
    lines.append("  What to try:")
    lines += [f"    - {suggestion}" for suggestion in suggest_settings(request.settings, output_activation)]
    return "\n".join(lines)

