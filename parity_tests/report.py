"""`python -m parity_tests.report`: the chapter-6 table in both frameworks, written to docs/results/.

The command keeps this name; its code lives in reports/ (reports/results_cli.py
lists the flags and what the run writes).
"""

from configs.console import run_main
from reports.results_cli import main

if __name__ == "__main__":
    raise SystemExit(run_main(main))
