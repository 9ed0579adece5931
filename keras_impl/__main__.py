"""`python -m keras_impl train ...` / `python -m keras_impl score ...`: the two Keras commands.

    python -m keras_impl train --experiment 0 --json
    python -m keras_impl score --model runs/<run>/model.keras --route 501 --direction e --date 2019-06-21 --hour 18

Each is also runnable on its own (python -m keras_impl.train / keras_impl.score).
"""

from __future__ import annotations

import sys
from typing import Sequence

from configs.console import run_main

COMMANDS = ("train", "score")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}; valid: {', '.join(COMMANDS)}")
    if command == "train":
        from keras_impl.train import main as command_main
    else:
        from keras_impl.score import main as command_main
    return int(command_main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(run_main(main))
