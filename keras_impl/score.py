"""Score one streetcar trip with a trained Keras model: the book's one-off prediction (§6.11).

    python -m keras_impl.score --model runs/<run>/model.keras \
        --route 501 --direction e --date 2019-06-21 --hour 18
    python -m keras_impl.score --model runs/<run>/best-epoch03-val_accuracy0.7316.keras ... --json
    python -m keras_impl.score --model ../shared/reference/keras2-models/scmodeldec27b_5.h5 ...

The trip is encoded with the vocabulary the model was trained with
(vocabulary.json beside the model, or --vocabulary PATH; a book-era Keras 2
.h5 file carries none, so data.vocab.BOOK_VOCABULARIES is used for it), e.g.
route 501, direction e, 2019-06-21 18:00 -> {'hour': 18, 'Route': 4, 'daym': 20,
'month': 5, 'year': 5, 'Direction': 1, 'day': 4}, and the model gives
p(delay); p > 0.5 means "delay" (Keras's and torchmetrics's threshold rule).

The model is called directly, model(inputs, training=False), not through
model.predict, which sets up a data pipeline and an epoch iterator on every
call.  For many trips on one loaded model, TripScorer compiles that call once
with tf.function.  From slowest to fastest for one trip (measure_scoring_latency
times them; the figures are in docs/benchmarks.md):

    model.predict(one row)                                   a data pipeline per call
    model(inputs, training=False), eager                     the CLI: one call, no trace
    TripScorer (tf.function, after a one-off trace)          what benchmarks.run times

Errors (unknown route or direction, hour outside 0-23, a date outside the
trained years, a missing or corrupt model or vocabulary file) are one line on
stderr and exit status 2.  Bad trip values are rejected before TensorFlow is
even imported.

Loaders are chosen by file suffix (MODEL_LOADERS): ".keras" is a model saved
by this project; ".h5" is a book-era Keras 2 model read by keras_impl.legacy,
which maps the Keras 2 hard_sigmoid faithfully.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from configs.cli import first_line
from data.dataset import COLUMNS
from data.vocab import BOOK_VOCABULARIES, Vocabularies, encode_trip
from experiment.commands import report_score, score_parser
from configs.console import run_main
from experiment.model_checks import check_probability, check_same_vocabulary

VOCABULARY_FILE = "vocabulary.json"
DELAY_THRESHOLD = 0.5

EPILOG = """\
examples:
  python -m keras_impl.score --model runs/keras-exp5-20250101-120000/best-epoch03-val_accuracy0.7316.keras \\
      --route 501 --direction e --date 2019-06-21 --hour 18
  python -m keras_impl.score --model runs/keras-exp0-20250101-120000/model.keras \\
      --route 504 --direction w --date 2018-01-15 --hour 8 --json
  python -m keras_impl.score --model ../shared/reference/keras2-models/scmodeldec27b_5.h5 \\
      --route 501 --direction e --date 2019-06-21 --hour 18      (book-era Keras 2 model)

