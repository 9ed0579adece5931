"""Where Keras and Lightning part on the full data, update by update, and why.

    python -m parity_tests.divergence                                     # the six settings, full data, 3 epochs
    python -m parity_tests.divergence --activation sigmoid --precision 32 --sample-rows 100000 --epochs 1 --json
    python -m parity_tests.divergence --out-dir docs/results             # what docs/results/divergence.* hold

Both frameworks start from the same initial weights (experiment.weights.
shared_initial_weights), see the same batches (the shared batch order) with
the book's experiment-5 class weight, learning rate and batch size, and
dropout 0, and are trained in lockstep (parity_tests.lockstep).  Per update it
records both losses, how many rows of the batch have a logit within
--near of the activation's kink (±3 for hard_sigmoid, ±2.5 for
hard_sigmoid_keras2) in either framework, and how many rows sit on
different sides of the kink in the two frameworks: there one framework
passes the row's gradient and the other passes none.  Per epoch it records
the mean training loss, val_loss and val_accuracy in both.

--activation and --precision take comma lists; every combination is one
setting.  With --out-dir each finished setting is stored as
divergence-runs/<setting>.json (with its per-update series; git ignores the
folder), a rerun skips those (the full study can be run in parts), and
divergence.json / divergence.md / divergence.png are written from all
stored settings.  Progress goes to stderr (a bar over updates);
--json prints the summary on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from configs.cli import OneLineArgumentParser, positive_int
from configs.console import UserError, emit_json, run_main, say
from configs.loader import PRECISIONS, load_config, resolve_experiment
from experiment.artifacts import write_json
from parity_tests.lockstep import ACTIVATION_KINKS, Setting, train_in_lockstep

DIVERGED_LOSS = 1e-4          # the study's threshold: an update whose two losses differ by more has parted
NEAR_KINK = 1e-5              # a logit this close to ±kink counts as "at the kink"
EXPERIMENT = "5"
INITIAL_WEIGHT_SEED = 42
DEFAULT_EPOCHS = 3


def comma_choices(choices: Sequence[str]):
    def parse(text: str) -> list[str]:
        values = [value.strip() for value in text.split(",") if value.strip()]
        bad = [value for value in values if value not in choices]
        if not values or bad:
            raise argparse.ArgumentTypeError(f"{', '.join(bad) or 'nothing'} is not one of {', '.join(choices)}")
        return values
    return parse


def build_argument_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog="python -m parity_tests.divergence", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--activation", type=comma_choices(list(ACTIVATION_KINKS)),
                        default=list(ACTIVATION_KINKS), help="output activation(s), comma separated (default: all)")
    parser.add_argument("--precision", type=comma_choices([str(bits) for bits in PRECISIONS]),
                        default=[str(bits) for bits in PRECISIONS], help="32, 64 or 32,64 (default: both)")
    parser.add_argument("--sample-rows", type=positive_int, default=None,
                        help="a seeded sample of this many prepared rows (default: all rows)")
    parser.add_argument("--epochs", type=positive_int, default=DEFAULT_EPOCHS, help=f"default {DEFAULT_EPOCHS}")
    parser.add_argument("--raw-dir", default=None, help="the TTC workbooks (default: the data layer's search)")
    parser.add_argument("--out-dir", default=None,
                        help="store each setting and write divergence.{json,md,png} there (resumable)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    return parser


def study_settings(args: argparse.Namespace, dataset) -> list[Setting]:
    config = load_config(None)
    experiment = resolve_experiment(config, EXPERIMENT)
    one_weight = dataset.one_weight(config.hyperparameters.one_weight_offset, split="train")
    class_weight = {0: float(experiment.zero_weight), 1: float(one_weight)}
    return [Setting(activation, int(bits), config.hyperparameters.learning_rate, config.hyperparameters.batch_size,
                    class_weight, config.general.seed)
            for activation in args.activation for bits in args.precision]


def first_index(flags: Sequence[bool]) -> int | None:
    return next((index for index, flag in enumerate(flags) if flag), None)


def summarize(setting: Setting, run: Mapping[str, Any], updates_per_epoch: int, seconds: float) -> dict[str, Any]:
    """One setting's figures; update numbers are 1-based, as a reader counts them."""
    updates = run["updates"]
    delta = np.abs(np.asarray(updates["keras_loss"]) - np.asarray(updates["lightning_loss"]))
    parted = first_index(delta > DIVERGED_LOSS)
    split = first_index([count > 0 for count in updates["different_sides"]])
    overshoot = first_index([count > 0 for count in updates["overshooting_rows"]])
    per_epoch = {key: [abs(epoch["keras"][key] - epoch["lightning"][key]) for epoch in run["epochs"]]
                 for key in ("loss", "val_loss", "val_accuracy")}
    summary = {
        "setting": setting.name, "activation": setting.activation, "precision": setting.precision,
        "kink": ACTIVATION_KINKS[setting.activation], "updates": len(delta), "updates_per_epoch": updates_per_epoch,
        "first_update_over_threshold": None if parted is None else parted + 1,
        "largest_loss_difference": float(delta.max()),
        "largest_epoch_difference": {key: max(values) for key, values in per_epoch.items()},
        "epoch_difference": per_epoch, "epochs": run["epochs"],
        "rows_near_kink": int(sum(updates["near_kink"])),
        "updates_with_rows_on_different_sides": int(sum(count > 0 for count in updates["different_sides"])),
        "rows_on_different_sides": int(sum(updates["different_sides"])),
        "first_update_with_rows_on_different_sides": None if split is None else split + 1,
        "largest_loss_difference_before_first_split": float(delta[:split].max()) if split else None,
        "largest_logit_difference_before_first_split": (float(max(updates["largest_logit_difference"][:split]))
                                                        if split else None),
        "median_logit_difference_first_epoch": first_epoch_median(updates["logit_difference"], updates_per_epoch),
        "median_output_gradient_difference_first_epoch": first_epoch_median(updates["output_gradient_difference"],
                                                                            updates_per_epoch),
        "largest_step_gain": float(max(updates["largest_step_gain"])),
        "updates_with_overshooting_rows": int(sum(count > 0 for count in updates["overshooting_rows"])),
        "first_update_with_overshooting_rows": None if overshoot is None else overshoot + 1,
        "largest_step_gain_before_parting": (float(max(updates["largest_step_gain"][:parted + 1]))
                                             if parted is not None else None),
        "loss_difference_per_update": [float(f"{value:.3g}") for value in delta],
        "logit_difference_per_update": [float(f"{value:.3g}") for value in updates["logit_difference"]],
        "largest_step_gain_per_update": [float(f"{value:.3g}") for value in updates["largest_step_gain"]],
        "output_gradient_difference_per_update": [float(f"{value:.3g}")
                                                  for value in updates["output_gradient_difference"]],
        "rows_on_different_sides_per_update": [int(count) for count in updates["different_sides"]],
        "seconds": round(seconds, 1),
    }
    return summary


