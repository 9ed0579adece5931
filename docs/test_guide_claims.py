"""What the guide (docs/keras_vs_lightning.md) and docs/differences.md say about the libraries, checked.

    python -m pytest docs/test_guide_claims.py -q

Each test pins one claim with the numbers written in the page, so a new
torch, Lightning or Keras release that changes the behaviour fails here
rather than leaving a wrong sentence in the guide.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
GUIDE = PROJECT_ROOT / "docs" / "keras_vs_lightning.md"
APPENDIX_HEADING = "\n## Appendix"
MAIN_TEXT_LIMIT_BYTES = 25_000        # the guide's budget: main text <= ~25 KB, appendices as they need

# A 1000-row batch with 2 % delays (20 rows, class weight 45) from a model that has not learnt yet:
# p = 0.2 on every delay and 0.1 on every other row.  By hand:
#   sum(w l) = 20 * 45 * -ln 0.2 + 980 * -ln 0.9 = 1551.7474;  sum(w) = 980 + 20 * 45 = 1880.
KERAS_CLASS_WEIGHTED_LOSS = 1.5517474        # sum(w l) / N    (N = 1000)
WEIGHTED_MEAN_LOSS = 0.8253976               # sum(w l) / sum(w)


def weighted_batch():
    target = np.array([1.0] * 20 + [0.0] * 980, dtype=np.float32)
    probabilities = np.where(target > 0.5, 0.2, 0.1).astype(np.float32)
    weight = np.where(target > 0.5, 45.0, 1.0).astype(np.float32)
    return probabilities, target, weight


def test_the_hand_computed_losses():
    by_hand = 20 * 45 * -math.log(0.2) + 980 * -math.log(0.9)
    assert by_hand / 1000 == pytest.approx(KERAS_CLASS_WEIGHTED_LOSS, abs=1e-7)
    assert by_hand / 1880 == pytest.approx(WEIGHTED_MEAN_LOSS, abs=1e-7)


def test_torchs_weighted_binary_losses_divide_by_n_as_keras_does():
    """difference 12: F.binary_cross_entropy(weight=w) = BCEWithLogitsLoss(pos_weight=45) = Keras's
    class-weighted loss; the trap is the two-logit CrossEntropyLoss(weight=[1, 45]) or a hand-written
    weighted mean, which divide by sum(w), as Keras 3 does only with reduction="mean_with_sample_weight"."""
    import keras
    import torch
    import torch.nn.functional as F

    probabilities, target, weight = weighted_batch()
    p, y, w = (torch.from_numpy(array) for array in (probabilities, target, weight))
    logits = torch.log(p / (1 - p))
    same_as_keras = {
        "F.binary_cross_entropy(weight=w)": F.binary_cross_entropy(p, y, weight=w),
        "BCEWithLogitsLoss(pos_weight=45)": torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(45.0))(logits, y),
        "keras BinaryCrossentropy, sample_weight": keras.losses.BinaryCrossentropy()(
            target[:, None], probabilities[:, None], sample_weight=weight),
    }
    for name, value in same_as_keras.items():
        assert float(value) == pytest.approx(KERAS_CLASS_WEIGHTED_LOSS, rel=2e-6), name
    two_logits = torch.stack([torch.log(1 - p), torch.log(p)], dim=1)
    weighted_mean = {
        "CrossEntropyLoss(weight=[1, 45])": torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 45.0]))(
            two_logits, y.long()),
        "sum(w l) / sum(w) by hand": (w * F.binary_cross_entropy(p, y, reduction="none")).sum() / w.sum(),
        "keras mean_with_sample_weight": keras.losses.BinaryCrossentropy(reduction="mean_with_sample_weight")(
            target[:, None], probabilities[:, None], sample_weight=weight),
    }
    for name, value in weighted_mean.items():
        assert float(value) == pytest.approx(WEIGHTED_MEAN_LOSS, rel=2e-6), name


def test_lightning_runs_model_checkpoints_last_whatever_the_list_order():
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    class Recorder(L.Callback):
        pass

    trainer = L.Trainer(callbacks=[ModelCheckpoint(), EarlyStopping("val_loss", mode="min"), Recorder()],
                        logger=False, enable_progress_bar=False, enable_model_summary=False)
    assert [type(callback).__name__ for callback in trainer.callbacks] == \
        ["EarlyStopping", "Recorder", "ModelCheckpoint"]


def test_keras3_refuses_the_articles_hdf5_checkpoint_and_the_savedmodel_directory(tmp_path: Path):
    import keras

    with pytest.raises(ValueError, match=r"must end in `\.keras`"):
        keras.callbacks.ModelCheckpoint(str(tmp_path / "my_best_model.epoch{epoch:02d}-loss{val_loss:.2f}.hdf5"))
    keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"))          # the Keras 3 format
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match=r"model\.export\(filepath\)"):
        model.save(str(tmp_path / "saved_model_directory"))


def test_fast_dev_run_is_the_one_batch_smoke_run_and_writes_nothing(tmp_path: Path):
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from data import BOOK_VOCABULARIES

    from examples import minimal_port as port

    trainer = L.Trainer(fast_dev_run=True, default_root_dir=str(tmp_path), enable_progress_bar=False,
                        callbacks=[ModelCheckpoint(tmp_path / "checkpoints", monitor="val_loss", mode="min")])
    trainer.fit(port.DelayClassifier(BOOK_VOCABULARIES.sizes()), synthetic_loader(), synthetic_loader())
    assert trainer.global_step == 1                      # one training batch (and one validation batch)
    assert list(tmp_path.rglob("*.ckpt")) == [] and not (tmp_path / "lightning_logs").exists()


def test_a_torchmetrics_metric_accumulates_until_it_is_reset():
    import torch
    from torchmetrics.classification import BinaryAccuracy

    accuracy = BinaryAccuracy()
    accuracy.update(torch.tensor([0.9, 0.9]), torch.tensor([1, 1]))
    assert float(accuracy.compute()) == 1.0              # "epoch 1"
    accuracy.update(torch.tensor([0.9, 0.9]), torch.tensor([0, 0]))
    assert float(accuracy.compute()) == 0.5              # epoch 2 without a reset: both epochs mixed
    accuracy.reset()
    accuracy.update(torch.tensor([0.9, 0.9]), torch.tensor([0, 0]))
    assert float(accuracy.compute()) == 0.0              # epoch 2 alone


def test_the_guides_main_text_fits_25_kb():
    # That it cites nothing outside the project is checked for every tracked file, the guide included,
    # by docs/test_no_outside_citations.py.
    text = GUIDE.read_text(encoding="utf-8")
    assert APPENDIX_HEADING in text, "the guide's appendices start with '## Appendix'"
    main_text = text.split(APPENDIX_HEADING, 1)[0]
    assert len(main_text.encode("utf-8")) <= MAIN_TEXT_LIMIT_BYTES


def test_the_guide_starts_with_the_minimal_port_side_by_side():
    text = GUIDE.read_text(encoding="utf-8")
    first_section = text.split("\n## ")[1]
    assert first_section.startswith("0. The minimal port")
    assert "examples/minimal_port.py#" in first_section and "examples/minimal_keras.py#" in first_section


def synthetic_loader(rows: int = 3000, seed: int = 0):
    """Random encoded trips with ~30 % delays, in the (features, target, weight) batches of the minimal port."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from data import BOOK_VOCABULARIES, COLUMNS

    sizes = BOOK_VOCABULARIES.sizes()
    generator = torch.Generator().manual_seed(seed)
    features = torch.stack([torch.randint(sizes[column], (rows,), generator=generator) for column in COLUMNS], 1)
    target = (torch.rand(rows, generator=generator) < 0.3).float()
    return DataLoader(TensorDataset(features, target, torch.ones(rows)), batch_size=1000)


