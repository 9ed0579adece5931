"""The tools that write pages from runs of both frameworks (docs/architecture.md, the top floor).

    python -m parity_tests.report    # the chapter-6 table: results_cli, results_run, results_plots, results_page
    python -m parity_tests.replay    # a metric curve through both frameworks' callbacks: replay, replay_cli

The commands keep their parity_tests names (thin entry points there); the code is here.
"""
