"""The prepared dataset as Lightning batches, cut from in-memory tensors.

    from data import load_prepared
    from lightning_impl.datamodule import StreetcarDataModule
    datamodule = StreetcarDataModule(load_prepared(config), batch_size=1000, batch_order="shared",
                                     seed=42, class_weight={0: 1.0, 1: 44.6})
    trainer.fit(module, datamodule=datamodule)     # Trainer(use_distributed_sampler=False), see below

    python -m pytest lightning_impl/tests/test_datamodule.py

A batch is `(features, target, sample_weight)`: int64 (B, 7) codes in
data.COLUMNS order, float32 (B,) 0/1 targets, and float32 (B,) per-row class
weights for the training split (Keras's class_weight turned into sample
weights, as Keras does internally) or None for validation / test / predict
(Keras validates unweighted).

No per-sample __getitem__ and no collate: each split is held as three tensors
(on the training device once setup() knows it), an `EpochBatchSampler` yields
one int64 index tensor per batch, and `SplitTensors.__getitem__` gathers the
whole batch with index_select.  The loaders Lightning gets are `BatchLoader`s,
plain sized iterables over those batches (Lightning accepts any iterable):
a torch DataLoader(SplitTensors, sampler=EpochBatchSampler, batch_size=None)
would yield the same batches but adds per-batch overhead comparable to the
gather itself.

Batch order of the training split, per epoch e (0-based, the epoch Lightning
passes to the sampler's set_epoch):

    "shared"     data.batches.epoch_permutation(n_train, seed, e) cut into
                 consecutive batch_size chunks, last short batch kept: the
                 order keras_impl feeds too, so batch k of epoch e holds the
                 same rows in both frameworks;
    "framework"  torch.randperm with a torch.Generator seeded from (seed, e):
                 torch's own shuffle, still repeatable and resumable.

Validation, test and predict batches follow the stored row order.

Steps per execution (training only; the fast engine).  With steps_per_execution
= K > 1 the training loader yields lists of K consecutive batches (the last list
may be shorter) and FastStreetcarClassifier.training_step (lightning_impl.fast)
makes one SGD update per batch
of the list, in order: the same batches, the same updates, the same numbers
as K = 1, with Lightning's per-step machinery (hooks, fetcher, progress
bookkeeping: a large share of this model's small step, measured in
docs/benchmarks.md) paid once per K batches.  It is the Lightning counterpart of Keras's
compile(steps_per_execution=K), which keras_impl leaves at the book's 1
because Keras's per-batch overhead is already inside its compiled loop.
Lightning's batch_idx, progress bar and logging step then count lists;
trainer.global_step still counts SGD updates (manual optimisation counts
optimizer.step() calls).

Distributed (DDP): the sampler itself splits the work between processes.
Training: every global batch of the order above is cut into W slices
(torch.tensor_split), process r taking slice r, so one optimiser step of W
processes sees exactly the batch_size rows a single process sees, and every
process runs the same number of steps.  (Lightning's DistributedSampler
would instead give each process whole batches: a W x larger effective batch
that changes the training.)  The fast engine's network computes BatchNorm
statistics and dropout masks over the whole global batch and the loss is
scaled so that DDP's gradient average is the global batch's gradient
(lightning_impl.fast.network.FusedStreetcarNet.split_batches_across), which
makes W processes train like one (lightning_impl/tests/test_ddp.py); the
plain engine's BatchNorm uses each process's slice.  Evaluation:
process r takes batches r, r + W, ... unpadded, so every row is counted
exactly once (torchmetrics sums the processes' states).  Lightning must not
insert its own DistributedSampler: build the Trainer with
use_distributed_sampler=False (lightning_impl.train does).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from configs.loader import BATCH_ORDERS, PRECISIONS
from data.batches import epoch_permutation
from data.dataset import COLUMNS, PreparedDataset

TRAIN, VALID, TEST = "train", "valid", "test"


def framework_epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit torch seed derived from (seed, epoch), so every epoch's shuffle can be rebuilt alone."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(2, dtype=np.uint32)
               .astype(np.uint64).dot(np.array([1 << 31, 1], dtype=np.uint64)))


class EpochBatchSampler(Sampler[torch.Tensor]):
    """Yields this process's batches of one epoch as int64 row-index tensors.

    shuffle=False: rows in stored order.  shuffle=True: "shared" or
    "framework" order (module docstring), so the order depends only on
    (seed, epoch).  rank / world_size split the work between DDP processes:
    with slice_batches (training) each batch is cut into world_size slices
    and this process yields slice `rank` of every batch; without it
    (evaluation) this process yields batches rank, rank + world_size, ...

    The epoch: Lightning calls `set_epoch` before every training epoch, but
    (2.6) it creates the first epoch's iterator - and prefetches its first
    batch - before that call.  For a fresh run that is harmless (epoch 0 is
    the default); a run resumed at epoch k would replay epoch 0's order in
    epoch k.  So when `epoch_source` is given (the data module passes the
    epoch Lightning is about to run) it is read when iteration starts.
    """

    def __init__(self, n_rows: int, batch_size: int, *, shuffle: bool, batch_order: str = "shared",
                 seed: int = 0, rank: int = 0, world_size: int = 1, slice_batches: bool = False,
                 device: torch.device | str = "cpu", epoch_source: Callable[[], int] | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if batch_order not in BATCH_ORDERS:
            raise ValueError(f"batch_order {batch_order!r}; valid: {', '.join(BATCH_ORDERS)}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not within a world of {world_size} process(es)")
        self.n_rows, self.batch_size = int(n_rows), int(batch_size)
        self.shuffle, self.batch_order, self.seed = bool(shuffle), batch_order, int(seed)
        self.rank, self.world_size, self.slice_batches = int(rank), int(world_size), bool(slice_batches)
        short = self.n_rows % self.batch_size
        if self.slice_batches and self.world_size > 1 and (0 < short < self.world_size
                                                             or self.batch_size < self.world_size):
            # A slice would be empty, and BatchNorm in training needs rows on every process.
            raise ValueError(f"under DDP every batch is split between {self.world_size} processes, but the "
                             f"last training batch has {short or self.batch_size} row(s) "
                             f"({self.n_rows} rows, batch_size {self.batch_size}); change --sample-rows or "
                             f"hyperparameters.batch_size so that every batch has >= {self.world_size} rows")
        self.device = torch.device(device)
        self.epoch = 0
        self.epoch_source = epoch_source

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def global_batches(self) -> int:
        """Batches in one epoch over all processes (the last one may be short)."""
        return -(-self.n_rows // self.batch_size)

    def __len__(self) -> int:
        if self.world_size == 1 or self.slice_batches:
            return self.global_batches
        return len(range(self.rank, self.global_batches, self.world_size))

    def order(self) -> torch.Tensor:
        """Row order of the current epoch (all processes), int64 on the sampler's device."""
        if not self.shuffle:
            return torch.arange(self.n_rows, device=self.device)
        if self.batch_order == "shared":
            return torch.from_numpy(epoch_permutation(self.n_rows, self.seed, self.epoch)).to(self.device)
        generator = torch.Generator().manual_seed(framework_epoch_seed(self.seed, self.epoch))
        return torch.randperm(self.n_rows, generator=generator).to(self.device)

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.epoch_source is not None:
            self.epoch = int(self.epoch_source())
        batches = list(self.order().split(self.batch_size))
        if self.world_size > 1:
            if self.slice_batches:
                # Slice `rank` of every global batch; the slices of a batch differ by <= 1 row.
                return iter([torch.tensor_split(batch, self.world_size)[self.rank] for batch in batches])
            batches = batches[self.rank::self.world_size]
        return iter(batches)


