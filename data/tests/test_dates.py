"""Dates that would change the data silently: ambiguous text dates, and dates no real record has.

    python -m pytest data/tests/test_dates.py -q
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from data.clean import clean_records
from data.dates import choose_day_month_format, parse_date
from data.load import read_raw_workbooks
from data.prepare import Progress, build_arrays
from data.tests.helpers import record, write_workbook

TODAY = dt.date(2020, 6, 30)


def raw_rows(dates: list, file_name: str = "ttc-2019.xlsx", sheet: str = "Jan 2019") -> pd.DataFrame:
    """One valid record per date (route 501 eastbound, 08:15), with its source file, sheet and row."""
    rows = [record("2019-01-02") for _ in dates]
    frame = pd.DataFrame(rows, columns=["Report Date", "Route", "Time", "Day", "Location", "Incident", "Min Delay",
                                        "Min Gap", "Direction", "Vehicle"])
    frame["Report Date"] = pd.Series(dates, dtype=object)     # cells as the workbook reader returns them
    frame["source_file"], frame["source_sheet"] = file_name, sheet
    frame["source_row"] = range(2, len(frame) + 2)
    return frame


# -- finding 4: one text-date format per column --------------------------------------------

def test_an_ambiguous_text_date_alone_is_refused_not_read_day_first():
    with pytest.raises(ValueError, match=r"'01/02/2019' is ambiguous: it reads as 2019-01-02 00:00:00 and as "
                                         r"2019-02-01 00:00:00"):
        parse_date("01/02/2019")
    assert parse_date("13/02/2019") == dt.datetime(2019, 2, 13)        # only one reading: no doubt
    assert parse_date("2019-02-01") == dt.datetime(2019, 2, 1)


def test_a_month_first_column_is_read_month_first_throughout():
    # Before the fix each value was guessed day-first: 01/02 became 1 February.
    raw = raw_rows(["01/02/2019", "01/13/2019", "12/31/2019"])
    kept, dropped = clean_records(raw, today=TODAY)
    assert kept["Report Date"].dt.strftime("%Y-%m-%d").tolist() == ["2019-01-02", "2019-01-13", "2019-12-31"]
    assert sum(dropped.values()) == 0


def test_a_day_first_column_is_read_day_first_throughout():
    raw = raw_rows(["01/02/2019", "13/01/2019"])
    kept, _ = clean_records(raw, today=TODAY)
    assert kept["Report Date"].dt.strftime("%Y-%m-%d").tolist() == ["2019-02-01", "2019-01-13"]


def test_a_column_that_cannot_tell_day_from_month_is_refused_naming_file_sheet_and_row():
    raw = raw_rows(["03/03/2019", "01/02/2019", "02/03/2019"])
    with pytest.raises(ValueError) as error:
        clean_records(raw, today=TODAY)
    assert str(error.value) == ("ttc-2019.xlsx, sheet 'Jan 2019' row 3: 'Report Date' '01/02/2019' reads as "
                                "2019-02-01 (DD/MM/YYYY) and as 2019-01-02 (MM/DD/YYYY), and no text date of the "
                                "sheet has a day above 12 to tell which; write the dates as YYYY-MM-DD")


def test_a_column_mixing_both_orders_is_refused():
    raw = raw_rows(["13/01/2019", "01/13/2019"])
    with pytest.raises(ValueError) as error:
        clean_records(raw, today=TODAY)
    assert str(error.value) == ("ttc-2019.xlsx, sheet 'Jan 2019': 'Report Date' mixes DD/MM/YYYY ('13/01/2019' "
                                "row 2) and MM/DD/YYYY ('01/13/2019' row 3) text dates; make the column one format")


def test_each_sheet_chooses_its_own_format_and_unreadable_text_is_a_missing_date():
    raw = pd.concat([raw_rows(["13/01/2019", "01/02/2019"], sheet="Jan 2019"),
                     raw_rows(["01/13/2019", "01/02/2019", "99/99/2019"], sheet="Feb 2019")], ignore_index=True)
    kept, dropped = clean_records(raw, today=TODAY)
    assert kept["Report Date"].dt.strftime("%Y-%m-%d").tolist() == ["2019-01-13", "2019-02-01",
                                                                     "2019-01-13", "2019-01-02"]
    assert dropped["missing_date"] == 1


def test_choose_day_month_format_without_slash_dates_is_none():
    assert choose_day_month_format(pd.Series([dt.datetime(2019, 1, 2), "2019-01-03", ""]), None, "x") is None


# -- finding 3: out-of-range dates are dropped and counted, not stretched into the grid ------

def test_a_1900_date_and_a_future_date_are_dropped_and_counted_with_their_rows():
    dates = [dt.datetime(2019, 1, 2)] * 5 + [dt.datetime(1900, 1, 1), dt.datetime(2031, 5, 1)]
    kept, dropped = result = clean_records(raw_rows(dates), today=TODAY)
    assert dropped["date_out_of_range"] == 2 and len(kept) == 5
    assert kept["Report Date"].dt.year.unique().tolist() == [2019]
    assert result.date_outliers == ["ttc-2019.xlsx / Jan 2019 / row 7: 1900-01-01",
                                    "ttc-2019.xlsx / Jan 2019 / row 8: 2031-05-01"]


def test_a_year_with_almost_no_records_is_out_of_range():
    # 2,000 records in 2019 and one stray 2011 record: inside 2000..today, but 0.05 % of the dates.
    dates = [dt.datetime(2019, 1, 1) + dt.timedelta(days=day % 365) for day in range(2000)] + [dt.datetime(2011, 5, 5)]
    kept, dropped = clean_records(raw_rows(dates), today=TODAY)
    assert dropped["date_out_of_range"] == 1 and len(kept) == 2000
    # ... while a year with a real share of the records is kept.
    dates = dates[:-1] + [dt.datetime(2018, 12, 31)] * 10
    kept, dropped = clean_records(raw_rows(dates), today=TODAY)
    assert dropped["date_out_of_range"] == 0 and len(kept) == 2010


def test_one_1900_cell_in_a_workbook_no_longer_inflates_the_grid(tmp_path):
    rows = [record("2014-01-02", 501, "08:15", "E/B", 10), record("2014-01-03", 504, "17:30", "W/B", 5),
            record("2014-01-04", 512, "23:59", "E/B", 4)]
    rows[1][0] = dt.datetime(1900, 1, 1)
    path = write_workbook(tmp_path / "raw" / "ttc-streetcar-delay-data-2014.xlsx", {"Jan 2014": rows})
    from configs.loader import load_config

    built = build_arrays([path], [{"name": path.name}], load_config(), Progress(enabled=False))
    report = built["report"]
    assert report["dropped"]["date_out_of_range"] == 1
    assert report["date_out_of_range_rows"] == ["ttc-streetcar-delay-data-2014.xlsx / Jan 2014 / row 3: 1900-01-01"]
    assert len(built["target"]) == 3 * 24 * 56        # 2014-01-02 .. 2014-01-04, not 114 years of slots
    assert read_raw_workbooks([path]).shape[0] == 3