def first_epoch_median(values: Sequence[float], updates_per_epoch: int) -> float:
    return float(np.median(values[:updates_per_epoch]))


def run_setting(setting: Setting, dataset, epochs: int) -> dict[str, Any]:
    from tqdm import tqdm

    from experiment.weights import shared_initial_weights

    weights = shared_initial_weights(dataset.vocab_sizes, INITIAL_WEIGHT_SEED)
    train_rows = len(dataset.split_arrays("train")[1])
    updates_per_epoch = -(-train_rows // setting.batch_size)
    started = time.perf_counter()
    with tqdm(total=updates_per_epoch * epochs, desc=setting.name, unit="update", file=sys.stderr,
              disable=not sys.stderr.isatty()) as bar:
        run = train_in_lockstep(setting, dataset, weights, epochs, near=NEAR_KINK, progress=bar.update)
    return summarize(setting, run, updates_per_epoch, time.perf_counter() - started)


SETTINGS_FOLDER = "divergence-runs"   # one JSON per finished setting, with the per-update series (not committed)


def setting_path(out_dir: Path, name: str) -> Path:
    return out_dir / SETTINGS_FOLDER / f"{name}.json"


def load_dataset(args: argparse.Namespace):
    from data import load_prepared

    dataset = load_prepared(load_config(None), raw_dir=args.raw_dir)
    return dataset if args.sample_rows is None else dataset.sample(args.sample_rows, INITIAL_WEIGHT_SEED)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_argument_parser().parse_args(argv)
    out_dir = None if args.out_dir is None else Path(args.out_dir)
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out-dir {out_dir} is a file; give a folder")
    dataset = load_dataset(args)
    results = {}
    for setting in study_settings(args, dataset):
        stored = None if out_dir is None else setting_path(out_dir, setting.name)
        if stored is not None and stored.is_file():
            saved = json.loads(stored.read_text(encoding="utf-8"))
            if saved.get("command_settings") == _run_key(args):
                say(f"divergence: {setting.name} already in {stored}; skipped")
                results[setting.name] = saved
                continue
        say(f"divergence: {setting.name}, {args.epochs} epoch(s)")
        summary = run_setting(setting, dataset, args.epochs)
        summary["command_settings"] = _run_key(args)
        results[setting.name] = summary
        say(describe(summary))
        if stored is not None:
            stored.parent.mkdir(parents=True, exist_ok=True)
            write_json(stored, summary)
    if out_dir is not None:
        from parity_tests.divergence_page import write_page

        write_page(out_dir, "python -m parity_tests.divergence " + " ".join(argv))
    if args.json:
        emit_json({name: {key: value for key, value in summary.items() if not key.endswith("_per_update")}
                   for name, summary in results.items()})
    return 0


def _run_key(args: argparse.Namespace) -> dict[str, Any]:
    """What makes a stored setting reusable: the same rows and epochs."""
    return {"sample_rows": args.sample_rows, "epochs": args.epochs}


def describe(summary: Mapping[str, Any]) -> str:
    parted = summary["first_update_over_threshold"]
    split = summary["first_update_with_rows_on_different_sides"]
    text = (f"  {summary['setting']}: largest |Δloss| {summary['largest_loss_difference']:.3g} over "
            f"{summary['updates']} updates; first update with |Δloss| > {DIVERGED_LOSS:g}: "
            f"{parted if parted is not None else 'none'}")
    if summary["kink"] is not None:
        text += (f"; first update with rows on different sides of ±{summary['kink']:g}: "
                 f"{split if split is not None else 'none'}")
    return text


if __name__ == "__main__":
    raise SystemExit(run_main(main))
