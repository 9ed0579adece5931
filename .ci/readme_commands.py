"""The README's quick-start commands, extracted verbatim, so that CI runs exactly what users copy.

    python3 .ci/readme_commands.py test      # prints the README's install-and-test command
    python3 .ci/readme_commands.py main      # prints the README's install-and-run command

In README.md each command is the only line of a ```bash fence that follows a
marker comment on its own line:

    <!-- readme-command: test -->
    ```bash
    python3 -m venv .venv && ...
    ```

A marker missing or given twice, a fence that does not follow its marker, or a
fence that is not exactly one line is an error (exit 2, one line): CI must
never silently run something other than what the README shows.  Standard
library only: it runs before any virtual environment exists.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
COMMAND_NAMES = ("main", "test")
MARKER = re.compile(r"^<!-- readme-command: (?P<name>[\w-]+) -->$")
# The marker, optional blank lines, then a ```bash fence holding exactly one line.
MARKED_BLOCK = "<!-- readme-command: {name} -->\n\\s*```bash\n(?P<body>[^\n`]*)\n```\n"


def extract_command(readme_text: str, name: str) -> str:
    """The one command under the `name` marker, character for character; ValueError when unclear."""
    markers = [line for line in readme_text.splitlines() if (found := MARKER.match(line)) and found["name"] == name]
    if len(markers) != 1:
        raise ValueError(f"README.md has {len(markers)} '<!-- readme-command: {name} -->' markers; expected 1")
    block = re.search(MARKED_BLOCK.format(name=re.escape(name)), readme_text)
    if block is None or not block["body"].strip():
        raise ValueError(f"README.md: the '{name}' marker is not followed by a ```bash block of one command line")
    return block["body"]


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in COMMAND_NAMES:
        print(f"error: usage: python3 .ci/readme_commands.py {{{','.join(COMMAND_NAMES)}}}", file=sys.stderr)
        return 2
    try:
        print(extract_command(README.read_text(encoding="utf-8"), argv[0]))
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
