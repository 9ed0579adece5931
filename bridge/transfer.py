"""Copy a model between the frameworks in memory, by canonical weight name.

    from bridge.transfer import keras_to_lightning, lightning_to_keras
    net = keras_to_lightning(keras_model)      # a StreetcarNet with the Keras model's weights
    model = lightning_to_keras(net)            # a keras.Model with the net's weights

The names are experiment/weights.py's: each side exports
{canonical name: float32 array in Keras layout} and imports the same mapping,
so nothing is matched by position.  Before anything is copied every key and
every shape is checked (experiment.weights.check_weights), and a mismatch is a
ValueError naming the weight and both shapes, e.g.

    keras model do not fit this model: embedding.Route: keras model has shape (15, 10), the model expects (14, 10)

The architecture travels with the weights (bridge.architecture).  Used by
parity_tests/test_structure_and_numerics.py and the trajectory tests;
bridge.convert does the same through files (.keras <-> .ckpt).

    python -m pytest parity_tests/test_structure_and_numerics.py -q
"""

from __future__ import annotations

from typing import Any

from bridge.architecture import copy_target, keras_architecture, lightning_architecture
from experiment.weights import check_weights


def keras_to_lightning(keras_model: Any, net: Any | None = None) -> Any:
    """A StreetcarNet holding `keras_model`'s weights (a new one, or `net` filled in place).

    Every canonical key and shape is checked before anything is copied.  The
    result is in eval mode, like a freshly loaded Keras model's inference.
    """
    from keras_impl.model import get_canonical_weights as keras_weights
    from lightning_impl.model import StreetcarNet, set_canonical_weights

    net = copy_target(keras_architecture(keras_model), net, StreetcarNet, lightning_architecture)
    weights = keras_weights(keras_model)
    check_weights(weights, net.vocab_sizes, net.embedding_dim, source="keras model")
    set_canonical_weights(net, weights, source="keras model")
    net.eval()
    return net


def lightning_to_keras(net: Any, keras_model: Any | None = None) -> Any:
    """A keras_impl model holding `net`'s weights (a new one, or `keras_model` filled in place)."""
    from keras_impl.model import build_model, model_embedding_dim, model_vocab_sizes, set_canonical_weights
    from lightning_impl.model import get_canonical_weights as lightning_weights

    keras_model = copy_target(lightning_architecture(net), keras_model, build_model, keras_architecture)
    weights = lightning_weights(net)
    check_weights(weights, model_vocab_sizes(keras_model), model_embedding_dim(keras_model), source="lightning model")
    set_canonical_weights(keras_model, weights, source="lightning model")
    return keras_model
