"""Experiment 5 of chapter 6 (class weights, early stopping on val_accuracy) in PyTorch Lightning.

    python examples/minimal_port.py --sample-rows 200000 --epochs 10

Stock parts only. Read it beside examples/minimal_keras.py, which does the same
in Keras, section by section; docs/keras_vs_lightning.md walks through both.
"""

import argparse
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryRecall

from configs.loader import load_config, resolve_experiment
from data import COLUMNS, load_prepared


# [docs:minimal-lightning-data]
def make_loader(dataset, split, class_weight=None, shuffle=False, batch_size=1000):
    """(features, target, weight) batches; features are (n, 7) int64 in COLUMNS order."""
    features, target = dataset.split_arrays(split)
    target = torch.tensor(target, dtype=torch.float32)
    weight = torch.ones_like(target)  # Keras weighs validation rows 1: class_weight is for training only
    if class_weight is not None:
        weight = torch.where(target > 0.5, class_weight[1], class_weight[0])
    rows = TensorDataset(torch.from_numpy(features), target, weight)
    # Whole batches: one gather of batch_size rows, not batch_size single rows collated (much slower).
    order = RandomSampler(rows) if shuffle else SequentialSampler(rows)
    return DataLoader(rows, sampler=BatchSampler(order, batch_size, drop_last=False), batch_size=None)
# [/docs:minimal-lightning-data]


# [docs:minimal-lightning-model]
class StreetcarNet(nn.Module):
    """Per column Embedding -> BatchNorm -> Dropout; concatenate; Dense(1) with hard_sigmoid."""

    def __init__(self, vocab_sizes, embedding_dim=10, dropout_rate=0.0003):
        super().__init__()
        self.embeddings = nn.ModuleDict({c: nn.Embedding(vocab_sizes[c], embedding_dim) for c in COLUMNS})
        # Keras BatchNormalization(momentum=0.99, epsilon=1e-3): torch counts momentum the other way round.
        self.batchnorms = nn.ModuleDict({c: nn.BatchNorm1d(embedding_dim, momentum=0.01, eps=1e-3)
                                         for c in COLUMNS})
        self.dropouts = nn.ModuleDict({c: nn.Dropout(dropout_rate) for c in COLUMNS})
        self.output = nn.Linear(len(COLUMNS) * embedding_dim, 1)

    def forward(self, features):
        branches = [self.dropouts[c](self.batchnorms[c](self.embeddings[c](features[:, j])))
                    for j, c in enumerate(COLUMNS)]
        # Keras 3's hard_sigmoid, relu6(x + 3) / 6, is torch's hardsigmoid.
        return F.hardsigmoid(self.output(torch.cat(branches, dim=1))).squeeze(1)
# [/docs:minimal-lightning-model]


# [docs:minimal-lightning-module]
class DelayClassifier(L.LightningModule):
    """What Keras's compile() holds: the loss, the optimiser and the metrics."""

    def __init__(self, vocab_sizes, dropout_rate=0.0003, learning_rate=0.001):
        super().__init__()
        self.save_hyperparameters()
        self.net = StreetcarNet(vocab_sizes, dropout_rate=dropout_rate)
        metrics = MetricCollection({"accuracy": BinaryAccuracy(), "recall": BinaryRecall()})
        self.train_metrics, self.val_metrics = metrics.clone(), metrics.clone(prefix="val_")

    def shared_step(self, batch, metrics, loss_name):
        features, target, weight = batch
        probabilities = self.net(features)
        # Keras's class_weight loss, sum(w * l) / N: torch's weighted BCE also divides by N.
        loss = F.binary_cross_entropy(probabilities, target, weight=weight)
        metrics.update(probabilities, target.int())
        self.log_dict(metrics, on_step=False, on_epoch=True)  # computed and reset every epoch
        self.log(loss_name, loss, on_step=False, on_epoch=True, batch_size=len(target))
        return loss

    def training_step(self, batch, batch_idx):
        return self.shared_step(batch, self.train_metrics, "loss")

    def validation_step(self, batch, batch_idx):
        self.shared_step(batch, self.val_metrics, "val_loss")

    def predict_step(self, batch, batch_idx):
        return self.net(batch[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.learning_rate)
# [/docs:minimal-lightning-module]


def main(sample_rows, epochs, out_dir):
    # [docs:minimal-lightning-load]
    config = load_config()
    settings = resolve_experiment(config, "5")
    hyper = config.hyperparameters
    L.seed_everything(config.general.seed)  # Python, NumPy and torch
    dataset = load_prepared(config)
    if sample_rows is not None:
        dataset = dataset.sample(sample_rows, config.general.seed)  # the seeded subset every trainer here takes
    class_weight = {0: 1.0, 1: dataset.one_weight()}  # count_no_delay / count_delay on train
    # [/docs:minimal-lightning-load]
    train_loader = make_loader(dataset, "train", class_weight, shuffle=True, batch_size=hyper.batch_size)
    valid_loader = make_loader(dataset, "valid", batch_size=hyper.batch_size)
    module = DelayClassifier(dataset.vocab_sizes, hyper.dropout_rate, hyper.learning_rate)
    # [docs:minimal-lightning-callbacks]
    early_stopping = EarlyStopping(monitor="val_accuracy", mode="max", patience=settings.patience)
    checkpoint = ModelCheckpoint(Path(out_dir, "checkpoints"), monitor="val_accuracy", mode="max", save_top_k=1,
                                 filename="best-epoch{epoch:02d}-val_accuracy{val_accuracy:.4f}",
                                 auto_insert_metric_name=False)  # {epoch} is 0-based here
    # [/docs:minimal-lightning-callbacks]
    # [docs:minimal-lightning-fit]
    trainer = L.Trainer(max_epochs=epochs, callbacks=[early_stopping, checkpoint],
                        logger=CSVLogger(out_dir, name="history"), num_sanity_val_steps=0,
                        enable_progress_bar=False)
    trainer.fit(module, train_loader, valid_loader)
    # [/docs:minimal-lightning-fit]
    # [docs:minimal-lightning-predict]
    kept = DelayClassifier.load_from_checkpoint(checkpoint.best_model_path)
    kept_epoch = torch.load(checkpoint.best_model_path, weights_only=True)["epoch"] + 1
    probabilities = torch.cat(trainer.predict(kept, make_loader(dataset, "test", batch_size=100_000)))
    _, test_target = dataset.split_arrays("test")
    recall = BinaryRecall()(probabilities, torch.from_numpy(test_target).int())
    # [/docs:minimal-lightning-predict]
    print(f"kept epoch {kept_epoch} (val_accuracy {float(checkpoint.best_model_score):.4f}): "
          f"{Path(checkpoint.best_model_path).name}")
    print(f"test recall {float(recall):.5f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sample-rows", type=int, help="a seeded subset of the rows (default: all)")
    parser.add_argument("--epochs", type=int, default=50, help="at most this many epochs (the book: 50)")
    parser.add_argument("--out-dir", default="runs/minimal-port", help="checkpoints and the CSV history")
    args = parser.parse_args()
    if args.epochs < 1 or (args.sample_rows is not None and args.sample_rows < 1):
        parser.error("--epochs and --sample-rows must be at least 1")
    try:
        main(args.sample_rows, args.epochs, args.out_dir)
    except ValueError as error:  # bad input (a --sample-rows out of range, no data): one line, exit 2
        parser.exit(2, f"error: {error}\n")
