"""What the project's command lines share, so that each is written once.

* command_parser: an argparse parser in the house style (one-line usage
  errors, the epilog's examples kept as written);
* score_parser / report_score: the flags (the trip, --vocabulary, --json)
  and the answer of both score commands (keras_impl.score, lightning_impl.score);
* trainer_parser / training_examples: the start of both trainers' parsers
  and the examples of their --help;
* report_result: how both trainers end (the result JSON on stdout with
  --json, else a summary; a degenerate-model warning last, on stderr).
"""

from __future__ import annotations

import argparse
from typing import Any, Mapping

from configs.cli import OneLineArgumentParser


def command_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """A parser whose usage errors are one line and exit status 2 (configs.cli.OneLineArgumentParser)."""
    return OneLineArgumentParser(prog=prog, description=description, epilog=epilog,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)


def score_parser(prog: str, description: str, epilog: str, *, model_flag: str, model_help: str,
                 vocabulary_help: str) -> argparse.ArgumentParser:
    """A score command's parser: the model file (`model_flag`), the trip, --vocabulary and --json."""
    parser = command_parser(prog, description, epilog)
    parser.add_argument(model_flag, required=True, metavar="PATH", help=model_help)
    add_trip_arguments(parser)
    parser.add_argument("--vocabulary", default=None, metavar="PATH", help=vocabulary_help)
    parser.add_argument("--json", action="store_true",
                        help='print {"probability", "delay", "inputs"} as one JSON object')
    return parser


def trainer_parser(command: str, framework: str, epilog: str) -> argparse.ArgumentParser:
    """A trainer's parser with the flags both trainers share (configs.cli.add_common_arguments)."""
    from configs.cli import add_common_arguments

    parser = command_parser(f"python -m {command}",
                            f"Train the streetcar-delay model with {framework} (one experiment of the book's "
                            f"chapter 6), test the kept model and write a run directory.", epilog)
    add_common_arguments(parser)
    return parser


# The shared flags' examples of both trainers: (flags, what the run does).
TRAINING_EXAMPLES = (
    ("--experiment 0", "1-epoch smoke run on the full data"),
    ("--experiment 5 --json", "early stop on val_accuracy; JSON result on stdout"),
    ("--experiment 3 --sample-rows 100000 --epochs 3", "quick class-weighted run on a seeded subset"),
)


def training_examples(command: str, *extra: tuple[str, str]) -> str:
    """The "examples:" block of a trainer's --help: TRAINING_EXAMPLES, then `extra` (flags, what; what may be "")."""
    prefix = f"  python -m {command} "
    column = len(prefix) + 31  # the descriptions line up in one column
    lines = ["examples:"]
    for flags, what in (*TRAINING_EXAMPLES, *extra):
        line = prefix + flags
        if what:
            line = line.ljust(column) + what if len(line) < column else f"{line}\n{' ' * column}{what}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def add_trip_arguments(parser: argparse.ArgumentParser) -> None:
    """--route --direction --date --hour: the trip to score."""
    parser.add_argument("--route", required=True, type=int, metavar="N", help="streetcar route, e.g. 501")
    parser.add_argument("--direction", required=True, metavar="D", help="e, w, n, s or b (both ways)")
    parser.add_argument("--date", required=True, metavar="YYYY-MM-DD", help="trip date, within the trained years")
    parser.add_argument("--hour", required=True, type=int, metavar="H", help="hour of day, 0-23")


def report_score(result: Mapping[str, Any], args: argparse.Namespace) -> None:
    """The score on stdout: one JSON object with --json, else one line for a person."""
    from configs.console import emit_json

    if args.json:
        emit_json(result)
        return
    verdict = "delay expected" if result["delay"] else "no delay expected"
    print(f"p(delay) = {result['probability']:.4f} -> {verdict} "
          f"(route {args.route} {args.direction}, {args.date} {args.hour:02d}:00; encoded {result['inputs']})",
          flush=True)


def report_result(result: Mapping[str, Any], request: Any) -> None:
    """A trainer's ending: the result object (RESULT_KEYS) with --json, else a summary; then any warning."""
    from experiment.artifacts import RESULT_KEYS, describe_result
    from configs.console import emit_json, say
    from experiment.verdict import degenerate_warning

    if request.json:
        emit_json({key: result[key] for key in RESULT_KEYS})
    else:
        print(describe_result(result), flush=True)
    warning = degenerate_warning(result, request)
    if warning is not None:  # last, on stderr, so that it is what the user reads
        say(warning)
