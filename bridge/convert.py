"""Convert a trained model between Keras and Lightning, by canonical weight name.

Keras -> Lightning (a checkpoint that `StreetcarClassifier.load_from_checkpoint`
and `python -m lightning_impl.score --checkpoint` accept):

    python -m lightning_impl.convert --keras runs/keras-exp5-.../model.keras --out model.ckpt
        # vocabulary.json is read from beside the .keras file (or give --vocabulary PATH)
    python -m lightning_impl.convert --keras ../shared/reference/keras2-models/scmodeldec27b_5.h5 \\
        --legacy-keras2 --out book.ckpt
        # a book-era Keras 2.2.4 .h5; the vocabulary defaults to BOOK_VOCABULARIES

Lightning -> Keras (a .keras file plus vocabulary.json beside it):

    python -m lightning_impl.convert --lightning model.ckpt --out model.keras

or from Python: `keras_to_lightning(keras_path, out_path, ...)` and
`lightning_to_keras(ckpt_path, out_path)`.  A Keras 3 `.h5` (Keras 3's legacy
`model.save("x.h5")`) is read like a `.keras` file; the file's bytes, not its
name, decide which kind it is.

Why --legacy-keras2 exists.  A Keras 2 `.h5` file stores its output
activation by *name*, "hard_sigmoid".  Keras 2 defined that as
clip(0.2x + 0.5, 0, 1); Keras 3 (and torch's hardsigmoid) as
clip(x/6 + 0.5, 0, 1).  Keras 3 loads such a file without complaint and
predicts differently (up to 1/12 = 0.083 per probability).  The converter
therefore refuses a Keras 2 .h5 unless --legacy-keras2 says to read it with
Keras 2's meaning (our "hard_sigmoid_keras2"), and traces its graph with
keras_impl.legacy to put the book's set-ordered columns into our order.

Every conversion is checked before the command reports success: the written
file is loaded back (load_from_checkpoint / keras.models.load_model) and its
predictions on VERIFY_ROWS seeded encoded rows are compared with the source
model's; a difference above VERIFY_ATOL is an error and no file is left.
Files are written atomically and with the umask's permissions (data.atomic.atomic_path).

The command line is bridge.command (`python -m lightning_impl.convert`): exit
status 0 on success, 2 with one line `error: ...` for a user error
(configs.console.run_main).  --json prints one JSON object on stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from bridge.architecture import build_with, keras_architecture, lightning_architecture
from bridge.model_files import (VOCABULARY_FILE, check_vocabulary_fits, keras_file_kind, load_classifier,
                                load_keras3_model, vocabularies_for)
from data.atomic import atomic_path
from data.dataset import COLUMNS
from data.vocab import BOOK_VOCABULARIES, Vocabularies
from configs.console import json_safe

# Predictions of the written file vs the source model on VERIFY_ROWS rows.
# float32 arithmetic in different orders (TF vs torch) differs by ~1e-7;
# anything near 1e-5 would mean a wrong weight, not rounding.
VERIFY_ATOL = 1e-5
VERIFY_ROWS = 2000
VERIFY_SEED = 7

KERAS2_HARD_SIGMOID_EXPLANATION = (
    "Keras 2 stored its output activation as the name 'hard_sigmoid', which Keras 2 computed as "
    "clip(0.2x + 0.5, 0, 1) but Keras 3 and torch compute as clip(x/6 + 0.5, 0, 1), so a plain load "
    "changes the predictions; pass --legacy-keras2 to keep Keras 2's meaning")


# --------------------------------------------------------------------------- Keras -> Lightning


def keras_to_lightning(keras_path: str | Path, out_path: str | Path, *, legacy_keras2: bool = False,
                       vocabulary_path: str | Path | None = None) -> dict[str, Any]:
    """Convert a .keras (or, with legacy_keras2, a Keras 2 .h5) model to a Lightning checkpoint.

    Returns a summary: input, output, kind, output_activation, vocabulary
    (where it came from), verify_max_abs_diff.
    """
    keras_path, out_path = Path(keras_path), Path(out_path)
    kind = keras_file_kind(keras_path)
    if out_path.suffix != ".ckpt":
        raise ValueError(f"--out {out_path} must end in .ckpt (a Lightning checkpoint)")

    if kind == "keras2-h5":
        if not legacy_keras2:
            raise ValueError(f"{keras_path} is a Keras 2 .h5 model; {KERAS2_HARD_SIGMOID_EXPLANATION}")
        from keras_impl.legacy import predict_keras2_numpy, read_legacy_keras2_h5

        legacy = read_legacy_keras2_h5(keras_path)
        vocabularies, vocabulary_source = vocabularies_for(keras_path, vocabulary_path,
                                                            default=BOOK_VOCABULARIES,
                                                            default_name="BOOK_VOCABULARIES")
        architecture = {"vocab_sizes": legacy.vocab_sizes, "embedding_dim": legacy.embedding_dim,
                        "dropout_rate": legacy.dropout_rate, "output_activation": legacy.output_activation}
        weights = legacy.weights

        def source_predict(features: np.ndarray) -> np.ndarray:
            # Keras 2.2.4's arithmetic in NumPy: no Keras 3 reinterpretation involved.
            return predict_keras2_numpy(legacy, features)
    else:
        if legacy_keras2:
            raise ValueError(f"--legacy-keras2 is for book-era Keras 2 .h5 files; {keras_path} is a "
                             f"{'Keras 3 .keras' if kind == 'keras3-zip' else 'Keras 3 .h5'} file, whose "
                             f"activation names already mean what Keras 3 computes")
        model = load_keras3_model(keras_path)
        from keras_impl.legacy import predict_columns
        from keras_impl.model import get_canonical_weights

        architecture = keras_architecture(model, str(keras_path))
        vocabularies, vocabulary_source = vocabularies_for(keras_path, vocabulary_path)
        weights = get_canonical_weights(model)   # in the model's own width: float64 for a --precision 64 run

        def source_predict(features: np.ndarray) -> np.ndarray:
            return predict_columns(model, features)

    check_vocabulary_fits(vocabularies, architecture["vocab_sizes"], vocabulary_source, keras_path)
    checkpoint = build_checkpoint(weights, vocabularies, architecture,
                                  source={"path": str(keras_path), "kind": kind})
    probe = probe_rows(architecture["vocab_sizes"])
    expected = source_predict(probe)
    with atomic_path(out_path) as temporary:
        import torch

        torch.save(checkpoint, temporary)
        actual = _predict_checkpoint(temporary, probe)
        max_diff = _verify(actual, expected, f"{out_path} (converted from {keras_path})")
    return {"input": str(keras_path), "output": str(out_path), "direction": "keras-to-lightning", "kind": kind,
            "output_activation": architecture["output_activation"], "vocabulary": vocabulary_source,
            "precision": checkpoint["precision"],
            "verify_rows": int(len(probe)), "verify_max_abs_diff": max_diff}


def build_checkpoint(weights: Mapping[str, np.ndarray], vocabularies: Vocabularies,
                     architecture: Mapping[str, Any], source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The dict Lightning's load_from_checkpoint reads, made without a Trainer.

    lightning 2.6 (core/saving.py `_load_from_checkpoint`) needs
    `pytorch-lightning_version` (for its migrations), `hyper_parameters` (the
    classifier's __init__ arguments, as save_hyperparameters stored them) and
    `state_dict` (the module's).  We build the classifier the way training
    does, copy the weights in by canonical name and take its own hparams and
    state_dict, so the checkpoint cannot drift from the class.  epoch and
    global_step are 0: the file is a model to load and score, not a training
    state to resume (it has no optimizer or loop state).
    """
    import lightning
    import torch

    from lightning_impl.model import set_canonical_weights

    classifier = new_classifier(vocabularies, architecture)
    if {np.asarray(value).dtype for value in weights.values()} == {np.dtype(np.float64)}:
        # A --precision 64 model stays float64; its checkpoint records it (StreetcarClassifier.on_save_checkpoint).
        classifier = classifier.double()
    set_canonical_weights(classifier_network(classifier), weights, source=str((source or {}).get("path", "weights")))
    checkpoint: dict[str, Any] = {
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": lightning.__version__,
        "state_dict": {name: tensor.detach().cpu().clone() for name, tensor in classifier.state_dict().items()},
        "hyper_parameters": json_safe(dict(classifier.hparams)),
        "converted_from": json_safe(dict(source or {})),
    }
    # Let the classifier add what its own checkpoints carry (as Trainer does).
    if hasattr(classifier, "on_save_checkpoint"):
        classifier.on_save_checkpoint(checkpoint)
    torch_tensors = [name for name, value in checkpoint["state_dict"].items() if not isinstance(value, torch.Tensor)]
    if torch_tensors:
        raise ValueError(f"state_dict entries that are not tensors: {', '.join(torch_tensors)}")
    return checkpoint


