"""Float32 or float64 in Keras: hyperparameters.precision / --precision (configs.loader.PRECISIONS).

    with keras_float_type(64):
        model = build_model(...)          # float64 weights, activations, loss and metrics
        model.fit(**fit_arguments(...))   # features stay int32 codes; targets and weights float64

Keras has no per-fit precision switch: a layer takes its dtype from the global
dtype policy when it is built, and the loss and metric trackers follow floatx.
So the trainer sets both before it builds the model and puts them back after.
Lightning's counterpart is one Trainer argument, precision="64-true", which
casts the module and every floating input batch (lightning_impl.train).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np

from configs.loader import PRECISIONS

FLOAT_TYPES = {32: "float32", 64: "float64"}


@contextlib.contextmanager
def keras_float_type(precision: int) -> Iterator[None]:
    """Keras's own precision switches, both restored afterwards.

    set_floatx alone is not enough: once Keras has built a layer it keeps a global dtype policy
    (keras.config.dtype_policy()), which later layers follow whatever floatx says, so a float64
    model built after a float32 one would silently be float32.  The policy is set too.
    """
    import keras

    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}; valid: {', '.join(map(str, PRECISIONS))}")
    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(FLOAT_TYPES[precision])
    keras.config.set_dtype_policy(FLOAT_TYPES[precision])
    try:
        yield
    finally:
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(policy)


def current_float_type() -> np.dtype:
    """The float type Keras builds in now (floatx): the data must match the model it feeds."""
    import keras

    return np.dtype(keras.config.floatx())

