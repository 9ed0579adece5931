"""Framework-neutral run plumbing shared by keras_impl and lightning_impl:
run directories, artefacts (history CSV, curves, confusion matrix, result JSON),
test-split figures, and console conventions (--json on stdout, errors as one line)."""

from experiment.artifacts import (
    RESULT_KEYS,
    create_run_dir,
    json_safe,
    plot_confusion_matrix,
    plot_curves,
    read_history_csv,
    summarize_test,
    write_history_csv,
    write_json,
    write_run_artifacts,
)
from experiment.console import UserError, emit_json, run_main, say

__all__ = [
    "RESULT_KEYS", "create_run_dir", "json_safe", "plot_confusion_matrix", "plot_curves",
    "read_history_csv", "summarize_test", "write_history_csv", "write_json",
    "write_run_artifacts", "UserError", "emit_json", "run_main", "say",
]
