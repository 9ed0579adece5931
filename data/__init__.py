"""Framework-neutral data layer: raw TTC workbooks -> cleaned records -> one
row per (date, hour, route, direction) slot -> encoded features + stored split.

Entry points:
    load_prepared(...)        -> PreparedDataset (cached Parquet, rebuilt when raw files or config change)
    python -m data.prepare    report on the preparation (--json for one JSON object)
    python -m data.fetch      download the yearly workbooks into data/raw/
"""

from data.dataset import COLUMNS, SPLITS, TARGET, PreparedDataset
from data.vocab import BOOK_VOCABULARIES, Vocabularies, encode_trip

__all__ = ["COLUMNS", "SPLITS", "TARGET", "PreparedDataset", "BOOK_VOCABULARIES", "Vocabularies", "encode_trip", "load_prepared"]


def load_prepared(*args, **kwargs):
    """See data.prepare.load_prepared (imported lazily to keep `import data` light)."""
    from data.prepare import load_prepared as _load_prepared

    return _load_prepared(*args, **kwargs)
