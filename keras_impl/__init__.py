"""Keras 3 implementation of the streetcar-delay classifier (book ch. 6).

    python -m keras_impl.train --experiment 0 --json      # train, test, write a run dir
    python -m keras_impl.score --model runs/<run>/model.keras \
        --route 501 --direction e --date 2019-06-21 --hour 18

Modules:
    keras_impl.model   build_model / compile_model / canonical weight export-import
    keras_impl.data    named-input arrays and the shared, seeded batch order
    keras_impl.train   the training command (callbacks, artefacts, --json result) and its builders
    keras_impl.fit     fit or resume a run, and decide which model it keeps
    keras_impl.score   one-off scoring of a single trip (the book's §6.11)

Importing this package only sets environment defaults (no TensorFlow import),
so `import keras_impl` stays cheap.  Python runs this file before any
keras_impl.* module, so the defaults are in place before Keras is first
imported (Keras chooses its backend at import time).  TensorFlow's native log
lines are handled in keras_impl.runtime.
"""

import os

# Keras 3 picks its backend at first import; this project's Keras side is the
# TensorFlow backend (the book's Keras 2.2.4 ran on TensorFlow too).
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# 2 = hide TensorFlow's INFO and WARNING C++ logs ("Could not find cuda
# drivers", CPU feature notes); errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
