"""The six real TTC workbooks (2014-2019): counts measured once and written down here.

Needs the workbooks ($STREETCAR_RAW_DIR, default ../shared/data/ttc-streetcar-delay);
skips without them, fails without them when REQUIRE_REAL_DATA=1 (see conftest.py).
"""

import datetime as dt

import numpy as np
import pytest

from configs import load_config, override
from data.clean import VALID_ROUTES, clean_records, normalise_direction, parse_route
from data.load import read_raw_workbooks
from data.paths import find_raw_files
from data.cache import cache_paths
from data.prepare import load_prepared
from data.dataset import COLUMNS
from data.vocab import BOOK_VOCABULARIES, encode_trip

pytestmark = pytest.mark.real_data

FILE_ROWS = [11_027, 12_221, 14_021, 13_762, 15_612, 10_248]        # 2014 .. 2019
FILE_SHEETS = [12, 12, 12, 12, 12, 10]                                 # 2019 ends in October


@pytest.fixture(scope="session")
def real_raw(real_raw_dir):
    return read_raw_workbooks(find_raw_files(real_raw_dir))


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("real-cache")


@pytest.fixture(scope="session")
def real_dataset(real_raw_dir, real_cache):
    return load_prepared(None, real_raw_dir, cache_dir=real_cache, progress=False)


def test_raw_rows_and_anomaly_counts(real_raw):
    assert len(real_raw) == 76_891
    assert real_raw.groupby("source_file", sort=False).size().tolist() == FILE_ROWS
    assert real_raw.groupby("source_file", sort=False)["source_sheet"].nunique().tolist() == FILE_SHEETS
    assert {"Sept 2017 ", "Aug, 2019 "} <= set(real_raw["source_sheet"])
    routes = real_raw["Route"].map(parse_route)
    assert int((~routes.isin(VALID_ROUTES)).sum()) == 2_505                # not a VALID_ROUTES route
    assert int(real_raw["Direction"].map(normalise_direction).isna().sum()) == 399   # unreadable direction


def test_delay_gap_sheets_fill_min_delay(real_raw):
    kept, _ = clean_records(real_raw)
    for sheet, raw_rows, kept_rows, with_minutes in (("Apr 2019", 889, 868, 868), ("June 2019 ", 929, 887, 882)):
        assert real_raw.loc[real_raw["source_sheet"] == sheet, "Min Delay"].isna().all()
        sheet_rows = kept[kept["source_sheet"] == sheet]
        assert (int((real_raw["source_sheet"] == sheet).sum()), len(sheet_rows)) == (raw_rows, kept_rows)
        assert int(sheet_rows["Min Delay"].notna().sum()) == with_minutes
    # B/W stays both ways: no both-ways record is folded into westbound
    assert kept["Direction"].value_counts().to_dict() == {"w": 29_438, "e": 29_040, "n": 5_415, "s": 5_182,
                                                          "b": 4_921}


def test_prepared_report(real_dataset):
    report = real_dataset.report
    assert report["raw_rows"] == 76_891 and report["kept_rows"] == 73_996
    assert report["dropped"] == {"missing_date": 0, "date_out_of_range": 0, "missing_time": 0, "bad_route": 2_505,
                                 "bad_direction": 390}
    assert report["kept_rows"] + sum(report["dropped"].values()) == report["raw_rows"]
    assert report["bad_vehicle_rows_kept"] == 13_238
    assert report["delay_records"] == 72_774                               # Min Delay > 0
    assert report["delay_records_in_grid"] == 72_094 and report["delay_slots"] == 62_340
    assert 0.015 <= report["delay_rate"] <= 0.03
    assert report["delay_rate"] == pytest.approx(62_340 / 2_861_376)
    start, end = dt.date(2014, 1, 2), dt.date(2019, 10, 31)                 # the data's own first / last date
    days = (end - start).days + 1
    assert report["date_range"] == {"start": start.isoformat(), "end": end.isoformat(), "days": days}
    assert report["slots"] == 56 * 24 * days == real_dataset.n_rows == 2_861_376
    assert [entry["rows"] for entry in report["raw_files"]] == FILE_ROWS


