"""`python -m parity_tests.replay`: the callback replay's command line (the replay itself: reports/replay.py).

    python -m parity_tests.replay --monitor val_accuracy --mode max --patience 2 --values 0.69,0.72,0.72,0.71,0.73
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from configs.cli import OneLineArgumentParser
from reports.replay import replay
from reports.replay_values import ReplayError, check_request, parse_values, read_values_file


def format_table(result: dict[str, Any]) -> str:
    scenario = result["scenario"]
    lines = [f"monitor={scenario['monitor']} mode={scenario['mode'] or '(not given)'} patience={scenario['patience']} "
             f"min_delta={scenario['min_delta']} epochs={scenario['epochs']} "
             f"(Lightning: {scenario['lightning_callbacks']} callbacks)",
             "values by epoch idx: " + ", ".join(f"{index}:{value}" for index, value in enumerate(scenario["values"])),
             "",
             f"{'framework':<10} {'epochs_run':>10} {'best_epoch':>10} {'best_value':>10}  best_file"]
    for name in ("keras", "lightning"):
        side = result[name]
        lines.append(f"{name:<10} {side['epochs_run']:>10} {str(side['best_epoch']):>10} "
                     f"{str(side['best_value']):>10}  {side['best_file']}")
    lines += ["", f"agree: {'yes' if result['agree'] else 'NO'}", "notes:"]
    lines += [f"  - {note}" for note in result["notes"]]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog="python -m parity_tests.replay",
                     description="Replay a scripted metric through Keras's and Lightning's EarlyStopping and "
                                 "ModelCheckpoint and report where each stops and which epoch each keeps.")
    parser.add_argument("--monitor", required=True,
                        help="monitored key, one the trainers log: loss, accuracy, recall, val_loss, val_accuracy "
                             "or val_recall")
    parser.add_argument("--mode", help="min or max (required unless --lightning-defaults, where leaving it out "
                                       "shows Keras 'auto' against Lightning's default 'min')")
    parser.add_argument("--patience", required=True, type=int, help="EarlyStopping patience (>= 0)")
    parser.add_argument("--min-delta", type=float, default=0.0, help="EarlyStopping min_delta (default 0)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--values", help="comma-separated values by epoch, e.g. 0.69,0.72,nan "
                                         "(use --values=-inf,... when the first one starts with '-')")
    source.add_argument("--values-file", help="file with the values, separated by commas, spaces or new lines")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--lightning-defaults", action="store_true",
                        help="use stock Lightning EarlyStopping/ModelCheckpoint(save_top_k=1) instead of the "
                             "project's Keras-compatible callbacks")
    return parser


def _check_cli_monitor(monitor: str) -> None:
    """The command line replays the trainers' own metrics only; replay() itself takes any metric name."""
    from configs.loader import MONITORABLE_KEYS

    if monitor not in MONITORABLE_KEYS:
        raise ReplayError(f"--monitor {monitor!r} is not a metric the trainers log; valid: "
                          f"{', '.join(MONITORABLE_KEYS)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    try:
        values = (parse_values(arguments.values) if arguments.values is not None
                  else read_values_file(arguments.values_file))
        # Check everything before importing TensorFlow (seconds).
        _check_cli_monitor(arguments.monitor)
        check_request(values, arguments.monitor, arguments.mode, arguments.patience, arguments.min_delta,
                       arguments.lightning_defaults)
        result = replay(values, arguments.monitor, arguments.mode, arguments.patience, arguments.min_delta,
                        arguments.lightning_defaults)
    except ValueError as error:  # ReplayError, and what the project's callbacks refuse
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if arguments.json else format_table(result))
    return 0

