"""data/clean.py's rules on hand-made rows: every anomaly of the raw workbooks, counted drops.

The anomalies' real counts are asserted in data/tests/test_real_data.py.
"""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from data.clean import (VALID_ROUTES, clean_records, is_valid_vehicle, normalise_direction, parse_hour,
                        parse_route)
from data.load import read_raw_workbooks
from data.tests.helpers import record, write_workbook


@pytest.mark.parametrize("text, expected", [
    # the common forms
    ("W/B", "w"), ("E/B", "e"), ("N/B", "n"), ("S/B", "s"),
    # both ways: the book's deletion of every 'b' turned these into 'w'; fixed here
    ("B/W", "b"), ("BW", "b"), ("bw", "b"), ("Bw", "b"), ("b/w", "b"),
    # lower case, no slash, spelled out, single letters
    ("wb", "w"), ("eb", "e"), ("EB", "e"), ("WB", "w"), ("nb", "n"), ("SB", "s"), ("e/b", "e"), ("w/B", "w"),
    ("Eastbound", "e"), ("westbound", "w"), ("northbound", "n"), ("southbound", "s"),
    ("E", "e"), ("w", "w"), ("s", "s"), ("N", "n"), ("bs", "s"),
    # stray punctuation around a real direction
    ("W`", "w"), ("eb``", "e"), ("w.b", "w"), ("W\\B", "w"), ("5                       W/B", "w"), (" E/B ", "e"),
    # names no single direction
    ("EW", None), ("ew", None), ("E/W", None), ("e/w", None), ("26", None), ("-", None), ("", None),
    ("b#", None), ("N/S", None), ("EB/WB", None), ("E/B W/B", None), ("NBN", None), ("Service adjusted", None),
    ("See also", None), (None, None), (float("nan"), None), (5.0, None),
])
def test_normalise_direction(text, expected):
    assert normalise_direction(text) == expected


@pytest.mark.parametrize("value, expected", [
    (501, 501.0), (501.0, 501.0), ("504", 504.0), (" 510 ", 510.0), (501.5, None), ("abc", None), ("", None),
    (None, None),
])
def test_parse_route(value, expected):
    result = parse_route(value)
    assert (np.isnan(result) if expected is None else result == expected)


@pytest.mark.parametrize("value, expected", [
    (dt.time(8, 15), 8), (dt.time(0, 0), 0), (dt.time(23, 59), 23),
    (dt.datetime(2016, 3, 10, 0, 0), 0),          # the four midnight datetimes of 2016-2019
    (dt.date(2016, 3, 10), 0), (dt.datetime(2019, 8, 4, 14, 5), 14),
    ("14:35", 14), ("2:05 PM", 14), ("12:10 AM", 0), ("07:00:00", 7),
    (0.5, 12), (10 / 24, 10),                    # Excel fractions of a day
    ("", None), ("noon", None), (None, None), (-0.5, None),
])
def test_parse_hour(value, expected):
    assert parse_hour(value) == expected


def test_vehicle_ranges():
    vehicles = [4000, 4005, 4006, 4010, 4199, 4251, 4252, 4400, 4401, 4402, 4507, 4508, 4900, 1000, 1149, 1150,
                2766, 9026, 9027, np.nan, 4100.5]
    expected = [True, True, False, True, True, True, False, True, False, True, True, False, True, True, True,
                False, False, True, False, False, False]
    assert is_valid_vehicle(pd.Series(vehicles, dtype=float)).tolist() == expected


def raw_frame(rows: list[list]) -> pd.DataFrame:
    columns = ["Report Date", "Route", "Time", "Day", "Location", "Incident", "Min Delay", "Min Gap", "Direction",
               "Vehicle"]
    frame = pd.DataFrame([dict(zip(columns, row)) for row in rows], dtype=object)
    frame["Delay"] = None
    frame["Gap"] = None
    return frame


HAND_MADE = [
    record("2014-01-02", 501, "08:15", "E/B", 10, vehicle=4100),          # kept e
    record("2014-01-02", 501.0, "08:20", "B/W", 0, vehicle=""),           # kept b, bad vehicle (empty)
    record("2014-01-02", "504", "09:00", "wb", 5, vehicle=9999),          # kept w, bad vehicle
    record("2014-01-02", 705, "10:00", "E/B", 12),                        # bad_route
    record("2014-01-02", 805, "10:00", "W/B", 12),                        # bad_route
    record("2014-01-02", 1, "10:00", "W/B", 12),                          # bad_route
    record("2014-01-02", 56, "10:00", "W/B", 12),                         # bad_route
    record("2014-01-02", 510, "11:00", "EW", 7),                          # bad_direction
    record("2014-01-02", 510, "11:00", "26", 7),                          # bad_direction
    record("2014-01-02", 510, "11:00", "-", 7),                           # bad_direction
    record("2014-01-02", 705, "11:00", "-", 7),                           # bad_route (route is checked first)
    record("2014-01-03", 512, "", "Eastbound", 3),                        # missing_time
    record("2014-01-03", 301, dt.datetime(2014, 1, 3), "bw", 3, vehicle=4200),  # kept b, hour 0
]


