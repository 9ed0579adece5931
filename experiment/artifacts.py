"""What every training run leaves behind, identical in both frameworks.

A run directory `runs/<framework>-exp<id>-<timestamp>[-n]/` is created fresh for
every run (never reused, never overwritten) and receives:

    history.csv           one row per epoch, Keras history keys as columns
    curves.png            accuracy and loss, train vs validation, per epoch
    confusion_matrix.png  test-split heat map (sklearn confusion_matrix + seaborn)
    result.json           the same object the trainer prints with --json

Both trainers call these functions, so a Keras run and a Lightning run of the
same experiment can be compared file by file.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from configs.console import json_safe
from data.atomic import write_atomic

# Keys of the --json result object, shared by both trainers.
RESULT_KEYS = ("framework", "experiment", "epochs_run", "best_epoch", "best_value", "monitor",
               "history", "test", "params", "best_checkpoint", "run_dir", "seconds", "device",
               # Why training ended: "completed: ...", "stopped: early stopping at epoch N ...",
               # "stopped: non-finite loss at epoch N (0-based N-1): loss = nan" (experiment.reliability).
               "stop_reason",
               # The file whose test figures are reported: the best checkpoint with early stopping,
               # else the final model (Keras model.keras, Lightning checkpoints/last.ckpt).
               "model",
               # experiment.verdict.judge_test: one class for >= 99 % of test rows or recall < 0.05,
               # and the share of test rows called "delay".
               "degenerate", "predicted_positive_share",
               # hyperparameters.precision / --precision: 32 or 64.
               "precision")


def create_run_dir(out_dir: str | Path, framework: str, experiment: str) -> Path:
    """Make a new, empty run directory; an existing one is never reused.

    The name carries the framework, the experiment and a timestamp; if two runs
    start in the same second a numeric suffix keeps them apart (mkdir without
    exist_ok is the atomic test).
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"output folder {out_dir} is not a folder (a file is in the way); name a folder for "
                         f"the run directories") from None
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{framework}-exp{experiment}-{stamp}"
    for attempt in range(1000):
        candidate = out_dir / (base if attempt == 0 else f"{base}-{attempt}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run directory under {out_dir}")


def write_json(path: str | Path, payload: Mapping[str, Any]) -> Path:
    text = json.dumps(json_safe(payload), indent=2, allow_nan=False)
    return write_atomic(path, text.encode("utf-8"))


def write_history_csv(path: str | Path, history: Mapping[str, Sequence[float]]) -> Path:
    """history.csv: column 'epoch' (0-based, as both frameworks' hooks) then one column per key."""
    keys = sorted(history)
    lengths = {len(history[k]) for k in keys}
    if len(lengths) > 1:
        raise ValueError(f"history lists have different lengths: "
                         f"{ {k: len(history[k]) for k in keys} }")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["epoch", *keys])
    for epoch in range(lengths.pop() if lengths else 0):
        writer.writerow([epoch, *(repr(float(history[k][epoch])) for k in keys)])
    return write_atomic(path, buffer.getvalue().encode("utf-8"))


