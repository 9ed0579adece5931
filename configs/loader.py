"""Typed loader for the one configuration both frameworks share.

`configs/streetcar.yaml` mirrors the book's `streetcar_model_training_config.yml`
(general, test_parms, hyperparameters) and adds the callback settings and the
experiment table of chapter 6 as data.  This module turns it into frozen
dataclasses, and it is strict in the nanoGPT way: an unknown key, a missing key
or a value of the wrong type is a `ConfigError` that names the key and the
file, never a silent default (configs.typed_mapping builds each section;
configs.validation checks every value's range).
The tuples of valid values (OUTPUT_ACTIVATIONS, BATCH_ORDERS, ENGINES, MODES,
MONITORABLE_KEYS) are defined here once; every package imports them from here.

    from configs import load_config, resolve_experiment
    config = load_config()                      # configs/streetcar.yaml
    run = resolve_experiment(config, "5")       # one row of figure 6.21
    run.epochs, run.early_stop, run.monitor     # -> 50, True, 'val_accuracy'
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from configs.strict_yaml import DuplicateKeyError, StrictLoader
from configs.typed_mapping import ConfigError, build_dataclass

DEFAULT_CONFIG_PATH = Path(__file__).with_name("streetcar.yaml")

OUTPUT_ACTIVATIONS = ("hard_sigmoid", "hard_sigmoid_keras2", "sigmoid")
BATCH_ORDERS = ("shared", "framework")
# How lightning_impl trains (lightning.engine, --engine): "plain" = the idiomatic port
# (lightning_impl.system), "fast" = the fused network and its own loop (lightning_impl.fast).
ENGINES = ("plain", "fast")
# hyperparameters.precision / --precision: the float width of weights, activations, losses and metrics
# (Keras: floatx and the dtype policy; Lightning: Trainer(precision="32-true" | "64-true")).
PRECISIONS = (32, 64)
# keras.jit_compile / --jit-compile: Model.compile(jit_compile=...); Keras's own default "auto"
# turns XLA off on a CPU-only machine and on with a GPU (keras.src.trainers.trainer).
JIT_COMPILE_CHOICES = ("auto", True, False)
# Keras: mode 'auto' | 'min' | 'max' (unknown strings warn and fall back to 'auto').
# Lightning: 'min' | 'max', default 'min'.  The project: 'min' | 'max', always given.
MODES = ("min", "max")
# History keys both trainers log (Keras names); the only keys a monitor may name.
MONITORABLE_KEYS = (
    "loss", "accuracy", "recall",
    "val_loss", "val_accuracy", "val_recall",
)


@dataclass(frozen=True)
class GeneralConfig:
    seed: int
    repeatable_run: bool
    batch_order: str
    out_dir: str


@dataclass(frozen=True)
class DataConfig:
    raw_dir: str | None
    start_date: dt.date | None
    end_date: dt.date | None
    drop_bad_vehicles: bool


@dataclass(frozen=True)
class TestParmsConfig:
    test_proportion: float
    valid_proportion: float
    current_experiment: str


@dataclass(frozen=True)
class HyperparametersConfig:
    learning_rate: float
    dropout_rate: float
    l2_lambda: float
    batch_size: int
    epochs: int
    embedding_dim: int
    output_activation: str
    loss: str
    zero_weight: float
    one_weight_offset: float
    patience_threshold: int
    precision: int = 32        # absent in an older config: the book's float32


@dataclass(frozen=True)
class ReduceLRConfig:
    enabled: bool
    monitor: str
    mode: str
    factor: float
    patience: int
    min_delta: float
    min_lr: float


@dataclass(frozen=True)
class CallbacksConfig:
    monitor: str
    mode: str
    min_delta: float
    checkpoint_template: str
    reduce_lr: ReduceLRConfig


@dataclass(frozen=True)
class LightningConfig:
    """Settings only lightning_impl reads (keras_impl ignores the section)."""

    engine: str


@dataclass(frozen=True)
class KerasConfig:
    """Settings only keras_impl reads: how Model.compile runs the steps (lightning_impl ignores the section).

    steps_per_execution runs that many batches per call of the compiled train
    function (the book's 1): the same updates, bit for bit.  jit_compile
    compiles it with XLA, which fuses operations and rounds differently
    (docs/differences.md row 38).
    """

    steps_per_execution: int = 1
    jit_compile: bool | str = "auto"


@dataclass(frozen=True)
class ExperimentConfig:
    description: str
    early_stop: bool
    one_weight: float | str
    epochs: int
    monitor: str | None = None
    mode: str | None = None
    patience: int | None = None
    output_activation: str | None = None     # a row beyond the book may change the output (the recipe row)


@dataclass(frozen=True)
class Config:
    general: GeneralConfig
    data: DataConfig
    test_parms: TestParmsConfig
    hyperparameters: HyperparametersConfig
    callbacks: CallbacksConfig
    lightning: LightningConfig
    experiments: Mapping[str, ExperimentConfig]
    keras: KerasConfig = KerasConfig()     # absent in an older config or saved run: Keras's defaults
    source: str = field(default="<dict>", compare=False)


@dataclass(frozen=True)
class ExperimentSettings:
    """One experiment row resolved against the defaults: what a trainer runs."""

    experiment: str
    description: str
    epochs: int
    early_stop: bool
    monitor: str
    mode: str
    patience: int
    min_delta: float
    one_weight: float | str  # a number, or "balanced" (resolved on the train split)
    zero_weight: float


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------


def config_from_dict(raw: Mapping[str, Any], source: str = "<dict>") -> Config:
    """Build and validate a Config from an already-parsed mapping."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: the top level should be a mapping of sections")
    experiments_raw = raw.get("experiments")
    if not isinstance(experiments_raw, Mapping):
        raise ConfigError(f"{source}: 'experiments' should be a mapping of experiment id -> settings")
    experiments = {str(name): build_dataclass(ExperimentConfig, value, f"experiments.{name}", source)
                   for name, value in experiments_raw.items()}
    sections = {k: v for k, v in raw.items() if k != "experiments"}
    config = build_dataclass(Config, sections, "", source,
                    preset={"experiments": types.MappingProxyType(experiments), "source": source})
    from configs.validation import validate  # it imports this module's names

    validate(config)
    return config


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate a YAML configuration (default: configs/streetcar.yaml)."""
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=StrictLoader)
    except DuplicateKeyError as error:
        raise ConfigError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return config_from_dict(raw, source=str(path))


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain, YAML/JSON-serialisable form of `config` (dates as ISO strings)."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name))
                    for f in dataclasses.fields(value) if f.name != "source"}
        if isinstance(value, Mapping):
            return {str(k): convert(v) for k, v in value.items()}
        if isinstance(value, dt.date):
            return value.isoformat()
        return value

    return convert(config)


def override(config: Config, dotted_key: str, value: Any) -> Config:
    """Return a copy of `config` with `section.key` set to `value`, re-validated."""
    raw = config_to_dict(config)
    node = raw
    parts = dotted_key.split(".")
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"cannot override unknown key '{dotted_key}'")
        node = node[part]
    if parts[-1] not in node:
        raise ConfigError(f"cannot override unknown key '{dotted_key}'")
    node[parts[-1]] = value
    return config_from_dict(raw, source=f"{config.source} (override {dotted_key})")


def apply_experiment_row(config: Config, experiment: str | int | None = None) -> Config:
    """`config` with the hyperparameters an experiment row sets (output_activation) in place of the defaults.

    The trainers build the model from hyperparameters, so a row's output
    activation reaches both frameworks, their checkpoints and run_request.json.
    """
    name = str(experiment) if experiment is not None else config.test_parms.current_experiment
    row = config.experiments.get(name)
    if row is None or row.output_activation is None:
        return config
    return override(config, "hyperparameters.output_activation", row.output_activation)


def resolve_experiment(config: Config, experiment: str | int | None = None) -> ExperimentSettings:
    """The settings one trainer run uses: an experiment row over the defaults."""
    name = str(experiment) if experiment is not None else config.test_parms.current_experiment
    if name not in config.experiments:
        raise ConfigError(f"unknown experiment {name!r}; valid: {', '.join(config.experiments)} "
                          f"(defined under 'experiments' in {config.source})")
    row = config.experiments[name]
    return ExperimentSettings(
        experiment=name,
        description=row.description,
        epochs=row.epochs,
        early_stop=row.early_stop,
        monitor=row.monitor or config.callbacks.monitor,
        mode=row.mode or config.callbacks.mode,
        patience=row.patience if row.patience is not None else config.hyperparameters.patience_threshold,
        min_delta=config.callbacks.min_delta,
        one_weight=row.one_weight,
        zero_weight=config.hyperparameters.zero_weight,
    )
