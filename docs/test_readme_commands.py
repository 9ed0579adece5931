"""CI runs the README's quick-start commands verbatim (.ci/run reads them from README.md).

    python -m pytest docs/test_readme_commands.py -q
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CI_SCRIPT = PROJECT_ROOT / ".ci" / "run"
EXTRACTOR = PROJECT_ROOT / ".ci" / "readme_commands.py"
# What a user copies from the README: no environment variable, the same .venv in both.
EXPECTED_TEST_COMMAND = ('python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e ".[dev]" '
                         '&& .venv/bin/python -m pytest -q')
EXPECTED_MAIN_COMMAND = ('python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e . '
                         '&& .venv/bin/python -m lightning_impl.train')


def load_extractor():
    specification = importlib.util.spec_from_file_location("readme_commands", EXTRACTOR)
    module = importlib.util.module_from_spec(specification)
    specification.loader.exec_module(module)
    return module


def test_the_extracted_commands_are_the_readmes_fenced_lines_verbatim():
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    extractor = load_extractor()
    assert extractor.extract_command(readme, "test") == EXPECTED_TEST_COMMAND
    assert extractor.extract_command(readme, "main") == EXPECTED_MAIN_COMMAND
    for command in (EXPECTED_TEST_COMMAND, EXPECTED_MAIN_COMMAND):
        assert f"```bash\n{command}\n```" in readme
        assert "STREETCAR_RAW_DIR" not in command


def test_the_command_line_prints_the_test_command():
    completed = subprocess.run([sys.executable, str(EXTRACTOR), "test"], capture_output=True, text=True, timeout=30)
    assert (completed.returncode, completed.stdout) == (0, EXPECTED_TEST_COMMAND + "\n")


def test_ci_executes_the_extracted_command_and_nothing_else():
    script = CI_SCRIPT.read_text(encoding="utf-8")
    commands = [line.strip() for line in script.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert 'test_command=$(python3 .ci/readme_commands.py test)' in commands
    assert 'bash -euo pipefail -c "$test_command"' in commands
    assert not any("-m pytest" in line or "pip install" in line for line in commands)   # no second copy
    assert "export REQUIRE_REAL_DATA=1" in commands
    assert 'if [ "$status" -eq 5 ]; then' in commands                                 # nothing collected fails


@pytest.mark.parametrize("readme, problem", [
    ("no marker at all\n", "has 0 '<!-- readme-command: test -->' markers"),
    ("<!-- readme-command: test -->\n```bash\na\n```\n<!-- readme-command: test -->\n```bash\nb\n```\n",
     "has 2 '<!-- readme-command: test -->' markers"),
    ("<!-- readme-command: test -->\nsome prose\n```bash\nrun\n```\n", "not followed by a ```bash block"),
    ("<!-- readme-command: test -->\n```bash\nfirst\nsecond\n```\n", "not followed by a ```bash block"),
])
def test_an_unclear_readme_is_refused(readme, problem):
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace("*", r"\*")):
        load_extractor().extract_command(readme, "test")


@pytest.mark.parametrize("test_exit, ci_exit, message", [(0, 0, ""), (1, 1, ""),
                                                          (5, 1, "pytest collected no tests: failing CI on purpose")])
def test_ci_runs_the_readme_line_with_require_real_data_and_fails_when_nothing_is_collected(
        tmp_path, test_exit, ci_exit, message):
    import shutil

    (tmp_path / ".ci").mkdir()
    for source in (CI_SCRIPT, EXTRACTOR):
        shutil.copy(source, tmp_path / ".ci" / source.name)
    line = f'echo "README line ran with REQUIRE_REAL_DATA=$REQUIRE_REAL_DATA" && exit {test_exit}'
    (tmp_path / "README.md").write_text(f"<!-- readme-command: test -->\n```bash\n{line}\n```\n"
                                        f"<!-- readme-command: main -->\n```bash\ntrue\n```\n")
    completed = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], capture_output=True, text=True, timeout=60,
                               env={key: value for key, value in os.environ.items() if key != "REQUIRE_REAL_DATA"})
    assert completed.returncode == ci_exit
    assert completed.stdout == "README line ran with REQUIRE_REAL_DATA=1\n"
    assert completed.stderr.splitlines()[0] == f"+ {line}"
    assert message in completed.stderr
