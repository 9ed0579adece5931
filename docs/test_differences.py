"""Every test that the guide pages name really exists.

docs/differences.md proves each row with one or more `path::test_function`
references. A renamed or deleted test would leave a row that proves
nothing, so this test parses the pages and checks three things for each
reference: the file exists, a function of that name is *defined* in it (read
with `ast`, not imported, so the check costs nothing), and the name starts
with `test_`, so pytest collects it. It also checks that every row of the
differences tables cites at least one test.

    python -m pytest docs/test_differences.py -q
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DOCS_DIR = PROJECT_ROOT / "docs"
# The pages this project's guide owns; each may cite tests.
PAGES = [DOCS_DIR / "differences.md", DOCS_DIR / "keras_vs_lightning.md", DOCS_DIR / "reliability.md"]
# `parity_tests/test_x.py::test_name` (a parametrised id such as `[nan-first]` is not part of the match).
TEST_REFERENCE = re.compile(r"(?P<path>[\w./-]+\.py)::(?P<name>\w+)")
# docs/reliability.md shortens a second test of the same file to `::test_name`.
SHORT_OR_FULL_REFERENCE = re.compile(r"(?P<path>[\w./-]+\.py)?::(?P<name>\w+)")
TABLE_ROW = re.compile(r"^\| *(?P<number>\d+) *\|")


@lru_cache(maxsize=None)
def defined_functions(path: Path) -> frozenset[str]:
    """Names of the functions and methods defined anywhere in a Python file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return frozenset(node.name for node in ast.walk(tree)
                     if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))


def references(page: Path) -> list[tuple[str, str]]:
    """(path, test name) of every reference; a bare `::name` belongs to the file named last before it."""
    found, last_path = [], None
    for match in SHORT_OR_FULL_REFERENCE.finditer(page.read_text(encoding="utf-8")):
        last_path = match.group("path") or last_path
        if last_path is not None:
            found.append((last_path, match.group("name")))
    return found


def test_the_differences_page_cites_tests():
    assert len(references(DOCS_DIR / "differences.md")) >= 20


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_every_cited_test_exists(page: Path):
    assert page.is_file(), f"{page} is missing"
    missing = []
    for relative, name in references(page):
        source = PROJECT_ROOT / relative
        if not source.is_file():
            missing.append(f"{relative}::{name} (no such file)")
        elif not name.startswith("test_"):
            missing.append(f"{relative}::{name} (not a test function name)")
        elif name not in defined_functions(source):
            missing.append(f"{relative}::{name} (no function of that name in the file)")
    assert not missing, f"{page.name} cites tests that do not exist: " + "; ".join(missing)


def test_every_row_of_the_differences_tables_names_a_test():
    rows = [line for line in (DOCS_DIR / "differences.md").read_text(encoding="utf-8").splitlines()
            if TABLE_ROW.match(line)]
    assert len(rows) >= 20
    numbers = [int(TABLE_ROW.match(row).group("number")) for row in rows]
    assert numbers == list(range(1, len(rows) + 1)), "rows are numbered 1, 2, 3, ... without gaps"
    uncited = [number for number, row in zip(numbers, rows) if not TEST_REFERENCE.search(row)]
    assert not uncited, f"rows {uncited} of docs/differences.md name no test"


def test_reference_parsing(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text("| 1 | x | `a/test_b.py::test_c` and `a/test_b.py::test_d` (ids [p-1]) |\n")
    assert references(page) == [("a/test_b.py", "test_c"), ("a/test_b.py", "test_d")]
    page.write_text("`a/test_b.py::test_c`, `::test_d`; `e/test_f.py::test_g`, `::test_h`\n")
    assert references(page) == [("a/test_b.py", "test_c"), ("a/test_b.py", "test_d"),
                                ("e/test_f.py", "test_g"), ("e/test_f.py", "test_h")]
    source = tmp_path / "test_b.py"
    source.write_text("def test_c():\n    pass\n\nclass TestX:\n    def test_d(self):\n        pass\n")
    assert {"test_c", "test_d"} <= defined_functions(source)
