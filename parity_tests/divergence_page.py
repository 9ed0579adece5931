"""docs/results/divergence.{json,md,png} from the stored settings of `python -m parity_tests.divergence`.

Every sentence of the page is built from the stored numbers, and the
mechanism sentence is written only when the numbers show it
(parity_tests/test_divergence_study.py): every kinked setting that parted had
rows on different sides of the kink no later than the update at which it
parted, with the losses at rounding level before that, and no smooth
(sigmoid) setting parted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from data.atomic import write_atomic
from experiment.artifacts import write_json

SETTING_ORDER = ("hard_sigmoid-float32", "hard_sigmoid_keras2-float32", "sigmoid-float32",
                 "hard_sigmoid-float64", "hard_sigmoid_keras2-float64", "sigmoid-float64")
# Below this the two losses differ by float rounding only (float32's epsilon is 1.2e-7 on a loss near 1).
ROUNDING_LEVEL = 1e-5


def stored_settings(out_dir: Path) -> dict[str, dict[str, Any]]:
    found = {path.stem: json.loads(path.read_text(encoding="utf-8"))
             for path in sorted((out_dir / "divergence-runs").glob("*.json"))}
    return {name: found[name] for name in sorted(found, key=lambda name: (
        SETTING_ORDER.index(name) if name in SETTING_ORDER else len(SETTING_ORDER), name))}


def _value(value: Any, digits: str = ".2g") -> str:
    return "never" if value is None else (f"{value:{digits}}" if isinstance(value, float) else f"{value:,}")


def table(settings: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = ["| setting | updates | first update with \\|Δloss\\| > 1e-4 | largest \\|Δloss\\| | largest per-epoch "
             "Δ loss / val_loss / val_accuracy | largest step gain | updates with a row's step gain > 2 (first) | "
             "rows within 1e-5 of the kink | first update with rows on different sides | largest \\|Δloss\\| "
             "before it |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for name, summary in settings.items():
        epoch = summary["largest_epoch_difference"]
        kinked = summary["kink"] is not None
        gain, overshoots = summary.get("largest_step_gain"), summary.get("updates_with_overshooting_rows")
        first_overshoot = summary.get("first_update_with_overshooting_rows")
        lines.append(
            f"| {name} | {summary['updates']:,} | {_value(summary['first_update_over_threshold'])} | "
            f"{summary['largest_loss_difference']:.2g} | {epoch['loss']:.2g} / {epoch['val_loss']:.2g} / "
            f"{epoch['val_accuracy']:.2g} | {'–' if gain is None else f'{gain:,.3g}'} | "
            f"{'–' if overshoots is None else f'{overshoots:,} ({_value(first_overshoot)})'} | "
            f"{_value(summary['rows_near_kink']) if kinked else 'no kink'} | "
            f"{_value(summary['first_update_with_rows_on_different_sides']) if kinked else '–'} | "
            f"{_value(summary['largest_loss_difference_before_first_split']) if kinked else '–'} |")
    return lines


def shows_kink_mechanism(settings: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether the numbers show the kink mechanism (see the module docstring); False when nothing parted."""
    parted = [summary for summary in settings.values() if summary["first_update_over_threshold"] is not None]
    if not parted or any(summary["kink"] is None for summary in parted):
        return False
    for summary in parted:
        split = summary["first_update_with_rows_on_different_sides"]
        if split is None or split > summary["first_update_over_threshold"]:
            return False
        before = summary["largest_loss_difference_before_first_split"]
        if before is not None and before > ROUNDING_LEVEL:
            return False
    return True


def setting_sentence(summary: Mapping[str, Any]) -> str:
    parted, split = summary["first_update_over_threshold"], summary["first_update_with_rows_on_different_sides"]
    per_epoch = summary["updates_per_epoch"]
    text = f"**{summary['setting']}**: "
    if parted is None:
        text += (f"the two losses stayed within {summary['largest_loss_difference']:.2g} of each other over all "
                 f"{summary['updates']:,} updates")
    else:
        text += (f"the losses first differed by more than 1e-4 at update {parted:,} (epoch "
                 f"{(parted - 1) // per_epoch + 1}) and by up to {summary['largest_loss_difference']:.2g} later")
    if summary["kink"] is not None:
        if split is None:
            text += f"; no row ever sat on different sides of ±{summary['kink']:g} in the two frameworks"
        else:
            before = summary["largest_loss_difference_before_first_split"]
            text += (f"; the first row on different sides of ±{summary['kink']:g} came at update {split:,}"
                     + (f", and until then the losses differed by at most {before:.2g}" if before is not None else "")
                     + f"; {summary['updates_with_rows_on_different_sides']:,} updates had such rows")
    return text + "."


OVERSHOOT_GAIN = 2.0   # a step gain above this makes the row's error grow from step to step


