"""Framework-neutral run plumbing shared by keras_impl and lightning_impl:
run directories, artefacts (history CSV, curves, confusion matrix, result JSON),
and test-split figures.  The console conventions (--json on stdout, errors as one
line) are configs.console, the lowest floor, since data's commands need them too."""

from experiment.artifacts import (
    RESULT_KEYS,
    create_run_dir,
    plot_confusion_matrix,
    plot_curves,
    read_history_csv,
    summarize_test,
    write_history_csv,
    write_json,
    write_run_artifacts,
)

__all__ = [
    "RESULT_KEYS", "create_run_dir", "plot_confusion_matrix", "plot_curves",
    "read_history_csv", "summarize_test", "write_history_csv", "write_json",
    "write_run_artifacts",
]
