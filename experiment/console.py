"""Console conventions every command of the project follows.

* `--json` prints exactly one JSON object on stdout; everything for humans
  (progress, summaries, warnings) goes to stderr, so `... --json | jq` works.
* A user error (bad flag value, unknown route, missing file, corrupt
  checkpoint, bad config key) is one line `error: <what>; <what is valid>` on
  stderr and exit status 2, never a traceback from deep inside a framework.

    def main(argv=None) -> int: ...
    if __name__ == "__main__":
        raise SystemExit(run_main(main))
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Mapping, Sequence

from experiment.artifacts import json_safe

USER_ERROR_EXIT_CODE = 2


class UserError(ValueError):
    """An error the user can fix; printed as one line, exit status 2."""


def say(message: str) -> None:
    """Human-readable progress: always stderr, so stdout stays clean for --json."""
    print(message, file=sys.stderr, flush=True)


def emit_json(payload: Mapping[str, Any]) -> None:
    print(json.dumps(json_safe(payload), allow_nan=False), flush=True)


def run_main(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Call `main(argv)`; turn user errors (ValueError and friends) into one line + exit 2."""
    try:
        return int(main(argv) or 0)
    except (ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as error:
        message = str(error) or error.__class__.__name__
        print(f"error: {message}", file=sys.stderr, flush=True)
        return USER_ERROR_EXIT_CODE
    except KeyboardInterrupt as interrupt:
        # experiment.reliability.RunInterrupted carries the resume hint and 128 + the signal
        # number (143 for SIGTERM); a bare Ctrl-C is 130, the shell's convention.
        print(str(interrupt) or "interrupted", file=sys.stderr, flush=True)
        return int(getattr(interrupt, "exit_code", 130))
