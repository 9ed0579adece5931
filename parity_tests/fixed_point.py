"""Is a trained model stuck? The SGD gradient of every training batch at a checkpoint's weights.

    python -m parity_tests.fixed_point RUN_DIR/checkpoints/last.ckpt --out docs/results
    python -m parity_tests.fixed_point model.ckpt --experiment 3 --sample-rows 20000 --json   # outside a run directory

A run whose validation figures repeat to the last digit epoch after epoch
("frozen") is stuck only if SGD has nothing left to do: the gradient of the
training loss is zero for every batch it would see next.  With hard_sigmoid
that happens when every row's logit sits at or past a kink (|x| >= 3, or 2.5
for hard_sigmoid_keras2): the output is exactly 0 or 1 there, and neither the
activation nor the loss's clip to [1e-7, 1 - 1e-7] passes a gradient (Keras 3
and torch alike).  A row on the wrong side (a delay answered with exactly 0)
adds a large loss and no gradient, so a stuck model can have a high val_loss.

This tool loads a Lightning checkpoint of either engine (the same state_dict),
takes the batches of the epoch after the checkpoint's in the shared batch
order (data.batches.epoch_permutation, general.seed), and for each computes
the logits as a training step does (BatchNorm on the batch's statistics) and
the exact gradient of the class-weighted Keras loss by autograd.  Dropout is
off: the book's rate zeroes 0.03 % of the inputs, and the smallest distance
of any logit from the kink (reported) says whether such a mask could matter.

With --out DIR it writes DIR/fixed_point.json, which the results page quotes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from configs.cli import RunRequest, command_parser, positive_int, resolve_run_request
from configs.console import UserError, emit_json, run_main, say
from experiment.artifacts import write_json
from experiment.reliability import REQUEST_FILE
from parity_tests.lockstep import ACTIVATION_KINKS
from reports.results_companions import FIXED_POINT_JSON


def batch_gradients(net, features, targets, weights, batch_size: int, permutation: np.ndarray,
                    progress: Callable[[str], None] = say) -> dict[str, Any]:
    """Per batch of `permutation`: saturated rows, the largest gradient entry, the logits' distance to the kink."""
    import torch

    from lightning_impl.metrics import keras_binary_crossentropy
    from data.batches import batch_slices

    kink = ACTIVATION_KINKS[net.output_activation]
    net.train()
    for dropout in net.dropouts.values():
        dropout.eval()   # dropout off (module docstring); BatchNorm stays on the batch's statistics
    parameters = [parameter for parameter in net.parameters() if parameter.requires_grad]
    dtype = parameters[0].dtype
    saturated = moving_batches = 0
    largest_gradient, smallest_margin = 0.0, float("inf")
    slices = batch_slices(len(permutation), batch_size)
    for number, part in enumerate(slices, start=1):
        rows = permutation[part]
        x = torch.from_numpy(features[rows])
        y = torch.from_numpy(targets[rows]).to(dtype)
        logits = net.logits(x)
        loss = keras_binary_crossentropy(net.activate(logits), y, torch.from_numpy(weights[rows]).to(dtype))
        gradient = max(float(g.abs().max()) for g in torch.autograd.grad(loss, parameters))
        distance = logits.detach().abs() - kink
        saturated += int((distance >= 0).sum())
        smallest_margin = min(smallest_margin, float(distance.min()))
        moving_batches += gradient > 0.0
        largest_gradient = max(largest_gradient, gradient)
        if number % 200 == 0 or number == len(slices):
            progress(f"fixed_point: batch {number} of {len(slices)}; {moving_batches} with a non-zero gradient")
    return {"rows": int(len(permutation)), "saturated_rows": saturated,
            "saturated_share": saturated / max(len(permutation), 1), "batches": len(slices),
            "batches_with_a_gradient": int(moving_batches), "largest_gradient_entry": largest_gradient,
            "smallest_distance_past_the_kink": smallest_margin, "kink": kink}


def summary_sentence(study: dict[str, Any]) -> str:
    """The finding in one sentence, built from the numbers."""
    where = f"At the weights of `{study['checkpoint_name']}` (after epoch {study['checkpoint_epoch']})"
    if study["batches_with_a_gradient"] == 0:
        return (f"{where}, all {study['rows']:,} training rows of the next epoch's {study['batches']:,} batches "
                f"have a logit at least {study['smallest_distance_past_the_kink']:.3g} past the kink, so every "
                f"batch's gradient is exactly 0: SGD cannot move the weights again, and the run is stuck for good.")
    return (f"{where}, {study['saturated_share']:.2%} of the next epoch's training rows sit past the kink, but "
            f"{study['batches_with_a_gradient']:,} of {study['batches']:,} batches still have a gradient (largest "
            f"entry {study['largest_gradient_entry']:.3g}): the model is not a fixed point of SGD.")


