"""Pacing: the two frameworks' training epochs, alternated by benchmarks.run (the worker's side).

The Keras and Lightning workers run at the same time, but their training
epochs take turns: before each epoch of any of its configurations (steps
numbered across them) a worker writes "at-<framework>-<step>"
into the pace folder and waits for benchmarks.run to write
"go-<framework>-<step>"; the parent lets one worker run one epoch while the
other waits; a worker with more paced epochs than the other runs its last
ones alone.  After its last paced epoch a worker waits at step "rest"
until the parent lets it finish (validation, scoring, scaling), one worker
after the other.  So the epochs of the two frameworks are timed in
alternation, under the same machine conditions, and never overlap - a
shared or throttled CPU moves both sides of the ratio alike instead of
whichever phase happened to run second.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping


PACE_POLL_SECONDS = 0.02     # a waiting worker wakes 50 times a second: ~1 % of a core
# {framework: [(start, end) Unix time of every paced epoch, of every configuration, warm-ups included]}
PACED_INTERVALS: dict[str, list[tuple[float, float]]] = {}
PACE_TIMEOUT_SECONDS = 3600.0


def pace_point(settings: Mapping[str, Any], framework: str, step: str) -> None:
    """Announce `step` and block until benchmarks.run releases it (no-op without a pace folder)."""
    folder = settings.get("pace_dir")
    if not folder:
        return
    folder = Path(folder)
    (folder / f"at-{framework}-{step}").touch()
    release = folder / f"go-{framework}-{step}"
    deadline = time.monotonic() + PACE_TIMEOUT_SECONDS
    while not release.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"benchmark pacing: {release} did not appear within {PACE_TIMEOUT_SECONDS:.0f} s")
        time.sleep(PACE_POLL_SECONDS)


class PaceSteps:
    """A worker's paced epochs numbered across all its fits (0, 1, 2, ...), then "rest"."""

    def __init__(self, settings: Mapping[str, Any], framework: str) -> None:
        self.settings, self.framework, self.count = settings, framework, 0

    def wait_turn(self) -> None:
        pace_point(self.settings, self.framework, str(self.count))
        self.count += 1

    def rest(self) -> None:
        pace_point(self.settings, self.framework, "rest")


def keras_pacer(steps: PaceSteps):
    """A Keras callback that waits for its turn before every epoch (listed before the timer)."""
    import keras

    class Pacer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            steps.wait_turn()

    return Pacer()


def lightning_pacer(steps: PaceSteps):
    """A Lightning callback that waits for its turn before every training epoch (listed before the timer)."""
    import lightning as L

    class Pacer(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            steps.wait_turn()

    return Pacer()
