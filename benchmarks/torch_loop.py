"""The plain PyTorch loop: the port's network, loss and optimiser in a for loop, without Lightning.

What a user who skips Lightning would write, timed beside the Trainer so the
page can say what Lightning's loop costs.  The same nn.Module
(lightning_impl.model.StreetcarNet), the same loss
(lightning_impl.metrics.keras_binary_crossentropy), SGD with the book's
learning rate, and the same DataLoader (the shared batch order), so the
updates are the plain engine's.  No metrics, no logging, no checkpoints: the
floor of the port's training step.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from lightning_impl.metrics import keras_binary_crossentropy


def train_one_epoch(network: torch.nn.Module, optimizer: torch.optim.Optimizer, loader) -> float:
    """One epoch of SGD over `loader`'s (features, target, sample_weight) batches; the last batch loss."""
    network.train()
    loss = torch.zeros(())
    for features, target, sample_weight in loader:
        logits = network.logits(features)
        probabilities = network.activate(logits)
        loss = keras_binary_crossentropy(probabilities, target, sample_weight,
                                         logits=logits if network.output_activation == "sigmoid" else None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def validate(network: torch.nn.Module, loader) -> float:
    """The mean batch loss over `loader` in evaluation mode (the validation pass)."""
    network.eval()
    losses = [keras_binary_crossentropy(network(features), target, sample_weight)
              for features, target, sample_weight in loader]
    return float(torch.stack(losses).mean())


def torch_loop_epochs(module, datamodule, learning_rate: float, epochs: int,
                      before_epoch: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """`epochs` epochs of the plain loop on `module`'s network: wall and CPU seconds and Unix-time interval of each."""
    network = module.net
    optimizer = torch.optim.SGD(network.parameters(), lr=learning_rate, momentum=0.0, foreach=True)
    loader = datamodule.train_dataloader()
    wall, cpu, intervals = [], [], []
    for epoch in range(epochs):
        before_epoch()
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)      # the shared order: epoch e's permutation
        clock, started, cpu_started = time.time(), time.perf_counter(), time.process_time()
        train_one_epoch(network, optimizer, loader)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
        intervals.append((clock, time.time()))
    return {"network": network, "epoch_seconds": wall, "epoch_cpu_seconds": cpu, "intervals": intervals}


def time_validation(network: torch.nn.Module, datamodule, warmup: int, repeats: int,
                    timed_calls: Callable) -> list[float]:
    loader = datamodule.val_dataloader()
    return timed_calls(lambda: validate(network, loader), warmup, repeats)

