"""The results page's evidence from its companion studies, read from the same folder when they exist.

    companions = read_companions(out_dir)   # {"seed_study": {trends, experiments}, "saturation": {...},
                                            #  "fixed_point": {...}, "divergence": {setting: {...}}}
    seed_trend_lines(companions)            # the book's trends across seeds (parity_tests.seeds)
    saturation_lines(companions, results)   # why a run froze (parity_tests.saturation, parity_tests.fixed_point)

One report run trains each experiment once per framework; other tools
measure what one run cannot, and the page quotes them when their files sit
beside results.json:

* `python -m parity_tests.seeds` (seeds.json "trends"): the book's trends in
  distribution over many seeds (sentences from reports.seed_trends);
* `python -m parity_tests.saturation` (saturation.json): the share of
  training rows past hard_sigmoid's kink, per epoch, and the sentence it
  stores beside its figures;
* `python -m parity_tests.fixed_point` (fixed_point.json): whether a
  checkpoint's every training batch has a zero gradient;
* `python -m parity_tests.divergence` (divergence.json): the update at which
  the two frameworks part, the exact-parity section's reasons.

It links their pages, and says which command fills a gap when a study is
missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from reports.results_story import frozen_epochs

SEEDS_JSON = "seeds.json"
SATURATION_JSON = "saturation.json"
DIVERGENCE_JSON = "divergence.json"
FIXED_POINT_JSON = "fixed_point.json"
SEED_TREND_COMMAND = ("python -m parity_tests.seeds --seeds 5 --experiment {experiment} --sample-rows 500000 "
                      "--patience 15 --epochs 50")


def read_companions(out_dir: Path) -> dict[str, Any]:
    """The companion studies' figures found in out_dir (a missing or unreadable file is left out)."""
    companions: dict[str, Any] = {}
    def seed_figures(study: Mapping[str, Any]) -> dict[str, Any]:
        return {"trends": study.get("trends", []),
                "experiments": sorted({str(run["experiment"]) for run in study.get("runs", [])})}

    def divergence_figures(study: Mapping[str, Any]) -> dict[str, Any]:
        return {setting: {"first_update_over_threshold": figures["first_update_over_threshold"],
                          "largest_loss_difference": figures["largest_loss_difference"]}
                for setting, figures in study["settings"].items()}

    for name, key, pick in ((SEEDS_JSON, "seed_study", seed_figures), (SATURATION_JSON, "saturation", dict),
                            (DIVERGENCE_JSON, "divergence", divergence_figures),
                            (FIXED_POINT_JSON, "fixed_point", dict)):
        path = Path(out_dir) / name
        try:
            companions[key] = pick(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError, KeyError):
            continue
    return companions


def seed_trend_lines(companions: Mapping[str, Any]) -> list[str]:
    from reports.seed_trends import BOOK_TRENDS, trend_item

    study = companions.get("seed_study") or {"trends": [], "experiments": []}
    trends = study["trends"]
    lines = ["### The trends across seeds", "",
             "One run per framework cannot tell a trend from run-to-run variation. The seed study "
             "([seeds.md](seeds.md)) trains experiments 3, 4 and 5 with the same seeds in each framework; "
             "each seed's three experiments are one training, so each seed gives one paired difference:", ""]
    lines += [trend_item(trend) for trend in trends]
    missing = sorted({experiment for earlier, later in BOOK_TRENDS for experiment in (earlier, later)}
                     - set(study["experiments"]))
    if missing:
        lines.append("- Not measured yet: experiment(s) " + ", ".join(missing) + " of the seed study; run "
                     + ", ".join(f"`{SEED_TREND_COMMAND.format(experiment=item)}`" for item in missing)
                     + " (with `--out` this folder).")
    return lines + [""]


def saturation_lines(companions: Mapping[str, Any], results: Mapping[str, Any] | None = None) -> list[str]:
    study = companions.get("saturation")
    if not study:
        return []
    stuck = companions.get("fixed_point")
    lines = ["### Where the gradient is zero", "",
             f"hard_sigmoid passes no gradient where |logit| ≥ 3, so a run whose logits all end up there stops "
             f"learning. `{study.get('command', 'python -m parity_tests.saturation')}` retrained Lightning's "
             f"experiment {study['experiment']} and counted those rows per epoch ([saturation.md](saturation.md)): "
             + study["summary"]
             + ("" if study.get("frozen") or stuck else
                " That retrain did not reproduce a frozen run, so this page does not name saturation as the cause "
                "of any freeze in the table above; the per-epoch counts show how far the logits went instead."),
             ""]
    return lines + (fixed_point_lines(stuck, results or {}) if stuck else [])


def fixed_point_lines(stuck: Mapping[str, Any], results: Mapping[str, Any]) -> list[str]:
    """The fixed-point check of a retrain (parity_tests.fixed_point), in sentences built from its numbers."""
    history = stuck.get("run_history") or {}
    val_loss = history.get("val_loss") or []
    text = (f"`{stuck['command']}` took a retrain of Lightning's experiment {stuck['experiment']}"
            + (f" with the {stuck['engine']} engine" if stuck.get("engine") else "") + " and computed, at its "
            "last weights, the exact gradient of every training batch of the next epoch.")
    table = ((results.get("experiments") or {}).get(str(stuck["experiment"])) or {}).get("lightning")
    table_loss = table["history"]["val_loss"] if table else []
    if val_loss and table_loss:
        same = "does" if val_loss == table_loss else "does not"
        text += (f" The retrain {same} repeat the table's run (epoch 1 val_loss {val_loss[0]:.4f} against "
                 f"{table_loss[0]:.4f}); " + BLOW_UPS[(blew_up(val_loss), blew_up(table_loss))] + ":")
    if val_loss:
        peak = max(range(len(val_loss)), key=val_loss.__getitem__)
        low = min(range(peak + 1), key=val_loss.__getitem__)
        text += (f" its val_loss was {val_loss[low]:.4f} at epoch {low + 1} and {val_loss[peak]:.4f} at epoch "
                 f"{peak + 1}.")
    text += " " + stuck["summary"]
    frozen = frozen_epochs(table) if table else None
    if not stuck["fixed_point"]:
        text += (f" The {1 - stuck['saturated_share']:.2%} of rows still inside the kinks keep it moving; once "
                 f"that share is 0, every batch's gradient is exactly 0 (parity_tests/test_fixed_point.py) and "
                 f"the validation figures repeat to the last digit"
                 + (f", as the table's do from epoch {frozen[0]} to {frozen[1]}." if frozen else "."))
    return [text, ""]


# (the retrain blew up, the table's run blew up) -> how the page says it.
BLOW_UPS = {(True, True): "it blew up as the table's run did",
            (True, False): "it blew up, which the table's run did not",
            (False, True): "it did not blow up as the table's run did",
            (False, False): "neither run blew up"}


def blew_up(val_loss: Sequence[float]) -> bool:
    """val_loss rose, at some epoch, above twice its lowest value before that epoch."""
    return any(later > 2 * min(val_loss[:index]) for index, later in enumerate(val_loss) if index)
