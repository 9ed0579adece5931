"""Vocabularies: sorted LabelEncoder-style codes, stable on disk, and a
person's trip encoded exactly like the training rows (or refused clearly)."""

from __future__ import annotations

import numpy as np
import pytest

from data import BOOK_VOCABULARIES, COLUMNS, Vocabularies, encode_trip


def test_book_vocabularies_have_99_codes_in_column_order():
    assert BOOK_VOCABULARIES.sizes() == {"hour": 24, "Route": 14, "daym": 31, "month": 12, "year": 6,
                                         "Direction": 5, "day": 7}
    assert sum(BOOK_VOCABULARIES.sizes().values()) == 99
    assert tuple(BOOK_VOCABULARIES.values) == COLUMNS


def test_codes_follow_sorted_order_like_label_encoder():
    from sklearn.preprocessing import LabelEncoder

    routes = [512, 301, 501, 301, 310]
    vocab = Vocabularies.from_values({"Route": routes})
    assert vocab.values["Route"] == (301, 310, 501, 512)
    np.testing.assert_array_equal(vocab.encode("Route", routes), LabelEncoder().fit_transform(routes))


def test_save_load_round_trip(tmp_path):
    path = BOOK_VOCABULARIES.save(tmp_path / "vocabulary.json")
    assert Vocabularies.load(path) == BOOK_VOCABULARIES
    assert [p.name for p in tmp_path.iterdir()] == ["vocabulary.json"]  # no temp file left


def test_corrupt_vocabulary_file_is_named(tmp_path):
    path = tmp_path / "vocabulary.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="vocabulary.json: corrupt vocabulary file"):
        Vocabularies.load(path)
    path.write_text('{"columns": {}}')
    with pytest.raises(ValueError, match="not a vocabulary file"):
        Vocabularies.load(path)


def test_encode_trip_uses_book_codes():
    # 2019-06-21 is a Friday (weekday 4); Route 501 is the 5th sorted route.
    assert encode_trip(BOOK_VOCABULARIES, route=501, direction="E", date="2019-06-21", hour=18) == \
        {"hour": 18, "Route": 4, "daym": 20, "month": 5, "year": 5, "Direction": 1, "day": 4}


@pytest.mark.parametrize("fields, message", [
    (dict(route=705), "unknown Route value(s) 705; valid: 301, 304, 306, 310, 501"),
    (dict(direction="x"), "unknown Direction value(s) 'x'; valid: b, e, n, s, w"),
    (dict(hour=24), "hour 24 is outside 0-23"),
    (dict(date="2021-01-04"), "outside the trained years; valid years: 2014, 2015, 2016, 2017, 2018, 2019"),
    (dict(date="21/06/2019"), "is not a date; use YYYY-MM-DD"),
])
def test_bad_trips_are_refused_with_what_is_valid(fields, message):
    trip = dict(route=501, direction="e", date="2019-06-21", hour=18) | fields
    with pytest.raises(ValueError) as error:
        encode_trip(BOOK_VOCABULARIES, **trip)
    assert message in str(error.value)
