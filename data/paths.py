"""Where the raw TTC workbooks and the prepared cache live.

The raw folder is chosen in this order, and the first one named wins (a named
folder that does not exist is an error, never a silent fall-through):

    1. an explicit `raw_dir` argument (the `--raw-dir` flag, or `data.raw_dir` in the config)
    2. the environment variable STREETCAR_RAW_DIR
    3. <project>/data/raw/          (where `python -m data.fetch` downloads to)
    4. <project>/../shared/data/ttc-streetcar-delay/, only when data/raw/ holds
       no workbooks and that folder does: where the team's machines and CI
       keep the workbooks, so `python -m lightning_impl.train` works there
       with no flag and no variable

    from data.paths import find_raw_files
    files = find_raw_files()          # sorted list of .xlsx paths, or ValueError saying what was looked for

A relative folder (in --raw-dir, data.raw_dir or STREETCAR_RAW_DIR) means
relative to the directory the user ran the command from, and is made absolute
once, there: `resolve_raw_dir` returns an absolute path, and importing this
module rewrites a relative STREETCAR_RAW_DIR in os.environ to its absolute
form, so that child processes (DDP workers, benchmark workers, the notebook's
kernel, which starts in notebooks/) read the same folder.

The prepared cache defaults to <project>/data/processed/.  Both folders are in
.gitignore: the workbooks and anything derived from them never enter git.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RAW_DIR = PROJECT_ROOT / "data" / "raw"
DEFAULT_CACHE_DIR = PROJECT_ROOT / "data" / "processed"
SHARED_RAW_DIR = PROJECT_ROOT.parent / "shared" / "data" / "ttc-streetcar-delay"
RAW_DIR_ENVIRONMENT_VARIABLE = "STREETCAR_RAW_DIR"
# calamine reads both; the portal publishes .xlsx.
WORKBOOK_SUFFIXES = (".xlsx", ".xls")


def absolute_folder(folder: str | os.PathLike) -> Path:
    """`folder` with ~ expanded, made absolute against the current directory, '..' folded (symlinks kept)."""
    return Path(os.path.abspath(Path(folder).expanduser()))


def absolutize_raw_dir_variable() -> None:
    """Rewrite a relative $STREETCAR_RAW_DIR as absolute, against the current directory.

    Called once when this module is first imported, in the process the user
    started, so that every child process inherits a path that does not depend
    on the folder the child happens to start in.
    """
    value = os.environ.get(RAW_DIR_ENVIRONMENT_VARIABLE, "")
    if value and not Path(value).expanduser().is_absolute():
        os.environ[RAW_DIR_ENVIRONMENT_VARIABLE] = str(absolute_folder(value))


absolutize_raw_dir_variable()


def resolve_raw_dir(raw_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """(absolute folder, where the choice came from) following the precedence above."""
    if raw_dir is not None and str(raw_dir) != "":
        return absolute_folder(raw_dir), "the raw_dir argument (--raw-dir / data.raw_dir)"
    from_environment = os.environ.get(RAW_DIR_ENVIRONMENT_VARIABLE, "")
    if from_environment:
        return absolute_folder(from_environment), f"${RAW_DIR_ENVIRONMENT_VARIABLE}"
    if not holds_workbooks(DEFAULT_RAW_DIR) and holds_workbooks(SHARED_RAW_DIR):
        return SHARED_RAW_DIR, "the shared folder beside the project (data/raw/ holds no workbooks)"
    return DEFAULT_RAW_DIR, "the default data/raw/"


def holds_workbooks(folder: Path) -> bool:
    return folder.is_dir() and bool(list_workbooks(folder))


def is_workbook_name(path: Path) -> bool:
    """A workbook we should read: right suffix, not an Excel lock file (~$...) or a hidden temp file."""
    return (path.suffix.lower() in WORKBOOK_SUFFIXES
            and not path.name.startswith(("~$", ".")))


def list_workbooks(folder: Path) -> list[Path]:
    """The workbooks directly inside `folder`, sorted by name (so by year for the portal's names)."""
    return sorted(path for path in folder.iterdir() if path.is_file() and is_workbook_name(path))


def find_raw_files(raw_dir: str | os.PathLike | None = None) -> list[Path]:
    """The raw workbooks to read; ValueError naming the folder, its source and the fix if there are none."""
    folder, source = resolve_raw_dir(raw_dir)
    looked_for = (f"looked for {' / '.join('*' + suffix for suffix in WORKBOOK_SUFFIXES)} in {folder} "
                  f"(chosen by {source}; precedence: --raw-dir > ${RAW_DIR_ENVIRONMENT_VARIABLE} > "
                  f"{DEFAULT_RAW_DIR} > {SHARED_RAW_DIR})")
    hint = "run `python -m data.fetch` or point --raw-dir / $STREETCAR_RAW_DIR at the TTC workbooks"
    if not folder.exists():
        raise ValueError(f"raw data folder not found: {looked_for}; {hint}")
    if not folder.is_dir():
        raise ValueError(f"raw data path is not a folder: {looked_for}; {hint}")
    workbooks = list_workbooks(folder)
    if not workbooks:
        raise ValueError(f"no raw workbooks found: {looked_for}; {hint}")
    return workbooks


def sha256_of_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes: the cache key of a raw workbook, and what `sha256sum` checks."""
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()
