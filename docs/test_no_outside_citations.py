"""No tracked file cites a document that lives outside the project.

The project's code and docs explain themselves with what a reader has: its own
pages (docs/differences.md, docs/reliability.md), the libraries' source
(keras/src/callbacks/*.py, lightning/pytorch/callbacks/*.py) and the tests.  A
citation of the development notes kept beside the project (a section sign after
the spec's name, the callbacks notes' file or their lettered rows such as "6a",
a test named after a spec section) or of the issue tracker points at documents
its readers do not have.  The notes' names are assembled from parts below, so
that this file does not cite them either.

    python -m pytest docs/test_no_outside_citations.py -q
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SPEC, CALLBACK_NOTES, OUTSIDE = "SPEC", "CALLBACKS" + ".md", "../" + "shared/"
OUTSIDE_CITATION = re.compile(rf"{SPEC} §|\b{SPEC}\.md\b|{re.escape(CALLBACK_NOTES)}|{re.escape(OUTSIDE)}"
                              rf"({SPEC}|CALLBACKS)|\bissue §\d|\brows? \d+[a-z]\b|_spec_")
# Files that spell the pattern on purpose, to check for its absence.
CHECKING_FILES = {"docs/test_no_outside_citations.py"}


def tracked_text_files() -> list[str]:
    """Every file git tracks, as a path relative to the project root."""
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=False)
    if listing.returncode != 0:
        pytest.skip(f"not a git checkout: {listing.stderr.decode(errors='replace').strip()}")
    return [name for name in listing.stdout.decode("utf-8").split("\0") if name]


def read_text_or_none(path: Path) -> str | None:
    """The file's text, or None for a binary file (a NUL byte or not UTF-8) or one missing from the worktree."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def outside_citations(name: str, text: str) -> list[str]:
    """'path:line: text' for every line of `text` that cites an outside document."""
    return [f"{name}:{number}: {line.strip()}" for number, line in enumerate(text.splitlines(), start=1)
            if OUTSIDE_CITATION.search(line)]


def test_the_pattern_finds_each_kind_of_outside_citation():
    cited = [f"({SPEC} §4)", f"see {OUTSIDE}{SPEC}.md", f"{CALLBACK_NOTES} row 7a", f"`shared/{CALLBACK_NOTES}` measures",
             "the same curves (issue §2)", "every improvement file (row 6a)", "[rows 1b, 4]",
             "def test_vocabularies_are_spec_4(real_dataset):"]
    assert [bool(outside_citations("x", line)) for line in cited] == [True] * 8
    allowed = ["docs/differences.md row 23", "[differences.md rows 17, 18]", f"{OUTSIDE}reference/keras2-models/",
               "for name, spec in fields", "importlib.util.module_from_spec(specification)"]
    assert [bool(outside_citations("x", line)) for line in allowed] == [False] * 5


def test_no_tracked_file_cites_spec_or_callbacks_notes():
    found = []
    for name in tracked_text_files():
        if name in CHECKING_FILES:
            continue
        text = read_text_or_none(PROJECT_ROOT / name)
        if text is not None:
            found.extend(outside_citations(name, text))
    assert not found, ("cite docs/differences.md, library source or a test instead of the outside notes:\n"
                       + "\n".join(found))
