"""Book-era Keras 2.2.4 `.h5` models, read faithfully into this project.

The book's author saved his streetcar models with Keras 2.2.4 as HDF5 files
holding the architecture (`model_config` JSON) and the weights.  Two of them
live in `../shared/reference/keras2-models/`, outside the project.  Importing them needs
more care than `keras.models.load_model` gives:

* **Column order.**  The book built its list of columns from a Python `set`,
  so every saved model concatenates the seven columns in a different order
  (scmodeldec27b_5 enters hour, Route, day, month, year, daym, Direction
  through a chain of nested Concatenate layers; scmodelapr26_2020_5 enters
  daym, Direction, hour, Route, month, year, day).  The dense kernel's rows
  follow that order.  This module *traces* the graph - InputLayer ->
  Embedding -> BatchNormalization -> Flatten -> Dropout -> Concatenate ... ->
  Dense - instead of trusting layer numbers or positions, and permutes the
  kernel's 10-row blocks into our fixed order `data.COLUMNS`.
* **hard_sigmoid.**  Keras 2 defined hard_sigmoid(x) = clip(0.2x + 0.5, 0, 1);
  Keras 3 defines it as relu6(x + 3) / 6 = clip(x/6 + 0.5, 0, 1).  The file
  only stores the *name* "hard_sigmoid", so Keras 3's `load_model` loads the
  file without complaint and silently computes different probabilities
  (docs/differences.md row 1).  We map the Keras 2 name to our explicit "hard_sigmoid_keras2".
* **BatchNormalization.**  epsilon and momentum are read from each layer's
  config and must be the values our model is built with (1e-3, 0.99).

Reading the file (tracing the graph, the checks above) is keras_impl.legacy_h5;
this module builds models and predictions from what it reads.

Public API:

    legacy = read_legacy_keras2_h5(path)     # keras_impl.legacy_h5: canonical weights + metadata
    legacy.weights                           # experiment.weights canonical names, our column order
    legacy.concatenation_order               # columns in the order the file concatenates them
    model = load_legacy_keras2_model(path)   # our keras_impl model, Keras-2 hard_sigmoid, these weights
    plain = load_with_plain_keras3(path)     # what keras.models.load_model does (Keras 3 hard_sigmoid!)
    probabilities = predict_keras2_numpy(legacy, features)   # Keras 2.2.4 inference in plain NumPy

Try it:

    python -m keras_impl.legacy ../shared/reference/keras2-models/scmodeldec27b_5.h5

prints the traced column order, the BatchNorm settings and the book's one-off
trip scored three ways (our Keras-2 model, plain Keras 3 loading, NumPy).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from configs.cli import OneLineArgumentParser
from configs.console import run_main, say
from data.dataset import COLUMNS
from keras_impl.legacy_h5 import LegacyKeras2Model, read_legacy_keras2_h5

# The book's one-off scoring example (keras_impl/score.py), already encoded; the book
# printed 0.357 for the model it had just trained.
BOOK_TRIP = {"hour": 18, "Route": 0, "daym": 21, "month": 0, "year": 5, "Direction": 1, "day": 1}


# --------------------------------------------------------------------------- building models


def load_legacy_keras2_model(path: str | Path) -> "keras.Model":  # noqa: F821
    """Our keras_impl model with the file's weights and the Keras 2 hard_sigmoid: the book's predictions.

    Inputs are named by column (data.COLUMNS), encoded as data/vocab.py does.
    """
    from keras_impl.model import build_model, set_canonical_weights

    legacy = read_legacy_keras2_h5(path)
    model = build_model(legacy.vocab_sizes, embedding_dim=legacy.embedding_dim,
                        dropout_rate=legacy.dropout_rate, output_activation=legacy.output_activation)
    set_canonical_weights(model, legacy.weights)
    return model


def load_with_plain_keras3(path: str | Path) -> "keras.Model":  # noqa: F821
    """What a Keras 3 user gets from `keras.models.load_model(path, compile=False)`.

    Measured with keras 3.15.1: both reference files load without an error or
    a warning about the activation, and the Dense layer's "hard_sigmoid" is
    resolved to Keras 3's relu6(x + 3) / 6, so the predictions are not the
    book's.  Kept only to show that; use load_legacy_keras2_model instead.
    """
    import keras

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"model file not found: {path}")
    return keras.models.load_model(path, compile=False)


def predict_keras2_numpy(legacy: LegacyKeras2Model, features: np.ndarray) -> np.ndarray:
    """Inference as Keras 2.2.4 computed it, in NumPy: an oracle independent of both frameworks.

    features: int (n, 7) in data.COLUMNS order.  Returns float32 (n,).
    Inference BatchNorm: (x - moving_mean) / sqrt(moving_variance + epsilon) * gamma + beta.
    Dropout is the identity at inference.
    """
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[1] != len(COLUMNS):
        raise ValueError(f"features must have shape (n, {len(COLUMNS)}), got {features.shape}")
    w = legacy.weights
    blocks = []
    for j, column in enumerate(COLUMNS):
        embedded = w[f"embedding.{column}"][features[:, j]].astype(np.float64)
        epsilon = legacy.batchnorm[column]["epsilon"]
        normalised = ((embedded - w[f"batchnorm.{column}.moving_mean"])
                      / np.sqrt(w[f"batchnorm.{column}.moving_variance"].astype(np.float64) + epsilon))
        blocks.append(normalised * w[f"batchnorm.{column}.gamma"] + w[f"batchnorm.{column}.beta"])
    logits = np.concatenate(blocks, axis=1) @ w["output.kernel"].astype(np.float64) + w["output.bias"]
    logits = logits[:, 0]
    if legacy.output_activation == "hard_sigmoid_keras2":
        probabilities = np.clip(0.2 * logits + 0.5, 0.0, 1.0)   # Keras 2: slope 0.2, saturates at |x| >= 2.5
    else:
        probabilities = 1.0 / (1.0 + np.exp(-logits))
    return probabilities.astype(np.float32)


def predict_columns(model: Any, features: np.ndarray, batch_size: int = 65536) -> np.ndarray:
    """Predict with a Keras model whose inputs are named by column, whatever their order in the model.

    features: int (n, 7) in data.COLUMNS order.  The book-era models take
    float32 inputs (their InputLayers say so); ours take integers: each input
    gets the dtype it declares.  Returns float32 (n,).
    """
    features = np.asarray(features)
    inputs = {}
    for tensor in model.inputs:
        name = tensor.name.split(":")[0]
        if name not in COLUMNS:
            raise ValueError(f"model input {name!r} is not one of the columns {', '.join(COLUMNS)}")
        inputs[name] = features[:, COLUMNS.index(name)].reshape(-1, 1).astype(tensor.dtype)
    return np.asarray(model.predict(inputs, batch_size=batch_size, verbose=0), dtype=np.float32).reshape(-1)


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineArgumentParser(
        prog="python -m keras_impl.legacy",
        description="Describe a book-era Keras 2 .h5 streetcar model and score the book's one-off trip "
                    "with Keras 2 semantics (our model), plain Keras 3 loading and NumPy.")
    parser.add_argument("path", help="a Keras 2 .h5 model, e.g. ../shared/reference/keras2-models/scmodeldec27b_5.h5")
    args = parser.parse_args(argv)
    legacy = read_legacy_keras2_h5(args.path)
    say(legacy.describe())
    trip = np.array([[BOOK_TRIP[column] for column in COLUMNS]], dtype=np.int64)
    ours = predict_columns(load_legacy_keras2_model(args.path), trip)[0]
    plain = predict_columns(load_with_plain_keras3(args.path), trip)[0]
    oracle = predict_keras2_numpy(legacy, trip)[0]
    print(f"book trip {BOOK_TRIP}: Keras 2 semantics {ours:.6f} (NumPy oracle {oracle:.6f}); "
          f"plain Keras 3 load_model {plain:.6f}", file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