def read_history_csv(path: str | Path) -> dict[str, list[float]]:
    with open(path, newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    keys = [k for k in (rows[0].keys() if rows else []) if k != "epoch"]
    return {k: [float(row[k]) for row in rows] for k in keys}


def describe_result(result: Mapping[str, Any]) -> str:
    """The trainers' closing lines for a RESULT_KEYS object (both frameworks print the same)."""
    test = result["test"]
    lines = [f"experiment {result['experiment']}: {result['epochs_run']} epoch(s) in {result['seconds']:.1f} s "
             f"on {result['device']}"]
    if result["best_epoch"] is not None:
        lines.append(f"kept epoch {result['best_epoch'] + 1} ({result['monitor']} = {result['best_value']:.5f}): "
                     f"{result['best_checkpoint']}")
    else:
        lines.append(f"kept the final model: {result['model']}")
    if "val_accuracy" in result["history"]:
        lines.append(f"terminal val_accuracy {result['history']['val_accuracy'][-1]:.5f}")
    lines.append(f"test: accuracy {test['accuracy']:.5f}, recall {test['recall']:.5f}, "
                 f"false negatives {test['false_negatives']}, confusion matrix {test['confusion_matrix']}")
    lines.append(f"run dir: {result['run_dir']}")
    return "\n".join(lines)


def summarize_test(y_true: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Test-split figures the book reports: accuracy, recall, false negatives, confusion matrix.

    A probability counts as "delay" when p > threshold (strictly), as both
    Keras's binary accuracy and torchmetrics do (p = 0.5 is "no delay").
    confusion_matrix is [[tn, fp], [fn, tp]] (sklearn's layout with labels [0, 1]).
    saturated_share: the share of rows whose output is exactly 0 or 1, where
    hard_sigmoid is flat (|x| >= 3 in Keras 3 / torch, >= 2.5 in Keras 2) and
    its gradient zero; experiment.verdict names it when a model is degenerate.
    """
    from sklearn.metrics import confusion_matrix

    # [docs:confusion-matrix]
    y_true = np.asarray(y_true).reshape(-1).astype(np.int64)
    predicted = (np.asarray(probabilities).reshape(-1) > threshold).astype(np.int64)
    matrix = confusion_matrix(y_true, predicted, labels=[0, 1])
    (tn, fp), (fn, tp) = matrix.tolist()
    # [/docs:confusion-matrix]
    total = tn + fp + fn + tp
    return {
        "rows": int(total),
        "accuracy": (tn + tp) / total if total else float("nan"),
        "recall": tp / (tp + fn) if (tp + fn) else 0.0,
        "precision": tp / (tp + fp) if (tp + fp) else 0.0,
        "false_negatives": int(fn),
        "true_positives": int(tp),
        "confusion_matrix": [[int(tn), int(fp)], [int(fn), int(tp)]],
        "saturated_share": saturated_share(probabilities),
    }


def saturated_share(probabilities: np.ndarray) -> float:
    """Share of outputs at exactly 0 or 1: hard_sigmoid's flat ends, where its gradient is zero."""
    probabilities = np.asarray(probabilities).reshape(-1)
    return float(np.mean((probabilities <= 0.0) | (probabilities >= 1.0))) if len(probabilities) else 0.0


def save_figure(figure, path: str | Path) -> Path:
    """Write a matplotlib figure as a PNG atomically (a killed run leaves no half image) and close it."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return write_atomic(path, buffer.getvalue())


def plot_curves(path: str | Path, history: Mapping[str, Sequence[float]], title: str,
                best_epoch: int | None = None) -> Path:
    """curves.png: accuracy and loss, train vs validation, with the kept epoch marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, metric in zip(axes, ("accuracy", "loss")):
        for key, style in ((metric, "-o"), (f"val_{metric}", "--s")):
            if key in history and len(history[key]):
                epochs = np.arange(1, len(history[key]) + 1)  # Keras prints epochs 1-based
                axis.plot(epochs, history[key], style, markersize=3, label=key)
        if best_epoch is not None:
            axis.axvline(best_epoch + 1, color="grey", linestyle=":", label=f"kept epoch {best_epoch + 1}")
        axis.set_xlabel("epoch (1-based, as Keras prints it)")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    return save_figure(figure, path)


def plot_confusion_matrix(path: str | Path, matrix: Sequence[Sequence[int]], title: str) -> Path:
    """confusion_matrix.png: the book's seaborn heat map of [[tn, fp], [fn, tp]]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    figure, axis = plt.subplots(figsize=(4.8, 4))
    sns.heatmap(np.asarray(matrix), annot=True, fmt="d", cmap="Blues", cbar=False, ax=axis,
                xticklabels=["no delay", "delay"], yticklabels=["no delay", "delay"])
    axis.set_xlabel("predicted")
    axis.set_ylabel("actual")
    axis.set_title(title)
    return save_figure(figure, path)


def write_run_artifacts(run_dir: str | Path, result: Mapping[str, Any]) -> dict[str, Path]:
    """Write history.csv, curves.png, confusion_matrix.png and result.json for one run."""
    missing = [key for key in RESULT_KEYS if key not in result]
    if missing:
        raise ValueError(f"result is missing key(s) {', '.join(missing)}")
    run_dir = Path(run_dir)
    title = f"{result['framework']} - experiment {result['experiment']}"
    return {
        "history": write_history_csv(run_dir / "history.csv", result["history"]),
        "curves": plot_curves(run_dir / "curves.png", result["history"], title, result["best_epoch"]),
        "confusion_matrix": plot_confusion_matrix(run_dir / "confusion_matrix.png",
                                                  result["test"]["confusion_matrix"], title),
        "result": write_json(run_dir / "result.json", result),
    }
