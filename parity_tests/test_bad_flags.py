"""A bad flag is one line and exit 2 in every command, never argparse's usage block.

    python -m pytest parity_tests/test_bad_flags.py -q

In process (the parsers are the real ones; argparse fails before any work),
so it is quick; parity_tests/test_bad_input.py runs whole commands in
subprocesses for the mistakes that reach past the parser.
"""

from __future__ import annotations

import importlib

import pytest

COMMANDS = ["lightning_impl.train", "lightning_impl.score", "lightning_impl.convert", "keras_impl.train",
            "keras_impl.score", "keras_impl.legacy", "data.prepare", "data.fetch", "parity_tests.replay",
            "parity_tests.report", "parity_tests.seeds", "parity_tests.divergence", "benchmarks.run"]


def run_main_of(module_name: str, argv: list[str], capsys) -> tuple[int, list[str]]:
    main = importlib.import_module(module_name).main
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    captured = capsys.readouterr()
    assert captured.out == ""
    return exit_.value.code, captured.err.splitlines()


@pytest.mark.parametrize("module_name", COMMANDS)
def test_an_unknown_flag_is_one_line_and_exit_2(module_name, capsys):
    code, lines = run_main_of(module_name, ["--no-such-flag"], capsys)
    assert code == 2 and len(lines) == 1, lines
    # Commands with required arguments report those first; the others name the unknown flag.
    assert (lines[0] == f"error: unrecognized arguments: --no-such-flag; see python -m {module_name} --help"
            or lines[0].startswith("error: the following arguments are required: ")
            and lines[0].endswith(f"; see python -m {module_name} --help"))


@pytest.mark.parametrize("module_name, argv, fragment", [
    ("lightning_impl.train", ["--epochs", "0"], "argument --epochs: 0 must be >= 1"),
    ("keras_impl.train", ["--seed", "x"], "argument --seed: 'x' is not an integer"),
    ("data.fetch", ["--years", "14"], "argument --years: '14': use a year"),
    ("parity_tests.replay", ["--monitor", "val_loss"], "the following arguments are required: --patience"),
])
def test_a_bad_value_is_one_line_naming_the_flag(module_name, argv, fragment, capsys):
    code, lines = run_main_of(module_name, argv, capsys)
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith("error: ") and fragment in lines[0]
    assert lines[0].endswith(f"; see python -m {module_name} --help")


@pytest.mark.parametrize("module_name", ["lightning_impl.train", "keras_impl.train"])
def test_an_out_dir_that_is_a_file_is_one_line_and_no_run(module_name, tmp_path, capsys):
    from configs.console import run_main

    in_the_way = tmp_path / "runs"
    in_the_way.write_text("a file, not a folder")
    code = run_main(importlib.import_module(module_name).main, ["--out-dir", str(in_the_way), "--sample-rows", "100"])
    captured = capsys.readouterr()
    assert (code, captured.out) == (2, "")
    assert captured.err.splitlines() == [f"error: --out-dir = '{in_the_way}' is not a folder; name a folder for "
                                         f"the run directories (it is created if missing)"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["runs"]
