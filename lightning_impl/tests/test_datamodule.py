"""StreetcarDataModule: whole-batch gathers, the shared batch order, class weights, DDP splits.

    python -m pytest lightning_impl/tests/test_datamodule.py -q
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data.batches import epoch_permutation
from lightning_impl.datamodule import EpochBatchSampler, StreetcarDataModule
from lightning_impl.tests.helpers import make_synthetic_dataset


@pytest.fixture(scope="module")
def dataset():
    return make_synthetic_dataset(6000, seed=1)


def collect(loader) -> list[tuple]:
    return list(loader)


def test_training_batches_follow_the_shared_epoch_permutation(dataset):
    datamodule = StreetcarDataModule(dataset, batch_size=1000, batch_order="shared", seed=42,
                                     class_weight={0: 1.0, 1: 7.5})
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    features, target = dataset.split_arrays("train")                   # 3,600 rows -> 1000, 1000, 1000, 600
    for epoch in (0, 3):
        loader.sampler.set_epoch(epoch)                                 # what Lightning calls each epoch
        batches = collect(loader)
        order = epoch_permutation(len(target), 42, epoch)
        assert [len(batch[0]) for batch in batches] == [1000, 1000, 1000, 600]
        for k, (batch_features, batch_target, batch_weight) in enumerate(batches):
            rows = order[k * 1000:(k + 1) * 1000]
            assert batch_features.dtype == torch.int64 and batch_features.shape[1] == 7
            assert np.array_equal(batch_features.numpy(), features[rows])
            assert np.array_equal(batch_target.numpy(), target[rows].astype(np.float32))
            assert batch_weight.dtype == torch.float32
            assert np.array_equal(batch_weight.numpy(), np.where(target[rows] == 1, 7.5, 1.0).astype(np.float32))
    loader.sampler.set_epoch(0)
    first = collect(loader)[0][0]
    loader.sampler.set_epoch(1)
    assert not torch.equal(first, collect(loader)[0][0])


@pytest.mark.parametrize("group, expected_sizes", [(2, [[1000, 1000], [1000, 600]]), (3, [[1000, 1000, 1000], [600]]),
                                                  (4, [[1000, 1000, 1000, 600]]), (9, [[1000, 1000, 1000, 600]])])
def test_steps_per_execution_groups_the_same_training_batches(dataset, group, expected_sizes):
    def loader_for(steps_per_execution: int):
        datamodule = StreetcarDataModule(dataset, batch_size=1000, seed=42, class_weight={0: 1.0, 1: 7.5},
                                         steps_per_execution=steps_per_execution)
        datamodule.setup("fit")
        return datamodule

    single, grouped = loader_for(1), loader_for(group)
    grouped_loader = grouped.train_dataloader()
    assert len(grouped_loader) == len(expected_sizes)                  # Lightning's steps per epoch
    for epoch in (0, 2):
        single_loader = single.train_dataloader()
        single_loader.sampler.set_epoch(epoch)
        grouped_loader.sampler.set_epoch(epoch)
        lists = collect(grouped_loader)
        assert [[len(batch[0]) for batch in batches] for batches in lists] == expected_sizes
        flattened = [batch for batches in lists for batch in batches]
        for mine, reference in zip(flattened, collect(single_loader), strict=True):
            assert all(torch.equal(a, b) for a, b in zip(mine, reference))
    # Evaluation is never grouped: validation batches stay single tuples.
    assert all(isinstance(batch, tuple) for batch in collect(grouped.val_dataloader()))
    with pytest.raises(ValueError, match="steps_per_execution must be >= 1"):
        StreetcarDataModule(dataset, steps_per_execution=0)


def test_framework_order_is_a_seeded_torch_shuffle_per_epoch(dataset):
    def first_batch(seed: int, epoch: int) -> torch.Tensor:
        datamodule = StreetcarDataModule(dataset, batch_size=500, batch_order="framework", seed=seed)
        datamodule.setup("fit")
        loader = datamodule.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return next(iter(loader))[0]

    assert torch.equal(first_batch(5, 2), first_batch(5, 2))
    assert not torch.equal(first_batch(5, 2), first_batch(5, 3))
    assert not torch.equal(first_batch(5, 2), first_batch(6, 2))
    sampler = EpochBatchSampler(3600, 500, shuffle=True, batch_order="framework", seed=5)
    rows = torch.cat(list(sampler))
    assert torch.equal(rows.sort().values, torch.arange(3600))         # a permutation: every row once
    shared = EpochBatchSampler(3600, 500, shuffle=True, batch_order="shared", seed=5)
    assert not torch.equal(torch.cat(list(shared)), rows)


def test_evaluation_batches_are_stored_order_and_unweighted(dataset):
    datamodule = StreetcarDataModule(dataset, batch_size=1000, seed=42, class_weight={0: 1.0, 1: 9.0})
    datamodule.setup("fit")
    datamodule.setup("test")
    for loader, split in ((datamodule.val_dataloader(), "valid"), (datamodule.test_dataloader(), "test"),
                          (datamodule.predict_dataloader(), "test")):
        batches = collect(loader)
        features, target = dataset.split_arrays(split)
        assert all(weight is None for _, _, weight in batches)
        assert np.array_equal(torch.cat([batch[0] for batch in batches]).numpy(), features)
        assert np.array_equal(torch.cat([batch[1] for batch in batches]).numpy(), target.astype(np.float32))


def test_ddp_split_gives_each_process_its_slice_of_every_global_batch():
    n_rows, batch_size, world = 10_501, 1000, 4                        # 11 batches, the last one 501 rows
    train = [EpochBatchSampler(n_rows, batch_size, shuffle=True, seed=3, rank=rank, world_size=world,
                               slice_batches=True) for rank in range(world)]
    for sampler in train:
        sampler.set_epoch(2)
    per_rank = [list(sampler) for sampler in train]
    assert [len(batches) for batches in per_rank] == [11] * world      # every process runs every step
    assert all(len(sampler) == 11 for sampler in train)
    single = EpochBatchSampler(n_rows, batch_size, shuffle=True, seed=3)
    single.set_epoch(2)
    whole = list(single)                                               # the one-process epoch
    for step, batch in enumerate(whole):                               # the slices of a step are its batch
        assert torch.equal(torch.cat([batches[step] for batches in per_rank]), batch)
    assert [len(batches[10]) for batches in per_rank] == [126, 125, 125, 125]
    evaluation = [list(EpochBatchSampler(n_rows, batch_size, shuffle=False, rank=rank, world_size=world))
                  for rank in range(world)]
    assert [len(batches) for batches in evaluation] == [3, 3, 3, 2]    # dealt whole: each row counted once
    assert torch.equal(torch.cat([torch.cat(b) for b in evaluation]).sort().values, torch.arange(n_rows))


def test_ddp_refuses_a_last_batch_smaller_than_the_process_count():
    with pytest.raises(ValueError, match="last training batch has 1 row"):
        EpochBatchSampler(2001, 1000, shuffle=True, rank=0, world_size=2, slice_batches=True)


@pytest.mark.parametrize("arguments, message", [
    ({"batch_size": 0}, "batch_size"),
    ({"batch_order": "random"}, "batch_order"),
    ({"class_weight": {0: 1.0}}, "class_weight"),
    ({"class_weight": {0: 1.0, 1: -2.0}}, "class_weight"),
])
def test_bad_arguments_are_value_errors(dataset, arguments, message):
    with pytest.raises(ValueError, match=message):
        StreetcarDataModule(dataset, **arguments)


def test_codes_outside_the_vocabulary_are_refused(dataset):
    import dataclasses

    features = dataset.features.copy()
    features[dataset.splits["train"][0], 1] = 14                       # Route has 14 values: 0..13
    broken = dataclasses.replace(dataset, features=features)
    with pytest.raises(ValueError, match="outside their vocabularies"):
        StreetcarDataModule(broken).setup("fit")


def test_batch_loader_yields_what_a_torch_dataloader_would(dataset):
    datamodule = StreetcarDataModule(dataset, batch_size=700, seed=9, class_weight={0: 1.0, 1: 3.0})
    datamodule.setup("fit")
    fast = datamodule.train_dataloader()
    # A stock torch DataLoader over the same dataset and sampler (batch_size=None: the sampler yields whole batches).
    reference = DataLoader(fast.dataset, sampler=datamodule.sampler("train"), batch_size=None, num_workers=0)
    assert len(fast) == len(reference) == 6                            # 3,600 rows: 5 x 700 + 100
    for epoch in (0, 4):
        fast.sampler.set_epoch(epoch)
        reference.sampler.set_epoch(epoch)
        for ours, theirs in zip(fast, reference, strict=True):
            assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert fast.batch_sampler is None and fast.batch_size is None      # what Lightning inspects


def test_a_float64_run_gets_float64_targets_and_unrounded_class_weights(dataset):
    one_weight = 44.941867828369  # a balanced weight that float32 would round (to 44.94186782836914)
    datamodule = StreetcarDataModule(dataset, batch_size=1000, seed=42, class_weight={0: 1.0, 1: one_weight},
                                     precision=64)
    datamodule.setup("fit")
    _, target, weight = collect(datamodule.train_dataloader())[0]
    assert target.dtype == torch.float64 and weight.dtype == torch.float64
    assert set(weight.tolist()) <= {1.0, one_weight} and one_weight in weight.tolist()
    single = StreetcarDataModule(dataset, batch_size=1000, seed=42, class_weight={0: 1.0, 1: one_weight})
    single.setup("fit")
    assert collect(single.train_dataloader())[0][2].dtype == torch.float32
    with pytest.raises(ValueError, match=r"precision 16; valid: 32, 64"):
        StreetcarDataModule(dataset, class_weight={0: 1.0, 1: 2.0}, precision=16)
