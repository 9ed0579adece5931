"""Speed and memory of the two implementations, measured on the same prepared data.

    python -m benchmarks.run                 # full run: writes docs/benchmarks.md (~6-10 min on 2 cores)
    python -m benchmarks.run --quick         # one timed epoch per framework (~3 min); also writes the page
    python -m benchmarks.run --quick --json  # one JSON object on stdout, progress on stderr

Modules:
    benchmarks.run       the command: plans the phases and writes the page
    benchmarks.processes runs each phase in its own subprocess, watches its memory, paces the epochs
    benchmarks.results   the result object: the phases summed up, the targets checked, the misses explained
    benchmarks._worker   one phase in one process (prepare, keras, lightning): what is actually timed,
                         in benchmarks.keras_phase and benchmarks.lightning_phase (+ lightning_profile),
                         with benchmarks.measure's clocks and data and benchmarks.pacing's turn-taking
    benchmarks.summary   medians, percentiles, ratios and the linear fit of the scaling note
    benchmarks.report    docs/benchmarks.md from a result object

This is a command, not a timed test: the tests in benchmarks/tests check the
statistics, the JSON schema and the page, never a duration.
"""

import sys


def say(message: str) -> None:
    """A progress line of the benchmark (the command's and the workers'), on stderr."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)