def test_vocabularies_are_the_books_99_codes(real_dataset):
    assert real_dataset.vocab_sizes == {"hour": 24, "Route": 14, "daym": 31, "month": 12, "year": 6,
                                        "Direction": 5, "day": 7}
    assert sum(real_dataset.vocab_sizes.values()) == 99
    assert real_dataset.vocabularies == BOOK_VOCABULARIES and tuple(real_dataset.vocabularies.values) == COLUMNS
    values = real_dataset.vocabularies.values
    assert values["Route"] == VALID_ROUTES and values["Direction"] == ("b", "e", "n", "s", "w")
    assert values["year"] == (2014, 2015, 2016, 2017, 2018, 2019)
    assert encode_trip(real_dataset.vocabularies, route=501, direction="e", date="2019-06-21", hour=18) == \
        {"hour": 18, "Route": 4, "daym": 20, "month": 5, "year": 5, "Direction": 1, "day": 4}
    for position in range(7):
        assert real_dataset.features[:, position].max() == list(real_dataset.vocab_sizes.values())[position] - 1


def test_split_proportions_and_balanced_weight(real_dataset):
    config = load_config()
    n_rows = real_dataset.n_rows
    test_share = config.test_parms.test_proportion
    valid_share = config.test_parms.valid_proportion                        # of all rows: 60 / 20 / 20
    sizes = {name: len(rows) for name, rows in real_dataset.splits.items()}
    assert abs(sizes["test"] / n_rows - test_share) < 0.005
    assert abs(sizes["valid"] / n_rows - valid_share) < 0.005
    assert abs(sizes["train"] / n_rows - (1 - test_share - valid_share)) < 0.005
    assert sizes == {"train": 1_716_824, "valid": 572_276, "test": 572_276}
    joined = np.concatenate(list(real_dataset.splits.values()))
    assert len(joined) == n_rows and np.bincount(joined, minlength=n_rows).max() == 1   # disjoint cover
    for name, rows in real_dataset.splits.items():   # a random split keeps the delay rate (2.18 %) everywhere
        assert abs(real_dataset.target[rows].mean() - real_dataset.report["delay_rate"]) < 0.001, name
    negatives, positives = real_dataset.class_counts("train")
    assert real_dataset.report["train_class_counts"] == {"0": negatives, "1": positives}
    assert real_dataset.report["one_weight"] == pytest.approx(negatives / positives) == pytest.approx(44.9412, abs=1e-4)


def test_second_load_is_a_cache_hit_with_identical_arrays(real_dataset, real_raw_dir, real_cache):
    again = load_prepared(None, real_raw_dir, cache_dir=real_cache, progress=False)
    assert again.report["cache"]["hit"] is True
    assert np.array_equal(again.features, real_dataset.features) and np.array_equal(again.target, real_dataset.target)
    assert all(np.array_equal(again.splits[name], rows) for name, rows in real_dataset.splits.items())
    assert again.vocabularies == real_dataset.vocabularies


def test_another_seed_rebuilds(real_dataset, real_raw_dir, real_cache):
    reseeded = load_prepared(override(load_config(), "general.seed", 43), real_raw_dir, cache_dir=real_cache,
                             progress=False)
    assert reseeded.report["cache"]["hit"] is False
    assert np.array_equal(reseeded.target, real_dataset.target)
    assert not np.array_equal(reseeded.splits["test"], real_dataset.splits["test"])


def test_corrupted_cache_is_rebuilt(real_dataset, real_raw_dir, real_cache):
    parquet, _ = cache_paths(real_cache, real_dataset.report["cache"]["key"])
    data = bytearray(parquet.read_bytes())
    data[100] ^= 0x55
    parquet.write_bytes(bytes(data))
    rebuilt = load_prepared(None, real_raw_dir, cache_dir=real_cache, progress=False)
    assert rebuilt.report["cache"]["hit"] is False
    assert np.array_equal(rebuilt.features, real_dataset.features)
    assert all(np.array_equal(rebuilt.splits[name], rows) for name, rows in real_dataset.splits.items())