directions: e, w, n, s, b (both ways); routes: the 14 streetcar routes (301 ... 512).
"""


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def load_keras_model(path: Path):
    """A .keras file saved by keras_impl.train (keras_impl.model registers its custom activation)."""
    import zipfile

    import keras

    import keras_impl.model  # noqa: F401  (registers hard_sigmoid_keras2 for deserialisation)

    if not zipfile.is_zipfile(path):
        raise ValueError(f"cannot load model {path}: not a .keras zip archive (corrupt, truncated or "
                         f"another format); expected a file written by model.save()")
    try:
        return keras.models.load_model(str(path), compile=False)
    except Exception as error:  # zip, JSON, HDF5 and Keras errors all mean "not a usable model file"
        raise ValueError(f"cannot load model {path}: {first_line(error)}") from None


def load_legacy_h5_model(path: Path):
    """A book-era Keras 2 .h5 model, through keras_impl.legacy (its Keras 2 hard_sigmoid kept)."""
    try:
        from keras_impl.legacy import load_legacy_keras2_model
    except ImportError:
        raise ValueError(f"{path}: Keras 2 .h5 models need keras_impl.legacy, which is not available") from None
    return load_legacy_keras2_model(path)


MODEL_LOADERS: dict[str, Callable[[Path], Any]] = {
    ".keras": load_keras_model,
    ".h5": load_legacy_h5_model,
}
# Models without a vocabulary file of their own (the book's .h5 files).
DEFAULT_VOCABULARIES: dict[str, Vocabularies] = {".h5": BOOK_VOCABULARIES}


def check_model_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix not in MODEL_LOADERS:
        raise ValueError(f"model file {path} has an unsupported suffix {path.suffix!r}; "
                         f"valid: {', '.join(MODEL_LOADERS)}")
    if not path.is_file():
        raise ValueError(f"model file not found: {path}")
    return path


def load_scoring_model(path: str | Path):
    """Load a model for scoring with the loader its suffix selects; checks its inputs are the columns."""
    path = check_model_path(path)
    model = MODEL_LOADERS[path.suffix](path)
    input_names = sorted(tensor.name.split(":")[0] for tensor in model.inputs)
    if input_names != sorted(COLUMNS):
        raise ValueError(f"model {path} has inputs {input_names}; a streetcar model has {', '.join(COLUMNS)}")
    return model


def resolve_vocabulary(model_path: str | Path, vocabulary_path: str | Path | None = None) -> Vocabularies:
    """--vocabulary, else vocabulary.json beside the model, else the book's for a Keras 2 .h5.

    A --vocabulary that differs from the vocabulary.json beside the model (the run's own) is refused.
    """
    model_path = Path(model_path)
    beside = model_path.parent / VOCABULARY_FILE
    if vocabulary_path is not None:
        vocabularies = Vocabularies.load(vocabulary_path)
        if beside.is_file():  # the run's own vocabulary wins: another one would shift the codes silently
            check_same_vocabulary(vocabularies, Vocabularies.load(beside), given=vocabulary_path, saved_source=beside)
        return vocabularies
    if beside.is_file():
        return Vocabularies.load(beside)
    if model_path.suffix in DEFAULT_VOCABULARIES:
        return DEFAULT_VOCABULARIES[model_path.suffix]
    raise ValueError(f"no {VOCABULARY_FILE} beside {model_path}; pass --vocabulary PATH "
                     f"(every keras_impl.train run writes one into its run directory)")


def check_vocabulary_fits(model, vocabularies: Vocabularies, source: str) -> None:
    """The vocabulary's sizes must be the model's embedding sizes, or codes would index wrong rows."""
    from keras_impl.model import model_vocab_sizes

    model_sizes = model_vocab_sizes(model)
    sizes = vocabularies.sizes()
    different = {column: (sizes.get(column), model_sizes[column]) for column in COLUMNS
                 if sizes.get(column) != model_sizes[column]}
    if different:
        raise ValueError(f"the vocabulary does not fit model {source}: (vocabulary size, model size) "
                         f"per column {different}")


# --------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------


# [docs:keras-score-trip]
def trip_inputs(encoded: Mapping[str, int]) -> dict[str, np.ndarray]:
    """{column: code} -> {column: (1, 1) int32}, the model's named inputs for one row."""
    return {column: np.array([[encoded[column]]], dtype=np.int32) for column in COLUMNS}


def delay_probability(model, encoded: Mapping[str, int]) -> float:
    """p(delay) for one encoded trip, by calling the model directly (eager; no predict pipeline)."""
    output = model(trip_inputs(encoded), training=False)
    return float(np.asarray(output).reshape(-1)[0])
# [/docs:keras-score-trip]


def scoring_result(probability: float, encoded: Mapping[str, int]) -> dict[str, Any]:
    probability = check_probability(probability, "the model")  # NaN or outside [0, 1]: no answer
    return {"probability": probability, "delay": probability > DELAY_THRESHOLD, "inputs": dict(encoded)}


def score_trip(model, vocabularies: Vocabularies, *, route: int, direction: str, date: str,
               hour: int) -> dict[str, Any]:
    """{"probability": p, "delay": p > 0.5, "inputs": {column: code}} for one human trip (one eager call)."""
    encoded = encode_trip(vocabularies, route=route, direction=direction, date=date, hour=hour)
    return scoring_result(delay_probability(model, encoded), encoded)


class TripScorer:
    """A loaded model and its vocabulary, for scoring many trips one at a time.

    The model call is wrapped in tf.function once: the first trip pays a
    trace (~0.2 s), every later one costs about a millisecond instead of the
    tens of milliseconds of an eager call.

        scorer = TripScorer(load_scoring_model(path), resolve_vocabulary(path))
        scorer.score(route=501, direction="e", date="2019-06-21", hour=18)
    """

    def __init__(self, model, vocabularies: Vocabularies):
        import tensorflow as tf

        self.model = model
        self.vocabularies = vocabularies
        self._call = tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)

    def probability(self, encoded: Mapping[str, int]) -> float:
        import tensorflow as tf

        inputs = {column: tf.constant(value) for column, value in trip_inputs(encoded).items()}
        return float(self._call(inputs).numpy().reshape(-1)[0])

    def score(self, *, route: int, direction: str, date: str, hour: int) -> dict[str, Any]:
        encoded = encode_trip(self.vocabularies, route=route, direction=direction, date=date, hour=hour)
        return scoring_result(self.probability(encoded), encoded)


