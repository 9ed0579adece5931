"""The shared configuration: `configs/streetcar.yaml` and its strict loader."""

from configs.loader import (
    DEFAULT_CONFIG_PATH,
    MONITORABLE_KEYS,
    Config,
    ConfigError,
    ExperimentSettings,
    config_from_dict,
    config_to_dict,
    load_config,
    override,
    resolve_experiment,
)

__all__ = [
    "DEFAULT_CONFIG_PATH", "MONITORABLE_KEYS", "Config", "ConfigError", "ExperimentSettings",
    "config_from_dict", "config_to_dict", "load_config", "override", "resolve_experiment",
]
