"""Why a hard_sigmoid run can freeze: per epoch, how many training rows sit where the gradient is zero.

    python -m parity_tests.saturation --out docs/results                 # experiment 3 as the results page runs it
    python -m parity_tests.saturation --sample-rows 20000 --epochs 2 --json   # a quick look

hard_sigmoid(x) = relu6(x + 3) / 6 is exactly 0 for x <= -3 and exactly 1 for
x >= 3, and passes no gradient there (Keras 3 and torch alike; the loss's
clip to [1e-7, 1 - 1e-7] passes none either).  A row whose output is exactly 0
or 1 in a training step therefore contributes nothing to that step's update.
If every row of every batch is saturated, SGD stops moving the weights for
good, and only BatchNorm's moving statistics still change (they follow the
batch statistics, momentum 0.99) until they settle too: the validation
figures then repeat epoch after epoch.

This tool trains the product's Lightning trainer (lightning_impl.train, the
plain engine) exactly as `python -m parity_tests.report` does - the
experiment's book settings, general.seed, the shared batch order and the
shared initial weights (parity_tests.trajectory.shared_initial_weights) -
and watches it with a global forward hook (torch.nn.modules.module.
register_module_forward_hook; nothing in the trainer changes).  Per epoch it
records:

* saturated_share: the share of the epoch's training rows whose logit was at
  or past the kink (|x| >= 3 for hard_sigmoid, 2.5 for hard_sigmoid_keras2)
  in their training step (BatchNorm on batch statistics, as the update saw
  it), where the output is exactly 0 or 1;
* largest_weight_change: the largest absolute change of any trainable weight
  over the epoch (0.0 means SGD did not move anything);
* val_loss and val_accuracy as the trainer reported them.

With --out DIR it writes DIR/saturation.json and DIR/saturation.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from configs.cli import command_parser, positive_int, resolve_run_request
from configs.loader import override
from data.atomic import write_atomic
from experiment.artifacts import write_json
from configs.console import UserError, emit_json, run_main, say
from parity_tests.lockstep import ACTIVATION_KINKS
from reports.results_companions import SATURATION_JSON


class SaturationWatch:
    """Counts training rows whose logit is past the kink, and weight changes between epochs' ends.

    The network's output Dense is found when the StreetcarNet registers it (a module-registration
    hook: the training step calls net.logits and net.activate, not net's forward); its forward hook
    sees every step's logits, and the parent net gives the weights."""

    def __init__(self, kink: float) -> None:
        self.kink = kink
        self.epochs: list[dict[str, float]] = []
        self._outputs: dict[int, Any] = {}   # id(output Dense) -> its StreetcarNet
        self._rows = self._saturated = 0
        self._start: dict[str, Any] | None = None

    def on_registration(self, parent, name: str, child) -> None:
        from lightning_impl.model import StreetcarNet

        if isinstance(parent, StreetcarNet) and name == "output":
            self._outputs[id(child)] = parent

    def on_forward(self, module, inputs, logits) -> None:
        net = self._outputs.get(id(module))
        if net is None:
            return
        if module.training:
            if self._start is None:   # the first training step of an epoch
                self._start = snapshot(net)
            self._rows += logits.numel()
            self._saturated += int((logits.detach().abs() >= self.kink).sum())
        elif self._start is not None:  # the first evaluation forward after training: the epoch has ended
            change = max(float((snapshot(net)[name] - before).abs().max()) for name, before in self._start.items())
            self.epochs.append({"training_rows": self._rows, "saturated_rows": self._saturated,
                                "saturated_share": self._saturated / max(self._rows, 1),
                                "largest_weight_change": change})
            self._rows = self._saturated = 0
            self._start = None


def snapshot(module) -> dict[str, Any]:
    return {name: parameter.detach().clone() for name, parameter in module.named_parameters()
            if parameter.requires_grad}


@contextlib.contextmanager
def watching(kink: float) -> Iterator[SaturationWatch]:
    from torch.nn.modules import module as torch_module

    watch = SaturationWatch(kink)
    handles = [torch_module.register_module_module_registration_hook(watch.on_registration),
               torch_module.register_module_forward_hook(watch.on_forward)]
    try:
        yield watch
    finally:
        for handle in handles:
            handle.remove()


def measure(request, dataset, initial_weights: Mapping[str, Any] | None, progress=say) -> dict[str, Any]:
    """Train once with the plain engine and return the per-epoch figures (the watch's and the trainer's)."""
    from lightning_impl.train import train

    request = dataclasses.replace(request, config=override(request.config, "lightning.engine", "plain"))
    activation = request.config.hyperparameters.output_activation
    if ACTIVATION_KINKS.get(activation) is None:
        raise UserError(f"output activation {activation!r} has no kink where the gradient is zero; "
                        f"use one of {', '.join(name for name, kink in ACTIVATION_KINKS.items() if kink)}")
    with watching(ACTIVATION_KINKS[activation]) as watch:
        result = train(request, dataset=dataset, accelerator="cpu", progress_bar=False, progress=progress,
                       initial_weights=initial_weights)
    history = result["history"]
    epochs = []
    for index, figures in enumerate(watch.epochs[:result["epochs_run"]]):
        epochs.append({"epoch": index + 1, **figures, "val_loss": float(history["val_loss"][index]),
                       "val_accuracy": float(history["val_accuracy"][index])})
    return {"experiment": request.settings.experiment, "seed": int(request.config.general.seed),
            "epochs_run": int(result["epochs_run"]), "epochs": epochs, "frozen": frozen_from(epochs)}


