"""The results page's evidence from its companion studies, read from the same folder when they exist.

    companions = read_companions(out_dir)   # {"seed_study": {trends, experiments}, "saturation": {...},
                                            #  "divergence": {setting: {first_update_over_threshold, ...}}}
    seed_trend_lines(companions)            # the book's trends across seeds (parity_tests.seeds)
    saturation_lines(companions)            # why a run froze (parity_tests.saturation)

One report run trains each experiment once per framework; two other tools
measure what one run cannot (a third, `python -m parity_tests.divergence`,
gives the exact-parity section its reasons: divergence.json): `python -m parity_tests.seeds` (many seeds, the
book's trends in distribution: seeds.json "trends") and `python -m
parity_tests.saturation` (the share of training rows whose logit sits past
hard_sigmoid's kink, per epoch: saturation.json).  The page quotes their
sentences, built from their numbers (reports.seed_trends; the sentence
saturation.json stores beside its figures), and links their pages; it says which command
fills a gap when a study is missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

SEEDS_JSON = "seeds.json"
SATURATION_JSON = "saturation.json"
DIVERGENCE_JSON = "divergence.json"
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
                            (DIVERGENCE_JSON, "divergence", divergence_figures)):
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


def saturation_lines(companions: Mapping[str, Any]) -> list[str]:
    study = companions.get("saturation")
    if not study:
        return []
    return ["### Where the gradient is zero", "",
            f"hard_sigmoid passes no gradient where |logit| ≥ 3, so a run whose logits all end up there stops "
            f"learning. `{study.get('command', 'python -m parity_tests.saturation')}` retrained Lightning's "
            f"experiment {study['experiment']} and counted those rows per epoch ([saturation.md](saturation.md)): "
            + study["summary"]
            + ("" if study.get("frozen") else
               " That retrain did not reproduce a frozen run, so this page does not name saturation as the cause "
               "of any freeze in the table above; the per-epoch counts show how far the logits went instead."),
            ""]
