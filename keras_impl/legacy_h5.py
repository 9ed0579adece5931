"""Read a book-era Keras 2.2.4 `.h5` model into this project's terms, without Keras.

    from keras_impl.legacy_h5 import read_legacy_keras2_h5
    legacy = read_legacy_keras2_h5(path)      # LegacyKeras2Model
    legacy.weights                            # canonical names (experiment.weights), data.COLUMNS order
    legacy.concatenation_order                # the columns in the order the file concatenates them

The file's `model_config` JSON is traced layer by layer (InputLayer ->
Embedding -> BatchNormalization -> Flatten -> Dropout -> Concatenate ... ->
Dense) rather than trusted by position, because the book built its column
list from a Python `set`: every saved model joins the seven columns in another
order.  keras_impl.legacy builds models and predictions from what this reads
and says why each check exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from configs.cli import first_line
from data.dataset import COLUMNS
from experiment.weights import BATCHNORM_FIELDS, check_weights

# The values our BatchNormalization layers are built with (Keras defaults,
# docs/differences.md rows 2-3).  A legacy file with other values cannot be represented exactly.
EXPECTED_BATCHNORM_EPSILON = 1e-3
EXPECTED_BATCHNORM_MOMENTUM = 0.99

# Keras 2 activation name (as stored in the file) -> our output_activation.
# "hard_sigmoid" in a Keras 2 file means clip(0.2x + 0.5, 0, 1), which is our
# "hard_sigmoid_keras2"; plain "sigmoid" means the same in every version.
KERAS2_ACTIVATIONS = {"hard_sigmoid": "hard_sigmoid_keras2", "sigmoid": "sigmoid"}

_EXPECTED_CHAIN = "InputLayer -> Embedding -> BatchNormalization -> Flatten -> Dropout -> Concatenate ... -> Dense(1)"


@dataclass(frozen=True)
class LegacyKeras2Model:
    """What a book-era .h5 file holds, translated into this project's terms.

    weights: canonical name -> float32 array (experiment/weights.py), columns
        in data.COLUMNS order, the dense kernel's row blocks already permuted.
    concatenation_order: the columns in the order the file's Concatenate
        layers join them (the order of the file's kernel row blocks).
    input_order: the model's input layers in the file's order.
    layers: column -> {"embedding": ..., "batchnorm": ..., "flatten": ..., "dropout": ...}
        the file's own layer names, found by tracing.
    batchnorm: column -> {"epsilon": ..., "momentum": ..., "axis": ...} as stored.
    keras2_activation: the output activation name as stored ("hard_sigmoid").
    output_activation: ours ("hard_sigmoid_keras2" for a Keras 2 hard_sigmoid).
    """

    path: Path
    keras_version: str
    backend: str
    weights: dict[str, np.ndarray]
    vocab_sizes: dict[str, int]
    embedding_dim: int
    dropout_rate: float
    concatenation_order: tuple[str, ...]
    input_order: tuple[str, ...]
    layers: dict[str, dict[str, str]]
    batchnorm: dict[str, dict[str, Any]]
    dense_layer: str
    keras2_activation: str
    output_activation: str
    training_config: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        lines = [f"{self.path.name}: Keras {self.keras_version} ({self.backend} backend)",
                 f"  inputs (file order):      {', '.join(self.input_order)}",
                 f"  concatenation order:      {', '.join(self.concatenation_order)}",
                 f"  our column order:         {', '.join(COLUMNS)}",
                 f"  vocab sizes:              {self.vocab_sizes}",
                 f"  embedding_dim / dropout:  {self.embedding_dim} / {self.dropout_rate}",
                 f"  output activation:        {self.keras2_activation!r} (Keras 2) -> {self.output_activation!r} (ours)"]
        for column in COLUMNS:
            names = self.layers[column]
            settings = self.batchnorm[column]
            lines.append(f"  {column:<9} {names['embedding']} -> {names['batchnorm']} (epsilon {settings['epsilon']}, "
                         f"momentum {settings['momentum']}) -> {names['flatten']} -> {names['dropout']}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- reading


def read_legacy_keras2_h5(path: str | Path) -> LegacyKeras2Model:
    """Parse a Keras 2 full-model .h5 (architecture + weights) into canonical weights + metadata.

    Raises ValueError (one line naming the file and what was expected) for a
    missing file, a file that is not HDF5, an HDF5 file that is not a saved
    Keras model, or an architecture other than the streetcar model.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"legacy model file not found: {path}")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path}: not a readable HDF5 file ({first_line(error)}); expected a Keras 2 model "
                         f"saved with model.save(...) as .h5") from None
    with handle:
        if "model_config" not in handle.attrs or "model_weights" not in handle:
            present = ", ".join(sorted(handle.attrs)) or "none"
            raise ValueError(f"{path}: HDF5 file without a saved Keras model (attributes: {present}); expected "
                             f"'model_config' and a 'model_weights' group as written by Keras 2 model.save(); "
                             f"a save_weights() file carries no architecture")
        config = _parse_json_attribute(handle.attrs["model_config"], path, "model_config")
        keras_version = _text(handle.attrs.get("keras_version", handle["model_weights"].attrs.get("keras_version", "")))
        backend = _text(handle.attrs.get("backend", handle["model_weights"].attrs.get("backend", "")))
        if keras_version.startswith("3."):
            raise ValueError(f"{path}: written by Keras {keras_version}, not Keras 2; its activation names mean "
                             f"what Keras 3 computes, so load it with keras.models.load_model (or convert it "
                             f"without --legacy-keras2)")
        training_config = {}
        if "training_config" in handle.attrs:
            training_config = _parse_json_attribute(handle.attrs["training_config"], path, "training_config")
        try:
            graph = _trace_graph(config, path)
        except (KeyError, TypeError, IndexError, AttributeError) as error:
            # A model_config that is valid JSON but not laid out as Keras 2 writes it.
            raise ValueError(f"{path}: model_config is not a Keras 2 functional model "
                             f"({error.__class__.__name__}: {error}); expected {_EXPECTED_CHAIN}") from None
        raw_weights = {layer: _read_layer_weights(handle["model_weights"], layer, path)
                       for layer in graph["weight_layers"]}

    return _assemble(path, keras_version, backend, training_config, graph, raw_weights)


