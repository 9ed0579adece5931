"""`python -m lightning_impl.convert`: convert a trained model between Keras and Lightning (bridge.convert).

    python -m lightning_impl.convert --keras runs/keras-exp5-.../model.keras --out model.ckpt
    python -m lightning_impl.convert --keras ../shared/reference/keras2-models/scmodeldec27b_5.h5 \\
        --legacy-keras2 --out book.ckpt
    python -m lightning_impl.convert --lightning model.ckpt --out model.keras

Exit status 0 on success, 2 with one line `error: ...` for a user error
(configs.console.run_main).  --json prints one JSON object on stdout; the
summary line goes to stderr.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from bridge.convert import KERAS2_HARD_SIGMOID_EXPLANATION, keras_to_lightning, lightning_to_keras
from configs.cli import OneLineArgumentParser


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineArgumentParser(
        prog="python -m lightning_impl.convert",
        description="Convert a trained streetcar model between Keras and Lightning (weights copied by canonical "
                    "name; the written file is loaded back and checked to predict what the source predicts).",
        epilog="Examples:\n"
               "  python -m lightning_impl.convert --keras runs/keras-exp5-X/model.keras --out model.ckpt\n"
               "  python -m lightning_impl.convert --keras ../shared/reference/keras2-models/scmodeldec27b_5.h5 "
               "--legacy-keras2 --out book.ckpt\n"
               "  python -m lightning_impl.convert --lightning model.ckpt --out model.keras\n\n"
               "A Keras 2 .h5 needs --legacy-keras2: " + KERAS2_HARD_SIGMOID_EXPLANATION + ".",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--keras", metavar="PATH",
                        help="Keras model to convert to a Lightning checkpoint: a .keras file from keras_impl "
                             "(vocabulary.json beside it, or --vocabulary), or a book-era Keras 2 .h5 with "
                             "--legacy-keras2")
    source.add_argument("--lightning", metavar="PATH",
                        help="Lightning checkpoint (.ckpt) to convert to a .keras file; vocabulary.json is written "
                             "beside the output")
    parser.add_argument("--out", required=True, metavar="PATH",
                        help="output file: .ckpt for --keras, .keras for --lightning (written atomically)")
    parser.add_argument("--legacy-keras2", action="store_true",
                        help="read a Keras 2 .h5 with Keras 2 semantics: hard_sigmoid = clip(0.2x + 0.5, 0, 1) "
                             "(our 'hard_sigmoid_keras2'); the graph is traced to map its columns by name")
    parser.add_argument("--vocabulary", metavar="PATH",
                        help="vocabulary.json for --keras (default: beside the model; BOOK_VOCABULARIES for a "
                             "Keras 2 .h5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the result on stdout")
    arguments = parser.parse_args(argv)
    if arguments.lightning and (arguments.legacy_keras2 or arguments.vocabulary):
        parser.error("--legacy-keras2 and --vocabulary apply to --keras only")
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    from configs.console import emit_json, say

    from keras_impl.runtime import native_logs_silenced

    arguments = parse_arguments(argv)
    # TensorFlow writes start-up lines ("Could not find cuda drivers ...") from C++ straight to
    # file descriptor 2; the command's stderr is for its own messages and at most one error line.
    with native_logs_silenced():
        if arguments.keras:
            summary = keras_to_lightning(arguments.keras, arguments.out, legacy_keras2=arguments.legacy_keras2,
                                         vocabulary_path=arguments.vocabulary)
        else:
            summary = lightning_to_keras(arguments.lightning, arguments.out)
    say(f"wrote {summary['output']} ({summary['direction']}, output activation {summary['output_activation']}, "
        f"vocabulary {summary['vocabulary']}); predictions on {summary['verify_rows']} rows match the source "
        f"within {summary['verify_max_abs_diff']:.2e}")
    if arguments.json:
        emit_json(summary)
    return 0
