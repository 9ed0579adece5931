"""What the project's command lines share, so that each is written once.

* command_parser: an argparse parser in the house style (one-line usage
  errors, the epilog's examples kept as written);
* add_trip_arguments / add_score_json_flag / report_score: the trip flags and
  the answer of both score commands (keras_impl.score, lightning_impl.score);
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


def add_trip_arguments(parser: argparse.ArgumentParser) -> None:
    """--route --direction --date --hour: the trip to score."""
    parser.add_argument("--route", required=True, type=int, metavar="N", help="streetcar route, e.g. 501")
    parser.add_argument("--direction", required=True, metavar="D", help="e, w, n, s or b (both ways)")
    parser.add_argument("--date", required=True, metavar="YYYY-MM-DD", help="trip date, within the trained years")
    parser.add_argument("--hour", required=True, type=int, metavar="H", help="hour of day, 0-23")


def add_score_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help='print {"probability", "delay", "inputs"} as one JSON object')


def report_score(result: Mapping[str, Any], args: argparse.Namespace) -> None:
    """The score on stdout: one JSON object with --json, else one line for a person."""
    from experiment.console import emit_json

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
    from experiment.console import emit_json, say
    from experiment.verdict import degenerate_warning

    if request.json:
        emit_json({key: result[key] for key in RESULT_KEYS})
    else:
        print(describe_result(result), flush=True)
    warning = degenerate_warning(result, request)
    if warning is not None:  # last, on stderr, so that it is what the user reads
        say(warning)
