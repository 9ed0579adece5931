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

from configs.cli import add_run_length_arguments, add_source_arguments, comma_list

FRAMEWORKS = ("keras", "lightning")
# Where the committed pages of every study live.
DEFAULT_OUT_DIR = Path("docs") / "results"


def command_line(command: str, argv: Sequence[str]) -> str:
    """The command as a reader would retype it, stored on the page it produced."""
    return " ".join([command, *(shlex.quote(item) for item in argv)])


def add_study_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """--epochs --patience --sample-rows (the trainers' own) --config --raw-dir, then --frameworks --runs-dir
    --accelerator."""
    add_run_length_arguments(parser)   # a study draws its --sample-rows subset once, for every run
    add_source_arguments(parser)
    parser.add_argument("--frameworks", type=comma_list, default=list(FRAMEWORKS), metavar="NAMES",
                        help="keras, lightning or both (default keras,lightning)")
    parser.add_argument("--runs-dir", default=None, metavar="DIR",
                        help="parent of the trainers' run directories (default general.out_dir, runs/)")
    parser.add_argument("--accelerator", default="auto", metavar="NAME",
                        help="Lightning accelerator (default auto: a GPU when there is one)")
    return parser
