"""Shared pieces of the lightning_impl tests: a synthetic PreparedDataset and run requests.

The synthetic dataset has the real vocabularies (data.vocab.BOOK_VOCABULARIES,
so parameter counts are the book's 1,341) and a learnable target (rush hours
on a few routes are delayed more often), so a model trained on it for a couple
of epochs moves, and the tests need neither the TTC workbooks nor the data
layer's cache.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from configs.cli import RunRequest
from configs.loader import load_config, override, resolve_experiment
from data.dataset import COLUMNS, PreparedDataset
from data.vocab import BOOK_VOCABULARIES

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BOOK_SIZES = BOOK_VOCABULARIES.sizes()


def make_synthetic_dataset(n_rows: int = 6000, seed: int = 0) -> PreparedDataset:
    """n_rows random encoded trips, ~10% delayed, split 60/20/20 with a seeded permutation."""
    rng = np.random.default_rng(seed)
    features = np.stack([rng.integers(0, BOOK_SIZES[column], n_rows) for column in COLUMNS], axis=1).astype(np.int64)
    hour, route = features[:, COLUMNS.index("hour")], features[:, COLUMNS.index("Route")]
    rush = ((hour >= 7) & (hour <= 9)) | ((hour >= 16) & (hour <= 18))
    probability = np.where(rush & (route < 6), 0.45, 0.05)
    target = (rng.random(n_rows) < probability).astype(np.uint8)
    order = rng.permutation(n_rows)
    n_test = n_valid = n_rows // 5
    splits = {"train": np.sort(order[n_test + n_valid:]), "valid": np.sort(order[n_test:n_test + n_valid]),
              "test": np.sort(order[:n_test])}
    return PreparedDataset(features=features, target=target, splits=splits, vocabularies=BOOK_VOCABULARIES,
                           report={"synthetic": True})


def make_request(out_dir: Path, experiment: str = "0", *, epochs: int | None = None, patience: int | None = None,
                 seed: int = 42, batch_size: int = 500, batch_order: str = "shared", learning_rate: float = 0.05,
                 sample_rows: int | None = None, **overrides) -> RunRequest:
    """A RunRequest as configs.cli.resolve_run_request builds it, for in-process train() calls.

    learning_rate 0.05 (not the book's 0.001) so that a few epochs on a few
    thousand rows change the weights visibly.  `overrides` are dotted config
    keys with "__" for ".", e.g. callbacks__reduce_lr__enabled=True.
    """
    config = load_config()
    settings_overrides = {"general.out_dir": str(out_dir), "general.seed": seed, "general.batch_order": batch_order,
                          "hyperparameters.batch_size": batch_size, "hyperparameters.learning_rate": learning_rate}
    settings_overrides.update({key.replace("__", "."): value for key, value in overrides.items()})
    for key, value in settings_overrides.items():
        config = override(config, key, value)
    settings = resolve_experiment(config, experiment)
    if epochs is not None:
        settings = dataclasses.replace(settings, epochs=epochs)
    if patience is not None:
        settings = dataclasses.replace(settings, patience=patience)
    return RunRequest(config=config, settings=settings, sample_rows=sample_rows, raw_dir=None, json=True)
