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
