"""TensorFlow start-up, device and seeding for the Keras commands.

    from keras_impl.runtime import start_tensorflow, make_repeatable
    device = start_tensorflow()        # "cpu" or "gpu:0"; TF's C++ start-up lines hidden
    make_repeatable(seed=42)           # the book's repeatable_run, Keras 3 style

TensorFlow 2.21 writes several lines to the process's stderr from C++ when it
starts ("All log messages before absl::InitializeLog() ...", "Could not find
cuda drivers ...", "failed call to cuInit ...") and TF_CPP_MIN_LOG_LEVEL does
not stop them.  While training it adds more (e.g. "NodeDef mentions attribute
use_unbounded_threadpool ..." when Keras builds its input pipeline).  The
commands of this project promise that stderr carries their own progress and at
most one error line, so TensorFlow's start-up, fit, load and predict run inside
native_logs_silenced(): file descriptor 2 points at /dev/null, while Python's
sys.stdout and sys.stderr write to the real stderr, so Keras's epoch lines and
Python warnings still show.  A Python exception raised meanwhile propagates as
usual (it is printed after the descriptor is restored).  Set
KERAS_IMPL_NATIVE_LOGS=1 to see TensorFlow's native lines.
"""

from __future__ import annotations

import contextlib
import os
import sys

SHOW_NATIVE_LOGS_VARIABLE = "KERAS_IMPL_NATIVE_LOGS"
# Nesting depth of native_logs_silenced: an inner block must not take the
# already-silenced descriptor 2 for "the real stderr".
_silenced_depth = 0


@contextlib.contextmanager
def native_logs_silenced():
    """Drop C/C++ writes to file descriptor 2; send Python's stdout and stderr to the real stderr.

    Python's stdout is redirected too because Keras prints its progress
    (verbose=2 epoch lines, callback messages) on stdout, which belongs to --json.
    """
    global _silenced_depth
    sys.stdout.flush()
    sys.stderr.flush()
    if _silenced_depth > 0 or os.environ.get(SHOW_NATIVE_LOGS_VARIABLE) == "1":
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    saved = os.dup(2)
    real_stderr = os.fdopen(saved, "w", buffering=1, encoding="utf-8", errors="replace")
    _silenced_depth += 1
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        with contextlib.redirect_stdout(real_stderr), contextlib.redirect_stderr(real_stderr):
            yield
    finally:
        _silenced_depth -= 1
        real_stderr.flush()
        os.dup2(saved, 2)
        real_stderr.close()


def start_tensorflow() -> str:
    """Import TensorFlow and Keras quietly; return the device the run will use."""
    with native_logs_silenced():
        import tensorflow as tf
        import keras

        gpus = tf.config.list_physical_devices("GPU")
    if keras.backend.backend() != "tensorflow":
        raise ValueError(f"keras_impl runs on Keras's TensorFlow backend, but KERAS_BACKEND="
                         f"{keras.backend.backend()!r}; unset it or set KERAS_BACKEND=tensorflow")
    return "gpu:0" if gpus else "cpu"


# [docs:keras-seeds]
def make_repeatable(seed: int) -> None:
    """Seed Python, NumPy, TensorFlow and Keras's seed generator; make TF ops deterministic.

    keras.utils.set_random_seed is the Keras 3 form of the book's
    repeatable_run (which seeded NumPy, Python and TensorFlow one by one); it
    also resets Keras's global SeedGenerator, so two runs in one process start
    from the same initial weights and dropout masks.  enable_op_determinism
    makes TensorFlow pick deterministic kernels (it is process-wide and cannot
    be undone; on CPU it costs nothing measurable for this model).
    """
    import keras
    import tensorflow as tf

    keras.backend.clear_session()
    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()
# [/docs:keras-seeds]
