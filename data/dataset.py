"""The prepared dataset: what both frameworks train, validate and test on.

`data.prepare.load_prepared(...)` returns a `PreparedDataset`: every slot of the
(date, hour, route, direction) grid as seven label-encoded feature columns in
the fixed order `COLUMNS`, a 0/1 target, the stored row indices of the seeded
60/20/20 split, and the vocabularies that map encoded values back to the human
ones.  Nothing here knows about Keras or torch: arrays are NumPy.

    from data import load_prepared
    dataset = load_prepared()                  # cached Parquet after the first run
    x_train, y_train = dataset.split_arrays("train")
    dataset.vocab_sizes                        # {'hour': 24, 'Route': 14, ...}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from data.vocab import Vocabularies

# The model's input columns, in the one fixed order both frameworks use.  The
# book built this list from a Python set, so its order changed between runs
# (keras_impl/legacy_h5.py traces each saved model's order); a tuple literal cannot.
COLUMNS: tuple[str, ...] = ("hour", "Route", "daym", "month", "year", "Direction", "day")
TARGET = "target"
SPLITS: tuple[str, ...] = ("train", "valid", "test")


@dataclass(frozen=True)
class PreparedDataset:
    """Encoded features, target, split indices and vocabularies.

    features: int64 array (n_rows, 7), column j encodes COLUMNS[j] as 0..vocab-1.
    target:   uint8 array (n_rows,), 1 = at least one delay in the slot.
    splits:   "train"/"valid"/"test" -> sorted int64 row indices into features.
    vocabularies: the sorted vocabularies used to encode (saved with every model).
    report:   the preparation report (raw_rows, kept_rows, dropped, slots, ...).
    """

    features: np.ndarray
    target: np.ndarray
    splits: Mapping[str, np.ndarray]
    vocabularies: Vocabularies
    report: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return int(self.features.shape[0])

    @property
    def vocab_sizes(self) -> dict[str, int]:
        return self.vocabularies.sizes()

    def split_arrays(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(features, target) of one split, in stored row order."""
        if name not in self.splits:
            raise ValueError(f"unknown split {name!r}; valid: {', '.join(SPLITS)}")
        rows = self.splits[name]
        return self.features[rows], self.target[rows]

    def class_counts(self, name: str = "train") -> tuple[int, int]:
        """(count of target 0, count of target 1) in one split."""
        _, target = self.split_arrays(name)
        positives = int(target.sum())
        return int(target.shape[0]) - positives, positives

    def one_weight(self, offset: float = 0.0, split: str = "train") -> float:
        """The book's balanced class weight: count_no_delay / count_delay + offset."""
        negatives, positives = self.class_counts(split)
        if positives == 0:
            raise ValueError(f"the {split} split has no delay rows: a balanced class weight is undefined")
        return negatives / positives + offset

    def sample(self, n_rows: int, seed: int) -> "PreparedDataset":
        """A seeded subset of `n_rows` rows; each kept row stays in its own split.

        Both frameworks call this with the same (n_rows, seed) and so get the
        same rows.  Asking for more rows than exist is an error, not a no-op.
        """
        if n_rows < 1 or n_rows > self.n_rows:
            raise ValueError(f"--sample-rows must be between 1 and {self.n_rows} (the prepared rows), got {n_rows}")
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(self.n_rows, size=n_rows, replace=False))
        new_index = np.full(self.n_rows, -1, dtype=np.int64)
        new_index[chosen] = np.arange(n_rows, dtype=np.int64)
        splits = {name: new_index[rows][new_index[rows] >= 0] for name, rows in self.splits.items()}
        report = dict(self.report)
        report["sample"] = {"rows": n_rows, "seed": seed,
                            "splits": {name: int(len(rows)) for name, rows in splits.items()}}
        return dataclasses.replace(self, features=self.features[chosen], target=self.target[chosen],
                                   splits=splits, report=report)
