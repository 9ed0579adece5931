"""Shared fixtures of the parity suite (fixtures only: the skip/fail policy for
`@pytest.mark.real_data` lives in the project's root conftest.py).

    python -m pytest parity_tests -q                       # the whole suite
    REQUIRE_REAL_DATA=1 python -m pytest parity_tests -q   # fail, not skip, without the real data

Fixtures:

    prepared_dataset   session  the real prepared dataset (data.load_prepared); use in
                                tests marked real_data, which the root conftest skips
                                (or fails) when the TTC workbooks are missing
    parity_rows        session  PARITY_ROW_COUNT seeded rows of the train split with their
                                target and the balanced class weight; real rows when the
                                workbooks are there, else rows drawn from BOOK_VOCABULARIES
                                ranges with a fixed seed (`.source` says which)
    reference_dir      session  ../shared/reference beside the project; the
                                book-era .h5 models are read from there, never copied
    reference_model_paths       {stem: Path} of the two Keras 2 .h5 files
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from data.dataset import COLUMNS

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The book author's models stay outside the project, in ../shared/reference/keras2-models/;
# tests read them here.
REFERENCE_DIR = PROJECT_ROOT.parent / "shared" / "reference"
REFERENCE_MODEL_NAMES = ("scmodeldec27b_5", "scmodelapr26_2020_5")

# ~5,000 rows: enough for ~110 delay rows (2.2%) so the class weight matters,
# small enough that a full-batch Keras/torch step takes milliseconds.
PARITY_ROW_COUNT = 5000
PARITY_ROW_SEED = 20240601
# Delay rate of the synthetic fallback rows, about the real one (data/tests/test_real_data.py).
SYNTHETIC_DELAY_RATE = 0.022


@dataclass(frozen=True)
class ParityRows:
    """Rows both frameworks see in the numerics tests.

    features: int64 (n, 7) in data.COLUMNS order; target: float32 (n,);
    one_weight: count_no_delay / count_delay of these rows (the book's
    balanced weight, ~45 on the real data); vocab_sizes: per column;
    source: "real train split" or "synthetic (BOOK_VOCABULARIES, seed ...)".
    """

    features: np.ndarray
    target: np.ndarray
    one_weight: float
    vocab_sizes: dict
    source: str

    def class_weights(self) -> np.ndarray:
        """Per-row weight {0: 1.0, 1: one_weight}, as Keras's class_weight turns into sample weights."""
        return np.where(self.target > 0.5, self.one_weight, 1.0).astype(np.float32)


def _real_data_available() -> bool:
    # Same test as the root conftest's policy; duplicated (not imported)
    # because conftest modules are not meant to be imported by each other.
    from data.paths import list_workbooks

    folder = os.environ.get("STREETCAR_RAW_DIR", "")
    return bool(folder) and Path(folder).is_dir() and bool(list_workbooks(Path(folder)))


@pytest.fixture(scope="session")
def prepared_dataset():
    """The real prepared dataset (cached Parquet after the first build, ~5 s cold)."""
    from data import load_prepared

    return load_prepared(progress=False)


@pytest.fixture(scope="session")
def parity_rows() -> ParityRows:
    if _real_data_available():
        from data import load_prepared

        dataset = load_prepared(progress=False)
        features, target = dataset.split_arrays("train")
        rng = np.random.default_rng(PARITY_ROW_SEED)
        chosen = np.sort(rng.choice(features.shape[0], size=PARITY_ROW_COUNT, replace=False))
        features = features[chosen].astype(np.int64)
        target = target[chosen].astype(np.float32)
        vocab_sizes = dataset.vocab_sizes
        source = f"real train split ({PARITY_ROW_COUNT} rows, seed {PARITY_ROW_SEED})"
    else:
        from data.vocab import BOOK_VOCABULARIES

        if os.environ.get("REQUIRE_REAL_DATA") == "1":
            pytest.fail("REQUIRE_REAL_DATA=1 but the TTC workbooks are not available for the parity rows",
                        pytrace=False)
        vocab_sizes = BOOK_VOCABULARIES.sizes()
        rng = np.random.default_rng(PARITY_ROW_SEED)
        features = np.stack([rng.integers(0, vocab_sizes[column], PARITY_ROW_COUNT) for column in COLUMNS],
                            axis=1).astype(np.int64)
        target = (rng.random(PARITY_ROW_COUNT) < SYNTHETIC_DELAY_RATE).astype(np.float32)
        source = f"synthetic (BOOK_VOCABULARIES ranges, seed {PARITY_ROW_SEED})"
    positives = float(target.sum())
    if positives == 0:
        raise RuntimeError("parity rows hold no delay row; pick another seed")
    one_weight = (len(target) - positives) / positives
    return ParityRows(features=features, target=target, one_weight=one_weight,
                      vocab_sizes=dict(vocab_sizes), source=source)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not (REFERENCE_DIR / "keras2-models").is_dir():
        message = f"reference models not found in {REFERENCE_DIR / 'keras2-models'} (the book author's models)"
        if os.environ.get("REQUIRE_REAL_DATA") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def reference_model_paths(reference_dir: Path) -> dict[str, Path]:
    paths = {name: reference_dir / "keras2-models" / f"{name}.h5" for name in REFERENCE_MODEL_NAMES}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        pytest.fail(f"reference model file(s) missing: {', '.join(missing)}", pytrace=False)
    return paths
