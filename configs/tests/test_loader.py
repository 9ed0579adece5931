"""The shared config: the shipped file loads, the experiment table resolves as
chapter 6's figure 6.21 says, and every kind of bad input names its key."""

from __future__ import annotations

import argparse

import pytest
import yaml

from configs import ConfigError, config_from_dict, config_to_dict, load_config, override, resolve_experiment
from configs.cli import add_common_arguments, resolve_run_request


@pytest.fixture(scope="module")
def config():
    return load_config()


def test_shipped_config_has_the_books_hyperparameters(config):
    hyper = config.hyperparameters
    assert (hyper.learning_rate, hyper.dropout_rate, hyper.batch_size, hyper.epochs) == (0.001, 0.0003, 1000, 50)
    assert (hyper.output_activation, hyper.loss, hyper.embedding_dim) == ("hard_sigmoid", "binary_crossentropy", 10)
    assert (hyper.patience_threshold, hyper.one_weight_offset, hyper.zero_weight) == (15, 0.0, 1.0)
    assert (config.test_parms.test_proportion, config.test_parms.valid_proportion) == (0.2, 0.2)


# (experiment, epochs, early_stop, monitor, mode, one_weight) — SPEC §6.
EXPERIMENT_TABLE = [
    ("0", 1, False, "val_accuracy", "max", 1.0),
    ("1", 10, False, "val_accuracy", "max", 1.0),
    ("2", 50, False, "val_accuracy", "max", 1.0),
    ("3", 50, False, "val_accuracy", "max", "balanced"),
    ("4", 50, True, "val_loss", "min", "balanced"),
    ("5", 50, True, "val_accuracy", "max", "balanced"),
    ("9", 20, True, "val_accuracy", "max", "balanced"),
]


@pytest.mark.parametrize("name, epochs, early_stop, monitor, mode, one_weight", EXPERIMENT_TABLE)
def test_experiment_table_resolves_as_figure_6_21(config, name, epochs, early_stop, monitor, mode, one_weight):
    settings = resolve_experiment(config, name)
    assert (settings.epochs, settings.early_stop, settings.monitor, settings.mode, settings.one_weight) == \
        (epochs, early_stop, monitor, mode, one_weight)
    assert settings.patience == 15


def test_the_default_lightning_engine_is_the_plain_port(config):
    from configs.loader import ENGINES

    assert ENGINES == ("plain", "fast") and config.lightning.engine == "plain"
    raw = config_to_dict(config)
    del raw["lightning"]
    with pytest.raises(ConfigError, match="missing key 'lightning'"):
        config_from_dict(raw)


def test_default_experiment_is_current_experiment(config):
    assert resolve_experiment(config).experiment == config.test_parms.current_experiment == "5"


def mutated(config, section, key, value):
    raw = config_to_dict(config)
    raw[section][key] = value
    return raw


@pytest.mark.parametrize("section, key, value, message", [
    ("hyperparameters", "lerning_rate", 0.1, "unknown key(s) hyperparameters.lerning_rate"),
    ("hyperparameters", "batch_size", "big", "'hyperparameters.batch_size' = 'big' should be of type int"),
    ("hyperparameters", "batch_size", 0, "'hyperparameters.batch_size' must be >= 1"),
    ("hyperparameters", "learning_rate", True, "should be of type float"),
    ("hyperparameters", "output_activation", "relu", "valid: hard_sigmoid, hard_sigmoid_keras2, sigmoid"),
    ("callbacks", "mode", "auto", "'callbacks.mode' = 'auto'; valid: min, max"),
    ("callbacks", "monitor", "val_f1", "'callbacks.monitor' = 'val_f1'"),
    ("callbacks", "min_delta", -0.1, "'callbacks.min_delta' must be >= 0"),
    ("general", "batch_order", "random", "valid: shared, framework"),
    ("test_parms", "test_proportion", 1.5, "'test_parms.test_proportion' = 1.5 must be in (0, 1)"),
    ("data", "start_date", "yesterday", "'data.start_date' = 'yesterday' is not a date"),
    ("lightning", "engine", "turbo", "'lightning.engine' = 'turbo'; valid: plain, fast"),
    ("lightning", "steps_per_execution", 8, "unknown key(s) lightning.steps_per_execution"),
])
def test_bad_values_name_the_key(config, section, key, value, message):
    with pytest.raises(ConfigError, match=None) as error:
        config_from_dict(mutated(config, section, key, value), source="bad.yaml")
    assert message in str(error.value)
    assert str(error.value).startswith("bad.yaml: ")


def test_missing_key_is_named(config):
    raw = config_to_dict(config)
    del raw["hyperparameters"]["epochs"]
    with pytest.raises(ConfigError, match="missing key 'hyperparameters.epochs'"):
        config_from_dict(raw)


def test_unknown_experiment_lists_valid_ones(config):
    with pytest.raises(ConfigError, match="unknown experiment '7'; valid: 0, 1, 2, 3, 4, 5, 9"):
        resolve_experiment(config, "7")


def test_bad_experiment_row_is_named(config):
    raw = config_to_dict(config)
    raw["experiments"]["4"]["one_weight"] = "heavy"
    with pytest.raises(ConfigError, match="'experiments.4.one_weight' = 'heavy'; a number or 'balanced'"):
        config_from_dict(raw)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("general: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_round_trip_through_yaml(config, tmp_path):
    path = tmp_path / "copy.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(config)))
    assert load_config(path) == config


def test_override_revalidates(config):
    assert override(config, "general.seed", 7).general.seed == 7
    with pytest.raises(ConfigError, match="cannot override unknown key 'general.sed'"):
        override(config, "general.sed", 7)


def parse(argv):
    return add_common_arguments(argparse.ArgumentParser()).parse_args(argv)


def test_every_flag_overrides_a_config_key(tmp_path):
    request = resolve_run_request(parse([
        "--experiment", "4", "--epochs", "3", "--patience", "2", "--seed", "9", "--sample-rows", "500",
        "--raw-dir", str(tmp_path), "--out-dir", str(tmp_path / "runs"), "--json"]))
    assert (request.settings.experiment, request.settings.epochs, request.settings.patience) == ("4", 3, 2)
    assert request.config.general.seed == 9
    assert request.config.general.out_dir == str(tmp_path / "runs")
    assert request.raw_dir == request.config.data.raw_dir == str(tmp_path)
    assert (request.sample_rows, request.json) == (500, True)


def test_flags_default_to_the_config():
    request = resolve_run_request(parse([]))
    assert (request.settings.experiment, request.settings.epochs, request.settings.patience) == ("5", 50, 15)
    assert (request.sample_rows, request.json, request.raw_dir) == (None, False, None)


@pytest.mark.parametrize("argv", [["--epochs", "0"], ["--seed", "-1"], ["--sample-rows", "x"]])
def test_bad_flag_values_exit_2(argv):
    with pytest.raises(SystemExit) as stop:
        parse(argv)
    assert stop.value.code == 2
