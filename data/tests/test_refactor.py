"""data/refactor.py's slot grid on a tiny hand-made set: one row per slot, the target rule, the 56 pairs."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from data.refactor import GRID_COLUMNS, ROUTE_DIRECTIONS, SLOTS_PER_DAY, build_grid


def records(rows):
    """Kept-record frame (as clean_records returns) from (date, hour, route, direction, min_delay)."""
    return pd.DataFrame({
        "Report Date": pd.to_datetime([row[0] for row in rows]),
        "hour": np.array([row[1] for row in rows], dtype=np.int64),
        "Route": np.array([row[2] for row in rows], dtype=np.int64),
        "Direction": [row[3] for row in rows],
        "Min Delay": np.array([row[4] for row in rows], dtype=float),
    })


TINY = records([
    ("2014-01-02", 8, 501, "e", 10.0),    # two delays in one slot ...
    ("2014-01-02", 8, 501, "e", 5.0),     # ... -> one row, target 1
    ("2014-01-02", 9, 501, "w", 0.0),     # Min Delay 0 -> target 0
    ("2014-01-02", 10, 501, "w", np.nan),  # no minutes -> target 0
    ("2014-01-02", 11, 501, "n", 7.0),    # 501 has no northbound pair -> in no slot
    ("2014-01-03", 23, 512, "b", 5.0),
])


def row_of(day_index, hour, route, direction):
    return day_index * SLOTS_PER_DAY + hour * len(ROUTE_DIRECTIONS) + ROUTE_DIRECTIONS.index((route, direction))


def slot(frame, date, hour, route, direction):
    mask = ((frame["date"] == pd.Timestamp(date)) & (frame["hour"] == hour) & (frame["Route"] == route)
            & (frame["Direction"] == direction))
    return frame[mask]


def test_the_56_pairs_with_the_304_typo_fixed():
    assert len(ROUTE_DIRECTIONS) == 56 and len(set(ROUTE_DIRECTIONS)) == 56
    assert [d for r, d in ROUTE_DIRECTIONS if r == 304] == ["e", "w", "n", "s", "b"]
    per_route = {route: "".join(d for r, d in ROUTE_DIRECTIONS if r == route) for route, _ in ROUTE_DIRECTIONS}
    assert per_route == {301: "ewb", 304: "ewnsb", 306: "ewb", 310: "nsb", 501: "ewb", 502: "ewb", 503: "ewb",
                         504: "ewnsb", 505: "ewnsb", 506: "ewnsb", 509: "ewnsb", 510: "ewnsb", 511: "ewnsb",
                         512: "ewb"}


def test_one_row_per_slot_and_the_target_rule():
    grid = build_grid(TINY)
    frame = grid.frame
    assert list(frame.columns) == list(GRID_COLUMNS)
    assert len(frame) == 2 * 24 * 56 == 2688                      # 2014-01-02 .. 2014-01-03
    assert not frame.duplicated(["date", "hour", "Route", "Direction"]).any()
    assert int(frame["target"].sum()) == 2
    assert slot(frame, "2014-01-02", 8, 501, "e")["target"].tolist() == [1]
    assert slot(frame, "2014-01-02", 9, 501, "w")["target"].tolist() == [0]
    assert slot(frame, "2014-01-02", 10, 501, "w")["target"].tolist() == [0]
    assert slot(frame, "2014-01-03", 23, 512, "b")["target"].tolist() == [1]
    assert slot(frame, "2014-01-02", 11, 501, "n").empty
    assert grid.info == {
        "date_range": {"start": "2014-01-02", "end": "2014-01-03", "days": 2},
        "route_direction_pairs": 56, "slots": 2688,
        "delay_records": 4, "delay_records_in_grid": 3, "delay_records_outside_pairs": 1,
        "delay_records_outside_dates": 0, "delay_slots": 2, "delay_rate": 2 / 2688,
    }


def test_row_order_is_date_hour_pair():
    frame = build_grid(TINY).frame
    row = frame.iloc[row_of(1, 23, 512, "b")]
    assert (row["date"], row["hour"], row["Route"], row["Direction"], row["target"]) == \
        (pd.Timestamp("2014-01-03"), 23, 512, "b", 1)
    assert frame["Route"].iloc[:3].tolist() == [301, 301, 301]
    assert frame["Direction"].iloc[:5].tolist() == ["e", "w", "b", "e", "w"]


def test_calendar_columns():
    frame = build_grid(TINY).frame
    first, last = frame.iloc[0], frame.iloc[-1]
    # 2014-01-02 was a Thursday (Monday = 0 -> 3), 2014-01-03 a Friday
    assert (first["daym"], first["month"], first["year"], first["day"]) == (2, 1, 2014, 3)
    assert (last["daym"], last["month"], last["year"], last["day"], last["hour"]) == (3, 1, 2014, 4, 23)


def test_configured_range_pads_and_clips():
    padded = build_grid(TINY, dt.date(2014, 1, 1), "2014-01-05")
    assert padded.info["date_range"] == {"start": "2014-01-01", "end": "2014-01-05", "days": 5}
    assert len(padded.frame) == 5 * SLOTS_PER_DAY and int(padded.frame["target"].sum()) == 2
    clipped = build_grid(TINY, None, "2014-01-02")
    assert clipped.info["delay_records_outside_dates"] == 1 and clipped.info["delay_slots"] == 1


def test_bad_ranges_are_errors():
    with pytest.raises(ValueError, match="after data.end_date"):
        build_grid(TINY, "2014-01-05", "2014-01-01")
    with pytest.raises(ValueError, match="not a date"):
        build_grid(TINY, "5 Jan 2014", None)
    with pytest.raises(ValueError, match="no valid records"):
        build_grid(TINY.iloc[:0])
