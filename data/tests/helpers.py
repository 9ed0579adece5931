"""Hand-made TTC workbooks for the data tests (written with openpyxl into tmp_path)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Mapping, Sequence

import openpyxl

HEADER = ["Report Date", "Route", "Time", "Day", "Location", "Incident", "Min Delay", "Min Gap", "Direction",
          "Vehicle"]


def record(date: str = "2014-01-02", route: object = 501, time: object = "08:15", direction: object = "E/B",
           delay: object = 10, gap: object = 20, vehicle: object = 4100) -> list:
    """One row in HEADER order; `time` 'HH:MM' becomes a datetime.time as in the real files."""
    day = dt.date.fromisoformat(date)
    if isinstance(time, str) and len(time) == 5 and time[2] == ":":
        time = dt.time(int(time[:2]), int(time[3:]))
    return [dt.datetime(day.year, day.month, day.day), route, time, day.strftime("%A"), "Queen and Spadina",
            "Mechanical", delay, gap, direction, vehicle]


def write_workbook(path: Path, sheets: Mapping[str, Sequence[Sequence]], header: Sequence[str] = HEADER) -> Path:
    """A workbook with one sheet per entry: header row then the rows (None = empty cell)."""
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for name, rows in sheets.items():
        sheet = workbook.create_sheet(title=name)
        sheet.append(list(header))
        for row in rows:
            sheet.append(list(row))
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook.save(path)
    return path


def small_raw_dir(folder: Path) -> Path:
    """Two tiny yearly-style workbooks covering 2014-01-02 .. 2014-01-04 (3 days) with known delays.

    Delays (Min Delay > 0) in the 56-pair grid: 01-02 08h 501 e (twice: one slot),
    01-03 17h 504 b (from a Delay column), 01-04 23h 512 w.  Min Delay 0 at
    01-02 09h 501 w marks nothing.  Dropped: route 705 (bad_route), direction
    '-' (bad_direction).  So: 7 raw rows, 5 kept, 3 delayed slots of 3 x 1344.
    """
    write_workbook(folder / "ttc-streetcar-delay-data-2014.xlsx", {
        "Jan 2014 ": [
            record("2014-01-02", 501, "08:15", "E/B", 10),
            record("2014-01-02", 501.0, "08:40", "eb", 5),
            record("2014-01-02", 501, "09:05", "W/B", 0),
            record("2014-01-02", 705, "10:00", "E/B", 12),
            record("2014-01-03", 505, "11:00", "-", 7),
        ],
    })
    write_workbook(folder / "ttc-streetcar-delay-data-2014b.xlsx", {
        "Aug, 2014 ": [
            record("2014-01-03", 504, "17:30", "B/W", None, None)[:6] + [9, 18] + ["B/W", 4100],
            record("2014-01-04", 512, "23:59", "wb", None, None)[:6] + [4, 8] + ["wb", 4200],
        ],
    }, header=["Report Date", "Route", "Time", "Day", "Location", "Incident", "Delay", "Gap", "Direction",
               "Vehicle"])
    return folder
