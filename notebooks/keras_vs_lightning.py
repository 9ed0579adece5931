# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Keras and Lightning on the same streetcar data
#
# This notebook trains the book's streetcar-delay classifier (chapter 6 of
# *Deep Learning with Structured Data*) twice: once with the project's Keras 3
# trainer (`keras_impl`) and once with its PyTorch Lightning port
# (`lightning_impl`). The data is a small seeded sample of the real Toronto
# data. Then it compares the two runs the way the book looks at a model:
# learning curves, the test-set confusion matrix, and the delay probability of
# one trip.
#
# Both trainers are the project's own in-process `train(request, dataset=...)`
# functions, so everything here is what `python -m keras_impl.train` and
# `python -m lightning_impl.train` do, on fewer rows. The whole notebook runs
# in one to two minutes on a 2-core CPU.
#
# * Code, concept by concept: [docs/keras_vs_lightning.md](../docs/keras_vs_lightning.md)
# * Every difference between the frameworks, with its test: [docs/differences.md](../docs/differences.md)
#
# `notebooks/keras_vs_lightning.py` is the source of this notebook (jupytext
# percent format, so it diffs well). After editing it, regenerate the
# notebook with `jupytext --to ipynb notebooks/keras_vs_lightning.py`;
# `notebooks/test_notebook.py` checks that the two agree, and runs the notebook.

# %%
# %matplotlib inline
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

# The project root, whether the kernel starts in notebooks/ (Jupyter, the test) or in the root.
ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
sys.path.insert(0, str(ROOT))
# The real workbooks: $STREETCAR_RAW_DIR, else ../shared/data/ttc-streetcar-delay beside the
# project (the development layout, as in conftest.py).
shared_raw_dir = ROOT.parent / "shared" / "data" / "ttc-streetcar-delay"
if not os.environ.get("STREETCAR_RAW_DIR") and shared_raw_dir.is_dir():
    os.environ["STREETCAR_RAW_DIR"] = str(shared_raw_dir)

started = time.perf_counter()

# %% [markdown]
# ## 1. Prepare the data
#
# `data.load_prepared` turns the six yearly workbooks into one row per
# (date, hour, route, direction) slot. Each row has seven label-encoded
# columns, a 0/1 "delayed" target and a stored, seeded 60/20/20 split. The
# result is cached as Parquet after the first call. `sample` then keeps a
# seeded subset, and each kept row stays in its own split. Both frameworks
# receive this same object, so they see the same rows.

# %%
from configs.cli import RunRequest
from configs.loader import load_config, override, resolve_experiment
from data import load_prepared

SAMPLE_ROWS = 100_000
EPOCHS = 3

out_dir = Path(tempfile.mkdtemp(prefix="keras-vs-lightning-"))  # run directories, not the project's runs/
config = override(load_config(), "general.out_dir", str(out_dir))
# Dropout is the only randomness left in a training step, and the two frameworks draw their
# masks from different generators. Switch it off (the book's rate is a tiny 0.0003), so that
# any gap between the curves comes from the frameworks, not from the masks.
config = override(config, "hyperparameters.dropout_rate", 0.0)

dataset = load_prepared(config).sample(SAMPLE_ROWS, config.general.seed)
for split in ("train", "valid", "test"):
    no_delay, delay = dataset.class_counts(split)
    print(f"{split:5s}: {no_delay + delay:6,d} rows, {delay:5,d} delayed ({delay / (no_delay + delay):.2%})")
print("vocabulary sizes:", dataset.vocab_sizes)
print(f"balanced class weight for 'delay': {dataset.one_weight(0.0, split='train'):.2f}")

# %% [markdown]
# ## 2. One request for both trainers
#
# Experiment 5 of the book: class weights `{0: 1, 1: count_no_delay /
# count_delay}`, early stopping and a best-only checkpoint on `val_accuracy`
# (mode `max`). Here it runs for 3 epochs instead of 50.
#
# A shared seed does **not** give shared initial weights: Keras and torch draw
# from different random generators. So this notebook draws Keras's seeded
# initial weights once and hands the same *canonical* weights (named by
# column, in Keras layouts) to both `train()` functions. With the same start,
# the same batches (`general.batch_order: shared`) and no dropout, the two
# runs should trace the same curves.

