"""The project's one atomic file writer: a reader sees the old file or the whole new one.

Every file the project writes for later (the prepared cache and its manifest,
vocabulary.json, downloaded workbooks, run files such as result.json,
history.csv, the PNGs and run_request.json, every checkpoint, converted models,
benchmark pages) goes through this module:

    from data.atomic import write_atomic, atomic_path
    write_atomic(run_dir / "result.json", text)          # bytes or str (UTF-8)
    with atomic_path(run_dir / "model.keras") as temporary:
        model.save(temporary)                             # writers that need a file name

Three promises, each tested in data/tests/test_atomic.py:

* **all or nothing**: the bytes go to a hidden temp file in the target's own
  folder, then `os.replace` renames it over the target (atomic on POSIX within
  one filesystem); a kill leaves at most a hidden `.<stem>.<token>.tmp.<suffixes>`;
* **durable**: the temp file is fsync'ed before the rename and the folder after
  it, so a finished write survives a power cut (docs/reliability.md);
* **normal permissions**: the temp file is created with mode 0666 minus the
  process umask, as a plain `open()` would (0644 under umask 022).
  `tempfile.mkstemp` creates 0600 files, which made every run file unreadable
  to teammates; reading the umask back with `os.umask` would be racy in a
  threaded trainer, so the file is created with `os.open(..., 0o666)` and the
  kernel applies the umask.

This module sits in data/, the lowest floor that writes files (configs/ only
reads); experiment/, the trainers, bridge code and benchmarks import it from here.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Iterator

TEMPORARY_MARKER = ".tmp"


def temporary_path_beside(path: Path) -> Path:
    """A fresh hidden name in `path`'s folder that keeps everything after the name's first dot.

    Keras insists on '.keras' and '.weights.h5', readers pick a workbook's
    format by '.xlsx': epoch-0001.weights.h5 -> .epoch-0001.<token>.tmp.weights.h5
    """
    stem, dot, suffixes = path.name.partition(".")
    return path.parent / f".{stem}.{secrets.token_hex(6)}{TEMPORARY_MARKER}{dot}{suffixes}"


def is_temporary_name(name: str) -> bool:
    """Whether `name` is one of this module's leftovers (for cache pruning)."""
    return name.startswith(".") and TEMPORARY_MARKER in name


def create_with_umask_mode(path: Path) -> int:
    """Create `path` exclusively with mode 0666 & ~umask (what open() gives); returns the descriptor."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)


def fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_directory(folder: Path) -> None:
    """Make a rename inside `folder` durable; a no-op where folders cannot be opened (Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some filesystems (e.g. certain network mounts) refuse fsync on a folder
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temp file beside `path` to write by name; on success fsync and rename it into place.

    On any exception (including KeyboardInterrupt) the temp file is removed and
    `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path_beside(path)
    os.close(create_with_umask_mode(temporary))
    try:
        yield temporary
        fsync_file(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write `data` (bytes, or str as UTF-8) to `path` all-or-nothing and durably; returns the path."""
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as stream:
            stream.write(payload)
    return Path(path)


__all__ = ["write_atomic", "atomic_path", "is_temporary_name"]
