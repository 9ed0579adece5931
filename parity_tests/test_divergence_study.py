"""`python -m parity_tests.divergence`: the lockstep study runs, resumes, and its page claims only what it measured.

    python -m pytest parity_tests/test_divergence_study.py -q

* The lockstep Keras update is the train function fit runs: the loss the
  study records for an update is bitwise the loss `train_on_batch` reports
  for the same batch from the same weights.
* The CLI on a 20,000-row sample (13 updates per epoch, one epoch) writes
  its per-setting JSON, skips it on a rerun, and the summary's numbers agree
  with each other.
* The mechanism paragraph is written only when the numbers show it
  (hand-made summaries, no training).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from parity_tests import divergence, divergence_page
from keras_impl.precision import keras_float_type
from parity_tests.lockstep import KerasSide, Setting

SAMPLE = ["--sample-rows", "20000", "--epochs", "1"]


@pytest.mark.real_data
def test_the_lockstep_keras_loss_is_the_loss_train_on_batch_reports(prepared_dataset):
    from experiment.weights import shared_initial_weights

    dataset = prepared_dataset.sample(20_000, 42)
    features, target = dataset.split_arrays("train")
    features, target = features[:1000], target[:1000]
    weight = np.where(target > 0.5, 40.0, 1.0)
    setting = Setting("hard_sigmoid", 32, 0.001, 1000, {0: 1.0, 1: 40.0}, 42)
    initial = shared_initial_weights(dataset.vocab_sizes, 42)
    with keras_float_type(32):
        side = KerasSide(setting, dataset.vocab_sizes, initial)
        _, loss = side.logits_and_loss(features, target, weight)
        reported = side.model.train_on_batch(side.inputs(features), target.reshape(-1, 1).astype("float32"),
                                             sample_weight=weight.astype("float32"), return_dict=True)["loss"]
    assert loss == pytest.approx(float(reported), rel=0, abs=0)


@pytest.mark.real_data
@pytest.mark.slow
def test_the_cli_measures_writes_and_resumes(tmp_path, capsys):
    arguments = [*SAMPLE, "--activation", "hard_sigmoid", "--precision", "32", "--out-dir", str(tmp_path), "--json"]
    assert divergence.main(arguments) == 0
    summary = json.loads(capsys.readouterr().out)["hard_sigmoid-float32"]
    assert summary["updates"] == summary["updates_per_epoch"] == 13  # 12,0xx training rows, batch 1000
    stored = json.loads((tmp_path / "divergence-runs" / "hard_sigmoid-float32.json").read_text(encoding="utf-8"))
    differences = stored["loss_difference_per_update"]
    assert len(differences) == 13 and max(differences) == pytest.approx(summary["largest_loss_difference"], rel=1e-2)
    # 13 updates from one set of weights: the two frameworks agree to float32 rounding.
    assert summary["largest_loss_difference"] < 1e-5 and summary["first_update_over_threshold"] is None
    assert (tmp_path / "divergence.md").is_file() and (tmp_path / "divergence.png").is_file()

    assert divergence.main(arguments) == 0
    assert "already in" in capsys.readouterr().err


def test_bad_flags_are_one_clear_line(capsys):
    with pytest.raises(SystemExit) as stopped:
        divergence.build_argument_parser().parse_args(["--activation", "relu"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "relu is not one of hard_sigmoid, hard_sigmoid_keras2, sigmoid" in error and len(error.strip().splitlines()) == 1


def fake(setting, kink, parted, split, before, updates=100):
    return {"setting": setting, "kink": kink, "updates": updates, "updates_per_epoch": 50,
            "first_update_over_threshold": parted, "first_update_with_rows_on_different_sides": split,
            "largest_loss_difference_before_first_split": before, "largest_loss_difference": 0.2 if parted else 3e-7,
            "updates_with_rows_on_different_sides": 0 if split is None else 7, "rows_near_kink": 3,
            "largest_epoch_difference": {"loss": 0.1, "val_loss": 0.1, "val_accuracy": 0.01}}


def test_the_mechanism_is_claimed_only_when_the_numbers_show_it():
    shown = {"hard_sigmoid-float32": fake("hard_sigmoid-float32", 3.0, 40, 31, 2e-7),
             "sigmoid-float32": fake("sigmoid-float32", None, None, None, None)}
    assert divergence_page.shows_kink_mechanism(shown)
    assert divergence_page.mechanism_paragraph(shown)[0].startswith("**Crossing the kink (from the numbers above).**")
    parted_first = dict(shown, **{"hard_sigmoid-float32": fake("hard_sigmoid-float32", 3.0, 20, 31, 2e-7)})
    smooth_parted = dict(shown, **{"sigmoid-float32": fake("sigmoid-float32", None, 60, None, None)})
    drifted_before = dict(shown, **{"hard_sigmoid-float32": fake("hard_sigmoid-float32", 3.0, 40, 31, 3e-4)})
    for numbers in (parted_first, smooth_parted, drifted_before, {"sigmoid-float32": shown["sigmoid-float32"]}):
        assert not divergence_page.shows_kink_mechanism(numbers)
        assert "none is claimed" in divergence_page.mechanism_paragraph(numbers)[0]
    sentence = divergence_page.setting_sentence(shown["hard_sigmoid-float32"])
    assert "first differed by more than 1e-4 at update 40 (epoch 1)" in sentence
    assert "first row on different sides of ±3 came at update 31, and until then the losses differed by at most " \
           "2e-07" in sentence


def test_the_overshoot_mechanism_needs_an_overshoot_before_every_parting_and_none_elsewhere():
    def with_gains(summary, gain, first):
        return dict(summary, largest_step_gain=gain, first_update_with_overshooting_rows=first)

    parted, together = fake("hard_sigmoid-float32", 3.0, 40, None, None), fake("sigmoid-float32", None, None, None, None)
    shown = {"hard_sigmoid-float32": with_gains(parted, 80.0, 12), "sigmoid-float32": with_gains(together, 0.01, None)}
    assert divergence_page.shows_overshoot_mechanism(shown)
    paragraph = divergence_page.overshoot_paragraph(shown)
    assert "hard_sigmoid-float32 first at update 12, parted at 40" in paragraph
    assert "no row's gain ever exceeded 0.01" in paragraph
    late = dict(shown, **{"hard_sigmoid-float32": with_gains(parted, 80.0, 41)})
    smooth_overshoots = dict(shown, **{"sigmoid-float32": with_gains(together, 2.5, 7)})
    for numbers in (late, smooth_overshoots):
        assert not divergence_page.shows_overshoot_mechanism(numbers)