# %%
from keras_impl.model import build_model, get_canonical_weights
from keras_impl.runtime import make_repeatable, start_tensorflow

settings = dataclasses.replace(resolve_experiment(config, "5"), epochs=EPOCHS)
request = RunRequest(config=config, settings=settings, sample_rows=None, raw_dir=None, json=False)

start_tensorflow()
make_repeatable(config.general.seed)          # what keras_impl.train does before it builds the model
hyper = config.hyperparameters
initial_weights = get_canonical_weights(build_model(
    dataset.vocab_sizes, embedding_dim=hyper.embedding_dim, dropout_rate=hyper.dropout_rate,
    output_activation=hyper.output_activation))
print(f"{settings.description}: {settings.epochs} epochs, monitor {settings.monitor} ({settings.mode}), "
      f"batch order {config.general.batch_order}")
print(f"{len(initial_weights)} canonical weight arrays, e.g. output.kernel {initial_weights['output.kernel'].shape}")


def show_run(result):
    """Per-epoch figures (1-based epochs, as Keras prints them) and the best-only checkpoint files on disk."""
    history = result["history"]
    print(f"{result['framework']}: {result['epochs_run']} epochs, kept epoch {result['best_epoch'] + 1}")
    for epoch, (loss, val_loss, val_accuracy) in enumerate(
            zip(history["loss"], history["val_loss"], history["val_accuracy"]), start=1):
        print(f"  epoch {epoch}: loss {loss:.5f}  val_loss {val_loss:.5f}  val_accuracy {val_accuracy:.5f}")
    run_dir = Path(result["run_dir"])
    print("  best-only checkpoints on disk:", sorted(path.name for path in run_dir.rglob("best-epoch*")))

# %% [markdown]
# ## 3. Train with Keras
#
# `keras_impl.train.train` compiles the model (SGD 0.001, binary
# cross-entropy, accuracy and recall), fits it with EarlyStopping,
# ModelCheckpoint, TensorBoard and a CSV log, reloads the best checkpoint and
# predicts the test split. Keras writes its own epoch lines (`verbose=2`) to
# the process's stderr, which the notebook may not show. The returned
# `history` holds every figure.
#
# With `{epoch}` in the file name, Keras's best-only ModelCheckpoint leaves one
# file per improvement, numbered from 1.

# %%
from keras_impl.train import train as keras_train

keras_result = keras_train(request, dataset=dataset, initial_weights=initial_weights)
show_run(keras_result)

# %% [markdown]
# ## 4. Train with Lightning
#
# `lightning_impl.train.train` builds the `LightningModule` and the
# `LightningDataModule`, then runs `Trainer.fit` with the Keras-compatible
# callbacks, loads the best checkpoint and tests it. It prints one line per
# epoch, like Keras's `verbose=2`.
#
# Its checkpoint names use Keras's 1-based epoch too (`best-epoch03-…` is the
# third epoch), although Lightning's own `{epoch}` would be 0-based. But
# `save_top_k=1` deletes the previous best, so only one best file stays on
# disk. The best *epoch* is the same.

# %%
from lightning_impl.train import train as lightning_train

lightning_result = lightning_train(request, dataset=dataset, initial_weights=initial_weights,
                                   accelerator="cpu", devices=1, progress_bar=False)
show_run(lightning_result)

# %% [markdown]
# ## 5. Learning curves, overlaid
#
# Both trainers return the Keras-style `history`: one value per epoch for
# `loss`, `accuracy`, `val_loss`, `val_accuracy`, and so on. Keras is drawn
# with solid lines and Lightning with dashed lines on top. When the port is
# right, you cannot tell them apart.
#
# The figures are shown with `display(figure)` rather than `plt.show()`: while
# writing their own `curves.png`, the trainers switched matplotlib to its
# file-only Agg backend.

# %%
epochs = np.arange(1, keras_result["epochs_run"] + 1)      # 1-based, as Keras prints epochs
figure, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for axis, metric in zip(axes, ("loss", "accuracy")):
    for key, colour in ((metric, "tab:blue"), (f"val_{metric}", "tab:orange")):
        axis.plot(epochs, keras_result["history"][key], "-o", color=colour, label=f"Keras {key}")
        axis.plot(epochs, lightning_result["history"][key], "--x", color=colour, markersize=10,
                  label=f"Lightning {key}")
    axis.set_xlabel("epoch")
    axis.set_xticks(epochs)
    axis.set_title(metric)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
