"""The random generators' states, for checkpoints: a resumed run draws what the uninterrupted run would have.

    states = collect_random_states()      # plain ints, lists and tensors: torch.load(weights_only=True) reads them
    restore_random_states(states)

Lightning does not keep them in its checkpoints; lightning_impl.system puts
them there (on_save_checkpoint) and restores them when a fit resumes.
"""

from __future__ import annotations

import random
from typing import Any, Mapping

import numpy as np
import torch


def collect_random_states() -> dict[str, Any]:
    """The generators a training step draws from (torch's, for the dropout masks; NumPy's and
    Python's for completeness), so that a run resumed from a checkpoint draws what the
    uninterrupted run would have drawn.  Lightning does not keep them in checkpoints."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    # Plain ints, lists and tensors only: the checkpoint stays loadable with torch.load(weights_only=True).
    states: dict[str, Any] = {"torch": torch.get_rng_state(),
                              "numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(cached_gaussian)],
                              "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["torch_cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: Mapping[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached_gaussian))
    random.setstate(states["python"])
    if "torch_cuda" in states and torch.cuda.is_available() and len(states["torch_cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["torch_cuda"])


__all__ = ["collect_random_states", "restore_random_states"]
