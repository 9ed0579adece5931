"""parity_tests.fixed_point: a model is stuck exactly when every training batch's gradient is zero.

    python -m pytest parity_tests/test_fixed_point.py -q
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data import COLUMNS
from parity_tests.fixed_point import batch_gradients, main, summary_sentence

VOCAB_SIZES = {column: 4 for column in COLUMNS}
ROWS = 40


def small_net(bias: float):
    from lightning_impl.model import StreetcarNet

    torch.manual_seed(0)
    net = StreetcarNet(VOCAB_SIZES, dropout_rate=0.0003)
    with torch.no_grad():
        net.output.weight.mul_(0.1)   # BatchNorm's outputs are O(1): the logits stay within ±0.2 of the bias
        net.output.bias.fill_(bias)
    return net


def run(bias: float) -> dict:
    generator = np.random.default_rng(0)
    features = generator.integers(0, 4, size=(ROWS, len(COLUMNS))).astype(np.int64)
    targets = (np.arange(ROWS) % 5 == 0).astype(np.float32).reshape(-1, 1)   # 8 delays of 40
    weights = np.where(targets.reshape(-1) == 1, 4.0, 1.0)
    return batch_gradients(small_net(bias), features, targets, weights, batch_size=16,
                           permutation=np.arange(ROWS), progress=lambda line: None)


def test_logits_all_past_the_kink_give_no_gradient_in_any_batch():
    # Above +3 (every output exactly 1, delays and non-delays alike) and below -3: nothing left to learn.
    for bias in (6.0, -6.0):
        study = run(bias)
        assert study["batches"] == 3 and study["rows"] == ROWS
        assert study["saturated_rows"] == ROWS and study["saturated_share"] == 1.0
        assert study["batches_with_a_gradient"] == 0 and study["largest_gradient_entry"] == 0.0
        assert 2.5 < study["smallest_distance_past_the_kink"] < 3.0


def test_logits_inside_the_kinks_give_every_batch_a_gradient():
    study = run(0.0)
    assert study["saturated_rows"] == 0
    assert study["batches_with_a_gradient"] == 3 and study["largest_gradient_entry"] > 1e-3
    assert -3.0 < study["smallest_distance_past_the_kink"] < -2.7


def test_the_sentence_follows_the_numbers():
    stuck = {**run(6.0), "checkpoint_name": "run/checkpoints/last.ckpt", "checkpoint_epoch": 50}
    assert "every batch's gradient is exactly 0" in summary_sentence(stuck)
    moving = {**run(0.0), "checkpoint_name": "run/checkpoints/last.ckpt", "checkpoint_epoch": 50}
    sentence = summary_sentence(moving)
    assert "not a fixed point" in sentence and "3 of 3 batches" in sentence


def test_a_missing_checkpoint_is_one_clear_error(tmp_path, capsys):
    from configs.console import run_main

    assert run_main(main, [str(tmp_path / "nothing.ckpt")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [f"error: checkpoint {tmp_path / 'nothing.ckpt'} does not exist; pass a run's "
                     "checkpoints/last.ckpt"]


def run_directory(tmp_path, experiment: str, sample_rows):
    """A run directory as the trainers leave it: run_request.json beside checkpoints/ (the checkpoint need not load)."""
    import json
    from dataclasses import asdict

    from configs.loader import config_to_dict, load_config, resolve_experiment

    run_dir = tmp_path / f"lightning-exp{experiment}-20260101-000000"
    (run_dir / "checkpoints").mkdir(parents=True)
    config = load_config()
    (run_dir / "run_request.json").write_text(json.dumps({
        "framework": "lightning", "config": config_to_dict(config),
        "settings": asdict(resolve_experiment(config, experiment)), "sample_rows": sample_rows, "raw_dir": None}))
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    checkpoint.write_bytes(b"not read by these checks")
    return checkpoint


def test_the_runs_own_settings_are_used_and_a_contradicting_flag_is_refused(tmp_path):
    import argparse

    from configs.console import UserError
    from parity_tests.fixed_point import checkpoint_request

    checkpoint = run_directory(tmp_path, "5", 20000)
    flags = argparse.Namespace(experiment=None, sample_rows=None, json=False)
    request = checkpoint_request(checkpoint, flags)
    assert (request.settings.experiment, request.settings.monitor, request.sample_rows) == ("5", "val_accuracy", 20000)
    # The flags may repeat the run's settings, never change them: class weights, seed and sample follow the run.
    assert checkpoint_request(checkpoint, argparse.Namespace(experiment="5", sample_rows=20000, json=False))
    with pytest.raises(UserError, match=r"--experiment 3 contradicts .*run_request.json, which says 5; drop"):
        checkpoint_request(checkpoint, argparse.Namespace(experiment="3", sample_rows=None, json=False))
    with pytest.raises(UserError, match=r"--sample-rows 100 contradicts .*which says 20000"):
        checkpoint_request(checkpoint, argparse.Namespace(experiment=None, sample_rows=100, json=False))


def test_a_checkpoint_outside_a_run_directory_needs_its_experiment(tmp_path, capsys):
    from configs.console import run_main

    bare = tmp_path / "model.ckpt"
    bare.write_bytes(b"x")
    assert run_main(main, [str(bare)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {bare} is not inside a run directory") and "pass --experiment ID" in line
