"""configs.cli: the argparse types and flag groups every command shares."""

from __future__ import annotations

import argparse

import pytest

from configs.cli import (add_run_length_arguments, add_source_arguments, comma_list, command_parser, integer_at_least,
                         non_negative_int, positive_int, seed_list)


def test_integer_types_name_the_bad_value():
    assert positive_int("3") == 3 and non_negative_int("0") == 0 and integer_at_least(-1)("-1") == -1
    with pytest.raises(argparse.ArgumentTypeError, match="^0 must be >= 1$"):
        positive_int("0")
    with pytest.raises(argparse.ArgumentTypeError, match="^'x' is not an integer$"):
        non_negative_int("x")


def test_comma_and_seed_lists():
    assert comma_list(" keras, lightning ,") == ["keras", "lightning"]
    assert seed_list("3,1,2") == [3, 1, 2]
    with pytest.raises(argparse.ArgumentTypeError, match="expected a comma-separated list"):
        comma_list(" , ")
    with pytest.raises(argparse.ArgumentTypeError, match="lists a seed twice"):
        seed_list("1,2,1")
    with pytest.raises(argparse.ArgumentTypeError, match="must be >= 0"):
        seed_list("1,-2")


def test_shared_flag_groups_parse_to_the_same_names():
    parser = argparse.ArgumentParser()
    add_source_arguments(parser)
    add_run_length_arguments(parser)
    arguments = parser.parse_args(["--config", "c.yaml", "--raw-dir", "raw", "--epochs", "2", "--patience", "0",
                                   "--sample-rows", "400"])
    assert vars(arguments) == {"config": "c.yaml", "raw_dir": "raw", "epochs": 2, "patience": 0, "sample_rows": 400}
    assert vars(parser.parse_args([])) == dict.fromkeys(vars(arguments))


def test_command_parser_prints_its_epilog_as_written_and_errors_on_one_line(capsys):
    parser = command_parser("python -m example", "One line.", epilog="Examples:\n  python -m example --n 1")
    assert "Examples:\n  python -m example --n 1" in parser.format_help()
    parser.add_argument("--n", type=positive_int)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--n", "0"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: argument --n: 0 must be >= 1; see python -m example --help\n"


def test_precision_flag_overrides_the_config_and_bad_widths_are_refused(capsys, tmp_path):
    from configs.cli import add_common_arguments, resolve_run_request
    from configs.loader import ConfigError, load_config, override

    assert load_config().hyperparameters.precision == 32          # the book's float32 is the default
    parser = add_common_arguments(command_parser("prog", "test"))
    request = resolve_run_request(parser.parse_args(["--precision", "64", "--out-dir", str(tmp_path)]))
    assert request.config.hyperparameters.precision == 64
    assert resolve_run_request(parser.parse_args(["--out-dir", str(tmp_path)])).config.hyperparameters.precision == 32
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--precision", "16"])
    assert stop.value.code == 2
    assert "argument --precision: invalid choice: 16 (choose from 32, 64)" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"'hyperparameters.precision' = 16; valid: 32, 64"):
        override(load_config(), "hyperparameters.precision", 16)