def measure_scoring_latency(model, encoded: Mapping[str, int], repeats: int = 200) -> dict[str, float]:
    """Median (p50) and p90 milliseconds of one scoring call on a loaded model, three ways.

    direct: model(inputs, training=False) eagerly; compiled: TripScorer; predict: model.predict.
    """
    inputs = trip_inputs(encoded)
    scorer = TripScorer(model, BOOK_VOCABULARIES)

    def timings(call: Callable[[], Any], count: int) -> list[float]:
        call()  # warm-up: first-call tracing and allocation are not per-trip costs
        result = []
        for _ in range(count):
            started = time.perf_counter()
            call()
            result.append((time.perf_counter() - started) * 1000.0)
        return result

    direct = timings(lambda: model(inputs, training=False), repeats)
    compiled = timings(lambda: scorer.probability(encoded), repeats)
    predict = timings(lambda: model.predict(inputs, verbose=0), max(3, repeats // 10))
    return {"direct_p50_ms": statistics.median(direct), "direct_p90_ms": float(np.percentile(direct, 90)),
            "compiled_p50_ms": statistics.median(compiled), "compiled_p90_ms": float(np.percentile(compiled, 90)),
            "predict_p50_ms": statistics.median(predict)}


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def build_argument_parser() -> argparse.ArgumentParser:
    return score_parser(
        "python -m keras_impl.score",
        "Probability that a streetcar trip (route, direction, date, hour) is delayed, from a model trained by "
        "keras_impl.train (or a book-era Keras 2 .h5).", EPILOG,
        model_flag="--model", model_help="a .keras file from a run directory, or a Keras 2 .h5 from the book",
        vocabulary_help=f"vocabulary JSON (default: {VOCABULARY_FILE} beside the model; the book's vocabulary "
                        f"for a .h5)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_argument_parser().parse_args(argv)
    model_path = check_model_path(args.model)
    vocabularies = resolve_vocabulary(model_path, args.vocabulary)
    # Validate the trip before paying for TensorFlow's import.
    encode_trip(vocabularies, route=args.route, direction=args.direction, date=args.date, hour=args.hour)

    from keras_impl.runtime import native_logs_silenced, start_tensorflow

    start_tensorflow()
    with native_logs_silenced():
        model = load_scoring_model(model_path)
        check_vocabulary_fits(model, vocabularies, str(model_path))
        result = score_trip(model, vocabularies, route=args.route, direction=args.direction,
                            date=args.date, hour=args.hour)
    report_score(result, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
