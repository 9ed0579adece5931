"""Replay a scripted metric curve through Keras's and Lightning's callbacks and compare.

Which epoch does training stop at, and which epoch does the best checkpoint
hold?  This tool answers both questions for Keras 3 and for Lightning by
running the *real* frameworks on a tiny model, with the monitored metric
replaced by a curve you choose:

    python -m parity_tests.replay --monitor val_accuracy --mode max --patience 2 \\
        --values 0.69,0.72,0.72,0.71,0.73 [--min-delta 0.01] [--json] [--lightning-defaults]
    python -m parity_tests.replay --monitor val_loss --mode min --patience 1 --values=-inf,3,2
    python -m parity_tests.replay --monitor val_loss --mode min --patience 3 --values-file curve.txt

(A list that starts with '-' needs the `--values=...` form, or argparse takes it
for an option.  A values file holds numbers separated by commas, spaces or
new lines; `nan`, `inf` and `-inf` are numbers.)

How it works:

* **Keras**: `keras.callbacks.EarlyStopping` and
  `keras.callbacks.ModelCheckpoint(save_best_only=True, save_weights_only=True)`
  inside a real `Model.fit` of a one-layer model on 8 random samples.  A
  callback placed first sets `logs[monitor] = values[epoch]` in
  `on_epoch_end`; Keras hands the same logs dict to every callback in order,
  so the real callbacks see the scripted value.  The checkpoint path is the
  project's template in Keras syntax (`best-epoch{epoch:02d}-val_accuracy{val_accuracy:.4f}`).
* **Lightning**: a real `Trainer.fit` of a one-layer LightningModule whose
  `validation_step` logs `values[current_epoch]` with `self.log(monitor, ...,
  on_epoch=True)`, with the project's callbacks from
  `lightning_impl.callbacks.build_lightning_callbacks` -- or, with
  `--lightning-defaults`, stock `EarlyStopping` and
  `ModelCheckpoint(save_top_k=1)` given the same monitor, mode, patience and
  min_delta, to show what the project's callbacks change.
* **Which epoch a checkpoint holds** is found by matching the saved weights
  against a snapshot of the weights taken at the end of every epoch (SGD steps
  on random data change the weights every epoch).  Keras keeps one file per
  improvement; the newest one is its best.  Lightning's top-1 callback keeps one.
* Values are rounded to float32 before either framework sees them, as real
  metrics are: Keras logs are Python floats made from float32 tensors, and
  Lightning's `self.log` stores a float32 tensor.

Output (`--json`): one object

    {"scenario": {...},
     "keras":     {"epochs_run": 5, "best_epoch": 3, "best_value": 0.7316, "best_file": "...", "files": [...],
                   "mode": "max"},
     "lightning": {...same keys...},
     "agree": true, "notes": ["..."]}

`mode` is the direction each side really used (Keras's 'auto' resolved).
`best_epoch` is 0-based (null when nothing was saved); `best_value` is the
scripted value of that epoch: a number, the strings "nan", "inf", "-inf" for
non-finite values (JSON has no NaN), or null when nothing was saved.
`agree` compares epochs_run, best_epoch and best_value; file names are
compared in the notes.  Without `--json` a readable table is printed.  Bad
input prints one message and exits with status 2.

From Python (what the tests do; the frameworks are imported once and the
tiny Keras model is reused across calls):

    from reports.replay import replay, replay_reduce_lr
    replay([10, 9, 8, 9], monitor="val_loss", mode="min", patience=1)
    replay_reduce_lr([5.0] * 8, monitor="val_loss", mode="min", factor=0.5, patience=2)

Tests: `python -m pytest parity_tests/test_callbacks_replay.py parity_tests/test_reduce_lr.py -q`.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any, Sequence

from reports.replay_rigs import (keras_fit, keras_rig, keras_side, lightning_callbacks, lightning_fit,
                                 lightning_side, torch_module)
from reports.replay_values import check_request, json_safe


def replay(values: Sequence[float], monitor: str, mode: str | None, patience: int, min_delta: float = 0.0,
           lightning_defaults: bool = False, *, template: str | None = None) -> dict[str, Any]:
    """Run the scripted curve through both frameworks; the dict the CLI prints as JSON.

    `mode=None` is allowed only with `lightning_defaults=True`: Keras then uses
    mode='auto' and Lightning its default 'min'.  `template` defaults to
    callbacks.checkpoint_template of configs/streetcar.yaml.  Raises
    ReplayError for a bad request and ValueError for what the project's
    callbacks refuse (e.g. a negative min_delta).
    """
    scripted = check_request(values, monitor, mode, patience, min_delta, lightning_defaults)
    if template is None:
        from configs.loader import load_config

        template = load_config().callbacks.checkpoint_template
    with tempfile.TemporaryDirectory(prefix="callback-replay-") as temporary:
        keras_dir, lightning_dir = Path(temporary, "keras"), Path(temporary, "lightning")
        keras_dir.mkdir()
        lightning_dir.mkdir()
        # Build Lightning's callbacks first: the project refuses some requests
        # (negative min_delta) and should do so before Keras spends time.
        lightning_set = lightning_callbacks(scripted, monitor, mode, patience, min_delta, lightning_defaults,
                                            template, lightning_dir)
        keras_result = keras_side(scripted, monitor, mode, patience, min_delta, template, keras_dir)
        lightning_result = lightning_side(scripted, monitor, lightning_set, lightning_dir)
    agree = all(keras_result[key] == lightning_result[key] for key in ("epochs_run", "best_epoch", "best_value"))
    scenario = {"values": [json_safe(value) for value in scripted], "monitor": monitor, "mode": mode,
                "patience": patience, "min_delta": min_delta, "epochs": len(scripted),
                "lightning_callbacks": "lightning-defaults" if lightning_defaults else "project"}
    return {"scenario": scenario, "keras": keras_result, "lightning": lightning_result, "agree": agree,
            "notes": _notes(scenario, scripted, keras_result, lightning_result, agree, lightning_defaults)}


def _notes(scenario: dict[str, Any], values: list[float], keras_result: dict[str, Any],
           lightning_result: dict[str, Any], agree: bool, lightning_defaults: bool) -> list[str]:
    monitor, patience, min_delta = (scenario[key] for key in ("monitor", "patience", "min_delta"))
    notes = []
    if lightning_defaults:
        notes.append(f"Lightning side: stock EarlyStopping(monitor={monitor!r}, mode={lightning_result['mode']!r}, "
                     f"patience={patience}, min_delta={min_delta}, check_finite=True) and "
                     f"ModelCheckpoint(save_top_k=1); Keras side: EarlyStopping(mode={keras_result['mode']!r}) "
                     f"and ModelCheckpoint(save_best_only=True).")
    else:
        notes.append("Lightning side: the project's KerasCompatibleEarlyStopping and KerasCompatibleModelCheckpoint "
                     "(lightning_impl/callbacks.py); Keras side: keras.callbacks.EarlyStopping and "
                     "ModelCheckpoint(save_best_only=True).")
    explanations = (_stock_lightning_explanations(scenario, values, keras_result, lightning_result)
                    if lightning_defaults and not agree else [])
    notes += explanations
    if not agree and not explanations:
        notes.append("Disagreement not explained by a documented difference (docs/differences.md#callbacks); "
                     "please report it with this output.")
    if not lightning_defaults and values and math.isnan(values[0]):
        notes.append("The first value is NaN: in both, as in Keras, it became the best and nothing can beat it.")
    if min_delta > 0:
        notes.append("ModelCheckpoint has no min_delta in either framework: the best checkpoint may hold an epoch "
                     "that EarlyStopping did not count as an improvement.")
    if len(keras_result["files"]) > 1:
        notes.append(f"Keras kept {len(keras_result['files'])} checkpoint files (one per improvement, {{epoch}} in "
                     f"the name); Lightning's save_top_k=1 keeps only the best.")
    keras_stem = _stem(keras_result["best_file"])
    lightning_stem = _stem(lightning_result["best_file"])
    if keras_stem != lightning_stem:
        notes.append(f"Checkpoint names differ: Keras {keras_result['best_file']!r} (1-based {{epoch}}) vs Lightning "
                     f"{lightning_result['best_file']!r}"
                     + (" (0-based {epoch})." if lightning_defaults else "."))
    return notes


def _stock_lightning_explanations(scenario: dict[str, Any], values: list[float], keras_result: dict[str, Any],
                                  lightning_result: dict[str, Any]) -> list[str]:
    """Why stock Lightning's callbacks disagreed with Keras's: the documented differences this curve shows."""
    monitor, min_delta = scenario["monitor"], scenario["min_delta"]
    non_finite = [index for index, value in enumerate(values) if not math.isfinite(value)]
    notes = []
    first = values[0]
    # NaN, or the infinity Lightning starts from (+inf in min mode, -inf in max mode).
    not_an_improvement_for_lightning = math.isnan(first) or first == (
        math.inf if lightning_result["mode"] == "min" else -math.inf)
    if not math.isfinite(first):
        sentence = (f"The first value is {json_safe(first)}: Keras starts from best=None, so it becomes the best "
                    f"({'and nothing can beat NaN' if math.isnan(first) else 'compared as a number'}); "
                    f"stock Lightning's check_finite=True stops at idx 0")
        if not_an_improvement_for_lightning:
            sentence += " (and its ±inf start would not count it as an improvement either)"
        if math.isnan(first):
            sentence += ". Its ModelCheckpoint stores NaN as ±inf, so any finite value replaces it"
        notes.append(sentence + ".")
    elif non_finite:
        notes.append(f"Non-finite values at idx {non_finite}: stock Lightning's check_finite=True stops at the "
                     f"first one (idx {non_finite[0]}); Keras has no finiteness check (NaN is never an "
                     f"improvement after the first epoch, ±inf compare as numbers).")
    if scenario["mode"] is None and keras_result["mode"] != lightning_result["mode"]:
        notes.append(f"No mode given: Keras's mode='auto' resolved {monitor} to {keras_result['mode']!r}; "
                     f"Lightning has no 'auto' and silently used its default {lightning_result['mode']!r}.")
    if min_delta < 0:
        notes.append(f"min_delta={min_delta}: Keras uses abs(min_delta)={abs(min_delta)}; Lightning keeps the "
                     f"sign and uses it as a tolerance: values up to {abs(min_delta)} worse than the best count as "
                     f"improvements.")
    return notes


def _stem(name: str | None) -> str | None:
    if name is None:
        return None
    for suffix in (".weights.h5", ".ckpt"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


# --------------------------------------------------------------------------
# ReduceLROnPlateau replay
# --------------------------------------------------------------------------


def replay_reduce_lr(values: Sequence[float], *, monitor: str = "val_loss", mode: str = "min", factor: float = 0.5,
                     patience: int = 2, min_delta: float = 1e-4, min_lr: float = 0.0,
                     cooldown: int = 0) -> dict[str, Any]:
    """Learning rate used in each epoch under four ReduceLROnPlateau implementations.

    * "keras": keras.callbacks.ReduceLROnPlateau(monitor, factor, patience, mode, min_delta, cooldown, min_lr).
    * "lightning": the project's KerasCompatibleReduceLROnPlateau with the same arguments.
    * "torch_stock": torch.optim.lr_scheduler.ReduceLROnPlateau(mode, factor, patience), every
      other argument at torch's default (threshold=1e-4 relative, cooldown 0, min_lr 0).
    * "torch_configured": torch's scheduler set up to imitate Keras: patience-1,
      threshold=min_delta, threshold_mode='abs', same cooldown and min_lr.

    Each list holds the rate of the first param group at the start of every
    epoch (the initial rate is 0.1), plus "drops": the epochs whose rate is
    lower than the previous epoch's.
    """
    scripted = check_request(values, monitor, mode, patience, 0.0, False)
    rig = keras_rig()
    keras = rig["keras"]
    keras_callback = keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=factor, patience=patience, verbose=0,
                                                       mode=mode, min_delta=min_delta, cooldown=cooldown,
                                                       min_lr=min_lr)
    rates = {"keras": keras_fit(scripted, monitor, [keras_callback]).learning_rates}

    from lightning_impl.callbacks import KerasCompatibleReduceLROnPlateau

    torch = torch_module()
    project = KerasCompatibleReduceLROnPlateau(monitor=monitor, mode=mode, factor=factor, patience=patience,
                                               min_delta=min_delta, cooldown=cooldown, min_lr=min_lr)

    def torch_stock(optimizer: Any) -> Any:
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience)

    def torch_configured(optimizer: Any) -> Any:
        # torch reduces when num_bad_epochs > patience, Keras when wait >= patience.
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=mode, factor=factor, patience=max(patience - 1, 0), threshold=min_delta,
            threshold_mode="abs", cooldown=cooldown, min_lr=min_lr)

    with tempfile.TemporaryDirectory(prefix="reduce-lr-replay-") as temporary:
        rates["lightning"] = lightning_fit(scripted, monitor, [project], Path(temporary)).learning_rates
        rates["torch_stock"] = lightning_fit(scripted, monitor, [], Path(temporary), torch_stock).learning_rates
        rates["torch_configured"] = lightning_fit(scripted, monitor, [], Path(temporary),
                                                  torch_configured).learning_rates
    drops = {name: [index for index in range(1, len(sequence)) if sequence[index] < sequence[index - 1] * (1 - 1e-6)]
             for name, sequence in rates.items()}
    return {**rates, "drops": drops}

