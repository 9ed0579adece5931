"""The flags every study command shares (the chapter-6 table, the seed study): one definition each.

`python -m parity_tests.report` and `python -m parity_tests.seeds` both train
the project's own `train()` of each framework many times on one dataset, so
they take the same data, framework and trainer flags, spelled and explained
the same way.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Sequence

from configs.cli import OneLineArgumentParser, non_negative_int, positive_int

FRAMEWORKS = ("keras", "lightning")
# Where the committed pages of every study live.
DEFAULT_OUT_DIR = Path("docs") / "results"


def comma_list(text: str) -> list[str]:
    """argparse type: 'a, b,c' -> ['a', 'b', 'c']; an empty list is refused."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list, e.g. keras,lightning")
    return items


def command_line(command: str, argv: Sequence[str]) -> str:
    """The command as a reader would retype it, stored on the page it produced."""
    return " ".join([command, *(shlex.quote(item) for item in argv)])


def study_parser(command: str, description: str, usage_text: str) -> argparse.ArgumentParser:
    """A study's parser: bad flags are one line (exit 2), and --help ends with the usage examples as written."""
    return OneLineArgumentParser(prog=command, description=description, epilog=usage_text,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)


def add_study_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """--frameworks --patience --sample-rows --config --raw-dir --runs-dir --accelerator."""
    parser.add_argument("--frameworks", type=comma_list, default=list(FRAMEWORKS), metavar="NAMES",
                        help="keras, lightning or both (default keras,lightning)")
    parser.add_argument("--patience", type=non_negative_int, default=None, metavar="N",
                        help="EarlyStopping patience of the early-stopping experiments "
                             "(default hyperparameters.patience_threshold, 15)")
    parser.add_argument("--sample-rows", type=positive_int, default=None, metavar="N",
                        help="a seeded subset of N prepared rows, the same for every run (default: the full data)")
    parser.add_argument("--config", default=None, metavar="PATH", help="YAML config (default configs/streetcar.yaml)")
    parser.add_argument("--raw-dir", default=None, metavar="DIR",
                        help="folder of the TTC workbooks (default $STREETCAR_RAW_DIR, else data/raw/)")
    parser.add_argument("--runs-dir", default=None, metavar="DIR",
                        help="parent of the trainers' run directories (default general.out_dir, runs/)")
    parser.add_argument("--accelerator", default="auto", metavar="NAME",
                        help="Lightning accelerator (default auto: a GPU when there is one)")
    return parser
