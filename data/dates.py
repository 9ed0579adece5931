"""Report dates: one text-date format per sheet, and the dates no real record has.

    from data.dates import parse_report_dates, find_date_outliers
    dates = parse_report_dates(raw)                        # datetime64, NaT where not a date
    outliers = find_date_outliers(dates, dt.date.today())  # bool mask: data.clean drops them as date_out_of_range

The workbooks store dates as Excel dates, which the reader returns as
datetimes; text dates are rare but occur in re-published files.  Two rules
keep them from changing the data silently:

* a slash date is read with ONE format per sheet, the one of DD/MM/YYYY and
  MM/DD/YYYY that reads every slash date of the sheet; if both do with
  different results, or neither does, it is an error naming file, sheet and
  row (`choose_day_month_format`);
* a date before EARLIEST_DATE, after today, or in a year that holds under
  MINIMUM_YEAR_SHARE of the dated rows is out of range: data.clean drops the
  row, counts it as `date_out_of_range` and lists the first few by file,
  sheet and row (`describe_rows`).
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd

# The TTC dataset starts in 2014; a date before 2000 is a typing slip or Excel's day 0 (1899-12-30 / 1900-01-01).
EARLIEST_DATE = dt.date(2000, 1, 1)
# A real year holds 13-20 % of the records; a year with under 0.1 % of them is a stray cell, not data
# (a new year's first three days, ~150 of 77 k records, still count as a year).
MINIMUM_YEAR_SHARE = 0.001
OUTLIER_EXAMPLES = 5
# Year first: one reading only.
_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y-%m-%d %H:%M:%S")
# Day and month in either order: a column must tell which (see choose_day_month_format).
DAY_MONTH_FORMATS = {"DD/MM/YYYY": "%d/%m/%Y", "MM/DD/YYYY": "%m/%d/%Y"}
_SLASH_DATE = re.compile(r"^\d{1,2}/\d{1,2}/\d{4}$")


def map_distinct(values: pd.Series, parse, dtype) -> pd.Series:
    """`parse` applied to each distinct cell value once, then looked up per row.

    The 77 k cells hold only ~100 directions, ~2,000 dates and ~1,500 times,
    so parsing the distinct values is 20-700x less work than parsing every cell.
    """
    table = {value: parse(value) for value in pd.unique(values)}
    return pd.Series([table.get(value) if value == value else parse(value) for value in values],
                     index=values.index, dtype=dtype)


def strptime_or_none(text: str, date_format: str) -> dt.datetime | None:
    try:
        parsed = dt.datetime.strptime(text, date_format)
    except ValueError:
        return None
    return dt.datetime(parsed.year, parsed.month, parsed.day)


def parse_date(value: object, day_month_format: str | None = None) -> dt.datetime | None:
    """A `Report Date` cell -> midnight datetime, or None if it is not a date.

    A slash date is read with `day_month_format` (one of DAY_MONTH_FORMATS,
    chosen for the whole column); without one, a value that reads as two
    different dates ('01/02/2019': 1 February or 2 January) is a ValueError.
    """
    if isinstance(value, np.datetime64) and not np.isnat(value):  # a datetime64 column's distinct values
        value = pd.Timestamp(value)
    if isinstance(value, (dt.datetime, dt.date)):  # datetime includes pd.Timestamp
        return dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    for date_format in _DATE_FORMATS:
        if (parsed := strptime_or_none(text, date_format)) is not None:
            return parsed
    if day_month_format is not None:
        return strptime_or_none(text, day_month_format)
    readings = {strptime_or_none(text, date_format) for date_format in DAY_MONTH_FORMATS.values()} - {None}
    if len(readings) > 1:
        raise ValueError(f"date {text!r} is ambiguous: it reads as {' and as '.join(sorted(map(str, readings)))}")
    return readings.pop() if readings else None


def choose_day_month_format(values: pd.Series, rows: pd.Series | None, where: str) -> str | None:
    """The one DAY_MONTH_FORMATS entry that reads every slash date of `values`; None if there are none.

    The book let pandas guess per value, which reads '01/02/2019' day-first,
    so a MM/DD/YYYY column swaps day and month whenever the day is 12 or less.
    Here the column decides: a format is chosen only if it reads every slash
    date (those that neither reads are plain missing dates), and it is a
    ValueError naming `where` and the row when both formats read them all
    with different results, or when neither does.  `rows` holds the Excel
    row numbers (source_row) of `values`, when known.
    """
    texts = values[values.map(lambda value: isinstance(value, str) and bool(_SLASH_DATE.match(value.strip())))]
    texts = texts.map(str.strip)
    readings = {name: texts.map(lambda text, date_format=date_format: strptime_or_none(text, date_format))
                for name, date_format in DAY_MONTH_FORMATS.items()}
    day_first, month_first = readings.values()
    readable = day_first.notna() | month_first.notna()
    if not readable.any():
        return None
    fits = [name for name, reading in readings.items() if reading[readable].notna().all()]
    if not fits:
        only_day_first, only_month_first = (month_first.isna() & readable).idxmax(), (day_first.isna() & readable).idxmax()
        raise ValueError(f"{where}: 'Report Date' mixes DD/MM/YYYY ({texts[only_day_first]!r}"
                         f"{row_of(rows, only_day_first)}) and MM/DD/YYYY ({texts[only_month_first]!r}"
                         f"{row_of(rows, only_month_first)}) text dates; make the column one format")
    differs = readable & (day_first != month_first)
    if len(fits) == 2 and differs.any():
        label = differs.idxmax()
        raise ValueError(f"{where}{row_of(rows, label)}: 'Report Date' {texts[label]!r} reads as "
                         f"{day_first[label]:%Y-%m-%d} (DD/MM/YYYY) and as {month_first[label]:%Y-%m-%d} "
                         f"(MM/DD/YYYY), and no text date of the sheet has a day above 12 to tell which; "
                         f"write the dates as YYYY-MM-DD")
    return DAY_MONTH_FORMATS[fits[0]]


def row_of(rows: pd.Series | None, label) -> str:
    return f" row {rows[label]}" if rows is not None else ""


def parse_report_dates(raw: pd.DataFrame) -> pd.Series:
    """`Report Date` as datetime64 (NaT where not a date), text dates read with one format per sheet."""
    has_source = all(column in raw.columns for column in ("source_file", "source_sheet", "source_row"))
    groups = (raw.groupby(["source_file", "source_sheet"], sort=False, dropna=False).groups if has_source
              else {None: raw.index})
    dates = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]")
    for key, index in groups.items():
        values = raw.loc[index, "Report Date"]
        where = f"{key[0]}, sheet {key[1]!r}" if has_source else "the records"
        day_month_format = choose_day_month_format(values, raw.loc[index, "source_row"] if has_source else None,
                                                   where)
        dates.loc[index] = map_distinct(values, lambda value: parse_date(value, day_month_format), "datetime64[ns]")
    return dates


def find_date_outliers(dates: pd.Series, today: dt.date) -> np.ndarray:
    """Boolean mask: a date before EARLIEST_DATE, after `today`, or in a year with under MINIMUM_YEAR_SHARE of the dates."""
    dated = dates.notna()
    outside = dated & ((dates < pd.Timestamp(EARLIEST_DATE)) | (dates > pd.Timestamp(today)))
    years = dates.dt.year
    share = years.map(years[dated].value_counts(normalize=True))
    return (outside | (dated & (share < MINIMUM_YEAR_SHARE))).to_numpy()


def describe_rows(raw: pd.DataFrame, mask: np.ndarray, limit: int = OUTLIER_EXAMPLES) -> list[str]:
    """'file / sheet / row N: value' for the first `limit` rows of `mask` (positions when the source is unknown)."""
    lines = []
    for position in np.flatnonzero(mask)[:limit]:
        row = raw.iloc[position]
        value = row["Report Date"]
        value = value.date().isoformat() if isinstance(value, dt.datetime) else str(value)
        if "source_file" in raw.columns:
            lines.append(f"{row['source_file']} / {str(row['source_sheet']).strip()} / row {row['source_row']}: {value}")
        else:
            lines.append(f"record {position}: {value}")
    return lines
