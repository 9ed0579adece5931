"""The book author's two Keras 2.2.4 models, imported into both frameworks (docs/differences.md row 1).

    python -m pytest parity_tests/test_reference_models.py -q -s     # -s prints the measured numbers

The files stay in ../shared/reference/keras2-models/ (never copied into the
project).  For each model:

* keras_impl.legacy_h5 traces its graph; the traced column order, BatchNorm
  settings and Keras version are checked against what the files hold;
* our Keras model built with the Keras-2 hard_sigmoid and the file's weights,
  the Lightning checkpoint written by `python -m lightning_impl.convert
  --legacy-keras2` (the CLI runs once in a subprocess, once in-process), and a
  NumPy re-statement of Keras 2.2.4's arithmetic predict the same
  probabilities (within REFERENCE_PREDICTION_ATOL) on the full real test split
  (572,276 rows on the 2014-2019 workbooks);
* plain `keras.models.load_model` (Keras 3) loads the file silently and changes
  the predictions (the Keras 3 hard_sigmoid); measured on the test split
  (keras 3.15.1):
      scmodeldec27b_5       max |diff| 0.0833 (= 1/12), 0 decisions flipped
      scmodelapr26_2020_5   max |diff| 0.0833 (= 1/12), 0 decisions flipped
  No decision can flip: both hard sigmoids are monotone and equal 0.5 exactly
  at logit 0, so p > 0.5 <=> logit > 0 under either definition.  Only the
  probabilities (and any threshold other than 0.5) change, by up to
  max |0.2x - x/6| = 1/12 at |x| = 2.5;
* the book's one-off trip {'hour': 18, 'Route': 0, 'daym': 21, 'month': 0,
  'year': 5, 'Direction': 1, 'day': 1} (= route 301 eastbound, Tuesday
  2019-01-22, 18:00) scores, identically in both frameworks,
      scmodeldec27b_5       0.418011   (plain Keras 3: 0.431676)
      scmodelapr26_2020_5   0.497278   (plain Keras 3: 0.497732)
  (the book printed 0.357 for the model it had just trained, not these files);
  `python -m lightning_impl.score` on the converted checkpoint, given route
  301, direction e, 2019-01-22, hour 18, prints the same probability;
* an .h5 without --legacy-keras2, a file that is not HDF5 and an HDF5 model
  of another architecture are refused with one clear line (exit status 2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data.dataset import COLUMNS
from data.vocab import BOOK_VOCABULARIES, encode_trip
from parity_tests.compare import compare_arrays

# Probabilities of the same weights in TF and torch float32: different
# summation orders of 70 products give ~3e-7; 1e-6 leaves room, a wrong
# weight or column order gives >= 1e-3.
REFERENCE_PREDICTION_ATOL = 1e-6
# Plain Keras 3 loading must visibly change the probabilities: the two hard
# sigmoids differ by up to 1/12 ~ 0.083; we require more than this.
PLAIN_KERAS3_MIN_CHANGE = 0.01

# What the graph tracing must find (read from the files' model_config).
EXPECTED_FILE_FACTS = {
    "scmodeldec27b_5": {"keras_version": "2.2.4",
                        "concatenation_order": ("hour", "Route", "day", "month", "year", "daym", "Direction")},
    "scmodelapr26_2020_5": {"keras_version": "2.2.4-tf",
                            "concatenation_order": ("daym", "Direction", "hour", "Route", "month", "year", "day")},
}
BOOK_TRIP = {"hour": 18, "Route": 0, "daym": 21, "month": 0, "year": 5, "Direction": 1, "day": 1}
# Measured once (keras 3.15.1 / torch 2.13) and written down; the tests
# recompute them in both frameworks and check against these.
EXPECTED_TRIP_PROBABILITY = {"scmodeldec27b_5": 0.418011, "scmodelapr26_2020_5": 0.497278}
EXPECTED_TRIP_PLAIN_KERAS3 = {"scmodeldec27b_5": 0.431676, "scmodelapr26_2020_5": 0.497732}
TRIP_PRINT_ATOL = 5e-7   # the written-down numbers have 6 decimals

PROJECT_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.filterwarnings(
    # Keras 3 re-creating the old Embedding layers from their Keras 2 config (input_dim argument).
    "ignore:Do not pass an `input_shape`/`input_dim` argument to a layer:UserWarning")


@pytest.fixture(scope="module")
def keras_models(reference_model_paths) -> dict[str, dict]:
    """Per reference model, built once: our Keras model with Keras-2 semantics, and plain Keras 3 loading."""
    from keras_impl.legacy import load_legacy_keras2_model, load_with_plain_keras3
    from keras_impl.legacy_h5 import read_legacy_keras2_h5

    return {name: {"faithful": load_legacy_keras2_model(path), "plain": load_with_plain_keras3(path),
                   "legacy": read_legacy_keras2_h5(path)}
            for name, path in reference_model_paths.items()}


@pytest.fixture(scope="module")
def lightning_networks(converted_checkpoints) -> dict:
    """Per reference model, the StreetcarNet of its converted checkpoint (load_from_checkpoint)."""
    from lightning_impl.system import StreetcarClassifier

    networks = {}
    for name, checkpoint in converted_checkpoints.items():
        classifier = StreetcarClassifier.load_from_checkpoint(str(checkpoint), map_location="cpu", weights_only=True)
        classifier.eval()
        networks[name] = classifier.net
    return networks


@pytest.fixture(scope="module")
def converted_checkpoints(reference_model_paths, tmp_path_factory) -> dict[str, Path]:
    """Each reference model converted to a Lightning checkpoint by the converter.

    The first through the real CLI in a subprocess (what a user types), the
    second in-process through the same main() (saves a TensorFlow start-up).
    """
    from bridge import command, convert

    out_dir = tmp_path_factory.mktemp("converted")
    checkpoints = {}
    names = list(reference_model_paths)
    first = names[0]
    checkpoints[first] = out_dir / f"{first}.ckpt"
    completed = subprocess.run(
        [sys.executable, "-m", "lightning_impl.convert", "--keras", str(reference_model_paths[first]),
         "--legacy-keras2", "--out", str(checkpoints[first]), "--json"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert completed.returncode == 0, f"convert CLI failed:\n{completed.stderr[-3000:]}"
    summary = json.loads(completed.stdout)
    assert summary["output_activation"] == "hard_sigmoid_keras2"
    assert summary["verify_max_abs_diff"] <= convert.VERIFY_ATOL
    for name in names[1:]:
        checkpoints[name] = out_dir / f"{name}.ckpt"
        assert command.main(["--keras", str(reference_model_paths[name]), "--legacy-keras2",
                             "--out", str(checkpoints[name])]) == 0
    return checkpoints


@pytest.fixture(scope="module")
def test_split(prepared_dataset) -> np.ndarray:
    """The real test split's features; the book models were trained with these encodings."""
    assert prepared_dataset.vocabularies.values == BOOK_VOCABULARIES.values, \
        "the prepared vocabularies differ from the book's: the reference models would be fed wrong codes"
    features, _ = prepared_dataset.split_arrays("test")
    return features.astype(np.int64)