# --------------------------------------------------------------------------- Lightning -> Keras


def lightning_to_keras(ckpt_path: str | Path, out_path: str | Path) -> dict[str, Any]:
    """Write a .keras model (and vocabulary.json beside it) holding a Lightning checkpoint's weights."""
    ckpt_path, out_path = Path(ckpt_path), Path(out_path)
    if out_path.suffix != ".keras":
        raise ValueError(f"--out {out_path} must end in .keras (Keras 3 saves only .keras archives)")
    classifier = load_classifier(ckpt_path)
    net = classifier_network(classifier)
    from lightning_impl.model import get_canonical_weights

    import keras_impl  # noqa: F401  (sets KERAS_BACKEND before Keras is imported)
    import keras
    from keras_impl.legacy import predict_columns
    from keras_impl.model import build_model, set_canonical_weights
    from keras_impl.precision import keras_float_type

    with keras_float_type(classifier.precision_bits):  # the .keras file's dtype policy records it
        model = build_with(build_model, lightning_architecture(net))
    set_canonical_weights(model, get_canonical_weights(net), source=str(ckpt_path))
    vocabularies = classifier_vocabularies(classifier, ckpt_path)
    vocabulary_path = out_path.with_name(VOCABULARY_FILE)
    if vocabulary_path.is_file() and Vocabularies.load(vocabulary_path).values != vocabularies.values:
        # keras_impl reads the vocabulary from beside the model: never pair a model with another's encoding.
        raise ValueError(f"{vocabulary_path} already exists with a different vocabulary; write the .keras file "
                         f"into another folder")
    probe = probe_rows(net.vocab_sizes)
    expected = _predict_network(net, probe)
    with atomic_path(out_path) as temporary:
        model.save(str(temporary))  # the temp name keeps the '.keras' suffix Keras insists on
        reloaded = keras.models.load_model(str(temporary), compile=False)
        max_diff = _verify(predict_columns(reloaded, probe), expected, f"{out_path} (converted from {ckpt_path})")
    vocabularies.save(vocabulary_path)
    return {"input": str(ckpt_path), "output": str(out_path), "direction": "lightning-to-keras",
            "vocabulary": str(vocabulary_path), "output_activation": net.output_activation,
            "precision": classifier.precision_bits,
            "verify_rows": int(len(probe)), "verify_max_abs_diff": max_diff}