figure.suptitle(f"Experiment 5 on {SAMPLE_ROWS:,} rows: Keras (solid) vs Lightning (dashed)")
figure.tight_layout()
display(figure)
plt.close(figure)

gaps = {key: float(np.max(np.abs(np.subtract(keras_result["history"][key], lightning_result["history"][key]))))
        for key in ("loss", "val_loss", "accuracy", "val_accuracy")}
print("largest per-epoch gap:", {key: f"{gap:.1e}" for key, gap in gaps.items()})

# %% [markdown]
# ## 6. Confusion matrices on the test split
#
# The book's heat map, `[[tn, fp], [fn, tp]]`, for the kept (best) model of
# each framework. A false negative (a delay predicted as "no delay") is the
# costly mistake, so look at the bottom-left cell. Both frameworks count
# p > 0.5 as "delay".

# %%
import seaborn as sns

figure, axes = plt.subplots(1, 2, figsize=(9, 3.8))
for axis, result in zip(axes, (keras_result, lightning_result)):
    test = result["test"]
    sns.heatmap(np.array(test["confusion_matrix"]), annot=True, fmt="d", cmap="Blues", cbar=False, ax=axis,
                xticklabels=["no delay", "delay"], yticklabels=["no delay", "delay"])
    axis.set_xlabel("predicted")
    axis.set_ylabel("actual")
    axis.set_title(f"{result['framework']}: recall {test['recall']:.3f}, accuracy {test['accuracy']:.3f}")
figure.tight_layout()
display(figure)
plt.close(figure)

# %% [markdown]
# ## 7. Score the same trip in both
#
# The book's one-off prediction: is route 501 eastbound delayed on
# 2019-06-21 at 18:00? Each scorer loads the kept model the way its command
# line does (`python -m keras_impl.score` / `python -m lightning_impl.score`),
# encodes the trip with the vocabulary saved by the run, and calls the
# network on one row.

# %%
from keras_impl import score as keras_score
from lightning_impl import score as lightning_score

TRIP = {"route": 501, "direction": "e", "date": "2019-06-21", "hour": 18}

keras_path = keras_result["best_checkpoint"]
keras_model = keras_score.load_scoring_model(keras_path)
keras_trip = keras_score.score_trip(keras_model, keras_score.resolve_vocabulary(keras_path), **TRIP)

lightning_net, lightning_vocabularies = lightning_score.load_scoring_model(lightning_result["best_checkpoint"])
lightning_trip = lightning_score.score_trip(lightning_net, lightning_vocabularies, **TRIP)

print("encoded trip:", keras_trip["inputs"])
for name, trip in (("Keras", keras_trip), ("Lightning", lightning_trip)):
    verdict = "delay expected" if trip["delay"] else "no delay expected"
    print(f"{name:9s} p(delay) = {trip['probability']:.6f} -> {verdict}")

# %% [markdown]
# ## 8. Summary
#
# The last cell collects the numbers that `notebooks/test_notebook.py` checks
# after running the notebook: the same best epoch, the same trip encoding,
# probabilities in [0, 1] that agree, and confusion matrices that cover the
# whole test split.

# %%
results = {
    "rows": SAMPLE_ROWS,
    "test_rows": int(len(dataset.splits["test"])),
    "epochs_run": {"keras": keras_result["epochs_run"], "lightning": lightning_result["epochs_run"]},
    "best_epoch": {"keras": keras_result["best_epoch"], "lightning": lightning_result["best_epoch"]},
    "max_history_gap": gaps,
    "confusion_matrix": {"keras": keras_result["test"]["confusion_matrix"],
                         "lightning": lightning_result["test"]["confusion_matrix"]},
    "trip_inputs": {"keras": keras_trip["inputs"], "lightning": lightning_trip["inputs"]},
    "probability": {"keras": keras_trip["probability"], "lightning": lightning_trip["probability"]},
    "seconds": round(time.perf_counter() - started, 1),
}
print("NOTEBOOK_RESULTS " + json.dumps(results))
