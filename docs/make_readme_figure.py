"""Draw the README's picture: Keras's and Lightning's learning curves for one experiment, overlaid.

    python docs/make_readme_figure.py                         # experiment 5, 200,000 rows, 10 epochs
    python docs/make_readme_figure.py --sample-rows 100000 --epochs 5 --out /tmp/curves.png

Both trainers run in this process, through their own `train(request,
dataset=...)` functions, on the same settings:

* the same rows: one seeded sample of the prepared real data, handed to both;
* the same experiment row of configs/streetcar.yaml (class weights, early
  stopping and a best-only checkpoint on val_accuracy), with the book's
  hyperparameters unchanged;
* the same batches: general.batch_order "shared";
* the same start: Keras's seeded initial weights, given to both trainers as
  canonical weights (`initial_weights=`). A shared *seed* would not be enough,
  because each framework draws from its own random generator.

The one thing left that differs is dropout. The two frameworks draw the
book's 0.0003 masks from different generators, which puts a few of the
70,000 activations of each batch in different places. The figure shows how
little that moves the curves. `--no-dropout` removes that difference too.

Keras is drawn with solid lines and Lightning with dashed lines. The file is
written to docs/images/curves_overlay.png, a small PNG (the README shows
it), and the printed summary gives the numbers for the README's caption.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import sys
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = PROJECT_ROOT / "docs" / "images" / "curves_overlay.png"
SHARED_RAW_DIR = PROJECT_ROOT.parent / "shared" / "data" / "ttc-streetcar-delay"
# The README embeds the picture: keep it small.
MAX_BYTES = 150_000


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--experiment", default="5", help="experiment id of configs/streetcar.yaml (default 5)")
    parser.add_argument("--sample-rows", type=int, default=200_000, help="seeded subset of the prepared rows")
    parser.add_argument("--epochs", type=int, default=10, help="epochs (overrides the experiment's)")
    parser.add_argument("--no-dropout", action="store_true", help="dropout_rate 0 in both frameworks")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUTPUT, help=f"PNG to write (default {DEFAULT_OUTPUT})")
    return parser.parse_args(argv)


def run_both(args: argparse.Namespace) -> tuple[dict, dict, dict]:
    """(keras result, lightning result, settings used) for one experiment on one sample."""
    sys.path.insert(0, str(PROJECT_ROOT))
    if not os.environ.get("STREETCAR_RAW_DIR") and SHARED_RAW_DIR.is_dir():
        os.environ["STREETCAR_RAW_DIR"] = str(SHARED_RAW_DIR)
    from configs.cli import RunRequest
    from configs.loader import load_config, override, resolve_experiment
    from data import load_prepared
    from keras_impl.model import build_model, get_canonical_weights
    from keras_impl.runtime import make_repeatable, start_tensorflow

    out_dir = Path(tempfile.mkdtemp(prefix="readme-figure-"))
    config = override(load_config(), "general.out_dir", str(out_dir))
    if args.no_dropout:
        config = override(config, "hyperparameters.dropout_rate", 0.0)
    settings = dataclasses.replace(resolve_experiment(config, args.experiment), epochs=args.epochs)
    request = RunRequest(config=config, settings=settings, sample_rows=None, raw_dir=None, json=True)
    dataset = load_prepared(config).sample(args.sample_rows, config.general.seed)

    # TensorFlow first: Keras must own TensorBoard's TensorFlow import in a process running both.
    start_tensorflow()
    make_repeatable(config.general.seed)          # what keras_impl.train does before building its model
    hyper = config.hyperparameters
    initial_weights = get_canonical_weights(build_model(
        dataset.vocab_sizes, embedding_dim=hyper.embedding_dim, dropout_rate=hyper.dropout_rate,
        output_activation=hyper.output_activation))

    from keras_impl.train import train as keras_train
    from lightning_impl.train import train as lightning_train

    keras_result = keras_train(request, dataset=dataset, initial_weights=initial_weights)
    lightning_result = lightning_train(request, dataset=dataset, initial_weights=initial_weights,
                                       accelerator="cpu", devices=1, progress_bar=False)
    used = {"experiment": args.experiment, "description": settings.description, "sample_rows": args.sample_rows,
            "epochs": args.epochs, "dropout_rate": hyper.dropout_rate, "seed": config.general.seed,
            "splits": {name: int(len(rows)) for name, rows in dataset.splits.items()}}
    return keras_result, lightning_result, used


def draw(keras_result: dict, lightning_result: dict, used: dict) -> bytes:
    """The overlay as PNG bytes: loss and accuracy panels, Keras solid, Lightning dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for key, colour in ((metric, "tab:blue"), (f"val_{metric}", "tab:orange")):
            for result, style, name in ((keras_result, "-", "Keras"), (lightning_result, "--", "Lightning")):
                values = result["history"][key]
                epochs = np.arange(1, len(values) + 1)        # 1-based, as Keras prints epochs
                axis.plot(epochs, values, style, color=colour, linewidth=2.2 if name == "Keras" else 1.4,
                          label=f"{name} {key}")
        best = keras_result["best_epoch"]
        if best is not None:
            axis.axvline(best + 1, color="grey", linestyle=":", linewidth=1,
                         label=f"kept epoch {best + 1} (both)" if best == lightning_result["best_epoch"]
                         else f"kept epoch {best + 1} (Keras)")
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, ncol=1)
    figure.suptitle(f"Experiment {used['experiment']} ({used['description']}), {used['sample_rows']:,} real rows: "
                    f"Keras 3 (solid) and Lightning (dashed), same start", fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    keras_result, lightning_result, used = run_both(args)
    png = draw(keras_result, lightning_result, used)
    if len(png) > MAX_BYTES:
        raise SystemExit(f"the figure is {len(png):,} bytes, more than {MAX_BYTES:,}; lower the dpi")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(png)

    print(f"wrote {args.out} ({len(png):,} bytes)")
    print(f"settings: {used}")
    for result in (keras_result, lightning_result):
        history = result["history"]
        print(f"{result['framework']:9s} epochs {result['epochs_run']}, kept epoch "
              f"{None if result['best_epoch'] is None else result['best_epoch'] + 1}, "
              f"val_accuracy {[round(value, 4) for value in history['val_accuracy']]}, "
              f"test recall {result['test']['recall']:.4f}, fit+test {result['seconds']:.0f} s")
    gaps = {key: max(abs(a - b) for a, b in zip(keras_result["history"][key], lightning_result["history"][key]))
            for key in ("loss", "val_loss", "accuracy", "val_accuracy")}
    print("largest per-epoch gap between the frameworks:", {key: f"{gap:.1e}" for key, gap in gaps.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