def _trace_graph(config: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """Follow every input through its per-column chain and the concatenation tree to the Dense layer."""
    def fail(what: str) -> ValueError:
        return ValueError(f"{path}: architecture does not match the streetcar model ({what}); expected "
                          f"7 inputs named {', '.join(COLUMNS)}, each {_EXPECTED_CHAIN}")

    if config.get("class_name") not in ("Model", "Functional"):
        raise fail(f"top-level class {config.get('class_name')!r}, not a functional Model")
    body = config.get("config", {})
    layers = {layer["name"] if "name" in layer else layer["config"]["name"]: layer for layer in body.get("layers", [])}
    inputs = tuple(_node_name(entry) for entry in body.get("input_layers", []))
    outputs = tuple(_node_name(entry) for entry in body.get("output_layers", []))
    if sorted(inputs) != sorted(COLUMNS):
        raise fail(f"inputs are {', '.join(inputs) or 'none'}")
    if len(outputs) != 1:
        raise fail(f"{len(outputs)} outputs")

    # consumers[name] = layers that take `name`'s output as an input.
    inbound = {name: _inbound_names(layer) for name, layer in layers.items()}
    if any(sources is None for sources in inbound.values()):
        raise fail("its inbound_nodes use the Keras 3 layout: this file was not written by Keras 2")
    consumers: dict[str, list[str]] = {name: [] for name in layers}
    for name, sources in inbound.items():
        for source in sources:
            if source not in layers:
                raise fail(f"layer {name!r} reads unknown layer {source!r}")
            consumers[source].append(name)

    chains: dict[str, dict[str, str]] = {}
    column_of_tail: dict[str, str] = {}
    for column in COLUMNS:
        if layers[column]["class_name"] != "InputLayer":
            raise fail(f"input {column!r} is a {layers[column]['class_name']}")
        chain = {}
        current = column
        for role, class_name in (("embedding", "Embedding"), ("batchnorm", "BatchNormalization"),
                                 ("flatten", "Flatten"), ("dropout", "Dropout")):
            following = consumers[current]
            if len(following) != 1 or layers[following[0]]["class_name"] != class_name:
                found = ", ".join(f"{n} ({layers[n]['class_name']})" for n in following) or "nothing"
                raise fail(f"after {current!r} (column {column}) found {found}, expected one {class_name}")
            if inbound[following[0]] != [current]:
                raise fail(f"{following[0]!r} has inputs {inbound[following[0]]}, expected only {current!r}")
            current = following[0]
            chain[role] = current
        chains[column] = chain
        column_of_tail[current] = column

    # The Dense layer is the single output; its input is a tree of Concatenate
    # layers whose leaves, read left to right, are the columns' Dropout layers.
    dense = outputs[0]
    if layers[dense]["class_name"] != "Dense" or layers[dense]["config"].get("units") != 1:
        raise fail(f"output layer {dense!r} is {layers[dense]['class_name']} "
                   f"with units {layers[dense]['config'].get('units')}, expected Dense(1)")
    if len(inbound[dense]) != 1:
        raise fail(f"Dense layer {dense!r} has {len(inbound[dense])} inputs")
    order: list[str] = []

    def expand(name: str) -> None:
        layer = layers[name]
        if name in column_of_tail:
            order.append(column_of_tail[name])
        elif layer["class_name"] == "Concatenate":
            if layer["config"].get("axis", -1) not in (-1, 1):
                raise fail(f"{name!r} concatenates along axis {layer['config'].get('axis')}, expected -1")
            for source in inbound[name]:
                expand(source)
        else:
            raise fail(f"{name!r} ({layer['class_name']}) feeds the concatenation, expected Concatenate or a column's Dropout")

    expand(inbound[dense][0])
    if sorted(order) != sorted(COLUMNS):
        raise fail(f"the Dense layer sees columns {', '.join(order)}")
    return {"layers": layers, "chains": chains, "inputs": inputs, "dense": dense,
            "concatenation_order": tuple(order),
            "weight_layers": [chains[c]["embedding"] for c in COLUMNS]
                             + [chains[c]["batchnorm"] for c in COLUMNS] + [dense]}


def _assemble(path: Path, keras_version: str, backend: str, training_config: dict[str, Any],
              graph: Mapping[str, Any], raw_weights: Mapping[str, Mapping[str, np.ndarray]]) -> LegacyKeras2Model:
    layers, chains = graph["layers"], graph["chains"]

    def fail(what: str) -> ValueError:
        return ValueError(f"{path}: architecture does not match the streetcar model ({what})")

    weights: dict[str, np.ndarray] = {}
    vocab_sizes: dict[str, int] = {}
    batchnorm: dict[str, dict[str, Any]] = {}
    embedding_dims = set()
    dropout_rates = set()
    for column in COLUMNS:
        chain = chains[column]
        embedding_config = layers[chain["embedding"]]["config"]
        table = raw_weights[chain["embedding"]].get("embeddings")
        if table is None or table.ndim != 2:
            raise fail(f"{chain['embedding']} has no 2-D 'embeddings' weight")
        if table.shape != (embedding_config.get("input_dim"), embedding_config.get("output_dim")):
            raise fail(f"{chain['embedding']} weight shape {table.shape} disagrees with its config "
                       f"({embedding_config.get('input_dim')}, {embedding_config.get('output_dim')})")
        weights[f"embedding.{column}"] = table
        vocab_sizes[column] = int(table.shape[0])
        embedding_dims.add(int(table.shape[1]))

        bn_name = chain["batchnorm"]
        bn_config = layers[bn_name]["config"]
        # Keras 2.2.4 stored axis -1; tf.keras stored [2].  On the (batch, 1, dim)
        # embedding output both are the feature axis, the only one we support.
        axis = bn_config.get("axis", -1)
        if axis not in (-1, 2, [-1], [2]):
            raise fail(f"{bn_name} normalises axis {axis}, expected the last (feature) axis")
        if not (bn_config.get("center", True) and bn_config.get("scale", True)):
            raise fail(f"{bn_name} has center={bn_config.get('center')} scale={bn_config.get('scale')}, expected both true")
        epsilon, momentum = float(bn_config.get("epsilon")), float(bn_config.get("momentum"))
        if not np.isclose(epsilon, EXPECTED_BATCHNORM_EPSILON, rtol=1e-6, atol=0) \
                or not np.isclose(momentum, EXPECTED_BATCHNORM_MOMENTUM, rtol=1e-6, atol=0):
            raise fail(f"{bn_name} has epsilon {epsilon}, momentum {momentum}; our BatchNormalization is built "
                       f"with epsilon {EXPECTED_BATCHNORM_EPSILON}, momentum {EXPECTED_BATCHNORM_MOMENTUM}")
        batchnorm[column] = {"epsilon": epsilon, "momentum": momentum, "axis": axis}
        for name in BATCHNORM_FIELDS:
            if name not in raw_weights[bn_name]:
                raise fail(f"{bn_name} lacks weight {name!r} (has {', '.join(raw_weights[bn_name]) or 'none'})")
            weights[f"batchnorm.{column}.{name}"] = raw_weights[bn_name][name]

        dropout_rates.add(float(layers[chain["dropout"]]["config"].get("rate", 0.0)))

    if len(embedding_dims) != 1:
        raise fail(f"embedding widths differ between columns: {sorted(embedding_dims)}")
    if len(dropout_rates) != 1:
        raise fail(f"dropout rates differ between columns: {sorted(dropout_rates)}")
    dim = embedding_dims.pop()

    dense = graph["dense"]
    dense_config = layers[dense]["config"]
    stored_activation = str(dense_config.get("activation"))
    if stored_activation not in KERAS2_ACTIVATIONS:
        raise fail(f"output activation {stored_activation!r}; supported: {', '.join(KERAS2_ACTIVATIONS)}")
    if not dense_config.get("use_bias", True):
        raise fail(f"{dense} has no bias")
    kernel, bias = raw_weights[dense].get("kernel"), raw_weights[dense].get("bias")
    if kernel is None or bias is None:
        raise fail(f"{dense} lacks kernel or bias (has {', '.join(raw_weights[dense]) or 'none'})")
    if kernel.shape != (len(COLUMNS) * dim, 1):
        raise fail(f"{dense} kernel has shape {kernel.shape}, expected ({len(COLUMNS) * dim}, 1)")
    # The file's kernel rows follow its concatenation order; ours follow
    # COLUMNS.  Move each column's block of `dim` rows to its canonical place.
    order = graph["concatenation_order"]
    weights["output.kernel"] = np.concatenate(
        [kernel[order.index(column) * dim:(order.index(column) + 1) * dim] for column in COLUMNS], axis=0)
    weights["output.bias"] = bias.reshape(1)

    weights = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in weights.items()}
    check_weights(weights, vocab_sizes, dim, source=str(path))
    return LegacyKeras2Model(
        path=path, keras_version=keras_version, backend=backend, weights=weights, vocab_sizes=vocab_sizes,
        embedding_dim=dim, dropout_rate=dropout_rates.pop(), concatenation_order=tuple(order),
        input_order=tuple(graph["inputs"]), layers={c: dict(chains[c]) for c in COLUMNS}, batchnorm=batchnorm,
        dense_layer=dense, keras2_activation=stored_activation,
        output_activation=KERAS2_ACTIVATIONS[stored_activation], training_config=training_config)