def frozen_from(epochs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The first epoch from which every row was saturated and no weight moved, to the end; None if never."""
    start = None
    for figures in epochs:
        still = figures["saturated_share"] == 1.0 and figures["largest_weight_change"] == 0.0
        start = (start or figures["epoch"]) if still else None
    if start is None:
        return None
    tail = [figures for figures in epochs if figures["epoch"] >= start]
    return {"from_epoch": start, "to_epoch": tail[-1]["epoch"],
            "val_loss_range": [min(f["val_loss"] for f in tail), max(f["val_loss"] for f in tail)]}


def render_markdown(study: Mapping[str, Any], command: str) -> str:
    lines = ["# Where the gradient is zero: saturated logits per epoch", "",
             f"Generated by `{command}` (see `parity_tests/saturation.py`). Lightning, experiment "
             f"{study['experiment']}, seed {study['seed']}, shared initial weights and batch order, the book's "
             "dropout; hard_sigmoid passes no gradient where |logit| >= 3 (its output is exactly 0 or 1 there).", "",
             "| epoch | saturated training rows | share | largest weight change | val_loss | val_accuracy |",
             "|---:|---:|---:|---:|---:|---:|"]
    for figures in study["epochs"]:
        lines.append(f"| {figures['epoch']} | {figures['saturated_rows']:,} of {figures['training_rows']:,} | "
                     f"{figures['saturated_share']:.6f} | {figures['largest_weight_change']:.3g} | "
                     f"{figures['val_loss']:.5f} | {figures['val_accuracy']:.5f} |")
    lines += ["", summary_sentence(study), ""]
    return "\n".join(lines)


def summary_sentence(study: Mapping[str, Any]) -> str:
    frozen, epochs = study["frozen"], study["epochs"]
    if frozen is None:
        share = max((figures["saturated_share"] for figures in epochs), default=0.0)
        return (f"The run did not end frozen: its last epoch was not one in which every training row was "
                f"saturated and no weight moved (the largest saturated share of any epoch was {share:.4f}).")
    return (f"From epoch {frozen['from_epoch']} to {frozen['to_epoch']} every training row's logit was past the "
            f"kink (output exactly 0 or 1), so every gradient was zero and SGD changed no weight (largest change 0); only BatchNorm's "
            f"moving statistics still moved, and val_loss stayed between {frozen['val_loss_range'][0]:.5f} and "
            f"{frozen['val_loss_range'][1]:.5f}.")


def build_argument_parser() -> argparse.ArgumentParser:
    parser = command_parser("python -m parity_tests.saturation", __doc__.split("\n")[0],
                            __doc__.split("\n\n", 1)[1].split("hard_sigmoid(x)")[0].strip())
    parser.add_argument("--experiment", default="3", metavar="ID", help="experiment id (default 3)")
    parser.add_argument("--sample-rows", type=positive_int, default=None, metavar="N",
                        help="a seeded subset of N prepared rows (default: the full data)")
    parser.add_argument("--epochs", type=positive_int, default=None, metavar="N",
                        help="the epoch cap (default: the experiment's)")
    parser.add_argument("--initial-weights", choices=("shared", "seeded"), default="shared",
                        help="shared (default, as parity_tests.report): the seed's shared initial weights; "
                             "seeded: Lightning's own initialisers")
    parser.add_argument("--out", default=None, metavar="DIR", help="write DIR/saturation.json and .md")
    parser.add_argument("--runs-dir", default=None, metavar="DIR", help="parent of the run directory (default runs/)")
    parser.add_argument("--json", action="store_true", help="print the study's object on stdout")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from data import load_prepared
    from experiment.weights import shared_initial_weights

    args = build_argument_parser().parse_args(argv)
    request = resolve_run_request(argparse.Namespace(
        config=None, experiment=args.experiment, epochs=args.epochs, patience=None, seed=None,
        sample_rows=args.sample_rows, raw_dir=None, out_dir=args.runs_dir, json=args.json))
    dataset = load_prepared(request.config, raw_dir=request.config.data.raw_dir)
    if args.sample_rows is not None:  # sampled here once, so the trainer must not sample again
        dataset = dataset.sample(args.sample_rows, request.config.general.seed)
    request = dataclasses.replace(request, sample_rows=None)
    weights = (shared_initial_weights(dataset.vocab_sizes, request.config.general.seed,
                                      request.config.hyperparameters.embedding_dim)
               if args.initial_weights == "shared" else None)
    study = measure(request, dataset, weights)
    command = " ".join(["python -m parity_tests.saturation", *(argv if argv is not None else sys.argv[1:])])
    say(summary_sentence(study))
    if args.out is not None:
        # The sentence is stored beside its numbers: the results page (reports/) quotes it without
        # importing this test-floor module (docs/architecture.md).
        write_json(Path(args.out) / SATURATION_JSON, {**study, "command": command, "summary": summary_sentence(study)})
        write_atomic(Path(args.out) / "saturation.md", render_markdown(study, command))
    if args.json:
        emit_json(study)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
