"""Read every sheet of every raw TTC workbook into one pandas DataFrame.

    from data.paths import find_raw_files
    from data.load import read_raw_workbooks
    raw = read_raw_workbooks(find_raw_files())     # 76,891 rows for the six 2014-2019 workbooks

The portal's files come in two forms and both are read the same way:

* the original yearly workbooks: one sheet per month, sheet names with stray
  spaces or commas ("Sept 2017 ", "Aug, 2019 "), the Apr 2019 sheet with an
  extra `Incident ID` column, Apr and June 2019 naming the delay columns
  `Delay` / `Gap` instead of `Min Delay` / `Min Gap`;
* later re-publications: one sheet per year, `Route` stored as a float, and
  (in the newest files) `Date` / `Line` / `Bound` for `Report Date` / `Route` /
  `Direction`.

Headers are matched ignoring case and surrounding spaces, then renamed to the
canonical names in `CANONICAL_COLUMNS`.  Values are left exactly as the reader
returned them (dates, times, floats, strings, '' for an empty cell): turning
them into typed columns, and counting what cannot be turned, is the job of
`data.clean`, so that every dropped row is accounted for in one place.

Each row also carries `source_file`, `source_sheet` (the sheet name as stored,
trailing spaces included) and `source_row` (the 1-based Excel row number), so
any odd value can be traced back to its cell.

python-calamine reads all six workbooks in about a second; openpyxl is ten
times slower and is not needed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
from python_calamine import CalamineWorkbook

# Canonical name -> the header spellings that mean it (compared lower-cased,
# with runs of whitespace collapsed).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "Report Date": ("report date", "date"),
    "Route": ("route", "line"),
    "Time": ("time",),
    "Day": ("day",),
    "Location": ("location",),
    "Incident": ("incident",),
    "Min Delay": ("min delay",),
    "Min Gap": ("min gap",),
    # Apr and June 2019 call the two minute columns Delay / Gap; clean.py fills
    # Min Delay / Min Gap from them.
    "Delay": ("delay",),
    "Gap": ("gap",),
    "Direction": ("direction", "bound"),
    "Vehicle": ("vehicle",),
}
CANONICAL_COLUMNS: tuple[str, ...] = tuple(COLUMN_ALIASES)
SOURCE_COLUMNS: tuple[str, ...] = ("source_file", "source_sheet", "source_row")
# A sheet must have all of these; the delay minutes may be under either name.
REQUIRED_COLUMNS: tuple[str, ...] = ("Report Date", "Route", "Time", "Direction", "Vehicle")
DELAY_COLUMN_CHOICES: tuple[str, ...] = ("Min Delay", "Delay")
REQUIRED_DESCRIPTION = ", ".join(REQUIRED_COLUMNS) + ", Min Delay (or Delay)"

_HEADER_LOOKUP = {alias: canonical for canonical, aliases in COLUMN_ALIASES.items() for alias in aliases}


def normalise_header(header: object) -> str | None:
    """The canonical column name for one header cell, or None for a column we do not use."""
    text = re.sub(r"\s+", " ", str(header)).strip().lower()
    return _HEADER_LOOKUP.get(text)


def is_blank_row(row: Sequence) -> bool:
    """Rows of empty cells appear below some tables; they are not records."""
    return all(cell is None or (isinstance(cell, str) and not cell.strip()) for cell in row)


def check_required_columns(present: Iterable[str], file_name: str, sheet_name: str) -> None:
    """ValueError naming the file, the sheet and the first missing column."""
    present = set(present)
    missing = [column for column in REQUIRED_COLUMNS if column not in present]
    if not any(column in present for column in DELAY_COLUMN_CHOICES):
        missing.append("Min Delay")
    if missing:
        raise ValueError(f"{file_name}, sheet {sheet_name!r}: missing column {missing[0]!r}"
                         f"{' (and ' + ', '.join(map(repr, missing[1:])) + ')' if missing[1:] else ''}; "
                         f"required: {REQUIRED_DESCRIPTION}")


def map_header_row(header_row: Sequence, file_name: str, sheet_name: str) -> dict[int, str]:
    """Column position -> canonical name for the columns we keep; a duplicated column is an error."""
    positions: dict[int, str] = {}
    seen: dict[str, int] = {}
    for position, header in enumerate(header_row):
        canonical = normalise_header(header)
        if canonical is None:
            continue
        if canonical in seen:
            raise ValueError(f"{file_name}, sheet {sheet_name!r}: two columns mean {canonical!r} "
                             f"({header_row[seen[canonical]]!r} and {header!r}); keep one")
        seen[canonical] = position
        positions[position] = canonical
    return positions


def read_sheet_rows(workbook: CalamineWorkbook, sheet_name: str) -> list[list]:
    return workbook.get_sheet_by_name(sheet_name).to_python()


def sheet_columns(rows: list[list], file_name: str, sheet_name: str) -> dict[str, list] | None:
    """One sheet as canonical column -> list of cell values (plus source columns); None if empty."""
    if all(is_blank_row(row) for row in rows):
        # A wholly empty sheet (some workbooks carry a blank "Sheet1") holds no records.
        return None
    header_row = rows[0]
    positions = map_header_row(header_row, file_name, sheet_name)
    check_required_columns(positions.values(), file_name, sheet_name)
    width = len(header_row)
    records = [(excel_row, row) for excel_row, row in enumerate(rows[1:], start=2) if not is_blank_row(row)]
    columns: dict[str, list] = {name: [None] * len(records) for name in CANONICAL_COLUMNS}
    for index, (_, row) in enumerate(records):
        if len(row) < width:  # calamine pads, but a hand-made file may not
            row = list(row) + [None] * (width - len(row))
        for position, canonical in positions.items():
            columns[canonical][index] = row[position]
    columns["source_file"] = [file_name] * len(records)
    columns["source_sheet"] = [sheet_name] * len(records)
    columns["source_row"] = [excel_row for excel_row, _ in records]
    return columns


def read_workbook_columns(path: Path) -> list[dict[str, list]]:
    """Every non-empty sheet of one workbook; ValueError naming the file if it cannot be read."""
    path = Path(path)
    try:
        workbook = CalamineWorkbook.from_path(str(path))
        sheets = [(name, read_sheet_rows(workbook, name)) for name in workbook.sheet_names]
    except Exception as error:  # calamine raises its own CalamineError/ZipError/XmlError, or OSError
        raise ValueError(f"{path.name}: not a readable Excel workbook ({type(error).__name__}: {error}); "
                         f"file: {path}") from None
    tables = [sheet_columns(rows, path.name, name) for name, rows in sheets]
    tables = [table for table in tables if table is not None]
    if not tables:
        raise ValueError(f"{path.name}: the workbook has no non-empty sheet; file: {path}")
    return tables


def read_raw_workbooks(paths: Iterable[str | Path]) -> pd.DataFrame:
    """All sheets of all workbooks, in file then sheet then row order.

    Columns: CANONICAL_COLUMNS (None where a sheet lacks an optional one) then
    source_file, source_sheet, source_row.  Raises ValueError naming the file
    (and sheet and column) for an unreadable workbook or a missing column.
    """
    tables: list[dict[str, list]] = []
    paths = [Path(path) for path in paths]
    if not paths:
        raise ValueError("no workbooks given to read")
    for path in paths:
        tables.extend(read_workbook_columns(path))
    return columns_to_frame(tables)


def columns_to_frame(tables: list[dict[str, list]]) -> pd.DataFrame:
    """Join per-sheet column lists into one frame (one DataFrame build, not 70 concats)."""
    names = CANONICAL_COLUMNS + SOURCE_COLUMNS
    joined = {name: [value for table in tables for value in table[name]] for name in names}
    frame = pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in joined.items()})
    frame["source_row"] = frame["source_row"].astype("int64")
    return frame