def _lightning_predict(net, features: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return net(torch.as_tensor(features)).numpy().reshape(-1)


# --------------------------------------------------------------------------- the files themselves


@pytest.mark.parametrize("name", list(EXPECTED_FILE_FACTS))
def test_tracing_finds_the_files_column_order_and_settings(name, reference_model_paths):
    from keras_impl.legacy_h5 import read_legacy_keras2_h5

    legacy = read_legacy_keras2_h5(reference_model_paths[name])
    facts = EXPECTED_FILE_FACTS[name]
    assert legacy.keras_version == facts["keras_version"]
    assert legacy.concatenation_order == facts["concatenation_order"]
    assert legacy.keras2_activation == "hard_sigmoid" and legacy.output_activation == "hard_sigmoid_keras2"
    assert {(s["epsilon"], s["momentum"]) for s in legacy.batchnorm.values()} == {(1e-3, 0.99)}
    assert legacy.vocab_sizes == BOOK_VOCABULARIES.sizes()
    assert legacy.embedding_dim == 10 and legacy.dropout_rate == pytest.approx(0.0003)
    # The kernel's 10-row blocks moved with their columns: block j of ours is
    # block concatenation_order.index(COLUMNS[j]) of the file's.
    import h5py

    with h5py.File(reference_model_paths[name], "r") as handle:
        dense = handle["model_weights"][legacy.dense_layer]
        file_kernel = np.asarray(dense[[n for n in dense.attrs["weight_names"] if b"kernel" in n][0]])
    for j, column in enumerate(COLUMNS):
        i = legacy.concatenation_order.index(column)
        np.testing.assert_array_equal(legacy.weights["output.kernel"][10 * j:10 * j + 10], file_kernel[10 * i:10 * i + 10])


def test_book_trip_is_route_301_eastbound_on_tuesday_2019_01_22_at_18():
    """The book's encoded example decodes to a real trip (Jan 22, 2019 was a Tuesday)."""
    assert encode_trip(BOOK_VOCABULARIES, route=301, direction="e", date="2019-01-22", hour=18) == BOOK_TRIP


# --------------------------------------------------------------------------- predictions, both frameworks


@pytest.mark.real_data
@pytest.mark.parametrize("name", list(EXPECTED_FILE_FACTS))
def test_both_frameworks_predict_the_same_on_the_test_split(name, keras_models, lightning_networks, test_split):
    from keras_impl.legacy import predict_columns, predict_keras2_numpy

    keras_probabilities = predict_columns(keras_models[name]["faithful"], test_split)
    lightning_probabilities = _lightning_predict(lightning_networks[name], test_split)
    oracle = predict_keras2_numpy(keras_models[name]["legacy"], test_split)
    lightning_vs_keras = compare_arrays(lightning_probabilities, keras_probabilities, atol=REFERENCE_PREDICTION_ATOL,
                                        name=f"{name}: Lightning vs Keras on the test split")
    keras_vs_oracle = compare_arrays(keras_probabilities, oracle, atol=REFERENCE_PREDICTION_ATOL,
                                     name=f"{name}: Keras vs Keras-2.2.4 NumPy oracle")
    flagged = int((keras_probabilities > 0.5).sum())
    print(f"\n{name}: {len(test_split):,} test rows; max |Lightning - Keras| {lightning_vs_keras:.2e}, "
          f"max |Keras - NumPy oracle| {keras_vs_oracle:.2e}; {flagged:,} rows predicted 'delay' in both")
    assert flagged == int((lightning_probabilities > 0.5).sum())


@pytest.mark.real_data
@pytest.mark.parametrize("name", list(EXPECTED_FILE_FACTS))
def test_plain_keras3_loading_silently_changes_predictions(name, keras_models, test_split):
    """load_model reads the old file without complaint, then computes hard_sigmoid the Keras 3 way.

    docs/differences.md row 1.
    """
    from keras_impl.legacy import predict_columns

    plain_model = keras_models[name]["plain"]
    # It really is the Keras 3 definition that got attached to the layer.
    import keras

    assert plain_model.layers[-1].activation is keras.activations.hard_sigmoid
    plain = predict_columns(plain_model, test_split)
    faithful = predict_columns(keras_models[name]["faithful"], test_split)
    difference = np.abs(plain.astype(np.float64) - faithful)
    flipped = int(((plain > 0.5) != (faithful > 0.5)).sum())
    print(f"\n{name}: plain Keras 3 load_model vs Keras 2 semantics on {len(test_split):,} test rows: "
          f"max |diff| {difference.max():.4f}, mean |diff| {difference.mean():.4f}, "
          f"rows changed by > 0.01: {int((difference > 0.01).sum()):,}, decisions flipped at 0.5: {flipped}")
    assert difference.max() > PLAIN_KERAS3_MIN_CHANGE
    assert difference.max() <= 1 / 12 + 1e-6          # the largest gap between the two hard sigmoids
    # Both hard sigmoids cross 0.5 exactly at logit 0, so the 0.5 decision cannot change.
    assert flipped == 0


@pytest.mark.parametrize("name", list(EXPECTED_FILE_FACTS))
def test_book_trip_scores_the_same_in_both_frameworks(name, keras_models, lightning_networks, converted_checkpoints,
                                                      capsys):
    """Also through the Lightning scorer CLI (in-process), with the trip typed as a person would."""
    from keras_impl.legacy import predict_columns
    from lightning_impl.score import main as score_main

    trip = np.array([[BOOK_TRIP[column] for column in COLUMNS]], dtype=np.int64)
    keras_probability = float(predict_columns(keras_models[name]["faithful"], trip)[0])
    lightning_probability = float(_lightning_predict(lightning_networks[name], trip)[0])
    plain_probability = float(predict_columns(keras_models[name]["plain"], trip)[0])
    with capsys.disabled():  # capsys is here for the scorer's stdout; this line is for the reader
        print(f"\n{name}: book trip {BOOK_TRIP} -> Keras {keras_probability:.6f}, Lightning "
              f"{lightning_probability:.6f} (plain Keras 3 load: {plain_probability:.6f}; the book printed 0.357 "
              f"for its own model)")
    compare_arrays(lightning_probability, keras_probability, atol=REFERENCE_PREDICTION_ATOL,
                   name=f"{name}: book trip, Lightning vs Keras")
    compare_arrays(keras_probability, EXPECTED_TRIP_PROBABILITY[name], atol=TRIP_PRINT_ATOL,
                   name=f"{name}: book trip vs the written-down value")
    compare_arrays(plain_probability, EXPECTED_TRIP_PLAIN_KERAS3[name], atol=TRIP_PRINT_ATOL,
                   name=f"{name}: plain Keras 3 book trip vs the written-down value")
    assert keras_probability < 0.5  # "no delay", as the book's 0.357
    capsys.readouterr()
    assert score_main(["--checkpoint", str(converted_checkpoints[name]), "--route", "301", "--direction", "e",
                       "--date", "2019-01-22", "--hour", "18", "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["inputs"] == BOOK_TRIP and scored["delay"] is False
    compare_arrays(scored["probability"], keras_probability, atol=REFERENCE_PREDICTION_ATOL,
                   name=f"{name}: lightning_impl.score vs Keras")


# --------------------------------------------------------------------------- refusals


def _run_convert(argv, capsys) -> tuple[int, str]:
    from bridge.command import main
    from configs.console import run_main

    status = run_main(main, argv)
    return status, capsys.readouterr().err.strip()


def test_h5_without_legacy_flag_is_refused(reference_model_paths, tmp_path, capsys):
    out = tmp_path / "book.ckpt"
    status, message = _run_convert(["--keras", str(reference_model_paths["scmodeldec27b_5"]), "--out", str(out)],
                                   capsys)
    assert status == 2
    assert len(message.splitlines()) == 1
    assert "Keras 2" in message and "--legacy-keras2" in message and "clip(0.2x + 0.5, 0, 1)" in message
    assert not out.exists()


def test_not_an_hdf5_file_is_refused(tmp_path, capsys):
    fake = tmp_path / "model.h5"
    fake.write_text("not a model\n")
    from keras_impl.legacy_h5 import read_legacy_keras2_h5

    with pytest.raises(ValueError, match=r"model\.h5: not a readable HDF5 file .*expected a Keras 2 model"):
        read_legacy_keras2_h5(fake)
    status, message = _run_convert(["--keras", str(fake), "--legacy-keras2", "--out", str(tmp_path / "x.ckpt")],
                                   capsys)
    assert status == 2 and "model.h5" in message and len(message.splitlines()) == 1


def test_other_architecture_is_refused(reference_model_paths, tmp_path):
    """The same file with one Dropout taken out of its chain: tracing names the layer and the expectation."""
    import h5py

    from keras_impl.legacy_h5 import read_legacy_keras2_h5

    source = reference_model_paths["scmodeldec27b_5"]
    altered = tmp_path / "altered.h5"
    with h5py.File(source, "r") as original, h5py.File(altered, "w") as copy:
        for key, value in original.attrs.items():
            copy.attrs[key] = value
        original.copy("model_weights", copy)
        config = json.loads(original.attrs["model_config"])
        layers = config["config"]["layers"]
        # concatenate_7 now reads flatten_8 directly, skipping dropout_8.
        for layer in layers:
            if layer["name"] == "concatenate_7":
                layer["inbound_nodes"][0][0][0] = "flatten_8"
        config["config"]["layers"] = [layer for layer in layers if layer["name"] != "dropout_8"]
        copy.attrs["model_config"] = json.dumps(config)
    with pytest.raises(ValueError, match=r"altered\.h5: architecture does not match the streetcar model "
                                         r"\(after 'flatten_8' \(column hour\) found concatenate_7 "
                                         r"\(Concatenate\), expected one Dropout\)"):
        read_legacy_keras2_h5(altered)
