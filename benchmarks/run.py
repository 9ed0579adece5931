"""Benchmark Keras against Lightning, every configuration a user could pick, on the same prepared data.

    python -m benchmarks.run --quick                   # one timed epoch per configuration (~6 min on 2 cores)
    python -m benchmarks.run --write-page              # the full run (~15 min); rewrites docs/benchmarks.md
    python -m benchmarks.run --quick --json            # the result as one JSON object on stdout, progress on stderr
    python -m benchmarks.run --quick --sample-rows 20000 --json   # a tiny run (the tests' kind)
    python -m benchmarks.run --from-json result.json --write-page  # redraw the page from a saved result

Only --write-page writes the page (docs/benchmarks.md, or --output PATH): a
quick look never rewrites the committed figures.

It measures, in one invocation, each figure as the median of several
repetitions after a warm-up:

* a training epoch of the book's experiment 3 (full training split, batch
  1000, balanced class weights, no early stopping) in every configuration of
  benchmarks.configurations: Keras default, a steps_per_execution sweep and
  XLA (keras_impl.train's options), Lightning's plain and fast engines and
  the fast engine's variants (lightning_impl.train's options), and a plain
  PyTorch loop - with samples/s, the validation pass and the peak memory of
  each, and the product's ratio to the fastest Keras configuration;
* the book table's time to result (experiments 1-5), measured in the
  committed report run and derived from these epoch times;
* data preparation: cold from the six workbooks, and the cached load;
* one-off scoring of a single trip from an already-loaded model, p50 / p99,
  through each framework's scorer (keras_impl.score, lightning_impl.score);
* the peak resident memory of each training process;
* epoch time at 25 %, 50 % and 100 % of the training rows (the scaling
  note) and an estimate for the whole 2014-2024 dataset;
* the device, the library versions and the machine.

Each phase (prepare, keras, lightning) runs in its own subprocess
(benchmarks._worker), so the frameworks never share threads or memory.  The
keras and lightning processes start together and their training epochs take
turns across all their configurations (one trains while the other waits;
which goes first alternates round by round), so both sides of every ratio
are timed under the same machine conditions - on a shared or throttled CPU,
timing one framework's epochs after the other's moved the ratio by a third
between runs.  A configuration's validation pass runs in its own turn; each
worker then finishes its scoring and scaling alone.  The parent also polls each subprocess's resident memory
(with its children) with psutil as a cross-check of the worker's own
getrusage figure.  With a GPU visible to torch, the Lightning side is timed on
it too (reported as an extra column; the ratio stays CPU vs CPU).

--json prints exactly one JSON object on stdout (schema: RESULT_KEYS, see
benchmarks.results.build_result); every progress line goes to stderr.  A user error (bad flag,
no raw workbooks) is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from benchmarks import say
from benchmarks.comparison import load_book_results
from benchmarks.processes import PROJECT_ROOT, run_paced_training_phases, run_phase, time_prepare_command
from benchmarks.results import PHASES, build_result
from configs.cli import OneLineArgumentParser, positive_int
from experiment.machine import describe_machine, load_average, package_version
DEFAULT_OUTPUT = PROJECT_ROOT / "docs" / "benchmarks.md"

# Per mode: how many repetitions of what.  Quick: one timed epoch after one
# warm-up epoch per framework, on the full training split (~3 min here).
QUICK_SETTINGS: dict[str, Any] = {
    "warmup_epochs": 1, "timed_epochs": 1,
    "validation_warmup": 1, "validation_repeats": 2,
    "score_warmup_calls": 20, "score_calls": 200, "predict_calls": 10,
    "scaling_warmup_epochs": 1, "scaling_timed_epochs": 1,
    "prepare_cold_warmup": 1, "prepare_cold_repeats": 1,
    "prepare_cached_warmup": 1, "prepare_cached_repeats": 3,
}
# Full: three timed epochs, more repetitions, and the thread-count check (~6-10 min here).
FULL_SETTINGS: dict[str, Any] = {
    **QUICK_SETTINGS, "timed_epochs": 3, "validation_repeats": 5, "score_warmup_calls": 50, "score_calls": 500,
    "predict_calls": 20, "scaling_timed_epochs": 2, "prepare_cold_repeats": 3, "prepare_cached_repeats": 5,
    "thread_variant_check": True,
}
SCALING_FRACTIONS = (0.25, 0.5)


# --------------------------------------------------------------------------
# Machine and versions
# --------------------------------------------------------------------------


def library_versions() -> dict[str, str | None]:
    names = ("tensorflow", "keras", "torch", "lightning", "torchmetrics", "numpy", "pandas", "pyarrow",
             "python-calamine")
    return {"python": platform.python_version(), **{name: package_version(name) for name in names}}


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def build_argument_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m benchmarks.run",
        description="Time Keras vs Lightning training, validation, data preparation and one-off scoring on the "
                    "same prepared data; write docs/benchmarks.md.")
    parser.add_argument("--quick", action="store_true",
                        help="one timed epoch per framework after one warm-up epoch (full training split), "
                             "fewer repetitions elsewhere, Lightning-only scaling (~3 min on 2 cores)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    parser.add_argument("--write-page", action="store_true",
                        help="write the Markdown page (without it nothing is written: a quick look never "
                             "rewrites the committed docs/benchmarks.md)")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), metavar="PATH",
                        help="where --write-page writes the page (default docs/benchmarks.md)")
    parser.add_argument("--sample-rows", type=positive_int, default=None, metavar="N",
                        help="train and validate on a seeded subset of N prepared rows (as the trainers' "
                             "--sample-rows), with minimal repetitions: a smoke test of the harness, not the "
                             "project's figures")
    parser.add_argument("--epochs", type=positive_int, default=None, metavar="N",
                        help="timed epochs per framework (default: 1 with --quick, else 3)")
    parser.add_argument("--score-calls", type=positive_int, default=None, metavar="N",
                        help="timed one-off scoring calls per framework (default: 200 with --quick, else 500)")
    parser.add_argument("--phases", default=",".join(PHASES), metavar="LIST",
                        help=f"comma-separated subset of {','.join(PHASES)} (default: all)")
    parser.add_argument("--raw-dir", default=None, metavar="DIR",
                        help="folder of the TTC workbooks (default: $STREETCAR_RAW_DIR, else data/raw/)")
    parser.add_argument("--config", default=None, metavar="PATH", help="YAML config (default configs/streetcar.yaml)")
    parser.add_argument("--no-gpu", action="store_true", help="do not time Lightning on a GPU even if one is there")
    parser.add_argument("--from-json", default=None, metavar="PATH",
                        help="measure nothing: redraw the page (with --write-page) or the summary from a result "
                             "an earlier --json run saved in PATH")
    return parser


def parse_phases(text: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in chosen if name not in PHASES]
    if unknown or not chosen:
        raise ValueError(f"--phases {text!r}: unknown or empty; valid: {', '.join(PHASES)}")
    return tuple(name for name in PHASES if name in chosen)


def plan_settings(arguments: argparse.Namespace) -> dict[str, Any]:
    settings = dict(QUICK_SETTINGS if arguments.quick else FULL_SETTINGS)
    if arguments.epochs is not None:
        settings["timed_epochs"] = arguments.epochs
    if arguments.sample_rows is not None:
        # A sampled run is a smoke test of the harness (its figures are not the project's): the fewest
        # repetitions that still exercise every measurement.
        settings.update({"prepare_cold_warmup": 0, "prepare_cold_repeats": 1, "prepare_cached_warmup": 0,
                         "prepare_cached_repeats": 1, "validation_repeats": 1, "profile_steps": 20,
                         "thread_variant_check": False})
    if arguments.score_calls is not None:
        settings["score_calls"] = arguments.score_calls
        settings["score_warmup_calls"] = min(settings["score_warmup_calls"], arguments.score_calls)
        settings["predict_calls"] = min(settings["predict_calls"], arguments.score_calls)
    # The workers run in the project root: paths given relative to the caller's folder are made absolute.
    def absolute(path: str | None) -> str | None:
        return None if path is None else str(Path(path).resolve())

    settings.update({"config": absolute(arguments.config), "raw_dir": absolute(arguments.raw_dir),
                     "sample_rows": arguments.sample_rows, "use_gpu": not arguments.no_gpu})
    return settings


def check_inputs(arguments: argparse.Namespace) -> None:
    """Fail fast, before any subprocess, on what the user can fix: the config and the raw workbooks."""
    from configs.loader import load_config
    from data.paths import find_raw_files

    config = load_config(arguments.config)
    find_raw_files(arguments.raw_dir if arguments.raw_dir is not None else config.data.raw_dir)
    if arguments.write_page and Path(arguments.output).is_dir():
        raise ValueError(f"--output {arguments.output} is a folder; give a file path such as docs/benchmarks.md")


def phase_settings(phase: str, settings: Mapping[str, Any], quick: bool) -> dict[str, Any]:
    """What one worker is given: the shared settings, with the scaling sizes it should time."""
    chosen = dict(settings)
    # Keras's scaling points cost ~0.75 of a Keras epoch each: only the full run times them.
    fractions = list(SCALING_FRACTIONS) if (phase == "lightning" or not quick) else []
    chosen["scaling_fractions"] = fractions
    return chosen


def run_benchmark(arguments: argparse.Namespace, command: str) -> dict[str, Any]:
    phases_to_run = parse_phases(arguments.phases)
    check_inputs(arguments)
    settings = plan_settings(arguments)
    mode = "quick" if arguments.quick else "full"
    started = time.perf_counter()
    load = {"start": load_average()}
    say(f"{mode} run: phases {', '.join(phases_to_run)}; load average {load['start']}")
    results: dict[str, Any] = {name: None for name in PHASES}
    paced = "keras" in phases_to_run and "lightning" in phases_to_run
    for phase in phases_to_run:
        if paced and phase == "keras":
            say("--- keras and lightning (one process each), training epochs of every configuration taking turns")
            results["keras"], results["lightning"] = run_paced_training_phases(
                phase_settings("keras", settings, arguments.quick),
                phase_settings("lightning", settings, arguments.quick))
            load["keras"], load["lightning"] = (results[name].get("load_average") for name in ("keras", "lightning"))
            continue
        if paced and phase == "lightning":
            continue
        say(f"--- {phase} (own process)")
        results[phase] = run_phase(phase, phase_settings(phase, settings, arguments.quick))
        load[phase] = results[phase].get("load_average")
    prepare_command = None
    if "prepare" in phases_to_run and not arguments.quick:
        say("--- python -m data.prepare, cold and cached, start-up included")
        prepare_command = time_prepare_command(settings["raw_dir"], settings["config"])
    load["end"] = load_average()
    result = build_result(results, mode=mode, command=command, settings=settings, machine=describe_machine(),
                          versions=library_versions(), load=load,
                          date=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                          prepare_command=prepare_command, book_results=load_book_results())
    result["total_seconds"] = time.perf_counter() - started
    return result


def load_result(path: str) -> dict[str, Any]:
    """A saved --json result, checked to be one (every RESULT_KEYS key)."""
    import json

    from benchmarks.results import RESULT_KEYS

    try:
        result = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"--from-json {path}: not a readable JSON file ({error})") from None
    missing = [key for key in RESULT_KEYS if key not in result]
    if missing:
        raise ValueError(f"--from-json {path}: not a benchmark result (missing {', '.join(missing)}); "
                         f"save one with python -m benchmarks.run --json > PATH")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.report import render_markdown, write_page
    from configs.console import emit_json

    arguments = build_argument_parser().parse_args(argv)
    command = "python -m benchmarks.run" + ("" if argv is None and len(sys.argv) < 2 else
                                            " " + shlex.join(list(argv if argv is not None else sys.argv[1:])))
    try:
        result = load_result(arguments.from_json) if arguments.from_json else run_benchmark(arguments, command)
    except RuntimeError as error:  # a phase failed: its own messages are above; one line and status 1 here
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    if arguments.write_page:
        path = write_page(arguments.output, render_markdown(result))
        say(f"wrote {path}")
    if arguments.json:
        emit_json(result)
    else:
        from benchmarks.report import summary_lines

        print("\n".join(summary_lines(result)), flush=True)
    return 0


if __name__ == "__main__":
    from configs.console import run_main

    raise SystemExit(run_main(main))
