"""Framework-neutral weight names: the bridge between Keras and Lightning.

Both implementations export their weights to, and import them from, one flat
mapping of *canonical* names to NumPy float32 arrays, in Keras's layouts:

    embedding.<column>                  (vocab, embedding_dim)
    batchnorm.<column>.gamma            (embedding_dim,)
    batchnorm.<column>.beta             (embedding_dim,)
    batchnorm.<column>.moving_mean      (embedding_dim,)
    batchnorm.<column>.moving_variance  (embedding_dim,)
    output.kernel                       (7 * embedding_dim, 1)   Keras Dense layout
    output.bias                         (1,)

for <column> in data.COLUMNS order (hour, Route, daym, month, year, Direction,
day).  The output kernel's rows follow that column order, each column's
embedding_dim rows in a block: row j*dim + k multiplies feature k of column j.
(torch's Linear stores the transpose, (1, 70): the Lightning side transposes.)

Weights are matched by name, never by position, and `check_weights` verifies
every key and every shape before anything is copied, with an error that names
both shapes - the nanoGPT / Hugging Face `from_pretrained` discipline.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from data.dataset import COLUMNS

BATCHNORM_FIELDS = ("gamma", "beta", "moving_mean", "moving_variance")
# Keras Embedding's default initialiser: RandomUniform(-0.05, 0.05).
EMBEDDING_INIT_LIMIT = 0.05


def expected_shapes(vocab_sizes: Mapping[str, int], embedding_dim: int = 10) -> dict[str, tuple[int, ...]]:
    """Canonical name -> shape for a model with these vocabularies."""
    missing = [column for column in COLUMNS if column not in vocab_sizes]
    if missing:
        raise ValueError(f"vocab_sizes lacks column(s) {', '.join(missing)}; needs {', '.join(COLUMNS)}")
    shapes: dict[str, tuple[int, ...]] = {}
    for column in COLUMNS:
        shapes[f"embedding.{column}"] = (int(vocab_sizes[column]), embedding_dim)
        for name in BATCHNORM_FIELDS:
            shapes[f"batchnorm.{column}.{name}"] = (embedding_dim,)
    shapes["output.kernel"] = (len(COLUMNS) * embedding_dim, 1)
    shapes["output.bias"] = (1,)
    return shapes


def check_weights(weights: Mapping[str, np.ndarray], vocab_sizes: Mapping[str, int],
                  embedding_dim: int = 10, source: str = "weights") -> None:
    """Raise ValueError unless `weights` has exactly the canonical keys with the expected shapes."""
    expected = expected_shapes(vocab_sizes, embedding_dim)
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected)}")
    for name in sorted(set(expected) & set(weights)):
        shape = tuple(np.shape(weights[name]))
        if shape != expected[name]:
            problems.append(f"{name}: {source} has shape {shape}, the model expects {expected[name]}")
    if problems:
        raise ValueError(f"{source} do not fit this model: " + "; ".join(problems))


def parameter_counts(vocab_sizes: Mapping[str, int], embedding_dim: int = 10) -> dict[str, int]:
    """total / trainable / non_trainable as Keras's model.summary() counts them.

    Non-trainable = BatchNorm moving mean and variance (140 on the real data);
    total 1,341, trainable 1,201 on the real vocabularies (keras_impl/tests/test_model.py).
    """
    shapes = expected_shapes(vocab_sizes, embedding_dim)
    sizes = {name: int(np.prod(shape)) for name, shape in shapes.items()}
    non_trainable = sum(size for name, size in sizes.items()
                        if name.endswith((".moving_mean", ".moving_variance")))
    total = sum(sizes.values())
    return {"total": total, "trainable": total - non_trainable, "non_trainable": non_trainable}


def shared_initial_weights(vocab_sizes: Mapping[str, int], seed: int, embedding_dim: int = 10) -> dict[str, np.ndarray]:
    """Canonical float32 weights drawn with NumPy from Keras's default initialisers.

    One starting point for both frameworks: Embedding U(-0.05, 0.05), Dense glorot_uniform kernel and
    zero bias, BatchNorm gamma 1 / beta 0 / moving mean 0 / moving variance 1 (each train() sets them
    with its `initial_weights=` keyword), so two runs differ only by the frameworks' arithmetic.
    """
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for name, shape in expected_shapes(vocab_sizes, embedding_dim).items():
        if name.startswith("embedding."):
            value = rng.uniform(-EMBEDDING_INIT_LIMIT, EMBEDDING_INIT_LIMIT, size=shape)
        elif name == "output.kernel":
            limit = np.sqrt(6.0 / (shape[0] + shape[1]))          # glorot_uniform
            value = rng.uniform(-limit, limit, size=shape)
        elif name.endswith((".gamma", ".moving_variance")):
            value = np.ones(shape)
        else:                                                      # beta, moving_mean, output.bias
            value = np.zeros(shape)
        weights[name] = value.astype(np.float32)
    return weights
