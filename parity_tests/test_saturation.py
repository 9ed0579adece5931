"""parity_tests.saturation: counting the training rows past hard_sigmoid's kink, and weights that stop moving.

    python -m pytest parity_tests/test_saturation.py -q
"""

from __future__ import annotations

import pytest
import torch

from data import COLUMNS
from parity_tests.saturation import frozen_from, summary_sentence, watching

VOCAB_SIZES = {column: 4 for column in COLUMNS}


def one_epoch(net, features: torch.Tensor) -> None:
    """A training step's forward, then the validation forward that ends the epoch (as Lightning orders them)."""
    net.train()
    net.logits(features)
    net.eval()
    net.logits(features)


def test_every_logit_past_the_kink_counts_as_saturated_and_no_change_as_zero():
    from lightning_impl.model import StreetcarNet

    features = torch.zeros((8, len(COLUMNS)), dtype=torch.int64)
    with watching(kink=3.0) as watch:
        net = StreetcarNet(VOCAB_SIZES, dropout_rate=0.0)
        with torch.no_grad():
            net.output.weight.zero_()
            net.output.bias.fill_(5.0)            # every logit is 5 >= 3
        one_epoch(net, features)
        with torch.no_grad():
            net.output.bias.fill_(-1.0)           # inside (-3, 3): none saturated...
            net.output.weight[0, 0] = 0.25        # ...and one weight moved by 0.25 during the epoch
        net.train()
        net.logits(features)
        with torch.no_grad():
            net.output.weight[0, 0] = 0.5
        net.eval()
        net.logits(features)
    first, second = watch.epochs
    assert first == {"training_rows": 8, "saturated_rows": 8, "saturated_share": 1.0, "largest_weight_change": 0.0}
    assert second["saturated_rows"] == 0 and second["largest_weight_change"] == pytest.approx(0.25)
    # Outside the context nothing is watched any more.
    one_epoch(net, features)
    assert len(watch.epochs) == 2


def epoch(number, share, change, val_loss):
    return {"epoch": number, "saturated_share": share, "largest_weight_change": change, "val_loss": val_loss,
            "val_accuracy": 0.5, "training_rows": 10, "saturated_rows": int(share * 10)}


def test_frozen_from_is_the_start_of_the_last_all_saturated_motionless_stretch():
    epochs = [epoch(1, 0.2, 0.1, 0.6), epoch(2, 1.0, 0.0, 7.3), epoch(3, 0.9, 0.01, 7.0),
              epoch(4, 1.0, 0.0, 7.20782), epoch(5, 1.0, 0.0, 7.20790)]
    frozen = frozen_from(epochs)
    assert frozen == {"from_epoch": 4, "to_epoch": 5, "val_loss_range": [7.20782, 7.20790]}
    sentence = summary_sentence({"frozen": frozen, "epochs": epochs})
    assert sentence.startswith("From epoch 4 to 5 every training row's logit was past the kink")
    assert "between 7.20782 and 7.20790" in sentence
    thawed = epochs[:-1] + [epoch(5, 0.99, 0.0, 7.1)]
    assert frozen_from(thawed) is None
    assert summary_sentence({"frozen": None, "epochs": thawed}).startswith(
        "The run did not end frozen") and "(the largest saturated share of any epoch was 1.0000)" in \
        summary_sentence({"frozen": None, "epochs": thawed})
