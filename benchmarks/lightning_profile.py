"""Where a Lightning epoch goes: the same steps in a plain loop without the Trainer, and the torch profiler."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Mapping

import numpy as np


@contextlib.contextmanager
def detached_from_trainer(module):
    """The module with no Trainer attached, so that training_step only computes the loss.

    The fast engine (lightning_impl.fast.system) optimises manually: attached
    to a Trainer, its training_step also runs zero_grad, backward and the SGD
    step; detached it only computes the loss, as the plain engine's does,
    which is what a plain loop needs.
    """
    attached = getattr(module, "_trainer", None)
    module.trainer = None
    try:
        yield module
    finally:
        module.trainer = attached


def plain_training_steps(module, datamodule, epoch: int, steps: int | None = None) -> tuple[float, float, int]:
    """(wall s, CPU s, steps) of Keras's train step over the same DataLoader, without the Trainer.

    Each step is what Trainer.fit makes the module do for one batch (a list
    of batches from steps_per_execution > 1 is taken batch by batch): with
    closed-form gradients (fast engine) the module's closed_form_step
    (forward, loss, gradients, metric bookkeeping) and one SGD step; with
    autograd (either engine) the loss (forward, metric bookkeeping),
    zero_grad, backward and one SGD step.
    """
    optimizer = module.configure_optimizers()
    loader = datamodule.train_dataloader()
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    module.train()
    done = 0
    closed_form = module.hparams.get("gradients") == "closed_form"
    with detached_from_trainer(module):
        started, cpu_started = time.perf_counter(), time.process_time()
        for group in loader:
            if steps is not None and done >= steps:
                break                              # not only the group: the loader gathers every group it yields
            for batch in (group if isinstance(group, list) else (group,)):
                if steps is not None and done >= steps:
                    break
                if closed_form:
                    module.closed_form_step(batch)
                else:
                    loss = module.training_step(batch, done)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                optimizer.step()
                done += 1
        module.train_metrics.compute()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    module.train_metrics.reset()
    return wall, cpu, done


def torch_profile_steps(module, datamodule, steps: int, top: int = 8) -> list[dict[str, Any]]:
    """The torch profiler's top operators by self CPU time over `steps` plain training steps."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        _, _, done = plain_training_steps(module, datamodule, 0, steps)
    events = sorted(profiler.key_averages(), key=lambda event: event.self_cpu_time_total, reverse=True)
    total = sum(event.self_cpu_time_total for event in events) or 1.0
    # self_cpu_time_total is in microseconds.
    return [{"operator": event.key, "calls": int(event.count),
             "self_cpu_ms_per_step": event.self_cpu_time_total / 1000.0 / max(done, 1),
             "share": event.self_cpu_time_total / total} for event in events[:top]]


def profile_lightning(settings: Mapping[str, Any], module, datamodule, trainer_epoch_seconds: float,
                      trainer_epoch_cpu_seconds: float) -> dict[str, Any]:
    """Where a Lightning epoch goes: the same steps without the Trainer, and the torch profiler's top operators.

    The overhead is given in wall and in process CPU time: on a shared
    machine the wall figure of a single epoch moves with the neighbours' load,
    the CPU figure much less.
    """
    import torch

    plain = [plain_training_steps(module, datamodule, epoch)[:2]
             for epoch in range(int(settings["profile_plain_epochs"]))]
    plain_wall = float(np.median([wall for wall, _ in plain]))
    plain_cpu = float(np.median([cpu for _, cpu in plain]))
    batches = len(datamodule.train_dataloader().sampler)     # SGD steps (batches), not Lightning steps
    return {"plain_loop_epoch_seconds": [wall for wall, _ in plain],
            "plain_loop_epoch_cpu_seconds": [cpu for _, cpu in plain],
            "trainer_epoch_seconds": trainer_epoch_seconds, "trainer_epoch_cpu_seconds": trainer_epoch_cpu_seconds,
            "trainer_overhead_seconds": trainer_epoch_seconds - plain_wall,
            "trainer_overhead_cpu_seconds": trainer_epoch_cpu_seconds - plain_cpu,
            "trainer_overhead_ms_per_step": (trainer_epoch_seconds - plain_wall) * 1000.0 / max(batches, 1),
            "trainer_overhead_cpu_ms_per_step": (trainer_epoch_cpu_seconds - plain_cpu) * 1000.0 / max(batches, 1),
            "plain_ms_per_step": plain_wall * 1000.0 / max(batches, 1),
            "plain_cpu_ms_per_step": plain_cpu * 1000.0 / max(batches, 1), "steps_per_epoch": batches,
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "manual_optimization": not getattr(module, "automatic_optimization", True),
            "gradients": module.hparams.get("gradients", "autograd"),
            "top_operators": torch_profile_steps(module, datamodule, int(settings["profile_steps"]))}
