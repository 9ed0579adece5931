"""What a model file is, and the vocabulary that goes with it (bridge.convert's inputs).

A file's bytes, not its name, say what it is: a .keras archive is a zip, a
Keras 2 or Keras 3 .h5 is HDF5 with a keras_version attribute, a Lightning
checkpoint is the zip archive torch.save writes.  Every problem is a one-line
ValueError naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from data.dataset import COLUMNS
from data.vocab import Vocabularies

VOCABULARY_FILE = "vocabulary.json"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"


def keras_file_kind(path: Path) -> str:
    """'keras3-zip' (.keras archive), 'keras2-h5' or 'keras3-h5', from the file's bytes, not its name."""
    if not path.is_file():
        raise ValueError(f"model file not found: {path}")
    with open(path, "rb") as stream:
        head = stream.read(8)
    if head.startswith(ZIP_SIGNATURE):
        import zipfile

        if not zipfile.is_zipfile(path):  # Keras itself would say "File not found" for a truncated archive
            raise ValueError(f"{path}: not a readable .keras archive (the zip is corrupt or truncated); "
                             f"expected a model saved by Keras (model.save)")
        return "keras3-zip"
    if head != HDF5_SIGNATURE:
        raise ValueError(f"{path}: neither a .keras archive (zip) nor an HDF5 .h5 file; expected a model "
                         f"saved by Keras (model.save)")
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            version = handle.attrs.get("keras_version", b"")
    except OSError as error:
        raise ValueError(f"{path}: corrupt HDF5 file ({(str(error).splitlines() or [''])[0]})") from None
    version = version.decode() if isinstance(version, bytes) else str(version)
    if not version:
        raise ValueError(f"{path}: HDF5 file without a keras_version attribute; expected a model saved by "
                         f"Keras model.save() (a weights-only file has no architecture)")
    return "keras3-h5" if version.startswith("3.") else "keras2-h5"


def load_keras3_model(path: Path) -> Any:
    import keras_impl  # noqa: F401  (sets KERAS_BACKEND before Keras is imported)
    import keras
    import keras_impl.model  # noqa: F401  (registers hard_sigmoid_keras2 for deserialisation)

    try:
        return keras.models.load_model(path, compile=False)
    except (ValueError, TypeError, OSError, KeyError) as error:
        first = (str(error).splitlines() or [error.__class__.__name__])[0]
        raise ValueError(f"{path}: Keras could not load this model ({first})") from None


def vocabularies_for(model_path: Path, vocabulary_path: str | Path | None, *,
                      default: Vocabularies | None = None, default_name: str = "") -> tuple[Vocabularies, str]:
    if vocabulary_path is not None:
        return Vocabularies.load(vocabulary_path), str(vocabulary_path)
    beside = model_path.with_name(VOCABULARY_FILE)
    if default is None:
        if not beside.is_file():
            raise ValueError(f"no {VOCABULARY_FILE} beside {model_path}; every model trained by keras_impl has one "
                             f"in its run folder, or pass --vocabulary PATH")
        return Vocabularies.load(beside), str(beside)
    return default, default_name


def check_vocabulary_fits(vocabularies: Vocabularies, vocab_sizes: Mapping[str, int], source: str,
                           model_path: Path) -> None:
    sizes = vocabularies.sizes()
    problems = [f"{column}: vocabulary has {sizes.get(column)} values, the model's embedding {vocab_sizes[column]}"
                for column in COLUMNS if sizes.get(column) != int(vocab_sizes[column])]
    if problems:
        raise ValueError(f"vocabulary {source} does not fit {model_path}: " + "; ".join(problems))


def load_classifier(ckpt_path: Path) -> Any:
    """StreetcarClassifier.load_from_checkpoint on the CPU, with file errors as one-line ValueErrors."""
    if not ckpt_path.is_file():
        raise ValueError(f"checkpoint not found: {ckpt_path}")
    with open(ckpt_path, "rb") as stream:
        if not stream.read(4).startswith(ZIP_SIGNATURE):
            # torch.save has written zip archives since torch 1.6; anything else is not a checkpoint.
            raise ValueError(f"{ckpt_path}: not a torch checkpoint (expected the zip archive that "
                             f"Lightning's Trainer or this converter writes)")
    from lightning_impl.score import read_checkpoint
    from lightning_impl.system import StreetcarClassifier

    # Tensors and plain data only, and hyperparameters that match the saved weights, before anything is built.
    read_checkpoint(ckpt_path)
    try:
        # weights_only=True spelled out: Lightning's default (None) lets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1
        # switch to full unpickling, which runs whatever code a crafted file holds; an explicit True wins.
        return StreetcarClassifier.load_from_checkpoint(str(ckpt_path), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - zip, pickle, torch and __init__ errors all mean "not usable"
        first = (str(error).strip().splitlines() or [error.__class__.__name__])[0]
        raise ValueError(f"{ckpt_path}: not a loadable StreetcarClassifier checkpoint "
                         f"({error.__class__.__name__}: {first})") from None
