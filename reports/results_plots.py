"""The chapter-6 table's figures: validation curves and test confusion matrices, both frameworks."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from data.atomic import write_atomic
from reports.results_story import FRAMEWORK_LABELS, no_delay_share

FRAMEWORK_COLOURS = {"keras": "tab:red", "lightning": "tab:blue"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return write_atomic(path, buffer.getvalue())


def plot_experiment_curves(path: Path, experiment: str, runs: Mapping[str, Mapping[str, Any]]) -> Path:
    """val_accuracy and val_loss per epoch, one line per framework, the kept epoch marked."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, key in zip(axes, ("val_accuracy", "val_loss")):
        for framework, summary in runs.items():
            values = summary["history"][key]
            style = "-o" if framework == "keras" else "--s"
            axis.plot(np.arange(1, len(values) + 1), values, style, markersize=4,
                      color=FRAMEWORK_COLOURS[framework], label=FRAMEWORK_LABELS[framework])
            axis.axvline(summary["kept_epoch"], color=FRAMEWORK_COLOURS[framework], linestyle=":", alpha=0.6,
                         label=f"{FRAMEWORK_LABELS[framework]} kept epoch {summary['kept_epoch']}")
        baseline = no_delay_share(next(iter(runs.values())))
        highest = max(max(summary["history"][key]) for summary in runs.values())
        if key == "val_accuracy" and highest >= baseline - 0.02:
            # Only where the curves come near it: else the line would squash them against the axis.
            axis.axhline(baseline, color="grey", linestyle="--", linewidth=1,
                         label=f"always \"no delay\" ({baseline:.5f} on test)")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        axis.set_xlabel("epoch (1-based, as Keras prints it)")
        axis.set_ylabel(key)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(f"experiment {experiment}: validation curves, Keras 3 vs Lightning")
    figure.tight_layout()
    return _save(figure, path)


def plot_experiment_confusion(path: Path, experiment: str, runs: Mapping[str, Mapping[str, Any]]) -> Path:
    """Both test confusion matrices side by side, in the book's seaborn style."""
    import seaborn as sns

    plt = _pyplot()
    figure, axes = plt.subplots(1, len(runs), figsize=(4.8 * len(runs), 4), squeeze=False)
    for axis, (framework, summary) in zip(axes[0], runs.items()):
        sns.heatmap(np.asarray(summary["confusion_matrix"]), annot=True, fmt="d", cmap="Blues", cbar=False,
                    ax=axis, xticklabels=["no delay", "delay"], yticklabels=["no delay", "delay"])
        axis.set_xlabel("predicted")
        axis.set_ylabel("actual")
        axis.set_title(f"{FRAMEWORK_LABELS[framework]} (kept epoch {summary['kept_epoch']})")
    figure.suptitle(f"experiment {experiment}: test confusion matrices")
    figure.tight_layout()
    return _save(figure, path)

