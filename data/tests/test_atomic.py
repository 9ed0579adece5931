"""data.atomic: all-or-nothing, durable, and with the permissions a plain open() gives."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from data import atomic
from data.atomic import atomic_path, write_atomic

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_get_the_umask_mode_not_a_private_0600(tmp_path, umask_022):
    write_atomic(tmp_path / "result.json", '{"a": 1}')
    with atomic_path(tmp_path / "model.keras") as temporary:
        temporary.write_bytes(b"model")
    assert mode_of(tmp_path / "result.json") == 0o644
    assert mode_of(tmp_path / "model.keras") == 0o644
    os.umask(0o027)
    write_atomic(tmp_path / "private.json", b"{}")
    assert mode_of(tmp_path / "private.json") == 0o640


def test_bytes_and_text_round_trip_and_an_old_file_is_replaced_whole(tmp_path):
    target = tmp_path / "deep" / "folder" / "history.csv"
    assert write_atomic(target, "épreuve\n") == target
    assert target.read_bytes() == "épreuve\n".encode("utf-8")
    write_atomic(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert sorted(path.name for path in target.parent.iterdir()) == ["history.csv"]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "vocabulary.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="writer died"):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("writer died")
    assert target.read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["vocabulary.json"]


@pytest.mark.parametrize("name, start, end", [("book.keras", ".book.", ".tmp.keras"),
                                               ("epoch-0001.weights.h5", ".epoch-0001.", ".tmp.weights.h5"),
                                               ("streetcar-0123.parquet", ".streetcar-0123.", ".tmp.parquet")])
def test_the_temp_file_is_hidden_and_keeps_the_suffixes_readers_insist_on(tmp_path, name, start, end):
    with atomic_path(tmp_path / name) as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(start) and temporary.name.endswith(end)
        assert atomic.is_temporary_name(temporary.name)
        temporary.write_bytes(b"x")
    assert [path.name for path in tmp_path.iterdir()] == [name]


def test_the_file_and_its_folder_are_fsynced_before_and_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def recording_fsync(descriptor):
        events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{descriptor}")).name))
        real_fsync(descriptor)

    def recording_replace(source, destination):
        events.append(("replace", Path(destination).name))
        real_replace(source, destination)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    write_atomic(tmp_path / "last.ckpt", b"weights")
    assert [kind for kind, _ in events] == ["fsync", "replace", "fsync"]
    assert events[0][1].startswith(".last.") and events[1:] == [("replace", "last.ckpt"), ("fsync", tmp_path.name)]


def test_one_atomic_writer_in_the_whole_project():
    """No second writer: outside tests only data/atomic.py mentions mkstemp (to say why it does not use it)."""
    listed = subprocess.run(["git", "grep", "-l", "-e", "mkstemp", "-e", "NamedTemporaryFile", "--", "*.py"],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=30)
    if listed.returncode not in (0, 1):
        pytest.skip(f"not a git checkout: {listed.stderr.strip()}")
    offenders = [name for name in listed.stdout.splitlines()
                 if "/tests/" not in name and not Path(name).name.startswith("test_")]
    assert offenders == ["data/atomic.py"]