def build_argument_parser() -> argparse.ArgumentParser:
    parser = command_parser("python -m parity_tests.fixed_point", __doc__.split("\n")[0],
                            __doc__.split("\n\n", 1)[1].split("A run whose")[0].strip())
    parser.add_argument("checkpoint", help="a Lightning checkpoint (.ckpt) of either engine")
    parser.add_argument("--experiment", default=None, metavar="ID",
                        help="the experiment the run trained (its class weights); only for a checkpoint without "
                             "its run directory: a run's own run_request.json says it")
    parser.add_argument("--sample-rows", type=positive_int, default=None, metavar="N",
                        help="the run's --sample-rows, likewise (default: the run's, else the full data)")
    parser.add_argument("--out", default=None, metavar="DIR", help="write DIR/fixed_point.json")
    parser.add_argument("--json", action="store_true", help="print the study's object on stdout")
    return parser


def measure(checkpoint: Path, request, dataset) -> dict[str, Any]:
    from data.batches import epoch_permutation
    from experiment.run import resolve_class_weight
    from lightning_impl.score import load_scoring_model, read_checkpoint

    net, _ = load_scoring_model(checkpoint)
    if ACTIVATION_KINKS.get(net.output_activation) is None:
        raise UserError(f"{checkpoint}: output activation {net.output_activation!r} has no kink where the gradient "
                        f"is zero; this check is for {', '.join(n for n, kink in ACTIVATION_KINKS.items() if kink)}")
    epoch = int(read_checkpoint(checkpoint).get("epoch", 0))   # 0-based: the last epoch the run finished
    features, targets = dataset.split_arrays("train")
    class_weight = resolve_class_weight(request, dataset)
    weights = np.where(targets.reshape(-1) == 1, class_weight[1], class_weight[0])
    permutation = epoch_permutation(len(targets), int(request.config.general.seed), epoch + 1)
    study = batch_gradients(net, features, targets, weights, request.config.hyperparameters.batch_size, permutation)
    return {"checkpoint_name": f"{checkpoint.parent.parent.name}/{checkpoint.parent.name}/{checkpoint.name}",
            "checkpoint_epoch": epoch + 1, "experiment": request.settings.experiment,
            "output_activation": net.output_activation, "class_weight": class_weight,
            "fixed_point": study["batches_with_a_gradient"] == 0, **study, **run_facts(checkpoint.parent.parent, request)}


def run_facts(run_dir: Path, request: RunRequest) -> dict[str, Any]:
    """The checkpoint's run, where its run directory says: Lightning's engine and the validation history."""
    import json

    from_run = (run_dir / REQUEST_FILE).is_file()   # checkpoint_request then read the run's own config
    facts: dict[str, Any] = {"engine": request.config.lightning.engine if from_run else None, "run_history": None}
    try:
        history = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))["history"]
        facts["run_history"] = {key: [float(value) for value in history[key]] for key in ("val_loss", "val_accuracy")}
    except (OSError, ValueError, KeyError, TypeError):
        pass   # a run that did not finish, or a bare checkpoint: the weights alone answer the question
    return facts


def checkpoint_request(checkpoint: Path, args: argparse.Namespace) -> RunRequest:
    """The settings the checkpoint was trained with: its run's run_request.json, else the flags.

    The class weights, seed (batch order) and sample come from them, so a
    guess would give a wrong answer with exit 0: a flag that contradicts the
    run, or a bare checkpoint without --experiment, is refused instead.
    """
    import json

    from configs.loader import ConfigError, ExperimentSettings, config_from_dict

    path = checkpoint.parent.parent / REQUEST_FILE
    if not path.is_file():
        if args.experiment is None:
            raise UserError(f"{checkpoint} is not inside a run directory (no {path}); pass --experiment ID, and "
                            f"--sample-rows N if the run had one")
        return resolve_run_request(argparse.Namespace(
            config=None, experiment=args.experiment, epochs=None, patience=None, seed=None,
            sample_rows=args.sample_rows, raw_dir=None, out_dir=None, json=args.json))
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        request = RunRequest(config=config_from_dict(saved["config"], source=str(path)),
                             settings=ExperimentSettings(**saved["settings"]), sample_rows=saved.get("sample_rows"),
                             raw_dir=saved.get("raw_dir"), json=args.json)
    except (ConfigError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"{path} is not a readable run request ({type(error).__name__}: {error})") from None
    for flag, given, saved_value in (("--experiment", args.experiment, request.settings.experiment),
                                     ("--sample-rows", args.sample_rows, request.sample_rows)):
        if given is not None and given != saved_value:
            raise UserError(f"{flag} {given} contradicts {path}, which says {saved_value}; drop the flag")
    return request


def main(argv: Sequence[str] | None = None) -> int:
    from experiment.run import run_dataset

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_argument_parser().parse_args(argv)
    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file():
        raise UserError(f"checkpoint {checkpoint} does not exist; pass a run's checkpoints/last.ckpt")
    request = checkpoint_request(checkpoint, args)
    dataset = run_dataset(request)   # loaded and sampled as the trainers do
    study = measure(checkpoint, request, dataset)
    study["command"] = " ".join(["python -m parity_tests.fixed_point", *argv])
    study["summary"] = summary_sentence(study)
    say(study["summary"])
    if args.out is not None:
        write_json(Path(args.out) / FIXED_POINT_JSON, study)
    if args.json:
        emit_json(study)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
