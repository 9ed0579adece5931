"""configs.console: one strict JSON object on stdout, errors as one line with the exit status they promise."""

from __future__ import annotations

import json

import numpy as np

from configs.console import emit_json, json_safe, run_main


def test_json_safe_writes_non_finite_values_as_strings():
    assert json_safe({"a": float("nan"), "b": [np.float32(1.5), float("-inf")], "c": np.int64(3)}) == \
        {"a": "nan", "b": [1.5, "-inf"], "c": 3}


def test_emit_json_prints_one_strict_json_line(capsys):
    emit_json({"best_value": np.float64("inf"), "history": np.array([0.5, 0.25])})
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and json.loads(out) == {"best_value": "inf", "history": [0.5, 0.25]}


def test_run_main_turns_user_errors_into_exit_2(capsys):
    def failing(argv):
        raise ValueError("unknown Route value(s) 705; valid: 301, 304")

    assert run_main(failing, []) == 2
    assert capsys.readouterr().err == "error: unknown Route value(s) 705; valid: 301, 304\n"


def test_run_main_joins_a_multi_line_message_into_one_line(capsys):
    def failing(argv):
        raise FileNotFoundError("no workbook in data/raw/\nset STREETCAR_RAW_DIR")

    assert run_main(failing, []) == 2
    assert capsys.readouterr().err == "error: no workbook in data/raw/ set STREETCAR_RAW_DIR\n"


def test_run_main_reports_a_system_failure_as_one_line_and_exit_1(capsys):
    def failing(argv):
        raise ConnectionError("cannot reach https://127.0.0.1:9/ (refused)")

    assert run_main(failing, []) == 1
    assert capsys.readouterr().err == "error: cannot reach https://127.0.0.1:9/ (refused)\n"


def test_run_main_passes_the_exit_status_of_main_through():
    assert run_main(lambda argv: None, []) == 0
    assert run_main(lambda argv: 3, []) == 3
