"""Every value of a loaded config in range, every name one the project knows.

configs.loader builds the typed Config and calls validate(); a value out of
range is a ConfigError that names the file, the key and what is valid (one
line, exit 2 from every command).
"""

from __future__ import annotations

# configs.loader imports this module when it validates (inside config_from_dict), after its own
# names of what is valid (their one home) exist.
from configs.loader import (BATCH_ORDERS, ENGINES, JIT_COMPILE_CHOICES, MODES, MONITORABLE_KEYS,
                            OUTPUT_ACTIVATIONS, PRECISIONS, CallbacksConfig, Config)
from configs.typed_mapping import ConfigError


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def is_plain_file_name(template: str) -> bool:
    """A name that stays in the folder it is joined to: no separator of any platform, no '..'."""
    return bool(template) and not any(part in template for part in ("/", "\\", "..", "\0"))


def validate(config: Config) -> None:
    """Every value in range, every name one the project knows (ConfigError names the key and what is valid)."""
    _validate_settings(config)
    _validate_callbacks(config.source, config.callbacks)
    _validate_experiments(config)


def _validate_settings(config: Config) -> None:
    """general, lightning, keras, test_parms and hyperparameters."""
    source = config.source
    general, hyper, parms = config.general, config.hyperparameters, config.test_parms
    _require(general.batch_order in BATCH_ORDERS,
             f"{source}: 'general.batch_order' = {general.batch_order!r}; valid: {', '.join(BATCH_ORDERS)}")
    _require(config.lightning.engine in ENGINES,
             f"{source}: 'lightning.engine' = {config.lightning.engine!r}; valid: {', '.join(ENGINES)}")
    _require(config.keras.steps_per_execution >= 1,
             f"{source}: 'keras.steps_per_execution' = {config.keras.steps_per_execution}; must be >= 1")
    _require(config.keras.jit_compile in JIT_COMPILE_CHOICES,
             f"{source}: 'keras.jit_compile' = {config.keras.jit_compile!r}; valid: auto, true, false")
    _require(not (config.keras.jit_compile is True and general.repeatable_run),
             f"{source}: 'keras.jit_compile' = true needs 'general.repeatable_run': false: Keras turns XLA off "
             f"while TensorFlow's op determinism is on (keras.src.trainers.trainer.model_supports_jit)")
    _require(general.seed >= 0, f"{source}: 'general.seed' must be >= 0, got {general.seed}")
    for name in ("test_proportion", "valid_proportion"):
        value = getattr(parms, name)
        _require(0.0 < value < 1.0, f"{source}: 'test_parms.{name}' = {value} must be in (0, 1)")
    _require(parms.test_proportion + parms.valid_proportion < 1.0,
             f"{source}: 'test_parms.test_proportion' + 'test_parms.valid_proportion' must be < 1 "
             f"(both are shares of all rows; train gets the rest)")
    _require(hyper.learning_rate > 0, f"{source}: 'hyperparameters.learning_rate' must be > 0")
    _require(0.0 <= hyper.dropout_rate < 1.0, f"{source}: 'hyperparameters.dropout_rate' must be in [0, 1)")
    _require(hyper.batch_size >= 1, f"{source}: 'hyperparameters.batch_size' must be >= 1")
    _require(hyper.epochs >= 1, f"{source}: 'hyperparameters.epochs' must be >= 1")
    _require(hyper.embedding_dim >= 1, f"{source}: 'hyperparameters.embedding_dim' must be >= 1")
    _require(hyper.patience_threshold >= 0, f"{source}: 'hyperparameters.patience_threshold' must be >= 0")
    _require(hyper.output_activation in OUTPUT_ACTIVATIONS,
             f"{source}: 'hyperparameters.output_activation' = {hyper.output_activation!r}; "
             f"valid: {', '.join(OUTPUT_ACTIVATIONS)}")
    _require(hyper.precision in PRECISIONS,
             f"{source}: 'hyperparameters.precision' = {hyper.precision!r}; valid: {', '.join(map(str, PRECISIONS))}")
    _require(hyper.loss == "binary_crossentropy",
             f"{source}: 'hyperparameters.loss' = {hyper.loss!r}; only binary_crossentropy is implemented")
    _require(hyper.zero_weight > 0, f"{source}: 'hyperparameters.zero_weight' must be > 0")


def _validate_callbacks(source: str, callbacks: CallbacksConfig) -> None:
    """The monitors, modes and checkpoint file name of the Keras-compatible callbacks."""
    for prefix, monitor, mode in (("callbacks", callbacks.monitor, callbacks.mode),
                                  ("callbacks.reduce_lr", callbacks.reduce_lr.monitor,
                                   callbacks.reduce_lr.mode)):
        _require(monitor in MONITORABLE_KEYS,
                 f"{source}: '{prefix}.monitor' = {monitor!r}; valid: {', '.join(MONITORABLE_KEYS)}")
        _require(mode in MODES, f"{source}: '{prefix}.mode' = {mode!r}; valid: {', '.join(MODES)}")
    _require(callbacks.min_delta >= 0,
             f"{source}: 'callbacks.min_delta' must be >= 0 (Keras takes abs(), Lightning turns a "
             f"negative value into a tolerance: the two disagree, so it is refused)")
    _require(0 < callbacks.reduce_lr.factor < 1, f"{source}: 'callbacks.reduce_lr.factor' must be in (0, 1)")
    for placeholder in ("{epoch", "{monitor}", "{value"):
        _require(placeholder in callbacks.checkpoint_template,
                 f"{source}: 'callbacks.checkpoint_template' must contain {placeholder}...")
    _require(is_plain_file_name(callbacks.checkpoint_template),
             f"{source}: 'callbacks.checkpoint_template' = {callbacks.checkpoint_template!r} must be a file name "
             f"inside the run's checkpoints folder: no '/', no '\\', no '..', not absolute")


def _validate_experiments(config: Config) -> None:
    """The experiment table, and the current experiment is one of its rows."""
    source, parms = config.source, config.test_parms
    _require(bool(config.experiments), f"{source}: 'experiments' is empty")
    for name, experiment in config.experiments.items():
        key = f"experiments.{name}"
        _require(experiment.epochs >= 1, f"{source}: '{key}.epochs' must be >= 1")
        if isinstance(experiment.one_weight, str):
            _require(experiment.one_weight == "balanced",
                     f"{source}: '{key}.one_weight' = {experiment.one_weight!r}; a number or 'balanced'")
        else:
            _require(experiment.one_weight > 0, f"{source}: '{key}.one_weight' must be > 0")
        if experiment.monitor is not None:
            _require(experiment.monitor in MONITORABLE_KEYS,
                     f"{source}: '{key}.monitor' = {experiment.monitor!r}; valid: {', '.join(MONITORABLE_KEYS)}")
        if experiment.mode is not None:
            _require(experiment.mode in MODES,
                     f"{source}: '{key}.mode' = {experiment.mode!r}; valid: {', '.join(MODES)}")
        if experiment.patience is not None:
            _require(experiment.patience >= 0, f"{source}: '{key}.patience' must be >= 0")
        if experiment.output_activation is not None:
            _require(experiment.output_activation in OUTPUT_ACTIVATIONS,
                     f"{source}: '{key}.output_activation' = {experiment.output_activation!r}; "
                     f"valid: {', '.join(OUTPUT_ACTIVATIONS)}")
    _require(parms.current_experiment in config.experiments,
             f"{source}: 'test_parms.current_experiment' = {parms.current_experiment!r}; "
             f"valid: {', '.join(config.experiments)}")
