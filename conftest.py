"""Project-wide pytest setup: where the real TTC workbooks are, and how tests that need them behave.

    pytest                              # real-data tests run if the workbooks are found, else SKIP
    REQUIRE_REAL_DATA=1 pytest          # ... else FAIL (CI, where the data must be there)
    STREETCAR_RAW_DIR=/path pytest      # use the workbooks in /path

If STREETCAR_RAW_DIR is unset and ../shared/data/ttc-streetcar-delay exists
beside the project (the development layout), it is used.  A test that needs
the real workbooks is marked `@pytest.mark.real_data` (the mark alone is
enough: the check runs before the test) and may take the `real_raw_dir`
fixture to get the folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent
SHARED_RAW_DIR = PROJECT_ROOT.parent / "shared" / "data" / "ttc-streetcar-delay"
RAW_DIR_VARIABLE = "STREETCAR_RAW_DIR"
REQUIRE_VARIABLE = "REQUIRE_REAL_DATA"

if not os.environ.get(RAW_DIR_VARIABLE) and SHARED_RAW_DIR.is_dir():
    os.environ[RAW_DIR_VARIABLE] = str(SHARED_RAW_DIR)
# A relative $STREETCAR_RAW_DIR means relative to where pytest was started;
# data.paths makes it absolute on import, before any test spawns a process or
# a notebook kernel that starts in another folder.
import data.paths  # noqa: E402,F401


def real_data_problem() -> str | None:
    """Why the real workbooks cannot be used, or None when they can."""
    from data.paths import list_workbooks

    configured = os.environ.get(RAW_DIR_VARIABLE, "")
    if not configured:
        return f"${RAW_DIR_VARIABLE} is unset and {SHARED_RAW_DIR} does not exist"
    folder = Path(configured)
    if not folder.is_dir():
        return f"${RAW_DIR_VARIABLE}={configured} is not a folder"
    if not list_workbooks(folder):
        return f"${RAW_DIR_VARIABLE}={configured} holds no .xlsx workbooks"
    return None


def require_real_data() -> Path:
    """The raw folder; skip the test if it is missing, or fail when REQUIRE_REAL_DATA=1."""
    problem = real_data_problem()
    if problem is None:
        return Path(os.environ[RAW_DIR_VARIABLE])
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"real TTC workbooks required ({REQUIRE_VARIABLE}=1) but {problem}", pytrace=False)
    pytest.skip(f"real TTC workbooks not available: {problem}")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("real_data") is not None:
        require_real_data()


@pytest.fixture(scope="session")
def real_raw_dir() -> Path:
    """Folder of the real TTC workbooks (skips / fails as described above)."""
    return require_real_data()
