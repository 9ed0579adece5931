"""The command-line contract both trainers share.

`python -m keras_impl.train` and `python -m lightning_impl.train` take the same
flags, and every flag overrides one config key, so a run is described by
(config file, flags) in either framework:

    --config PATH        YAML file (default configs/streetcar.yaml)
    --experiment ID      a row of the experiment table (default test_parms.current_experiment)
    --epochs N           overrides the experiment's epochs
    --patience N         overrides the EarlyStopping patience of the experiment
    --seed N             general.seed
    --sample-rows N      train on a seeded subset of N prepared rows (quick runs)
    --raw-dir DIR        data.raw_dir (else $STREETCAR_RAW_DIR, else data/raw/)
    --out-dir DIR        general.out_dir (each run gets a new sub-directory)
    --json               one JSON object on stdout; progress goes to stderr

Every command of the project (trainers, scorers, convert, data.prepare,
data.fetch, replay, the reports, the benchmarks) builds its parser with
`OneLineArgumentParser`, so a bad flag is one line `error: ...; see <prog>
--help` and exit status 2, as configs.console promises for every user error.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from configs.loader import (PRECISIONS, Config, ConfigError, ExperimentSettings, apply_experiment_row, load_config,
                            override, resolve_experiment)


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit status 2 (stock argparse prints the usage block first)."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        print(f"error: {message}; see {self.prog} --help", file=sys.stderr, flush=True)
        raise SystemExit(2)


def command_parser(prog: str, description: str, epilog: str | None = None) -> OneLineArgumentParser:
    """A command's parser: one-line usage errors, and the epilog (examples, a module docstring) printed as written."""
    return OneLineArgumentParser(prog=prog, description=description, epilog=epilog,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (a framework's multi-line error, cut for a one-line report)."""
    text = str(error).strip().splitlines()
    return text[0] if text else error.__class__.__name__


def integer_at_least(minimum: int):
    """An argparse type: an integer >= `minimum`, else a one-line ArgumentTypeError naming the value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} must be >= {minimum}")
        return value

    return parse


positive_int = integer_at_least(1)
non_negative_int = integer_at_least(0)


def comma_list(text: str) -> list[str]:
    """argparse type: 'a, b,c' -> ['a', 'b', 'c']; an empty list is an error."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a comma-separated list, e.g. keras,lightning or 1,2,3")
    return items


def seed_list(text: str) -> list[int]:
    """argparse type: '1,2,7' -> [1, 2, 7], seeds >= 0, none twice (a repeated seed would be a repeated run)."""
    seeds = [non_negative_int(item) for item in comma_list(text)]
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r} lists a seed twice")
    return seeds


def add_source_arguments(parser) -> None:
    """--config and --raw-dir: where the settings and the workbooks come from."""
    parser.add_argument("--config", default=None, metavar="PATH",
                        help="YAML config (default: configs/streetcar.yaml)")
    parser.add_argument("--raw-dir", default=None, metavar="DIR",
                        help="folder of the yearly TTC workbooks (default: $STREETCAR_RAW_DIR, else data/raw/)")


def add_run_length_arguments(parser) -> None:
    """--epochs, --patience and --sample-rows: how long a run trains and on how many rows."""
    parser.add_argument("--epochs", type=positive_int, default=None, metavar="N",
                        help="override the experiment's number of epochs")
    parser.add_argument("--patience", type=non_negative_int, default=None, metavar="N",
                        help="override EarlyStopping patience (default: hyperparameters.patience_threshold, 15)")
    parser.add_argument("--sample-rows", type=positive_int, default=None, metavar="N",
                        help="use a seeded subset of N prepared rows (split membership kept) for a quick run")


def add_common_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the shared flags to a trainer's parser (see module docstring)."""
    group = parser.add_argument_group("shared run options (same in both frameworks)")
    add_source_arguments(group)
    group.add_argument("--experiment", default=None, metavar="ID",
                       help="experiment id from the config's table: 0,1,2,3,4,5,9 (the book's), 6 (the "
                            "recipe beyond the book: sigmoid output, early stop on val_loss) "
                            "(default: test_parms.current_experiment, 5)")
    add_run_length_arguments(group)
    group.add_argument("--seed", type=non_negative_int, default=None, metavar="N",
                       help="seed for split, sample, initial weights and batch order (default: general.seed)")
    group.add_argument("--precision", type=int, choices=PRECISIONS, default=None,
                       help="float width of weights, losses and metrics: 32 (the book's) or 64 "
                            "(default: hyperparameters.precision, 32)")
    group.add_argument("--out-dir", default=None, metavar="DIR",
                       help="parent folder of run directories (default: general.out_dir, runs/)")
    group.add_argument("--json", action="store_true",
                       help="print one JSON object on stdout; human progress goes to stderr")
    return parser


@dataclass(frozen=True)
class RunRequest:
    """Everything a trainer needs from the command line, resolved."""

    config: Config
    settings: ExperimentSettings
    sample_rows: int | None
    raw_dir: str | None
    json: bool


def check_out_dir(out_dir: str | os.PathLike, source: str) -> None:
    """ConfigError unless `out_dir` is a folder or can become one (no file in the way)."""
    folder = Path(out_dir).expanduser()
    for existing in (folder, *folder.parents):
        if existing.exists():
            if not existing.is_dir():
                in_the_way = "" if existing == folder else f" ({existing} is a file)"
                raise ConfigError(f"{source} = {str(out_dir)!r} is not a folder{in_the_way}; name a folder "
                                  f"for the run directories (it is created if missing)")
            return


def resolve_run_request(args: argparse.Namespace) -> RunRequest:
    """Apply the shared flags to the config; raises ConfigError with the key at fault."""
    config = load_config(args.config)
    if args.seed is not None:
        config = override(config, "general.seed", args.seed)
    if getattr(args, "precision", None) is not None:  # studies build their Namespace without it
        config = override(config, "hyperparameters.precision", args.precision)
    if args.out_dir is not None:
        config = override(config, "general.out_dir", args.out_dir)
    if args.raw_dir is not None:
        # Absolute from here on: run_request.json and any child process name the same folder.
        config = override(config, "data.raw_dir", os.path.abspath(Path(args.raw_dir).expanduser()))
    check_out_dir(config.general.out_dir,
                  "--out-dir" if args.out_dir is not None else f"{config.source}: 'general.out_dir'")
    config = apply_experiment_row(config, args.experiment)
    settings = resolve_experiment(config, args.experiment)
    if args.epochs is not None:
        settings = dataclasses.replace(settings, epochs=args.epochs)
    if args.patience is not None:
        settings = dataclasses.replace(settings, patience=args.patience)
    return RunRequest(config=config, settings=settings, sample_rows=args.sample_rows,
                      raw_dir=config.data.raw_dir, json=args.json)


__all__ = ["OneLineArgumentParser", "command_parser", "first_line", "add_common_arguments", "add_run_length_arguments",
           "add_source_arguments", "resolve_run_request", "RunRequest", "ConfigError", "comma_list", "integer_at_least", "seed_list",
           "positive_int", "non_negative_int"]
