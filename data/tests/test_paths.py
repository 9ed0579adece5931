"""Raw folder discovery: argument > $STREETCAR_RAW_DIR > data/raw/, and clear errors."""

from pathlib import Path

import pytest

from data import paths
from data.paths import find_raw_files, resolve_raw_dir


def test_explicit_argument_beats_environment(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.setenv("STREETCAR_RAW_DIR", str(tmp_path / "b"))
    assert resolve_raw_dir(tmp_path / "a")[0] == tmp_path / "a"
    assert resolve_raw_dir(None)[0] == tmp_path / "b"


def test_default_is_project_data_raw(tmp_path, monkeypatch):
    monkeypatch.delenv("STREETCAR_RAW_DIR", raising=False)
    monkeypatch.setattr(paths, "SHARED_RAW_DIR", tmp_path / "no-shared-folder")
    folder, source = resolve_raw_dir(None)
    assert folder == Path(paths.__file__).resolve().parents[1] / "data" / "raw"
    assert "default" in source


def test_shared_folder_is_the_fallback_only_when_data_raw_is_empty(tmp_path, monkeypatch):
    monkeypatch.delenv("STREETCAR_RAW_DIR", raising=False)
    project_raw, shared = tmp_path / "data" / "raw", tmp_path / "shared"
    project_raw.mkdir(parents=True)
    shared.mkdir()
    (shared / "ttc-2014.xlsx").write_bytes(b"x")
    monkeypatch.setattr(paths, "DEFAULT_RAW_DIR", project_raw)
    monkeypatch.setattr(paths, "SHARED_RAW_DIR", shared)
    folder, source = resolve_raw_dir(None)
    assert folder == shared and "shared" in source
    (project_raw / "ttc-2015.xlsx").write_bytes(b"x")                    # data/raw/ has workbooks: it wins
    assert resolve_raw_dir(None)[0] == project_raw
    monkeypatch.setenv("STREETCAR_RAW_DIR", str(tmp_path / "elsewhere"))  # a named folder always wins
    assert resolve_raw_dir(None)[0] == tmp_path / "elsewhere"


def test_lists_only_workbooks_sorted(tmp_path):
    for name in ("b-2015.xlsx", "a-2014.xlsx", "~$a-2014.xlsx", ".a-2014.xlsx.x.tmp.xlsx", "notes.txt", "old.xls"):
        (tmp_path / name).write_bytes(b"x")
    assert [path.name for path in find_raw_files(tmp_path)] == ["a-2014.xlsx", "b-2015.xlsx", "old.xls"]


def test_missing_folder_names_what_was_looked_for(tmp_path):
    with pytest.raises(ValueError) as error:
        find_raw_files(tmp_path / "nowhere")
    message = str(error.value)
    assert "not found" in message and str(tmp_path / "nowhere") in message
    assert "STREETCAR_RAW_DIR" in message and "*.xlsx" in message and "data.fetch" in message


def test_empty_folder_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("STREETCAR_RAW_DIR", str(tmp_path))
    with pytest.raises(ValueError, match=r"no raw workbooks found: looked for \*\.xlsx"):
        find_raw_files()


def test_a_file_instead_of_a_folder_is_an_error(tmp_path):
    (tmp_path / "file.xlsx").write_bytes(b"x")
    with pytest.raises(ValueError, match="not a folder"):
        find_raw_files(tmp_path / "file.xlsx")


def test_real_data_guard_skips_or_fails(tmp_path, monkeypatch):
    """conftest.require_real_data: SKIP without the workbooks, FAIL with REQUIRE_REAL_DATA=1."""
    import conftest

    monkeypatch.setenv("STREETCAR_RAW_DIR", str(tmp_path))
    monkeypatch.delenv("REQUIRE_REAL_DATA", raising=False)
    with pytest.raises(pytest.skip.Exception, match="holds no .xlsx workbooks"):
        conftest.require_real_data()
    monkeypatch.setenv("REQUIRE_REAL_DATA", "1")
    with pytest.raises(pytest.fail.Exception, match="required"):
        conftest.require_real_data()
    (tmp_path / "ttc-2014.xlsx").write_bytes(b"x")
    assert conftest.require_real_data() == tmp_path
    monkeypatch.setenv("STREETCAR_RAW_DIR", "")
    monkeypatch.setattr(conftest, "SHARED_RAW_DIR", tmp_path / "absent")
    with pytest.raises(pytest.fail.Exception, match="is unset"):
        conftest.require_real_data()


# -- a relative folder means relative to where the user ran the command, in every process ---

CHILD_LISTS_WORKBOOKS = (
    "import os, subprocess, sys\n"
    "import data.paths\n"
    "print(os.environ['STREETCAR_RAW_DIR'])\n"
    "sys.stdout.flush()\n"
    # A child that starts in another folder, as the notebook's kernel starts in notebooks/.
    "subprocess.run([sys.executable, '-c', 'from data.paths import find_raw_files; "
    "print(find_raw_files()[0])'], cwd=sys.argv[1], check=True)\n")


def test_a_relative_raw_dir_variable_is_made_absolute_for_child_processes(tmp_path):
    import os
    import subprocess
    import sys

    user_folder, elsewhere = tmp_path / "project", tmp_path / "project" / "notebooks"
    elsewhere.mkdir(parents=True)
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "ttc-2014.xlsx").write_bytes(b"x")
    project_root = Path(paths.__file__).resolve().parents[1]
    environment = {**os.environ, "STREETCAR_RAW_DIR": "../raw",
                   "PYTHONPATH": os.pathsep.join([str(project_root), os.environ.get("PYTHONPATH", "")])}
    completed = subprocess.run([sys.executable, "-c", CHILD_LISTS_WORKBOOKS, str(elsewhere)], cwd=user_folder,
                               env=environment, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == [str(tmp_path / "raw"), str(tmp_path / "raw" / "ttc-2014.xlsx")]


def test_a_relative_raw_dir_argument_is_resolved_against_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder, _ = resolve_raw_dir("some/raw")
    assert folder == tmp_path / "some" / "raw" and folder.is_absolute()


def test_the_trainers_store_an_absolute_raw_dir_in_the_run_request(tmp_path, monkeypatch):
    import argparse

    from configs.cli import add_common_arguments, resolve_run_request

    monkeypatch.chdir(tmp_path)
    arguments = add_common_arguments(argparse.ArgumentParser()).parse_args(["--raw-dir", "raw"])
    assert resolve_run_request(arguments).raw_dir == str(tmp_path / "raw")