def test_counts_add_up_and_follow_the_rule_order():
    raw = raw_frame(HAND_MADE)
    raw.loc[len(raw) - 1, "Report Date"] = dt.date(2014, 1, 3)            # bare date objects are fine too
    extra = raw.iloc[[0]].copy()
    extra["Report Date"] = ""                                             # missing_date
    raw = pd.concat([raw, extra], ignore_index=True)
    kept, dropped = clean_records(raw)
    assert dropped == {"missing_date": 1, "date_out_of_range": 0, "missing_time": 1, "bad_route": 5, "bad_direction": 3}
    assert list(dropped) == ["missing_date", "date_out_of_range", "missing_time", "bad_route", "bad_direction"]
    assert len(kept) == 4 and len(kept) + sum(dropped.values()) == len(raw)
    assert kept["Direction"].tolist() == ["e", "b", "w", "b"]
    assert kept["Route"].tolist() == [501, 501, 504, 301] and kept["Route"].dtype == np.int64
    assert kept["hour"].tolist() == [8, 8, 9, 0]
    assert kept["Report Date"].dt.strftime("%Y-%m-%d").tolist() == ["2014-01-02"] * 3 + ["2014-01-03"]
    assert kept["vehicle_valid"].tolist() == [True, False, False, True]


def test_drop_bad_vehicles_adds_a_counted_reason():
    raw = raw_frame(HAND_MADE)
    kept, dropped = clean_records(raw, drop_bad_vehicles=True)
    assert dropped == {"missing_date": 0, "date_out_of_range": 0, "missing_time": 1, "bad_route": 5, "bad_direction": 3,
                       "bad_vehicle": 2}
    assert len(kept) == 2 and len(kept) + sum(dropped.values()) == len(raw)
    assert kept["vehicle_valid"].all()


def test_every_valid_route_is_kept():
    raw = raw_frame([record("2014-01-02", route, "08:00", "E/B", 1) for route in VALID_ROUTES])
    kept, dropped = clean_records(raw)
    assert kept["Route"].tolist() == list(VALID_ROUTES) and sum(dropped.values()) == 0


def test_min_delay_and_min_gap_come_from_delay_and_gap(tmp_path):
    header = ["Report Date", "Route", "Time", "Day", "Location", "Incident", "Delay", "Gap", "Direction", "Vehicle"]
    june = write_workbook(tmp_path / "june.xlsx", {"June 2019 ": [record("2019-06-03", 501, "07:00", "E/B", 11, 22),
                                                                   record("2019-06-03", 501, "07:30", "E/B", None, 5)]},
                          header=header)
    normal = write_workbook(tmp_path / "may.xlsx", {"May 2019 ": [record("2019-05-03", 501, "07:00", "E/B", 3, 6)]})
    raw = pd.concat([read_raw_workbooks([normal]), read_raw_workbooks([june])], ignore_index=True)
    kept, _ = clean_records(raw)
    assert kept["Min Delay"].tolist()[:2] == [3.0, 11.0] and np.isnan(kept["Min Delay"].iloc[2])
    assert kept["Min Gap"].tolist() == [6.0, 22.0, 5.0]


def test_min_delay_wins_over_delay_when_both_present():
    raw = raw_frame([record("2014-01-02", 501, "08:00", "E/B", 4)])
    raw.loc[0, "Delay"] = 99
    assert clean_records(raw).records["Min Delay"].tolist() == [4.0]


def test_republished_single_sheet_float_routes(tmp_path):
    header = ["Date", "Line", "Time", "Day", "Location", "Incident", "Min Delay", "Min Gap", "Bound", "Vehicle"]
    rows = [record("2014-03-01", 501.0, "06:10", "E"), record("2014-03-01", 705.0, "06:10", "W"),
            record("2014-07-01", 510.0, "22:45", "N")]
    raw = read_raw_workbooks([write_workbook(tmp_path / "ttc-streetcar-delay-data-2014.xlsx", {"2014": rows},
                                       header=header)])
    kept, dropped = clean_records(raw)
    assert kept["Route"].tolist() == [501, 510] and kept["Direction"].tolist() == ["e", "n"]
    assert kept["hour"].tolist() == [6, 22] and dropped["bad_route"] == 1


def test_records_without_required_columns_are_rejected():
    with pytest.raises(ValueError, match="no 'Direction' column"):
        clean_records(pd.DataFrame({"Report Date": [], "Time": [], "Route": []}))
