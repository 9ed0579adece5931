"""The shared config: the shipped file loads, the experiment table resolves as
chapter 6's figure 6.21 says, and every kind of bad input names its key."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

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


# (experiment, epochs, early_stop, monitor, mode, one_weight) — the book's table, as configs/streetcar.yaml has it.
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
    with pytest.raises(ConfigError, match="unknown experiment '7'; valid: 0, 1, 2, 3, 4, 5, 6, 9"):
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


# -- silent acceptance refused: duplicate keys, bad dates, non-finite numbers, escaping templates, a file as out-dir

PROJECT_CONFIG = Path(__file__).resolve().parents[1] / "streetcar.yaml"


def write_config_text(tmp_path, edit) -> Path:
    text = edit(PROJECT_CONFIG.read_text(encoding="utf-8"))
    path = tmp_path / "edited.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_duplicate_key_is_refused_naming_file_key_and_lines(tmp_path):
    path = write_config_text(tmp_path, lambda text: text.replace("  out_dir: runs\n",
                                                                 "  out_dir: runs\n  out_dir: elsewhere\n"))
    duplicate_line = path.read_text().splitlines().index("  out_dir: elsewhere") + 1
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == (f"{path}: duplicate key 'out_dir' at line {duplicate_line} (first given at line "
                                f"{duplicate_line - 1}); each key may appear once in a mapping")


def test_a_bad_yaml_date_names_the_file_and_the_key(tmp_path):
    path = write_config_text(tmp_path, lambda text: text.replace("  start_date: null", "  start_date: 2019-13-45"))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == f"{path}: 'data.start_date' = '2019-13-45' is not a date (YYYY-MM-DD)"


def test_a_good_yaml_date_still_loads(tmp_path):
    path = write_config_text(tmp_path, lambda text: text.replace("  start_date: null", "  start_date: 2015-03-01"))
    assert load_config(path).data.start_date == dt.date(2015, 3, 1)


@pytest.mark.parametrize("section, key, value", [
    ("hyperparameters", "learning_rate", float("inf")),
    ("hyperparameters", "learning_rate", float("nan")),
    ("hyperparameters", "zero_weight", float("inf")),
    ("hyperparameters", "one_weight_offset", float("inf")),
    ("callbacks", "min_delta", float("inf")),
])
def test_non_finite_numbers_are_refused(config, section, key, value):
    with pytest.raises(ConfigError) as error:
        config_from_dict(mutated(config, section, key, value), source="bad.yaml")
    assert str(error.value) == f"bad.yaml: '{section}.{key}' = {value!r} is not a finite number"


def test_a_non_finite_experiment_weight_is_refused(config, tmp_path):
    path = write_config_text(tmp_path, lambda text: text.replace("one_weight: 1.0", "one_weight: .inf", 1))
    with pytest.raises(ConfigError, match=r"'experiments\.\w+\.one_weight' = inf is not a finite number"):
        load_config(path)


@pytest.mark.parametrize("template", ["../best-{epoch}-{monitor}{value}", "/tmp/best-{epoch}-{monitor}{value}",
                                      "sub/best-{epoch}-{monitor}{value}", "..\\best-{epoch}-{monitor}{value}"])
def test_a_checkpoint_template_that_leaves_the_checkpoints_folder_is_refused(config, template):
    with pytest.raises(ConfigError) as error:
        config_from_dict(mutated(config, "callbacks", "checkpoint_template", template), source="bad.yaml")
    assert str(error.value).startswith(f"bad.yaml: 'callbacks.checkpoint_template' = {template!r} must be a file "
                                       f"name inside the run's checkpoints folder")


def test_an_out_dir_that_is_a_file_is_refused_before_anything_runs(tmp_path):
    (tmp_path / "results.txt").write_text("not a folder")
    with pytest.raises(ConfigError) as error:
        resolve_run_request(parse(["--out-dir", str(tmp_path / "results.txt")]))
    assert str(error.value) == (f"--out-dir = '{tmp_path / 'results.txt'}' is not a folder; name a folder for "
                                f"the run directories (it is created if missing)")
    with pytest.raises(ConfigError, match=r"is not a folder \(.*results.txt is a file\)"):
        resolve_run_request(parse(["--out-dir", str(tmp_path / "results.txt" / "runs")]))
    assert resolve_run_request(parse(["--out-dir", str(tmp_path / "new" / "runs")])).config.general.out_dir


def test_the_recipe_row_sets_the_output_activation_for_its_run_only(config):
    recipe = resolve_experiment(config, "6")
    assert (recipe.monitor, recipe.mode, recipe.early_stop, recipe.one_weight) == ("val_loss", "min", True, "balanced")
    arguments = argparse.Namespace(config=None, experiment="6", epochs=None, patience=None, seed=None,
                                   sample_rows=None, raw_dir=None, out_dir=None, json=False)
    assert resolve_run_request(arguments).config.hyperparameters.output_activation == "sigmoid"
    arguments.experiment = "5"                     # the book's rows keep the book's hard_sigmoid
    assert resolve_run_request(arguments).config.hyperparameters.output_activation == "hard_sigmoid"
    raw = config_to_dict(config)
    raw["experiments"]["6"]["output_activation"] = "relu"
    with pytest.raises(ConfigError, match="'experiments.6.output_activation' = 'relu'; valid: hard_sigmoid, "
                                          "hard_sigmoid_keras2, sigmoid"):
        config_from_dict(raw)