def _read_layer_weights(group: Any, layer: str, path: Path) -> dict[str, np.ndarray]:
    """{short name: array} of one layer, by the layer group's own weight_names list."""
    if layer not in group:
        raise ValueError(f"{path}: no weights stored for layer {layer!r}; the file's weights do not match "
                         f"its model_config")
    layer_group = group[layer]
    result = {}
    for raw_name in layer_group.attrs.get("weight_names", []):
        name = _text(raw_name)
        # "batch_normalization_8/moving_mean:0" -> "moving_mean"
        short = name.rsplit("/", 1)[-1].split(":", 1)[0]
        result[short] = np.asarray(layer_group[name])
    return result


# --------------------------------------------------------------------------- helpers


def _node_name(entry: Any) -> str:
    # Keras 2: ["hour", 0, 0]; Keras 3: ["hour", 0, 0] or {"name": ...}
    if isinstance(entry, Mapping):
        return str(entry.get("name"))
    return str(entry[0])


def _inbound_names(layer: Mapping[str, Any]) -> list[str] | None:
    """Names of the layers feeding `layer` (its first call node); None for Keras 3's layout.

    Keras 2 stores inbound_nodes as [[["source", node, tensor, {kwargs}], ...]].
    Each of these layers is called once, so the first node is the only one.
    Keras 3 stores [{"args": [...], "kwargs": {...}}] instead.
    """
    nodes = layer.get("inbound_nodes") or []
    if not nodes:
        return []
    first = nodes[0]
    if isinstance(first, Mapping):
        return None
    return [str(entry[0]) for entry in first]


def _parse_json_attribute(value: Any, path: Path, name: str) -> dict[str, Any]:
    try:
        return json.loads(_text(value))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: the {name} attribute is not valid JSON ({error}); the file is corrupt") from None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value.item())
    return str(value)
