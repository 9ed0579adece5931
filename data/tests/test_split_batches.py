"""The stored split and the shared batch order."""

import numpy as np
import pytest

from data.batches import batch_slices, epoch_permutation
from data.split import split_indices, split_labels, split_sizes, splits_from_labels


def test_split_sizes_follow_the_proportions():
    assert split_sizes(1000, 0.2, 0.2) == {"train": 600, "valid": 200, "test": 200}
    assert split_sizes(1001, 0.2, 0.2) == {"train": 599, "valid": 201, "test": 201}   # ceil, as scikit-learn
    assert split_sizes(10, 0.5, 0.25) == {"train": 2, "valid": 3, "test": 5}


def test_split_is_a_sorted_disjoint_cover():
    splits = split_indices(100_003, 0.2, 0.2, seed=42)
    joined = np.concatenate(list(splits.values()))
    assert np.array_equal(np.sort(joined), np.arange(100_003))
    for rows in splits.values():
        assert rows.dtype == np.int64 and np.all(np.diff(rows) > 0)
    # both proportions are shares of all rows: 60 / 20 / 20
    assert {name: len(rows) for name, rows in splits.items()} == {"train": 60_001, "valid": 20_001, "test": 20_001}
    assert abs(len(splits["test"]) / 100_003 - 0.2) < 0.005


def test_split_is_seeded():
    first, again, other = (split_indices(500, 0.2, 0.2, seed) for seed in (42, 42, 7))
    assert all(np.array_equal(first[name], again[name]) for name in first)
    assert not np.array_equal(first["test"], other["test"])


def test_split_rejects_bad_proportions():
    with pytest.raises(ValueError, match="test_proportion must be in"):
        split_indices(10, 0.0, 0.2, 1)
    with pytest.raises(ValueError, match="valid_proportion must be in"):
        split_indices(10, 0.2, 1.0, 1)
    with pytest.raises(ValueError, match="leave no training rows out of 10"):
        split_indices(10, 0.5, 0.5, 1)


def test_split_labels_round_trip_and_reject_holes():
    splits = split_indices(50, 0.2, 0.2, 3)
    labels = split_labels(50, splits)
    assert all(np.array_equal(rows, splits_from_labels(labels)[name]) for name, rows in splits.items())
    labels[7] = 9
    with pytest.raises(ValueError, match="1 rows carry no valid split label"):
        splits_from_labels(labels)


def test_epoch_permutation_is_numpy_pcg64_of_seed_and_epoch():
    assert epoch_permutation(10, 42, 0).tolist() == [5, 6, 0, 7, 3, 2, 4, 9, 1, 8]
    assert np.array_equal(epoch_permutation(1000, 42, 3), np.random.default_rng([42, 3]).permutation(1000))
    assert np.array_equal(epoch_permutation(1000, 42, 3), epoch_permutation(1000, 42, 3))
    assert not np.array_equal(epoch_permutation(1000, 42, 3), epoch_permutation(1000, 42, 4))
    assert np.array_equal(np.sort(epoch_permutation(1000, 1, 0)), np.arange(1000))
    assert epoch_permutation(1000, 1, 0).dtype == np.int64


def test_batch_slices_keep_the_short_last_batch():
    assert batch_slices(2500, 1000) == [slice(0, 1000), slice(1000, 2000), slice(2000, 2500)]
    assert batch_slices(2000, 1000) == [slice(0, 1000), slice(1000, 2000)]
    assert batch_slices(0, 1000) == []


@pytest.mark.parametrize("call", [lambda: batch_slices(10, 0), lambda: batch_slices(-1, 5),
                                  lambda: epoch_permutation(10, -1, 0), lambda: epoch_permutation(10, 1, 1.5)])
def test_bad_arguments_are_value_errors(call):
    with pytest.raises(ValueError):
        call()
