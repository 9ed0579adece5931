"""Cleaning rules: typed columns, valid routes and directions, counted drops.

    from data.clean import clean_records
    kept, dropped = clean_records(raw, drop_bad_vehicles=False)
    len(kept) + sum(dropped.values()) == len(raw)       # always: every row is kept or counted once

Rules, in the order they are checked (a row is counted under the first rule it
fails, so the counts add up):

1. missing_date   `Report Date` is empty or not a date.  Text dates are read
                  with one format per sheet (data.dates.choose_day_month_format):
                  DD/MM/YYYY or MM/DD/YYYY, whichever reads every slash date
                  of the sheet; a sheet where both or neither do is an error
                  naming the file, sheet and row, never a silent guess.
2. date_out_of_range  the date is before EARLIEST_DATE, after today, or in a
                  year that holds under MINIMUM_YEAR_SHARE of the dated rows
                  (one 1900-01-01 cell would otherwise stretch the grid over
                  120 years: 58.8 M slots instead of 2.86 M).  The first few
                  such rows are listed by file, sheet and row in the result.
3. missing_time   `Time` is empty or not a time of day.  A cell holding a bare
                  date or a midnight datetime (four such cells in 2016-2019)
                  is read as 00:00, which is what Excel shows for it.
4. bad_route      `Route` is not one of the 14 streetcar routes (705, 805, 1,
                  56, ... : 2,505 rows).  Floats (the re-published files) and
                  numeric text are accepted: 501.0 and "501" are route 501.
5. bad_direction  `Direction` normalises to none of e, w, n, s, b (399 rows;
                  see `normalise_direction`).
6. bad_vehicle    only when `drop_bad_vehicles` is true: `Vehicle` is missing or
                  outside the fleet ranges.  Off by default (configs/streetcar.yaml
                  explains why: the vehicle is not a feature and the delay
                  happened); the count of such rows is reported either way.

`Min Delay` / `Min Gap` are filled from `Delay` / `Gap` where the former are
empty (the Apr and June 2019 sheets).  A row with no delay minutes at all is
kept: it is a valid record of an incident, it just does not mark its slot as
delayed.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from data.dates import describe_rows, find_date_outliers, map_distinct, parse_report_dates

VALID_ROUTES: tuple[int, ...] = (301, 304, 306, 310, 501, 502, 503, 504, 505, 506, 509, 510, 511, 512)
VALID_DIRECTIONS: tuple[str, ...] = ("b", "e", "n", "s", "w")
# Inclusive (first, last) number ranges of the TTC fleet, as the book checks them: streetcars, then buses.
VALID_VEHICLE_RANGES: tuple[tuple[int, int], ...] = (
    (4000, 4005), (4010, 4199), (4200, 4251), (4900, 4900), (4400, 4400), (4402, 4507),
    (1000, 1149), (2000, 2110), (2150, 2155), (2240, 2485), (2600, 2619), (2700, 2765),
    (2767, 2858), (7000, 7134), (7400, 7449), (7500, 7881), (8000, 8099), (9000, 9026),
)
DROP_REASONS: tuple[str, ...] = ("missing_date", "date_out_of_range", "missing_time", "bad_route", "bad_direction",
                                 "bad_vehicle")
# Spelled-out directions, compared after lower-casing and keeping letters only.
_DIRECTION_WORDS = {"eastbound": "e", "westbound": "w", "northbound": "n", "southbound": "s",
                    "bothways": "b", "both": "b"}
_TIME_FORMATS = ("%H:%M:%S", "%H:%M", "%I:%M:%S %p", "%I:%M %p", "%I:%M:%S%p", "%I:%M%p")
@dataclass(frozen=True)
class CleanResult:
    """The kept rows, reason -> count of the dropped ones, and where the out-of-range dates were.

    Unpacks as `kept, dropped`.
    """

    records: pd.DataFrame
    dropped: dict[str, int]
    date_outliers: list[str] = field(default_factory=list)  # "file / sheet / row N: 1900-01-01", first few

    def __iter__(self):
        return iter((self.records, self.dropped))


def normalise_direction(value: object) -> str | None:
    """Free-text direction -> 'e', 'w', 'n', 's' or 'b' (both ways); None if it names none.

    The book lower-cases, strips '/', maps 'eastbound' -> 'e' etc. and then
    deletes every letter 'b' (the "bound" of "E/B").  Deleting the 'b' also
    turned "B/W" (both ways) into "w", folding 5,000 both-ways records into
    westbound: here "bw" is recognised as both ways *before* the b's go.
    Everything that is not a letter is dropped first, so "W`", "w.b" and
    "5   W/B" still read as westbound.

        E/B, eb, EB, Eastbound -> e      B/W, BW, bw, b/w -> b
        EW, E/W, "26", "-", "" -> None   (no single direction)
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    letters = re.sub(r"[^a-z]", "", str(value).lower())
    if letters in _DIRECTION_WORDS:
        return _DIRECTION_WORDS[letters]
    if letters == "bw":
        return "b"
    # What is left of a lone "b" (e.g. "b#") is empty below: no direction.
    letters = letters.replace("b", "")
    return letters if letters in ("e", "w", "n", "s") else None


def parse_number(value: object) -> float:
    """A numeric cell (int, float or numeric text) -> float; anything else -> NaN."""
    if value is None or isinstance(value, bool):
        return np.nan
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return np.nan
    return np.nan