class SplitTensors(Dataset):
    """One split as tensors; indexing with a row-index tensor returns the whole batch."""

    def __init__(self, features: torch.Tensor, target: torch.Tensor, sample_weight: torch.Tensor | None) -> None:
        self.features, self.target, self.sample_weight = features, target, sample_weight

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def __getitem__(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        weight = None if self.sample_weight is None else self.sample_weight.index_select(0, rows)
        return self.features.index_select(0, rows), self.target.index_select(0, rows), weight

    def to(self, device: torch.device) -> "SplitTensors":
        weight = None if self.sample_weight is None else self.sample_weight.to(device)
        return SplitTensors(self.features.to(device), self.target.to(device), weight)


class BatchLoader:
    """One split's batches for Lightning: iterable, sized, with the sampler Lightning sets the epoch on.

    It yields exactly what DataLoader(split, sampler=sampler, batch_size=None)
    would, without the DataLoader's per-batch machinery (fetcher, collate
    conversion, profiler record), which costs as much as gathering the batch.
    Iteration is lazy: nothing is computed until the first batch is asked for.
    """

    # As a DataLoader built with batch_size=None: Lightning looks these up (set_epoch, shuffle checks).
    batch_size = None
    batch_sampler = None

    def __init__(self, dataset: SplitTensors, sampler: EpochBatchSampler, steps_per_execution: int = 1) -> None:
        if steps_per_execution < 1:
            raise ValueError(f"steps_per_execution must be >= 1, got {steps_per_execution}")
        self.dataset, self.sampler, self.steps_per_execution = dataset, sampler, int(steps_per_execution)

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.steps_per_execution)

    def __iter__(self) -> Iterator[Any]:
        """Batches (steps_per_execution 1), or lists of up to steps_per_execution consecutive batches."""
        dataset, group = self.dataset, self.steps_per_execution
        if group == 1:
            for rows in self.sampler:
                yield dataset[rows]
            return
        batch_rows = list(self.sampler)
        for start in range(0, len(batch_rows), group):
            yield [dataset[rows] for rows in batch_rows[start:start + group]]


