"""Refactor delay records into one row per (date, hour, route, direction) slot.

    from data.refactor import build_grid
    grid = build_grid(kept_records)                # ~2.86 M rows for 2014-01-01 .. 2019-10-31
    grid.frame.columns   # date, hour, Route, daym, month, year, Direction, day, target
    grid.info            # delay_records, delay_records_in_grid, delay_slots, date_range, ...

The grid is every date in the range x 24 hours x the 56 (route, direction)
pairs of `ROUTE_DIRECTIONS`; rows are ordered by date, then hour, then pair (so
row = day_index * 24 * 56 + hour * 56 + pair_index), and the split is drawn
over that order.  `target` is 1 when at least one kept record with
`Min Delay` > 0 falls in the slot.  The book left-joined the delays onto the
grid, giving a slot one row per delay; here a slot is one row whatever the
number of delays in it.  Records whose (route, direction) is not one of the 56
pairs (e.g. route 501 northbound) or whose date is outside the range are
counted in `info` but mark no slot.

The date range defaults to the data's own first .. last report date: the book
ran to 2019-12-31 and so padded two months of all-zero targets.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from data.clean import VALID_DIRECTIONS, VALID_ROUTES

HOURS_PER_DAY = 24


def _pairs(spec: str) -> tuple[tuple[int, str], ...]:
    """'301 e w b · 304 e w n s b ...' -> ((301, 'e'), (301, 'w'), ...)."""
    pairs = []
    for group in spec.split("·"):
        route, *directions = group.split()
        pairs.extend((int(route), direction) for direction in directions)
    return tuple(pairs)


# The book's routedirection.csv with its typo fixed: it lists "304,e" twice and
# no "304,w"; route 304 runs east, west, north and south like 504-511.
ROUTE_DIRECTIONS: tuple[tuple[int, str], ...] = _pairs(
    "301 e w b · 304 e w n s b · 306 e w b · 310 n s b · 501 e w b · 502 e w b · 503 e w b · "
    "504 e w n s b · 505 e w n s b · 506 e w n s b · 509 e w n s b · 510 e w n s b · "
    "511 e w n s b · 512 e w b")
SLOTS_PER_DAY = HOURS_PER_DAY * len(ROUTE_DIRECTIONS)
GRID_COLUMNS: tuple[str, ...] = ("date", "hour", "Route", "daym", "month", "year", "Direction", "day", "target")


class Grid(NamedTuple):
    """The slot frame and the counts that describe how the records landed in it."""

    frame: pd.DataFrame
    info: dict[str, Any]


def as_date(value: dt.date | str | pd.Timestamp | None) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"date {value!r} is not a date; use YYYY-MM-DD") from None
    if isinstance(value, (dt.datetime, pd.Timestamp)):
        return pd.Timestamp(value).date()
    return value


def choose_date_range(records: pd.DataFrame, start_date=None, end_date=None) -> tuple[dt.date, dt.date]:
    """(first, last) date of the grid: the configured dates, else the records' own first/last."""
    start, end = as_date(start_date), as_date(end_date)
    if start is None or end is None:
        if records.empty:
            raise ValueError("no valid records to take the date range from; set data.start_date and "
                             "data.end_date, or check the raw files")
        first, last = records["Report Date"].min(), records["Report Date"].max()
        start = start if start is not None else first.date()
        end = end if end is not None else last.date()
    if start > end:
        raise ValueError(f"data.start_date {start.isoformat()} is after data.end_date {end.isoformat()}")
    return start, end


