"""Reading workbooks: both published forms, odd sheet names, renamed columns, clear errors."""

import datetime as dt

import pytest

from data.load import CANONICAL_COLUMNS, SOURCE_COLUMNS, read_raw_workbooks
from data.tests.helpers import HEADER, record, write_workbook


def test_monthly_sheets_with_trailing_spaces_are_all_read(tmp_path):
    path = write_workbook(tmp_path / "ttc-2017.xlsx", {
        "Aug 2017": [record("2017-08-01"), record("2017-08-02")],
        "Sept 2017 ": [record("2017-09-01")],
        "Aug, 2019 ": [record("2019-08-05")],
    })
    frame = read_raw_workbooks([path])
    assert list(frame.columns) == list(CANONICAL_COLUMNS + SOURCE_COLUMNS)
    assert len(frame) == 4
    assert frame["source_sheet"].tolist() == ["Aug 2017", "Aug 2017", "Sept 2017 ", "Aug, 2019 "]
    assert frame["source_row"].tolist() == [2, 3, 2, 2]
    assert set(frame["source_file"]) == {"ttc-2017.xlsx"}


def test_apr_2019_form_incident_id_and_delay_gap(tmp_path):
    header = ["Report Date", "Route", "Time", "Day", "Location", "Incident ID", "Incident", "Delay", "Gap",
              "Direction", "Vehicle"]
    row = record("2019-04-01", 512, "04:26", "E/B")
    row = row[:5] + [7.0] + [row[5], 10, 20, "E/B", 4460]
    frame = read_raw_workbooks([write_workbook(tmp_path / "ttc-2019.xlsx", {"Apr 2019": [row]}, header=header)])
    assert frame.loc[0, "Delay"] == 10 and frame.loc[0, "Gap"] == 20
    assert frame.loc[0, "Min Delay"] is None and "Incident ID" not in frame.columns
    assert frame.loc[0, "Incident"] == "Mechanical"


def test_single_sheet_republished_form_with_renamed_columns(tmp_path):
    header = ["Date", "Line", "Time", "Day", "Location", "Incident", "Min Delay", "Min Gap", "Bound", "Vehicle"]
    rows = [record("2014-01-02", 501.0, "08:15", "E"), record("2014-06-30", 504.0, "17:00", "W")]
    frame = read_raw_workbooks([write_workbook(tmp_path / "ttc-streetcar-delay-data-2014.xlsx",
                                         {"2014 ": rows}, header=header)])
    assert len(frame) == 2
    assert frame["Route"].tolist() == [501.0, 504.0]
    assert frame["Direction"].tolist() == ["E", "W"]
    assert frame["Report Date"].tolist()[1] in (dt.date(2014, 6, 30), dt.datetime(2014, 6, 30))


def test_headers_match_ignoring_case_and_spaces_and_blank_rows_are_skipped(tmp_path):
    header = [" report  date ", "ROUTE", "Time ", "Day", "Location", "Incident", "Min Delay", "Min Gap",
              "Direction", "Vehicle", "Notes"]
    rows = [record() + ["x"], [None] * 11, record("2014-01-03") + [None]]
    frame = read_raw_workbooks([write_workbook(tmp_path / "w.xlsx", {"Jan 2014": rows}, header=header)])
    assert len(frame) == 2 and frame["source_row"].tolist() == [2, 4]


def test_empty_extra_sheet_is_ignored(tmp_path):
    import openpyxl

    path = write_workbook(tmp_path / "w.xlsx", {"Jan 2014": [record()]})
    workbook = openpyxl.load_workbook(path)
    workbook.create_sheet("Sheet1")
    workbook.save(path)
    assert len(read_raw_workbooks([path])) == 1


def test_missing_column_names_file_sheet_column_and_required(tmp_path):
    header = [name for name in HEADER if name != "Route"]
    row = [value for name, value in zip(HEADER, record()) if name != "Route"]
    write_workbook(tmp_path / "good.xlsx", {"Jan 2014": [record()]})
    write_workbook(tmp_path / "bad.xlsx", {"Feb 2014 ": [row]}, header=header)
    with pytest.raises(ValueError) as error:
        read_raw_workbooks([tmp_path / "good.xlsx", tmp_path / "bad.xlsx"])
    message = str(error.value)
    assert message.startswith("bad.xlsx, sheet 'Feb 2014 ': missing column 'Route'")
    assert "required: Report Date, Route, Time, Direction, Vehicle, Min Delay (or Delay)" in message


def test_missing_delay_column_under_both_names(tmp_path):
    header = [name for name in HEADER if name != "Min Delay"]
    row = [value for name, value in zip(HEADER, record()) if name != "Min Delay"]
    with pytest.raises(ValueError, match="missing column 'Min Delay'"):
        read_raw_workbooks([write_workbook(tmp_path / "w.xlsx", {"Jan 2014": [row]}, header=header)])


def test_duplicate_meaning_is_an_error(tmp_path):
    header = HEADER + ["Date"]
    with pytest.raises(ValueError, match="two columns mean 'Report Date'"):
        read_raw_workbooks([write_workbook(tmp_path / "w.xlsx", {"Jan 2014": [record() + [None]]}, header=header)])


def test_corrupt_file_names_the_file(tmp_path):
    (tmp_path / "ttc-2015.xlsx").write_bytes(b"this is not a zip archive" * 40)
    with pytest.raises(ValueError, match=r"^ttc-2015\.xlsx: not a readable Excel workbook"):
        read_raw_workbooks([tmp_path / "ttc-2015.xlsx"])


def test_truncated_workbook_names_the_file(tmp_path):
    path = write_workbook(tmp_path / "ttc-2016.xlsx", {"Jan 2016": [record("2016-01-01")] * 50})
    path.write_bytes(path.read_bytes()[:1500])
    with pytest.raises(ValueError, match=r"ttc-2016\.xlsx: not a readable Excel workbook"):
        read_raw_workbooks([path])
