"""keras_impl.runtime and `python -m keras_impl`: quiet TensorFlow start-up, seeding, dispatch.

    pytest keras_impl/tests/test_runtime.py
"""

from __future__ import annotations

import os
import sys

from configs.console import run_main
from keras_impl.__main__ import main as package_main
from keras_impl.runtime import native_logs_silenced, start_tensorflow


def test_native_writes_are_dropped_and_python_writes_kept(capfd):
    with native_logs_silenced():
        os.write(2, b"native line\n")                 # what TensorFlow's C++ logging does
        print("python stdout line")                   # Keras's progress: moved to stderr
        print("python stderr line", file=sys.stderr)
        with native_logs_silenced():                  # nesting keeps the real stderr
            print("nested line", file=sys.stderr)
            os.write(2, b"nested native line\n")
    os.write(2, b"after\n")
    captured = capfd.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == ["python stdout line", "python stderr line", "nested line", "after"]


def test_start_tensorflow_reports_the_device():
    # A fresh process's stderr staying empty is checked by test_score's CLI test.
    assert start_tensorflow() in ("cpu", "gpu:0")


def test_package_entry_point(capsys):
    assert run_main(package_main, ["--help"]) == 0
    assert "python -m keras_impl train" in capsys.readouterr().out
    assert run_main(package_main, ["fit"]) == 2
    assert capsys.readouterr().err.strip() == "error: unknown command 'fit'; valid: train, score"