class StreetcarDataModule(L.LightningDataModule):
    """Train / validation / test / predict loaders over a PreparedDataset (see the module docstring).

    `class_weight` is Keras's {0: zero_weight, 1: one_weight}; it becomes the
    per-row weights of the training split.  `predict_split` names the split
    predict_dataloader serves (default "test").  `steps_per_execution`: the
    training loader yields lists of that many batches (module docstring).
    """

    def __init__(self, dataset: PreparedDataset, *, batch_size: int = 1000, batch_order: str = "shared",
                 seed: int = 42, class_weight: Mapping[int, float] | None = None,
                 eval_batch_size: int | None = None, predict_split: str = TEST,
                 steps_per_execution: int = 1, precision: int = 32) -> None:
        super().__init__()
        if not isinstance(dataset, PreparedDataset):
            raise ValueError(f"dataset must be a data.PreparedDataset, got {type(dataset).__name__}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if batch_order not in BATCH_ORDERS:
            raise ValueError(f"batch_order {batch_order!r}; valid: {', '.join(BATCH_ORDERS)}")
        class_weight = {0: 1.0, 1: 1.0} if class_weight is None else {int(k): float(v) for k, v in class_weight.items()}
        if sorted(class_weight) != [0, 1] or min(class_weight.values()) <= 0:
            raise ValueError(f"class_weight must give a weight > 0 for classes 0 and 1, got {class_weight}")
        if predict_split not in (TRAIN, VALID, TEST):
            raise ValueError(f"predict_split {predict_split!r}; valid: {TRAIN}, {VALID}, {TEST}")
        if int(steps_per_execution) < 1:
            raise ValueError(f"steps_per_execution must be >= 1, got {steps_per_execution}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}; valid: {', '.join(map(str, PRECISIONS))}")
        self.steps_per_execution = int(steps_per_execution)
        # Targets and class weights in the run's float type, as Keras builds them from floatx
        # (keras_impl.data): a float64 run's weight 44.94... is not first rounded to float32.
        self.float_type = torch.float64 if precision == 64 else torch.float32
        self.dataset = dataset
        self.batch_size, self.batch_order, self.seed = int(batch_size), batch_order, int(seed)
        # Keras's validation_batch_size defaults to batch_size; the epoch figures do not depend on it.
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.class_weight = class_weight
        self.predict_split = predict_split
        self.save_hyperparameters({"batch_size": self.batch_size, "batch_order": batch_order, "seed": self.seed,
                                   "class_weight": class_weight, "eval_batch_size": self.eval_batch_size,
                                   "steps_per_execution": self.steps_per_execution, "precision": precision})
        self.splits: dict[str, SplitTensors] = {}
        self._samplers: dict[str, EpochBatchSampler] = {}

    # -- data ------------------------------------------------------------------

    def split_tensors(self, split: str) -> SplitTensors:
        """One split as CPU tensors (weights only for the training split)."""
        features, target = self.dataset.split_arrays(split)
        if features.ndim != 2 or features.shape[1] != len(COLUMNS):
            raise ValueError(f"{split} features have shape {features.shape}; expected (rows, {len(COLUMNS)})")
        sizes = np.array([self.dataset.vocab_sizes[column] for column in COLUMNS])
        if len(features) and (features.min() < 0 or (features.max(axis=0) >= sizes).any()):
            raise ValueError(f"{split} features hold codes outside their vocabularies {dict(zip(COLUMNS, sizes))}")
        target_tensor = torch.as_tensor(np.asarray(target)).to(self.float_type)
        weight = None
        # [docs:lightning-sample-weights]
        if split == TRAIN:
            # Keras's class_weight_to_sample_weights: the weight of each row's class, in the float type.
            one, zero = (torch.tensor(float(self.class_weight[label]), dtype=self.float_type) for label in (1, 0))
            weight = torch.where(target_tensor > 0.5, one, zero)
        # [/docs:lightning-sample-weights]
        return SplitTensors(torch.as_tensor(np.ascontiguousarray(features, dtype=np.int64)), target_tensor, weight)

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def setup(self, stage: str) -> None:
        device = self._device()
        needed = {"fit": (TRAIN, VALID), "validate": (VALID,), "test": (TEST,),
                  "predict": (self.predict_split,)}.get(stage, (TRAIN, VALID, TEST))
        for split in needed:
            if split not in self.splits or self.splits[split].features.device != device:
                # Held on the training device: a batch is then gathered there, with no host copy per step.
                self.splits[split] = self.split_tensors(split).to(device)

    def _fit_epoch(self) -> int:
        """The 0-based epoch the fit loop is about to run (what Lightning passes to set_epoch)."""
        return int(self.trainer.fit_loop.epoch_progress.current.processed)

    # [docs:lightning-dataloaders]
    def sampler(self, split: str) -> EpochBatchSampler:
        rank, world_size = self._world()
        training = split == TRAIN
        attached = getattr(self, "trainer", None) is not None
        sampler = EpochBatchSampler(
            len(self.splits[split]), self.batch_size if training else self.eval_batch_size, shuffle=training,
            batch_order=self.batch_order, seed=self.seed, rank=rank, world_size=world_size, slice_batches=training,
            device=self._device(), epoch_source=self._fit_epoch if training and attached else None)
        self._samplers[split] = sampler
        return sampler

    def _loader(self, split: str) -> BatchLoader:
        if split not in self.splits:
            self.setup({TRAIN: "fit", VALID: "validate", TEST: "test"}[split])
        return BatchLoader(self.splits[split], self.sampler(split),
                           self.steps_per_execution if split == TRAIN else 1)

    def train_dataloader(self) -> BatchLoader:
        return self._loader(TRAIN)

    def val_dataloader(self) -> BatchLoader:
        return self._loader(VALID)

    def test_dataloader(self) -> BatchLoader:
        return self._loader(TEST)
    # [/docs:lightning-dataloaders]

    def predict_dataloader(self) -> BatchLoader:
        return self._loader(self.predict_split)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # setup() put each split on the training device, so a batch is born there; Lightning's
        # generic transfer would walk the tuple (and its None) every step for nothing.
        first = batch[0] if isinstance(batch, list) and batch else batch      # a list: steps_per_execution > 1
        if isinstance(first, tuple) and first and isinstance(first[0], torch.Tensor) and first[0].device == device:
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def teardown(self, stage: str) -> None:
        # Free device memory between stages only when a GPU holds the tensors.
        if any(tensors.features.device.type != "cpu" for tensors in self.splits.values()):
            self.splits = {}


__all__ = ["StreetcarDataModule", "EpochBatchSampler", "SplitTensors", "framework_epoch_seed"]
