"""Score one streetcar trip with a Lightning checkpoint: the book's one-off prediction (§6.11).

    python -m lightning_impl.score --checkpoint runs/<run>/checkpoints/last.ckpt \\
        --route 501 --direction e --date 2019-06-21 --hour 18
    python -m lightning_impl.score --checkpoint runs/<run>/checkpoints/best-epoch03-val_accuracy0.7316.ckpt ... --json

Same interface and output as keras_impl.score: the trip is encoded with the
vocabularies the model was trained with - stored in the checkpoint's
hyperparameters, so the checkpoint alone is enough (--vocabulary PATH is
for a model saved without any; one that differs from the checkpoint's own
is refused) - e.g. route
501, direction e, 2019-06-21 18:00 -> {'hour': 18, 'Route': 4, 'daym': 20,
'month': 5, 'year': 5, 'Direction': 1, 'day': 4}; the network gives p(delay),
and p > 0.5 means "delay" (Keras's and torchmetrics' threshold rule).
--json prints {"probability": p, "delay": p > 0.5, "inputs": {column: code}}.

The network is called directly under torch.inference_mode - no Trainer, no
DataLoader - which costs well under a millisecond per trip once the
checkpoint is loaded (measure_scoring_latency; the tests check p50 <= 5 ms).

Errors (unknown route or direction, hour outside 0-23, a date outside the
trained years, a missing or corrupt checkpoint, a checkpoint of some other
model or with hyperparameters that do not match its weights, a --vocabulary
other than the checkpoint's, a NaN or out-of-range probability) are one line
on stderr and exit status 2 (configs.console.run_main).
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from configs.cli import first_line
from data.dataset import COLUMNS
from data.vocab import Vocabularies, encode_trip
from experiment.commands import report_score, score_parser
from configs.console import run_main
from experiment.model_checks import check_probability, check_same_vocabulary

DELAY_THRESHOLD = 0.5
# What every StreetcarClassifier checkpoint carries in "hyper_parameters".
REQUIRED_HYPERPARAMETERS = ("vocab_sizes", "embedding_dim", "dropout_rate", "output_activation")

EPILOG = """\
examples:
  python -m lightning_impl.score --checkpoint runs/lightning-exp0-20250101-120000/checkpoints/last.ckpt \\
      --route 501 --direction e --date 2019-06-21 --hour 18
  python -m lightning_impl.score --checkpoint runs/lightning-exp5-20250101-120000/checkpoints/best-epoch03-val_accuracy0.7316.ckpt \\
      --route 504 --direction w --date 2018-01-15 --hour 8 --json