# --------------------------------------------------------------------------- the classifier (lightning_impl.system)


def new_classifier(vocabularies: Vocabularies, architecture: Mapping[str, Any]) -> Any:
    """A StreetcarClassifier with this vocabulary and architecture (training settings at their defaults)."""
    from lightning_impl.system import StreetcarClassifier

    return StreetcarClassifier({column: int(size) for column, size in architecture["vocab_sizes"].items()},
                               vocabularies.to_json_dict(),
                               embedding_dim=int(architecture["embedding_dim"]),
                               dropout_rate=float(architecture["dropout_rate"]),
                               output_activation=str(architecture["output_activation"]))


def classifier_network(classifier: Any) -> Any:
    """The StreetcarNet inside a StreetcarClassifier."""
    return classifier.net


def classifier_vocabularies(classifier: Any, source: Path) -> Vocabularies:
    payload = classifier.hparams.get("vocabularies")
    if payload is None:
        raise ValueError(f"{source}: checkpoint has no vocabularies in its hyper_parameters")
    return Vocabularies.from_json_dict(payload, source=str(source))


# --------------------------------------------------------------------------- helpers


def probe_rows(vocab_sizes: Mapping[str, int], count: int = VERIFY_ROWS, seed: int = VERIFY_SEED) -> np.ndarray:
    """Seeded encoded rows (count, 7) covering every code of every column at least once when count allows."""
    rng = np.random.default_rng(seed)
    columns = []
    for column in COLUMNS:
        size = int(vocab_sizes[column])
        codes = np.concatenate([np.arange(size), rng.integers(0, size, max(count - size, 0))])[:count]
        columns.append(rng.permutation(codes))
    return np.stack(columns, axis=1).astype(np.int64)


def _predict_checkpoint(path: str | Path, features: np.ndarray) -> np.ndarray:
    return _predict_network(classifier_network(load_classifier(Path(path))), features)


def _predict_network(net: Any, features: np.ndarray) -> np.ndarray:
    import torch

    net.eval()
    with torch.no_grad():
        return net(torch.as_tensor(features, dtype=torch.int64)).detach().cpu().numpy().reshape(-1).astype(np.float64)


def _verify(actual: np.ndarray, expected: np.ndarray, what: str) -> float:
    max_diff = float(np.max(np.abs(np.asarray(actual, np.float64) - np.asarray(expected, np.float64))))
    if not max_diff <= VERIFY_ATOL:
        raise ValueError(f"{what}: the converted model predicts differently (max abs diff {max_diff:.3e} > "
                         f"{VERIFY_ATOL:.0e}); nothing was written")
    return max_diff