def shows_overshoot_mechanism(settings: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether every setting that parted had a row overshoot (gain > 2) no later than it parted, and
    no setting that stayed together ever did."""
    if any(summary.get("largest_step_gain") is None for summary in settings.values()):
        return False
    parted = [summary for summary in settings.values() if summary["first_update_over_threshold"] is not None]
    together = [summary for summary in settings.values() if summary["first_update_over_threshold"] is None]
    if not parted or not together:
        return False
    return (all(summary["first_update_with_overshooting_rows"] is not None
                and summary["first_update_with_overshooting_rows"] <= summary["first_update_over_threshold"]
                for summary in parted)
            and all(summary["largest_step_gain"] <= OVERSHOOT_GAIN for summary in together))


def overshoot_paragraph(settings: Mapping[str, Mapping[str, Any]]) -> str:
    parted = {name: summary for name, summary in settings.items() if summary["first_update_over_threshold"]}
    together = {name: summary for name, summary in settings.items() if name not in parted}
    firsts = ", ".join(f"{name} first at update {summary['first_update_with_overshooting_rows']:,}, parted at "
                       f"{summary['first_update_over_threshold']:,}" for name, summary in parted.items())
    highest = max(summary["largest_step_gain"] for summary in together.values())
    return (f"**Mechanism (from the numbers above).** The settings that parted are exactly those in which some "
            f"row's SGD step overshoots: its step gain, lr × (the loss's curvature in that row's logit) × "
            f"(|h|² + 1), exceeds {OVERSHOOT_GAIN:g} ({firsts}); in the settings that stayed together "
            f"({', '.join(together)}) no row's gain ever exceeded {highest:.2g}. Below 2 a step shrinks a row's "
            f"error, and with it any difference between the two frameworks' runs; above 2 it overshoots, and the "
            f"difference grows from step to step, whatever the precision it started from. On hard_sigmoid's "
            f"slope a delay row's curvature is w / (36 p² N), unbounded as p → 0 just above the lower kink, "
            f"while the sigmoid loss from logits has curvature at most w / (4 N).")


def mechanism_paragraph(settings: Mapping[str, Mapping[str, Any]]) -> list[str]:
    paragraphs = []
    if shows_kink_mechanism(settings):
        paragraphs.append(
            "**Crossing the kink (from the numbers above).** Every setting that parted has a kinked output, and "
            "in each the losses agreed to rounding level until the first update at which some row's logit sat on "
            "one side of the kink in Keras and on the other in Lightning.")
    if shows_overshoot_mechanism(settings):
        paragraphs.append(overshoot_paragraph(settings))
    if not paragraphs:
        paragraphs.append("**Mechanism.** The numbers above do not single out a mechanism for every setting that "
                          "parted (see the per-setting lines); none is claimed.")
    return paragraphs


def render(settings: Mapping[str, Mapping[str, Any]], command: str) -> str:
    rows = {summary.get("command_settings", {}).get("sample_rows") for summary in settings.values()}
    epochs = {summary.get("command_settings", {}).get("epochs") for summary in settings.values()}
    lines = ["# Where Keras and Lightning part: update by update", "",
             "Generated by `python -m parity_tests.divergence`; do not edit by hand.", "",
             f"- Command: `{command}`",
             f"- Rows: {'all prepared rows' if rows == {None} else ', '.join(str(row) for row in rows)}; "
             f"epochs: {', '.join(str(epoch) for epoch in sorted(epochs))}; experiment 5's class weight, "
             "learning rate and batch size; dropout 0; the same initial weights and batches in both frameworks.",
             "", *table(settings), "", "![|Δloss| per update, one line per setting](divergence.png)", ""]
    lines += [f"- {setting_sentence(summary)}" for summary in settings.values()]
    mechanism = [line for paragraph in mechanism_paragraph(settings) for line in (paragraph, "")]
    return "\n".join(lines + ["", *mechanism]).rstrip("\n") + "\n"


def plot(path: Path, settings: Mapping[str, Mapping[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 5))
    for name, summary in settings.items():
        values = [max(value, 1e-12) for value in summary["loss_difference_per_update"]]
        axis.plot(range(1, len(values) + 1), values, label=name, linewidth=0.8,
                  linestyle="-" if name.endswith("float32") else "--")
    axis.set_yscale("log")
    axis.axhline(1e-4, color="grey", linestyle=":", label="1e-4")
    axis.set_xlabel("update")
    axis.set_ylabel("|loss Keras − loss Lightning| (1e-12 = equal)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    write_atomic(path, buffer.getvalue())


def write_page(out_dir: Path, command: str) -> None:
    settings = stored_settings(out_dir)
    if not settings:
        return
    write_json(out_dir / "divergence.json", {"command": command, "settings": {
        name: {key: value for key, value in summary.items() if not key.endswith("_per_update")}
        for name, summary in settings.items()}})
    write_atomic(out_dir / "divergence.md", render(settings, command))
    plot(out_dir / "divergence.png", settings)