def plateau_module_class():
    import torch

    from examples import minimal_port as port

    # [docs:lightning-plateau-scheduler]
    class WithPlateauScheduler(port.DelayClassifier):
        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.learning_rate)
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=2)
            # Lightning steps it after each validation with the logged value named by "monitor".
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss"}}
    # [/docs:lightning-plateau-scheduler]

    class WithoutMonitor(port.DelayClassifier):
        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.learning_rate)
            return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)}

    return WithPlateauScheduler, WithoutMonitor


def test_a_plateau_scheduler_is_stepped_with_its_monitored_value_and_needs_one():
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from data import BOOK_VOCABULARIES

    with_monitor, without_monitor = plateau_module_class()
    options = {"max_epochs": 1, "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
               "enable_model_summary": False, "num_sanity_val_steps": 0}
    trainer = L.Trainer(**options)
    trainer.fit(with_monitor(BOOK_VOCABULARIES.sizes()), synthetic_loader(), synthetic_loader(seed=1))
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.last_epoch == 1                                       # stepped once, after the epoch
    assert scheduler.best == pytest.approx(float(trainer.callback_metrics["val_loss"]))
    with pytest.raises(MisconfigurationException, match="monitor"):
        L.Trainer(**options).fit(without_monitor(BOOK_VOCABULARIES.sizes()), synthetic_loader(), synthetic_loader())