directions: e, w, n, s, b (both ways); routes: the 14 streetcar routes (301 ... 512).
"""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dictionary, or ValueError saying why it cannot be one of ours."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint not found: {path}")
    try:
        # weights_only=True: tensors and plain containers only, so a file from elsewhere cannot run
        # code while it is read.  Every checkpoint lightning_impl writes loads this way (and fast:
        # Lightning itself is not imported).
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's "Weights only load failed": objects other than tensors and data
        raise ValueError(f"refused checkpoint {path}: it holds pickled objects other than tensors and plain data, "
                         f"which could run code when loaded; a checkpoint of lightning_impl.train holds none") \
            from None
    except Exception as error:  # zip and torch errors all mean "not a usable checkpoint"
        raise ValueError(f"cannot read checkpoint {path}: {first_line(error)} (corrupt, truncated or "
                         f"not a torch checkpoint)") from None
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        raise ValueError(f"{path} is not a Lightning checkpoint (no state_dict)")
    hyper = checkpoint.get("hyper_parameters")
    missing = [key for key in REQUIRED_HYPERPARAMETERS if not isinstance(hyper, Mapping) or key not in hyper]
    if missing:
        raise ValueError(f"{path} is not a streetcar model checkpoint (hyperparameters lack {', '.join(missing)}); "
                         f"expected a checkpoint written by lightning_impl.train")
    check_model_hyperparameters(hyper, checkpoint["state_dict"], path)
    return dict(checkpoint)


def check_model_hyperparameters(hyper: Mapping[str, Any], state_dict: Mapping[str, Any], path: str | Path) -> None:
    """Refuse hyperparameters that do not describe the weights saved beside them, before building anything.

    The network is built from the hyperparameters, so a file claiming
    vocab_sizes of 1e10 would allocate hundreds of GB before any weight is
    read.  Every embedding's size and width must be those of the saved
    tensors (which the file itself holds), the vocabularies saved with the
    model must have those sizes, and the dropout rate and output activation
    must be ones the model knows.
    """
    from configs.loader import OUTPUT_ACTIVATIONS

    sizes, dim = hyper["vocab_sizes"], hyper["embedding_dim"]
    if not isinstance(sizes, Mapping) or sorted(map(str, sizes)) != sorted(COLUMNS):
        raise ValueError(f"{path}: hyperparameter vocab_sizes must name exactly the columns {', '.join(COLUMNS)}")
    for column in COLUMNS:
        tensor = state_dict.get(f"net.embeddings.{column}.weight")
        shape = tuple(getattr(tensor, "shape", ()))
        for name, value, saved in (("vocab_sizes." + column, sizes[column], shape[:1]),
                                   ("embedding_dim", dim, shape[1:2])):
            if isinstance(value, bool) or not isinstance(value, int) or (value,) != saved:
                raise ValueError(f"{path}: hyperparameter {name} = {value!r} does not match the saved embedding "
                                 f"weights {column} of shape {shape or 'missing'}; the checkpoint is damaged or "
                                 f"not written by lightning_impl.train")
    rate = hyper["dropout_rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= float(rate) < 1.0:
        raise ValueError(f"{path}: hyperparameter dropout_rate = {rate!r}; valid: a number in [0, 1)")
    if hyper["output_activation"] not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"{path}: hyperparameter output_activation = {hyper['output_activation']!r}; valid: "
                         f"{', '.join(OUTPUT_ACTIVATIONS)}")
    if hyper.get("vocabularies"):
        saved = Vocabularies.from_json_dict(hyper["vocabularies"], source=f"{path} (hyper_parameters)").sizes()
        different = {column: (saved.get(column), sizes[column]) for column in COLUMNS
                     if saved.get(column) != sizes[column]}
        if different:
            raise ValueError(f"{path}: the saved vocabularies do not have the model's sizes (vocabulary, model) "
                             f"per column {different}; the checkpoint is damaged")


def load_scoring_model(path: str | Path, vocabulary_path: str | Path | None = None):
    """(network in eval mode on CPU, vocabularies) from a StreetcarClassifier checkpoint."""
    from lightning_impl.model import StreetcarNet
    from lightning_impl.system import PRECISION_CHECKPOINT_KEY

    # [docs:lightning-load-checkpoint]
    checkpoint = read_checkpoint(path)
    hyper = checkpoint["hyper_parameters"]
    try:
        net = StreetcarNet(hyper["vocab_sizes"], embedding_dim=hyper["embedding_dim"],
                           dropout_rate=hyper["dropout_rate"], output_activation=hyper["output_activation"])
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{path}: hyperparameters do not describe a streetcar model: {error}") from None
    if checkpoint.get(PRECISION_CHECKPOINT_KEY, 32) == 64:
        net.double()  # a --precision 64 run: its float64 weights are not rounded to float32 on loading
    prefix = "net."
    state = {key[len(prefix):]: value for key, value in checkpoint["state_dict"].items() if key.startswith(prefix)}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{path}: weights do not fit the streetcar model: {first_line(error)}") from None
    net.eval()
    # [/docs:lightning-load-checkpoint]
    saved = (Vocabularies.from_json_dict(hyper["vocabularies"], source=f"{path} (hyper_parameters)")
             if hyper.get("vocabularies") else None)
    if vocabulary_path is not None:
        vocabularies = Vocabularies.load(vocabulary_path)
        if saved is not None:  # the model's own codes win: another vocabulary would shift them silently
            check_same_vocabulary(vocabularies, saved, given=vocabulary_path, saved_source=f"{path} (hyper_parameters)")
    elif saved is not None:
        vocabularies = saved
    else:
        raise ValueError(f"{path} carries no vocabularies; pass --vocabulary PATH (vocabulary.json of its run)")
    sizes = vocabularies.sizes()
    different = {column: (sizes.get(column), net.vocab_sizes[column]) for column in COLUMNS
                 if sizes.get(column) != net.vocab_sizes[column]}
    if different:
        raise ValueError(f"the vocabulary does not fit checkpoint {path}: (vocabulary size, model size) per "
                         f"column {different}")
    return net, vocabularies


# [docs:lightning-score-trip]
def trip_features(encoded: Mapping[str, int]):
    """{column: code} -> int64 (1, 7) tensor in data.COLUMNS order."""
    import torch

    return torch.tensor([[encoded[column] for column in COLUMNS]], dtype=torch.int64)


def delay_probability(net, encoded: Mapping[str, int]) -> float:
    """p(delay) for one encoded trip: a direct call of the network in inference mode."""
    import torch

    with torch.inference_mode():
        return float(net(trip_features(encoded)).reshape(-1)[0])
# [/docs:lightning-score-trip]


def score_trip(net, vocabularies: Vocabularies, *, route: int, direction: str, date: str,
               hour: int) -> dict[str, Any]:
    """{"probability": p, "delay": p > 0.5, "inputs": {column: code}} for one human trip."""
    encoded = encode_trip(vocabularies, route=route, direction=direction, date=date, hour=hour)
    probability = check_probability(delay_probability(net, encoded), "the model")
    return {"probability": probability, "delay": probability > DELAY_THRESHOLD, "inputs": encoded}


def measure_scoring_latency(net, vocabularies: Vocabularies, trip: Mapping[str, Any],
                            repeats: int = 1000) -> dict[str, float]:
    """Milliseconds per score_trip call (encode + forward), after one warm-up call: p50 and p90."""
    score_trip(net, vocabularies, **trip)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        score_trip(net, vocabularies, **trip)
        timings.append((time.perf_counter() - started) * 1000.0)
    return {"p50_ms": statistics.median(timings), "p90_ms": float(np.percentile(timings, 90)),
            "repeats": repeats}


def build_argument_parser() -> argparse.ArgumentParser:
    return score_parser(
        "python -m lightning_impl.score",
        "Probability that a streetcar trip (route, direction, date, hour) is delayed, from a checkpoint written "
        "by lightning_impl.train.", EPILOG, model_flag="--checkpoint",
        model_help="a .ckpt from a run's checkpoints/ folder (last.ckpt or best-epoch*.ckpt)",
        vocabulary_help="vocabulary JSON, for a checkpoint saved without one (a checkpoint's own vocabulary is "
                        "always used; a different --vocabulary is refused)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_argument_parser().parse_args(argv)
    import torch

    # One trip is a handful of tiny ops: a second thread can only add hand-over time.
    torch.set_num_threads(1)
    net, vocabularies = load_scoring_model(args.checkpoint, args.vocabulary)
    result = score_trip(net, vocabularies, route=args.route, direction=args.direction, date=args.date,
                        hour=args.hour)
    report_score(result, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
