"""Stable vocabularies: the encoding a model is trained with, saved beside it.

Each of the seven columns is label-encoded to 0..n-1 in sorted order of its
values (scikit-learn LabelEncoder semantics): Route 301 -> 0 ... 512
-> 13, Direction b, e, n, s, w -> 0..4, year 2014 -> 0.  The vocabulary is
written as JSON next to every trained model so that a trip typed in by a person
tomorrow is encoded exactly as the training rows were, and a value the model
never saw is a clear error listing the valid ones rather than a silent index.

    vocab = Vocabularies.from_values({"Route": [501, 301, ...], ...})
    vocab.encode("Route", [501])          # -> array([4])
    vocab.save(path); Vocabularies.load(path)
    encode_trip(vocab, route=501, direction="e", date="2019-06-21", hour=18)
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from data.atomic import write_atomic

VOCABULARY_FILE_VERSION = 1


@dataclass(frozen=True)
class Vocabularies:
    """column -> sorted tuple of the raw values seen (ints, or str for Direction)."""

    values: Mapping[str, tuple]

    @classmethod
    def from_values(cls, columns: Mapping[str, Iterable]) -> "Vocabularies":
        """Sorted unique values per column (LabelEncoder's classes_)."""
        return cls({column: tuple(sorted({_plain(v) for v in values}))
                    for column, values in columns.items()})

    def sizes(self) -> dict[str, int]:
        return {column: len(values) for column, values in self.values.items()}

    def encode(self, column: str, raw_values: Iterable) -> np.ndarray:
        """Encode raw values of one column; unknown values raise ValueError listing the valid ones."""
        if column not in self.values:
            raise ValueError(f"unknown column {column!r}; valid: {', '.join(self.values)}")
        vocabulary = self.values[column]
        lookup = {value: index for index, value in enumerate(vocabulary)}
        raw_list = [_plain(v) for v in raw_values]
        unknown = sorted({v for v in raw_list if v not in lookup}, key=str)
        if unknown:
            raise ValueError(f"unknown {column} value(s) {', '.join(map(repr, unknown[:10]))}; "
                             f"valid: {', '.join(map(str, vocabulary))}")
        return np.fromiter((lookup[v] for v in raw_list), dtype=np.int64, count=len(raw_list))

    def decode(self, column: str, codes: Iterable[int]) -> list:
        vocabulary = self.values[column]
        return [vocabulary[int(code)] for code in codes]

    def to_json_dict(self) -> dict[str, Any]:
        return {"version": VOCABULARY_FILE_VERSION,
                "columns": {column: list(values) for column, values in self.values.items()}}

    @classmethod
    def from_json_dict(cls, payload: Mapping[str, Any], source: str = "<dict>") -> "Vocabularies":
        if not isinstance(payload, Mapping) or payload.get("version") != VOCABULARY_FILE_VERSION \
                or not isinstance(payload.get("columns"), Mapping):
            raise ValueError(f"{source}: not a vocabulary file (expected version "
                             f"{VOCABULARY_FILE_VERSION} with a 'columns' mapping)")
        return cls({column: tuple(values) for column, values in payload["columns"].items()})

    def save(self, path: str | Path) -> Path:
        """Write atomically (temp file + rename): a killed run leaves no half file."""
        path = Path(path)
        write_atomic(path, json.dumps(self.to_json_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Vocabularies":
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"vocabulary file not found: {path}")
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: corrupt vocabulary file ({error})") from None
        return cls.from_json_dict(payload, source=str(path))


def _plain(value: Any) -> Any:
    """NumPy scalars -> Python scalars, so JSON and dict lookups agree."""
    return value.item() if isinstance(value, np.generic) else value


def encode_trip(vocabularies: Vocabularies, *, route: int, direction: str,
                date: str | dt.date, hour: int) -> dict[str, int]:
    """One human trip -> {column: code}, the book's one-off scoring input (keras_impl/score.py).

    Raises ValueError naming the bad field and listing what is valid: an
    unknown route or direction, an hour outside 0-23, an unparseable date or a
    year the model was not trained on.
    """
    if isinstance(date, str):
        try:
            date = dt.date.fromisoformat(date)
        except ValueError:
            raise ValueError(f"date {date!r} is not a date; use YYYY-MM-DD, e.g. 2019-06-21") from None
    if not isinstance(hour, (int, np.integer)) or not 0 <= int(hour) <= 23:
        raise ValueError(f"hour {hour!r} is outside 0-23")
    direction_text = str(direction).strip().lower()
    years = vocabularies.values["year"]
    if date.year not in years:
        raise ValueError(f"date {date.isoformat()} is outside the trained years; valid years: "
                         f"{', '.join(map(str, years))}")
    raw = {"hour": int(hour), "Route": int(route), "daym": date.day, "month": date.month,
           "year": date.year, "Direction": direction_text, "day": date.weekday()}
    return {column: int(vocabularies.encode(column, [value])[0]) for column, value in raw.items()}


# The vocabularies of the real 2014-2019 data: what the book's author trained
# the reference models with (parity_tests/test_reference_models.py).  Used when a model arrives without
# a saved vocabulary (the book-era .h5 files); a model trained here always
# carries its own vocabulary.json.
BOOK_VOCABULARIES = Vocabularies({
    "hour": tuple(range(24)),
    "Route": (301, 304, 306, 310, 501, 502, 503, 504, 505, 506, 509, 510, 511, 512),
    "daym": tuple(range(1, 32)),
    "month": tuple(range(1, 13)),
    "year": tuple(range(2014, 2020)),
    "Direction": ("b", "e", "n", "s", "w"),
    "day": tuple(range(7)),
})
