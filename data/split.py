"""The seeded train / valid / test split, drawn once and stored with the prepared data.

    from data.split import split_indices
    splits = split_indices(n_rows, test_proportion=0.2, valid_proportion=0.2, seed=42)
    splits["train"], splits["valid"], splits["test"]     # sorted int64 row indices, disjoint, covering all rows

Both proportions are shares of ALL rows: test = test_proportion x n, valid =
valid_proportion x n, train = the rest; the config's 0.2 / 0.2 gives the
60 / 20 / 20 split the project promises.  (The book's two train_test_split
calls - testproportion 0.2, then 0.2 "of the rest" - give 64 / 16 / 20;
60 / 20 / 20 overall is what only shares of all rows can give.)

Sizes follow scikit-learn's rounding: each held-out part is
ceil(proportion x rows).  The rows are drawn from one NumPy PCG64 permutation
seeded with `seed`, so a given (n_rows, proportions, seed) gives the same
split on every machine and in both frameworks; data.cache stores it in the
cache, so neither framework ever re-draws it.
"""

from __future__ import annotations

import math

import numpy as np

from data.dataset import SPLITS


def split_sizes(n_rows: int, test_proportion: float, valid_proportion: float) -> dict[str, int]:
    """Rows per split: test = ceil(p_test x n), valid = ceil(p_valid x n), train = the remainder."""
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    for name, proportion in (("test_proportion", test_proportion), ("valid_proportion", valid_proportion)):
        if not 0.0 < proportion < 1.0:
            raise ValueError(f"{name} must be in (0, 1), got {proportion}")
    n_test = math.ceil(test_proportion * n_rows)
    n_valid = math.ceil(valid_proportion * n_rows)
    if n_test + n_valid >= n_rows and n_rows > 0:
        raise ValueError(f"test_proportion {test_proportion} + valid_proportion {valid_proportion} "
                         f"leave no training rows out of {n_rows}")
    return {"train": n_rows - n_test - n_valid, "valid": n_valid, "test": n_test}


def split_indices(n_rows: int, test_proportion: float, valid_proportion: float, seed: int) -> dict[str, np.ndarray]:
    """{'train', 'valid', 'test'} -> sorted int64 indices into 0..n_rows-1 (disjoint, together all rows)."""
    # [docs:split-indices]
    sizes = split_sizes(n_rows, test_proportion, valid_proportion)
    order = np.random.default_rng(seed).permutation(n_rows).astype(np.int64)
    test = order[:sizes["test"]]
    valid = order[sizes["test"]:sizes["test"] + sizes["valid"]]
    train = order[sizes["test"] + sizes["valid"]:]
    return {name: np.sort(rows) for name, rows in zip(SPLITS, (train, valid, test))}
    # [/docs:split-indices]


def split_labels(n_rows: int, splits: dict[str, np.ndarray]) -> np.ndarray:
    """uint8 array with SPLITS.index(name) per row (0 train, 1 valid, 2 test): how the cache stores a split."""
    labels = np.full(n_rows, 255, dtype=np.uint8)
    for code, name in enumerate(SPLITS):
        labels[splits[name]] = code
    return labels


def splits_from_labels(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Inverse of split_labels: sorted int64 indices per split; ValueError if a row has no split."""
    unknown = ~np.isin(labels, np.arange(len(SPLITS)))
    if unknown.any():
        raise ValueError(f"{int(unknown.sum())} rows carry no valid split label")
    return {name: np.flatnonzero(labels == code).astype(np.int64) for code, name in enumerate(SPLITS)}
