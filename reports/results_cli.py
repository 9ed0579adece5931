"""The chapter-6 experiments in both frameworks, side by side: `docs/results/`.

    python -m parity_tests.report                                   # experiments 1-5, the table's epochs
    python -m parity_tests.report --experiments 1,3,4,5 --epochs 12 --patience 4
                                                                    # capped: what docs/results/ holds
    python -m parity_tests.report --experiments 1,5 --sample-rows 30000 --epochs 2 --patience 1 \\
        --out-dir /tmp/results                                      # a quick look (what the test runs)
    python -m parity_tests.report --render-only                     # redraw the page from results.json
    python -m parity_tests.report --parity exact                    # the same table in the exact-parity setting
    python -m parity_tests.report --parity exact --engine fast      # ... with Lightning's fast engine

What it does, in order:

1. loads the prepared dataset once (data.load_prepared; the real TTC
   workbooks via --raw-dir or $STREETCAR_RAW_DIR), takes the seeded
   --sample-rows subset when asked, and shares that one dataset with every
   training run, so all runs see the same rows;
2. for every experiment of --experiments (rows of the table in
   configs/streetcar.yaml) and every framework of --frameworks,
   calls the framework's own `train()` in this process with one seed and
   the shared batch order (general.batch_order: both frameworks draw each
   epoch's batches from data.batches.epoch_permutation), exactly as
   `python -m keras_impl.train` / `python -m lightning_impl.train` would.
   Each run keeps its usual run directory (checkpoints, TensorBoard logs)
   under --runs-dir; only the summaries go to --out-dir;
3. after every experiment (so an interrupted run still leaves what it has)
   writes into --out-dir:

       results.json                     the figures (schema below), the command, the machine
       results.md                       index table, one table per experiment (Keras | Lightning),
                                        the comparison with the book's trends (sentences built
                                        from the numbers) and why each trend does or does not hold
       experiment<ID>_curves.png        val_accuracy and val_loss per epoch, both frameworks overlaid
       experiment<ID>_confusion.png     both test confusion matrices side by side

results.json:

    {"experiments": {"1": {"keras": {"epochs_run", "best_epoch", "val_accuracy_terminal",
                                     "val_accuracy_best", "test_accuracy", "false_negatives",
                                     "recall", "seconds", ...},
                           "lightning": {...}}, ...},
     "command": "...", "machine": {...}, "settings": {...}, "complete": true}

best_epoch is 1-based (as Keras prints epochs): the epoch with the highest
val_accuracy, the epoch val_accuracy_best belongs to.  kept_epoch is the
epoch whose weights were tested: the ModelCheckpoint epoch when the
experiment stops early (for experiment 4 that is the lowest val_loss), else
the last epoch.  Test figures come from experiment.artifacts.summarize_test
(p > 0.5 is "delay"; confusion matrix [[tn, fp], [fn, tp]]).

The full table (≈ 200 epochs per framework on 1.83 M training rows) takes
hours on a small CPU; --epochs caps every experiment's epochs (an
experiment with fewer epochs in the table keeps its own) and the page says
so.  Progress goes to stderr; --json prints results.json's object on stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from configs.cli import comma_list, command_parser, non_negative_int
from configs.loader import ENGINES
from configs.console import emit_json
from reports.exact_parity import PARITY_CHOICES
from reports.results_page import DEFAULT_EXPERIMENTS, results_payload
from reports.results_run import INITIAL_WEIGHTS_CHOICES, build_report, render_only
from reports.study_flags import DEFAULT_OUT_DIR, add_study_arguments, command_line

COMMAND = "python -m parity_tests.report"


def build_argument_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        COMMAND, "Run the chapter-6 experiments in Keras 3 and Lightning on one dataset, one seed and the shared "
                 "batch order; write tables, curves, confusion matrices and the comparison with the book's trends "
                 "to docs/results/.", __doc__.split("What it does", 1)[0].strip())
    parser.add_argument("--experiments", type=comma_list, default=list(DEFAULT_EXPERIMENTS), metavar="IDS",
                        help="experiment ids from the config's table (default 1,2,3,4,5)")
    add_study_arguments(parser)   # --epochs caps every experiment's epochs (default: the table's)
    parser.add_argument("--seed", type=non_negative_int, default=None, metavar="N",
                        help="seed for split, sample, initial weights and batch order (default general.seed)")
    parser.add_argument("--out-dir", default=str(DEFAULT_OUT_DIR), metavar="DIR",
                        help="where results.json, results.md and the PNGs go (default docs/results)")
    parser.add_argument("--initial-weights", choices=INITIAL_WEIGHTS_CHOICES, default="shared",
                        help="shared (default): both frameworks of an experiment start from one set of weights "
                             "drawn from the seed with Keras's initialisers (experiment.weights."
                             "shared_initial_weights), so their runs differ only by the frameworks' arithmetic; "
                             "seeded: each framework draws its own from the seed, as its train command does")
    parser.add_argument("--parity", choices=PARITY_CHOICES, default="book",
                        help="book (default): the book's settings.  exact: dropout 0, the sigmoid output and "
                             "float64, the setting in which the divergence study keeps whole runs together; its "
                             "runs are stored beside the book's, under results.json's \"exact_parity\"")
    parser.add_argument("--engine", choices=ENGINES, default=None,
                        help="Lightning's engine for every run (default: lightning.engine of the config, plain). "
                             "fast trains the same model through lightning_impl/fast/; in float64 it takes "
                             "gradients by autograd.  Recorded in results.json's settings and on the page")
    parser.add_argument("--render-only", action="store_true",
                        help="train nothing: redraw results.md and the PNGs from --out-dir/results.json")
    parser.add_argument("--json", action="store_true", help="print the results object on stdout")
    return parser


def command_line_of(argv: Sequence[str]) -> str:
    return command_line(COMMAND, argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_argument_parser().parse_args(argv)
    if args.render_only:
        results = render_only(Path(args.out_dir))
    else:
        results = build_report(args, command_line_of(argv))
    if args.json:
        emit_json(results_payload(results))
    return 0
