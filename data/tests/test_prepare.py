"""load_prepared / python -m data.prepare on hand-made workbooks: report, cache, bad input, CLI."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from configs import load_config, override
from data.dataset import COLUMNS, PreparedDataset
from data.cache import cache_paths
from data.prepare import encode_columns, load_prepared, main
from data.tests.helpers import HEADER, record, small_raw_dir, write_workbook
from data.vocab import Vocabularies

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def raw_dir(tmp_path):
    return small_raw_dir(tmp_path / "raw")


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "cache"


def load(raw_dir, cache_dir, config=None, **options):
    options.setdefault("progress", False)
    return load_prepared(config, raw_dir, cache_dir=cache_dir, **options)


def decoded_delay_rows(dataset: PreparedDataset) -> set[tuple]:
    rows = dataset.features[dataset.target == 1]
    columns = [dataset.vocabularies.decode(column, rows[:, j]) for j, column in enumerate(COLUMNS)]
    return set(zip(*columns))


def same_arrays(first: PreparedDataset, second: PreparedDataset) -> bool:
    return (np.array_equal(first.features, second.features) and np.array_equal(first.target, second.target)
            and all(np.array_equal(first.splits[name], second.splits[name]) for name in first.splits)
            and first.vocabularies == second.vocabularies)


def test_small_dataset_report_and_arrays(raw_dir, cache_dir):
    dataset = load(raw_dir, cache_dir)
    report = dataset.report
    assert report["raw_rows"] == 7 and report["kept_rows"] == 5
    assert report["dropped"] == {"missing_date": 0, "date_out_of_range": 0, "missing_time": 0, "bad_route": 1,
                                 "bad_direction": 1}
    assert report["kept_rows"] + sum(report["dropped"].values()) == report["raw_rows"]
    assert report["date_range"] == {"start": "2014-01-02", "end": "2014-01-04", "days": 3}
    assert report["slots"] == 3 * 24 * 56 == 4032
    assert report["delay_records"] == 4 and report["delay_records_in_grid"] == 4
    assert report["delay_slots"] == 3 and report["delay_rate"] == pytest.approx(3 / 4032)
    assert report["vocab_sizes"] == {"hour": 24, "Route": 14, "daym": 3, "month": 1, "year": 1, "Direction": 5,
                                     "day": 3}
    assert report["splits"] == {"train": 2418, "valid": 807, "test": 807}
    negatives, positives = report["train_class_counts"]["0"], report["train_class_counts"]["1"]
    assert negatives + positives == 2418 and report["one_weight"] == pytest.approx(negatives / positives)
    assert [entry["rows"] for entry in report["raw_files"]] == [5, 2]
    assert report["raw_files"][1]["sheets"] == {"Aug, 2014 ": 2}
    assert report["cache"]["hit"] is False and report["raw_dir"] == str(raw_dir)

    assert dataset.features.shape == (4032, 7) and dataset.features.dtype == np.int64
    assert dataset.target.dtype == np.uint8 and int(dataset.target.sum()) == 3
    # (hour, Route, daym, month, year, Direction, weekday): Thu 2, Fri 3, Sat 4 Jan 2014
    assert decoded_delay_rows(dataset) == {(8, 501, 2, 1, 2014, "e", 3), (17, 504, 3, 1, 2014, "b", 4),
                                           (23, 512, 4, 1, 2014, "w", 5)}
    parquet, manifest = cache_paths(cache_dir, report["cache"]["key"])
    assert parquet.is_file() and manifest.is_file()
    assert sorted(path.name for path in cache_dir.iterdir()) == sorted([parquet.name, manifest.name])


def test_second_load_is_a_cache_hit_with_identical_arrays(raw_dir, cache_dir):
    first = load(raw_dir, cache_dir)
    second = load(raw_dir, cache_dir)
    assert second.report["cache"]["hit"] is True and second.report["cache"]["key"] == first.report["cache"]["key"]
    assert same_arrays(first, second)
    assert second.features.dtype == np.int64 and second.target.dtype == np.uint8
    assert {name: rows.dtype for name, rows in second.splits.items()} == {name: np.int64 for name in second.splits}
    stable = {key: value for key, value in first.report.items() if key != "cache"}
    assert {key: value for key, value in second.report.items() if key != "cache"} == stable


def test_another_seed_rebuilds_and_the_old_entry_stays(raw_dir, cache_dir):
    config = load_config()
    first = load(raw_dir, cache_dir, config)
    reseeded = load(raw_dir, cache_dir, override(config, "general.seed", 7))
    assert reseeded.report["cache"]["hit"] is False
    assert reseeded.report["cache"]["key"] != first.report["cache"]["key"]
    assert np.array_equal(reseeded.features, first.features) and np.array_equal(reseeded.target, first.target)
    assert not np.array_equal(reseeded.splits["test"], first.splits["test"])
    assert load(raw_dir, cache_dir, config).report["cache"]["hit"] is True


@pytest.mark.parametrize("key, value", [("test_parms.test_proportion", 0.25), ("test_parms.valid_proportion", 0.1),
                                        ("data.drop_bad_vehicles", True), ("data.end_date", "2014-01-03")])
def test_every_data_setting_is_in_the_cache_key(raw_dir, cache_dir, key, value):
    config = load_config()
    load(raw_dir, cache_dir, config)
    assert load(raw_dir, cache_dir, override(config, key, value)).report["cache"]["hit"] is False


def test_one_weight_offset_needs_no_rebuild(raw_dir, cache_dir):
    config = load_config()
    first = load(raw_dir, cache_dir, config)
    shifted = load(raw_dir, cache_dir, override(config, "hyperparameters.one_weight_offset", 1.5))
    assert shifted.report["cache"]["hit"] is True
    assert shifted.report["one_weight"] == pytest.approx(first.report["one_weight"] + 1.5)
    assert shifted.report["one_weight"] == pytest.approx(shifted.one_weight(1.5))


def test_configured_date_range_and_bad_vehicle_drop(raw_dir, cache_dir):
    config = override(override(load_config(), "data.start_date", "2014-01-01"), "data.end_date", "2014-01-05")
    config = override(config, "data.drop_bad_vehicles", True)
    report = load(raw_dir, cache_dir, config).report
    assert report["date_range"] == {"start": "2014-01-01", "end": "2014-01-05", "days": 5}
    assert report["slots"] == 5 * 1344
    assert report["dropped"]["bad_vehicle"] == 0 and list(report["dropped"])[-1] == "bad_vehicle"


def test_start_after_end_is_refused_before_any_work(raw_dir, cache_dir):
    config = override(override(load_config(), "data.start_date", "2014-02-01"), "data.end_date", "2014-01-01")
    with pytest.raises(ValueError, match="start_date 2014-02-01 is after data.end_date 2014-01-01"):
        load(raw_dir, cache_dir, config)
    assert not cache_dir.exists()


def test_changed_raw_file_rebuilds(raw_dir, cache_dir):
    load(raw_dir, cache_dir)
    write_workbook(raw_dir / "ttc-streetcar-delay-data-2014.xlsx", {"Jan 2014": [record("2014-01-02")] * 2})
    again = load(raw_dir, cache_dir)
    assert again.report["cache"]["hit"] is False and again.report["raw_rows"] == 4


def corrupt(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupted_parquet_is_detected_and_rebuilt(raw_dir, cache_dir, capsys):
    first = load(raw_dir, cache_dir)
    parquet, _ = cache_paths(cache_dir, first.report["cache"]["key"])
    corrupt(parquet)
    rebuilt = load(raw_dir, cache_dir, progress=True)
    assert rebuilt.report["cache"]["hit"] is False and same_arrays(first, rebuilt)
    assert "does not match the SHA-256" in capsys.readouterr().err
    assert load(raw_dir, cache_dir).report["cache"]["hit"] is True


@pytest.mark.parametrize("damage", ["truncate manifest", "delete parquet", "delete manifest", "garbage parquet"])
def test_damaged_or_half_written_cache_is_never_trusted(raw_dir, cache_dir, damage):
    first = load(raw_dir, cache_dir)
    parquet, manifest = cache_paths(cache_dir, first.report["cache"]["key"])
    if damage == "truncate manifest":
        manifest.write_text(manifest.read_text()[:100])
    elif damage == "delete parquet":
        parquet.unlink()
    elif damage == "delete manifest":       # a run killed between the two renames
        manifest.unlink()
    else:
        parquet.write_bytes(b"PAR1" + b"\0" * 100)
    rebuilt = load(raw_dir, cache_dir)
    assert rebuilt.report["cache"]["hit"] is False and same_arrays(first, rebuilt)


def test_leftover_temp_files_are_ignored_and_pruned(raw_dir, cache_dir):
    cache_dir.mkdir()
    leftover = cache_dir / ".streetcar-0123456789abcdef.parquet.abc.tmp"
    leftover.write_bytes(b"half a file")
    old = time.time() - 3600
    os.utime(leftover, (old, old))
    assert load(raw_dir, cache_dir).report["cache"]["hit"] is False
    assert not leftover.exists()


def test_rebuild_flag_ignores_a_valid_cache(raw_dir, cache_dir):
    load(raw_dir, cache_dir)
    assert load(raw_dir, cache_dir, rebuild=True).report["cache"]["hit"] is False


def test_progress_goes_to_stderr_only(raw_dir, cache_dir, capsys):
    load(raw_dir, cache_dir, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "[data] read 2 workbook(s): 7 rows, kept 5" in captured.err and "[data] wrote" in captured.err
    load(raw_dir, cache_dir, progress=True)
    assert "[data] loaded 4,032 prepared rows" in capsys.readouterr().err


# ------------------------------------------------------------------ bad input

def test_empty_raw_dir(tmp_path, cache_dir):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no raw workbooks found: looked for \*\.xlsx / \*\.xls in .*empty"):
        load(tmp_path / "empty", cache_dir)
    assert not cache_dir.exists()


def test_workbook_missing_a_column(raw_dir, cache_dir):
    header = [name for name in HEADER if name != "Direction"]
    row = [value for name, value in zip(HEADER, record()) if name != "Direction"]
    write_workbook(raw_dir / "ttc-streetcar-delay-data-2015.xlsx", {"Mar 2015 ": [row]}, header=header)
    with pytest.raises(ValueError) as error:
        load(raw_dir, cache_dir)
    assert str(error.value).startswith("ttc-streetcar-delay-data-2015.xlsx, sheet 'Mar 2015 ': "
                                       "missing column 'Direction'; required: Report Date, Route, Time, Direction")
    assert not cache_dir.exists()


def test_corrupt_workbook(raw_dir, cache_dir):
    (raw_dir / "ttc-streetcar-delay-data-2016.xlsx").write_bytes(os.urandom(2048))
    with pytest.raises(ValueError, match=r"^ttc-streetcar-delay-data-2016\.xlsx: not a readable Excel workbook"):
        load(raw_dir, cache_dir)
    assert not cache_dir.exists()


def test_unknown_category_at_encoding_names_column_and_value():
    vocabularies = Vocabularies.from_values({"hour": range(24), "Route": [301, 501], "daym": [1], "month": [1],
                                             "year": [2014], "Direction": ["e", "w"], "day": [0]})
    frame = pd.DataFrame({"hour": [3], "Route": [999], "daym": [1], "month": [1], "year": [2014],
                          "Direction": ["e"], "day": [0]})
    with pytest.raises(ValueError, match=r"unknown Route value\(s\) 999; valid: 301, 501"):
        encode_columns(frame, vocabularies)
    frame["Route"] = [501]
    frame["Direction"] = pd.Categorical(["n"], categories=["e", "n", "w"])
    with pytest.raises(ValueError, match=r"unknown Direction value\(s\) 'n'; valid: e, w"):
        encode_columns(frame, vocabularies)
    frame["Direction"] = ["w"]
    assert encode_columns(frame, vocabularies).tolist() == [[3, 1, 0, 0, 0, 1, 0]]
    with pytest.raises(ValueError, match="missing column"):
        encode_columns(frame.drop(columns=["day"]), vocabularies)


# ------------------------------------------------------------------ command line

def test_cli_json_report(raw_dir, cache_dir, capsys):
    assert main(["--raw-dir", str(raw_dir), "--cache-dir", str(cache_dir), "--json", "--quiet"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["raw_rows"] == 7 and report["slots"] == 4032 and captured.err == ""
    assert main(["--raw-dir", str(raw_dir), "--cache-dir", str(cache_dir)]) == 0
    text = capsys.readouterr().out
    assert "raw rows       7" in text and "slots          4,032 = 3 days x 24 hours x 56" in text
    assert "cache          hit" in text


@pytest.mark.parametrize("problem", ["empty", "missing column", "corrupt"])
def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, raw_dir, cache_dir, capsys, problem):
    if problem == "empty":
        raw_dir = tmp_path / "nothing-here"
        raw_dir.mkdir()
    elif problem == "missing column":
        write_workbook(raw_dir / "ttc-streetcar-delay-data-2015.xlsx", {"Jan 2015": [record()[:-1]]},
                       header=HEADER[:-1])
    else:
        (raw_dir / "ttc-streetcar-delay-data-2016.xlsx").write_bytes(b"\x00garbage" * 100)
    assert main(["--raw-dir", str(raw_dir), "--cache-dir", str(cache_dir)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    expected = {"empty": "no raw workbooks found", "missing column": "missing column 'Vehicle'",
                "corrupt": "ttc-streetcar-delay-data-2016.xlsx: not a readable Excel workbook"}[problem]
    assert expected in lines[0]
    assert not cache_dir.exists()


def test_cli_as_a_process_has_no_traceback(tmp_path):
    (tmp_path / "empty").mkdir()
    result = subprocess.run([sys.executable, "-m", "data.prepare", "--raw-dir", str(tmp_path / "empty"),
                             "--cache-dir", str(tmp_path / "cache")], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: no raw workbooks found")
    assert not (tmp_path / "cache").exists()


def test_cli_bad_config_exits_2(tmp_path, raw_dir, cache_dir, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("general: [unclosed\n")
    assert main(["--config", str(bad), "--raw-dir", str(raw_dir), "--cache-dir", str(cache_dir)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "not valid YAML" in lines[0]
