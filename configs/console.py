"""Console conventions every command of the project follows.

* `--json` prints exactly one JSON object on stdout; everything for humans
  (progress, summaries, warnings) goes to stderr, so `... --json | jq` works.
* A user error (bad flag value, unknown route, missing file, corrupt
  checkpoint, bad config key) is one line `error: <what>; <what is valid>` on
  stderr and exit status 2, never a traceback from deep inside a framework.
* A failure of the system rather than of the input (the portal unreachable, a
  disk that is full) is one `error:` line too, with exit status 1.

It lives in configs/, the lowest floor, because every floor has commands:
data.fetch and data.prepare as much as the trainers and the reports.  The
argument parser with one-line usage errors is configs.cli.OneLineArgumentParser.

    def main(argv=None) -> int: ...
    if __name__ == "__main__":
        raise SystemExit(run_main(main))
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np


USER_ERROR_EXIT_CODE = 2
SYSTEM_ERROR_EXIT_CODE = 1


class UserError(ValueError):
    """An error the user can fix; printed as one line, exit status 2."""


def say(message: str) -> None:
    """Human-readable progress: always stderr, so stdout stays clean for --json."""
    print(message, file=sys.stderr, flush=True)


def json_safe(value: Any) -> Any:
    """NumPy scalars/arrays -> Python; NaN/inf -> the strings 'nan', 'inf', '-inf' (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Path):
        return str(value)
    return value


def emit_json(payload: Mapping[str, Any]) -> None:
    print(json.dumps(json_safe(payload), allow_nan=False), flush=True)


def print_error(error: BaseException) -> None:
    """`error: <message>` on stderr, on one line even when a library's message spans several."""
    message = " ".join(str(error).splitlines()).strip() or error.__class__.__name__
    print(f"error: {message}", file=sys.stderr, flush=True)


def run_main(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Call `main(argv)`; user errors -> one line + exit 2, other OS errors -> one line + exit 1."""
    try:
        return int(main(argv) or 0)
    except (ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as error:
        print_error(error)
        return USER_ERROR_EXIT_CODE
    except OSError as error:  # the network, a full disk: not the user's input
        print_error(error)
        return SYSTEM_ERROR_EXIT_CODE
    except KeyboardInterrupt as interrupt:
        # experiment.reliability.RunInterrupted carries the resume hint and 128 + the signal
        # number (143 for SIGTERM); a bare Ctrl-C is 130, the shell's convention.
        print(str(interrupt) or "interrupted", file=sys.stderr, flush=True)
        return int(getattr(interrupt, "exit_code", 130))