def parse_route(value: object) -> float:
    """Route number as float (NaN if not a whole number): 501, 501.0 and '501' all give 501.0."""
    number = parse_number(value)
    return number if np.isfinite(number) and number == int(number) else np.nan


def parse_hour(value: object) -> int | None:
    """A `Time` cell -> hour 0-23, or None if it is not a time of day.

    Excel stores a time as a fraction of a day; readers return a time, or a
    date / datetime when the cell also (or only) holds a date, in which case
    the time part (midnight for a bare date) is what the sheet shows.
    """
    if isinstance(value, dt.time):
        return value.hour
    if isinstance(value, dt.datetime):  # includes pd.Timestamp
        return value.hour
    if isinstance(value, dt.date):
        return 0
    if isinstance(value, (float, int, np.floating, np.integer)) and not isinstance(value, bool):
        number = float(value)
        if not np.isfinite(number) or number < 0:
            return None
        # Excel's fraction of a day; the epsilon keeps a float like 0.41666666 (10:00) from reading as 09.
        return int((number % 1.0) * 24 + 1e-6) % 24
    if isinstance(value, str) and value.strip():
        text = value.strip().upper()
        for time_format in _TIME_FORMATS:
            try:
                return dt.datetime.strptime(text, time_format).hour
            except ValueError:
                continue
    return None


def is_valid_vehicle(vehicles: pd.Series | np.ndarray) -> np.ndarray:
    """Boolean array: vehicle number inside one of VALID_VEHICLE_RANGES (NaN -> False)."""
    numbers = np.asarray(pd.to_numeric(pd.Series(vehicles), errors="coerce"), dtype=float)
    valid = np.zeros(numbers.shape, dtype=bool)
    whole = np.isfinite(numbers) & (numbers == np.round(numbers))
    for first, last in VALID_VEHICLE_RANGES:
        valid |= whole & (numbers >= first) & (numbers <= last)
    return valid


def numeric_column(frame: pd.DataFrame, column: str) -> pd.Series:
    """Column as float (NaN for empty/non-numeric cells); all-NaN if the column is absent."""
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return map_distinct(frame[column], parse_number, float)


def coalesce_minutes(frame: pd.DataFrame, primary: str, fallback: str) -> pd.Series:
    """`primary` where it has a number, else `fallback` (Min Delay <- Delay, Min Gap <- Gap)."""
    return numeric_column(frame, primary).fillna(numeric_column(frame, fallback))


def clean_records(raw: pd.DataFrame, *, drop_bad_vehicles: bool = False, today: dt.date | None = None) -> CleanResult:
    """Apply the cleaning rules to the frame from data.load; return the kept rows and the drop counts.

    Kept rows have typed columns: `Report Date` (datetime64, midnight),
    `hour` (int64 0-23), `Route` (int64), `Direction` (one of VALID_DIRECTIONS),
    `Min Delay`, `Min Gap`, `Vehicle` (float, NaN if empty), `vehicle_valid`
    (bool), plus Day, Location, Incident and the source_* columns when present.
    `dropped` is an ordered dict over DROP_REASONS (bad_vehicle only when
    `drop_bad_vehicles`), zero counts included, so the keys never vary.
    `today` (default: the real today) bounds the dates; tests pass a fixed one.
    """
    for column in ("Report Date", "Time", "Route", "Direction"):
        if column not in raw.columns:
            raise ValueError(f"records have no {column!r} column; columns: {', '.join(map(str, raw.columns))}")
    dates = parse_report_dates(raw)
    date_outliers = find_date_outliers(dates, today or dt.date.today())
    hours = map_distinct(raw["Time"], parse_hour, "float64")
    routes = map_distinct(raw["Route"], parse_route, "float64")
    directions = map_distinct(raw["Direction"], normalise_direction, object)
    vehicles = numeric_column(raw, "Vehicle")
    vehicle_valid = is_valid_vehicle(vehicles)

    failures = {
        "missing_date": dates.isna().to_numpy(),
        "date_out_of_range": date_outliers,
        "missing_time": hours.isna().to_numpy(),
        "bad_route": ~routes.isin(VALID_ROUTES).to_numpy(),
        "bad_direction": directions.isna().to_numpy(),
    }
    if drop_bad_vehicles:
        failures["bad_vehicle"] = ~vehicle_valid
    keep = np.ones(len(raw), dtype=bool)
    dropped: dict[str, int] = {}
    for reason, failed in failures.items():
        # Only rows still kept are charged to this reason: each row counts once.
        charged = keep & failed
        dropped[reason] = int(charged.sum())
        keep &= ~failed

    kept = pd.DataFrame({
        "Report Date": dates[keep],
        "hour": hours[keep].astype("int64"),
        "Route": routes[keep].astype("int64"),
        "Direction": directions[keep].astype(str),
        "Min Delay": coalesce_minutes(raw, "Min Delay", "Delay")[keep],
        "Min Gap": coalesce_minutes(raw, "Min Gap", "Gap")[keep],
        "Vehicle": vehicles[keep],
        "vehicle_valid": vehicle_valid[keep],
    })
    for column in ("Day", "Location", "Incident", "source_file", "source_sheet", "source_row"):
        if column in raw.columns:
            kept[column] = raw[column][keep]
    return CleanResult(kept.reset_index(drop=True), dropped, describe_rows(raw, date_outliers))
