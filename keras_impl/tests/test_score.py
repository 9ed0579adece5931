"""keras_impl.score: one-trip scoring through the CLI and in-process, and its errors.

    pytest keras_impl/tests/test_score.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras_impl  # noqa: F401
import keras

from data.dataset import COLUMNS
from data.vocab import BOOK_VOCABULARIES, Vocabularies, encode_trip
from configs.console import run_main
from experiment.weights import expected_shapes
from keras_impl.model import build_model, compile_model, set_canonical_weights
from keras_impl.score import TripScorer, main, measure_scoring_latency, score_trip, trip_inputs
from keras_impl.tests.helpers import PROJECT_ROOT

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

BOOK_SIZES = BOOK_VOCABULARIES.sizes()
TRIP = {"route": 501, "direction": "e", "date": "2019-06-21", "hour": 18}
TRIP_ARGUMENTS = ["--route", "501", "--direction", "e", "--date", "2019-06-21", "--hour", "18"]
# 2019-06-21 is a Friday: Route 501 -> 4, daym 21 -> 20, June -> 5, 2019 -> 5, 'e' -> 1, Friday -> 4.
TRIP_CODES = {"hour": 18, "Route": 4, "daym": 20, "month": 5, "year": 5, "Direction": 1, "day": 4}
LEGACY_MODEL = PROJECT_ROOT.parent / "shared" / "reference" / "keras2-models" / "scmodeldec27b_5.h5"


def small_random_weights(seed: int) -> dict[str, np.ndarray]:
    """Weights whose outputs mostly stay inside the hard sigmoid's linear range."""
    rng = np.random.default_rng(seed)
    weights = {name: (0.3 * rng.normal(size=shape)).astype(np.float32)
               for name, shape in expected_shapes(BOOK_SIZES).items()}
    for name in weights:
        if name.endswith("moving_variance"):
            weights[name] = np.abs(weights[name]) + 0.5
        elif name.endswith("gamma"):
            weights[name] = weights[name] + 1.0
    return weights


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A run-directory-like folder: model.keras + vocabulary.json."""
    folder = tmp_path_factory.mktemp("score_run")
    model = compile_model(build_model(BOOK_SIZES, output_activation="hard_sigmoid_keras2"), 0.001)
    set_canonical_weights(model, small_random_weights(seed=11))
    model.save(folder / "model.keras")
    BOOK_VOCABULARIES.save(folder / "vocabulary.json")
    return folder / "model.keras"


@pytest.fixture(scope="module")
def loaded_model(saved_model):
    return keras.models.load_model(saved_model)


def run_score_cli(arguments: list[str]) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    return subprocess.run([sys.executable, "-m", "keras_impl.score", *arguments], cwd=PROJECT_ROOT,
                          env=environment, capture_output=True, text=True, timeout=300)


def test_cli_and_model_predict_agree(saved_model, loaded_model):
    completed = run_score_cli(["--model", str(saved_model), *TRIP_ARGUMENTS, "--json"])
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert sorted(result) == ["delay", "inputs", "probability"]
    assert result["inputs"] == TRIP_CODES
    expected = float(loaded_model.predict(trip_inputs(TRIP_CODES), verbose=0)[0, 0])
    assert result["probability"] == pytest.approx(expected, abs=1e-6)
    assert result["delay"] is (expected > 0.5)
    assert completed.stderr.strip() == ""   # TensorFlow's native start-up lines are silenced


def test_score_trip_matches_predict_on_many_trips(loaded_model):
    trips = [dict(route=route, direction=direction, date=date, hour=hour)
             for route, direction, date, hour in [(501, "e", "2019-06-21", 18), (301, "W", "2014-01-01", 0),
                                                  (512, "b", "2017-12-31", 23), (504, "n", "2016-02-29", 8)]]
    encoded = [encode_trip(BOOK_VOCABULARIES, **trip) for trip in trips]
    batch = {column: np.array([[codes[column]] for codes in encoded], dtype=np.int32) for column in COLUMNS}
    expected = loaded_model.predict(batch, verbose=0).reshape(-1)
    for trip, codes, probability in zip(trips, encoded, expected):
        result = score_trip(loaded_model, BOOK_VOCABULARIES, **trip)
        assert result["inputs"] == codes
        assert result["probability"] == pytest.approx(float(probability), abs=1e-6)
        assert result["delay"] is (result["probability"] > 0.5)


def test_human_output(saved_model, capsys):
    assert run_main(main, ["--model", str(saved_model), *TRIP_ARGUMENTS]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("p(delay) = ") and ("no delay expected" in out or "delay expected" in out)


@pytest.fixture(scope="module")
def bad_files(saved_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_files")
    (folder / "corrupt").mkdir()
    (folder / "corrupt" / "model.keras").write_bytes(b"not a zip archive")
    BOOK_VOCABULARIES.save(folder / "corrupt" / "vocabulary.json")
    (folder / "no_vocabulary").mkdir()
    (folder / "no_vocabulary" / "model.keras").write_bytes(saved_model.read_bytes())
    (folder / "broken_vocabulary.json").write_text("{not json")
    fewer_routes = dict(BOOK_VOCABULARIES.values, Route=(301, 304, 501))
    Vocabularies(fewer_routes).save(folder / "fewer_routes.json")
    return folder


@pytest.mark.parametrize("change, expected", [
    ({"--route": "999"}, "error: unknown Route value(s) 999; valid: 301, 304"),
    ({"--direction": "x"}, "error: unknown Direction value(s) 'x'; valid: b, e, n, s, w"),
    ({"--hour": "24"}, "error: hour 24 is outside 0-23"),
    ({"--hour": "-1"}, "error: hour -1 is outside 0-23"),
    ({"--date": "2021-03-01"}, "error: date 2021-03-01 is outside the trained years; valid years: 2014"),
    ({"--date": "21/06/2019"}, "error: date '21/06/2019' is not a date; use YYYY-MM-DD"),
    ({"--model": "{tmp}/missing/model.keras"}, "error: model file not found:"),
    ({"--model": "{tmp}/model.pt"}, "error: model file {tmp}/model.pt has an unsupported suffix '.pt'"),
    ({"--model": "{tmp}/corrupt/model.keras"}, "error: cannot load model {tmp}/corrupt/model.keras: not a .keras zip"),
    ({"--model": "{tmp}/no_vocabulary/model.keras"}, "error: no vocabulary.json beside"),
    ({"--vocabulary": "{tmp}/broken_vocabulary.json"}, "error: {tmp}/broken_vocabulary.json: corrupt vocabulary file"),
    ({"--model": "{tmp}/no_vocabulary/model.keras", "--vocabulary": "{tmp}/fewer_routes.json", "--route": "304"},
     "error: the vocabulary does not fit model"),
    # The run's own vocabulary.json is beside the model: another one is refused, whatever its sizes.
    ({"--vocabulary": "{tmp}/fewer_routes.json", "--route": "304"},
     "error: --vocabulary {tmp}/fewer_routes.json differs from the vocabulary saved with the model"),
])
def test_bad_input_is_one_line_and_exit_2(saved_model, bad_files, capsys, change, expected):
    arguments = {"--model": str(saved_model), "--route": "501", "--direction": "e", "--date": "2019-06-21",
                 "--hour": "18"}
    arguments.update({key: value.format(tmp=bad_files) for key, value in change.items()})
    argv = [part for pair in arguments.items() for part in pair]
    assert run_main(main, argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(expected.format(tmp=bad_files)), lines[0]
    assert captured.out == ""


def test_usage_errors_are_one_line_and_exit_2_in_a_real_process(saved_model):
    for arguments in (["--model", str(saved_model), *TRIP_ARGUMENTS[:-1], "eighteen"],
                      ["--model", str(saved_model), *TRIP_ARGUMENTS[:2]],
                      ["--model", str(saved_model), *TRIP_ARGUMENTS[:-2], "--hour", "31", "--json"]):
        completed = run_score_cli(arguments)
        assert completed.returncode == 2
        assert completed.stdout == ""
        lines = completed.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), completed.stderr


def test_trip_scorer_matches_and_is_faster_than_predict(loaded_model):
    scorer = TripScorer(loaded_model, BOOK_VOCABULARIES)
    for trip in (TRIP, dict(route=301, direction="w", date="2014-01-01", hour=0)):
        expected = score_trip(loaded_model, BOOK_VOCABULARIES, **trip)
        got = scorer.score(**trip)
        assert got["inputs"] == expected["inputs"] and got["delay"] == expected["delay"]
        assert got["probability"] == pytest.approx(expected["probability"], abs=1e-6)
    latency = measure_scoring_latency(loaded_model, TRIP_CODES, repeats=20)
    assert latency["compiled_p50_ms"] < latency["direct_p50_ms"] < latency["predict_p50_ms"]


@pytest.mark.skipif(not LEGACY_MODEL.is_file(), reason=f"book reference model not at {LEGACY_MODEL}")
def test_legacy_h5_is_scored_with_the_book_vocabulary(capsys):
    from keras_impl.legacy import load_legacy_keras2_model

    assert run_main(main, ["--model", str(LEGACY_MODEL), *TRIP_ARGUMENTS, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["inputs"] == TRIP_CODES
    model = load_legacy_keras2_model(LEGACY_MODEL)
    expected = float(model.predict(trip_inputs(TRIP_CODES), verbose=0)[0, 0])
    assert result["probability"] == pytest.approx(expected, abs=1e-6)