def pair_index_of(routes: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Index into ROUTE_DIRECTIONS of each (route, direction), -1 where the pair is not in the grid."""
    lookup = {pair: index for index, pair in enumerate(ROUTE_DIRECTIONS)}
    return np.fromiter((lookup.get((int(route), str(direction)), -1) for route, direction in zip(routes, directions)),
                       dtype=np.int64, count=len(routes))


def delay_slot_indices(records: pd.DataFrame, start: dt.date, n_days: int) -> tuple[np.ndarray, dict[str, int]]:
    """Grid row of every record with Min Delay > 0 that falls in the grid, plus the counts."""
    delays = records[records["Min Delay"].to_numpy(dtype=float, na_value=np.nan) > 0]
    day_index = ((delays["Report Date"].to_numpy(dtype="datetime64[D]") - np.datetime64(start, "D"))
                 .astype(np.int64))
    pair_index = pair_index_of(delays["Route"].to_numpy(), delays["Direction"].to_numpy())
    in_dates = (day_index >= 0) & (day_index < n_days)
    in_pairs = pair_index >= 0
    in_grid = in_dates & in_pairs
    slots = (day_index[in_grid] * SLOTS_PER_DAY + delays["hour"].to_numpy(dtype=np.int64)[in_grid]
             * len(ROUTE_DIRECTIONS) + pair_index[in_grid])
    counts = {
        "delay_records": int(len(delays)),
        "delay_records_in_grid": int(in_grid.sum()),
        "delay_records_outside_pairs": int((in_dates & ~in_pairs).sum()),
        "delay_records_outside_dates": int((~in_dates).sum()),
    }
    return slots, counts


def build_grid(records: pd.DataFrame, start_date=None, end_date=None) -> Grid:
    """One row per slot with the 7 raw feature values and the 0/1 target (vectorised)."""
    start, end = choose_date_range(records, start_date, end_date)
    dates = np.arange(np.datetime64(start, "D"), np.datetime64(end, "D") + 1, dtype="datetime64[D]")
    n_days = len(dates)
    n_pairs = len(ROUTE_DIRECTIONS)
    n_slots = n_days * SLOTS_PER_DAY

    # Per-day features are computed once per day and repeated, not per row.
    day_stamps = pd.DatetimeIndex(dates)
    per_day = {"daym": day_stamps.day, "month": day_stamps.month, "year": day_stamps.year,
               "day": day_stamps.day_of_week}
    pair_routes = np.array([route for route, _ in ROUTE_DIRECTIONS], dtype=np.int16)
    pair_direction_codes = np.array([VALID_DIRECTIONS.index(direction) for _, direction in ROUTE_DIRECTIONS],
                                    dtype=np.int8)
    pair_index = np.tile(np.arange(n_pairs, dtype=np.int64), n_days * HOURS_PER_DAY)

    target = np.zeros(n_slots, dtype=np.uint8)
    slots, counts = delay_slot_indices(records, start, n_days)
    target[slots] = 1  # several delays in one slot still make one row with target 1

    frame = pd.DataFrame({
        "date": np.repeat(dates.astype("datetime64[ns]"), SLOTS_PER_DAY),
        "hour": np.tile(np.repeat(np.arange(HOURS_PER_DAY, dtype=np.int16), n_pairs), n_days),
        "Route": pair_routes[pair_index],
        "daym": np.repeat(np.asarray(per_day["daym"], dtype=np.int16), SLOTS_PER_DAY),
        "month": np.repeat(np.asarray(per_day["month"], dtype=np.int16), SLOTS_PER_DAY),
        "year": np.repeat(np.asarray(per_day["year"], dtype=np.int16), SLOTS_PER_DAY),
        "Direction": pd.Categorical.from_codes(pair_direction_codes[pair_index], categories=list(VALID_DIRECTIONS)),
        "day": np.repeat(np.asarray(per_day["day"], dtype=np.int16), SLOTS_PER_DAY),
        "target": target,
    })
    delay_slots = int(target.sum())
    info = {
        "date_range": {"start": start.isoformat(), "end": end.isoformat(), "days": n_days},
        "route_direction_pairs": n_pairs,
        "slots": n_slots,
        **counts,
        "delay_slots": delay_slots,
        "delay_rate": delay_slots / n_slots if n_slots else 0.0,
    }
    return Grid(frame, info)


def check_pairs() -> None:
    """The pair table must hold 56 distinct pairs of valid routes/directions (guards edits to the literal)."""
    if len(set(ROUTE_DIRECTIONS)) != 56 or len(ROUTE_DIRECTIONS) != 56:
        raise RuntimeError(f"ROUTE_DIRECTIONS should hold 56 distinct pairs, has {len(set(ROUTE_DIRECTIONS))}")
    if {route for route, _ in ROUTE_DIRECTIONS} != set(VALID_ROUTES):
        raise RuntimeError("ROUTE_DIRECTIONS routes differ from VALID_ROUTES")


check_pairs()
