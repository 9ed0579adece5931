"""The batch order both frameworks share, so a Keras epoch and a Lightning epoch see the same batches.

    from data.batches import epoch_permutation, batch_slices
    order = epoch_permutation(n_rows=len(y_train), seed=42, epoch=0)     # epochs count from 0
    for batch in batch_slices(len(order), batch_size=1000):
        rows = order[batch]                     # indices into the training arrays
        x_batch, y_batch = x_train[rows], y_train[rows]

With `general.batch_order: shared`, keras_impl and lightning_impl both draw each
epoch's order from `epoch_permutation(n_rows, seed, epoch)` instead of their own
shuffles (Keras fit(shuffle=True) and torch's RandomSampler use different
generators), and cut it with `batch_slices`: batch k of epoch e holds the same
rows in both, which is what lets a run in one framework be compared with a run
in the other epoch by epoch.

The permutation comes from NumPy's PCG64 seeded with the pair (seed, epoch):
independent of any global random state, of the framework and of the machine,
and different for every epoch.  The last batch is short when batch_size does
not divide n_rows (both frameworks keep it, as Keras does).
"""

from __future__ import annotations

import numpy as np


def epoch_permutation(n_rows: int, seed: int, epoch: int) -> np.ndarray:
    """int64 permutation of 0..n_rows-1 for one epoch (epoch 0 is the first); same inputs, same order."""
    for name, value in (("n_rows", n_rows), ("seed", seed), ("epoch", epoch)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    generator = np.random.Generator(np.random.PCG64([int(seed), int(epoch)]))
    return generator.permutation(int(n_rows)).astype(np.int64)


def batch_slices(n_rows: int, batch_size: int) -> list[slice]:
    """Consecutive slices of at most batch_size rows covering 0..n_rows-1 (the last may be shorter)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if isinstance(n_rows, bool) or not isinstance(n_rows, (int, np.integer)) or n_rows < 0:
        raise ValueError(f"n_rows must be an integer >= 0, got {n_rows!r}")
    return [slice(start, min(start + int(batch_size), int(n_rows))) for start in range(0, int(n_rows), int(batch_size))]
