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
