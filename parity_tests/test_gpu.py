"""Lightning on a CUDA GPU: the same predictions as on the CPU, and deterministic kernels (docs/gpu.md).

    python -m pytest -m gpu parity_tests lightning_impl -q    # the whole GPU subset (docs/gpu.md)
    python -m pytest parity_tests/test_gpu.py -q -rs           # without CUDA: each test SKIPPED "needs CUDA"

Every test here is GPU-only: marked `gpu` (so `-m gpu` selects it) and
skipped with the reason "needs CUDA" when torch.cuda.is_available() is false.
The GPU variants of the trajectory and repeatability tests live beside their
CPU variants: those modules' `device` fixture runs the Lightning side on
"cpu" and, as a `gpu`-marked parameter, on "cuda".

* CPU <-> GPU: the best checkpoint of a CPU-trained Lightning run (the exp5
  trajectory scenario) predicts the 19,971-row test split of the suite's
  100k-row subset on the CPU and on the GPU; the probabilities agree within
  CPU_GPU_PREDICTION_ATOL and the 0/1 decisions agree wherever the
  probability is not within that tolerance of the 0.5 threshold.
* Deterministic kernels: with torch.use_deterministic_algorithms(True) (what
  Trainer(deterministic=True) sets), two forward/backward passes of the fast
  engine's fused model on one CUDA batch give bitwise-identical gradients - the embedding-table
  gradient is an index_add_ over the batch's codes, which CUDA otherwise
  computes with atomic adds in a nondeterministic order.  Without the mode
  the test prints whether the two passes happened to agree (not asserted:
  atomics *may* agree).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from parity_tests.compare import compare_arrays
from parity_tests.trajectory import TRAJECTORY_SCENARIOS, load_lightning_net, scenario_run, suite_dataset

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

# A probability is hard_sigmoid(BatchNorm'd 70-term dot product): cuBLAS/CUDA sum the
# terms in another order than the CPU, ~1e-7 relative per logit; 1e-5 leaves a 100x margin.
CPU_GPU_PREDICTION_ATOL = 1e-5
# Rows and seed of the synthetic batch of the determinism test (no real data needed).
DETERMINISM_BATCH_ROWS = 4096
DETERMINISM_SEED = 0


@pytest.mark.real_data
def test_trained_model_predicts_the_same_on_cpu_and_cuda(prepared_dataset, tmp_path_factory):
    from lightning_impl.fit import predict_probabilities

    dataset = suite_dataset(prepared_dataset)
    run = scenario_run("lightning", TRAJECTORY_SCENARIOS["exp5"], dataset, tmp_path_factory.mktemp("gpu"))
    features, _ = dataset.split_arrays("test")
    net = load_lightning_net(run.best_checkpoint)
    on_cpu = predict_probabilities(net, features, torch.device("cpu"))
    on_cuda = predict_probabilities(net.to("cuda"), features, torch.device("cuda"))
    diff = compare_arrays(on_cuda, on_cpu, atol=CPU_GPU_PREDICTION_ATOL, name="test-split probabilities, cuda vs cpu",
                          reason="float32 summation order on the GPU")
    clear = np.abs(on_cpu - 0.5) > CPU_GPU_PREDICTION_ATOL
    flipped = int(((on_cuda > 0.5) != (on_cpu > 0.5))[clear].sum())
    print(f"\ncpu vs cuda predictions of {run.best_checkpoint.name}: max diff {diff:.2e}, "
          f"{int((~clear).sum())} of {len(on_cpu)} rows within the tolerance of 0.5")
    assert flipped == 0, f"{flipped} clear-cut decisions differ between cpu and cuda"


def _fused_gradients(net, features, target, weight) -> dict[str, torch.Tensor]:
    net.zero_grad(set_to_none=True)
    probabilities = net(features).reshape(-1)
    loss = torch.nn.functional.binary_cross_entropy(probabilities.clamp(1e-7, 1 - 1e-7), target, weight=weight)
    loss.backward()
    return {name: parameter.grad.detach().clone() for name, parameter in net.named_parameters()}


def test_fused_backward_is_bitwise_repeatable_in_deterministic_mode(monkeypatch):
    from data.vocab import BOOK_VOCABULARIES
    from data.dataset import COLUMNS
    from lightning_impl.fast.network import FusedStreetcarNet

    # As Trainer(deterministic=True) does; torch refuses cuBLAS calls (the fused kernel's bmm)
    # in deterministic mode without it.  Export it before starting Python to be safe (docs/gpu.md).
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    sizes = BOOK_VOCABULARIES.sizes()
    generator = torch.Generator().manual_seed(DETERMINISM_SEED)
    features = torch.stack([torch.randint(0, sizes[column], (DETERMINISM_BATCH_ROWS,), generator=generator)
                            for column in COLUMNS], dim=1).to("cuda")
    target = (torch.rand(DETERMINISM_BATCH_ROWS, generator=generator) < 0.05).float().to("cuda")
    weight = torch.where(target > 0.5, 20.0, 1.0)
    torch.manual_seed(DETERMINISM_SEED)
    net = FusedStreetcarNet(sizes, dropout_rate=0.0).to("cuda").train()     # the fast engine's network
    state = {name: tensor.clone() for name, tensor in net.state_dict().items()}

    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(False)
        free = [_fused_gradients(net, features, target, weight) for _ in range(2)]
        net.load_state_dict(state)
        torch.use_deterministic_algorithms(True)
        pinned = [_fused_gradients(net, features, target, weight) for _ in range(2)]
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
    free_differ = [name for name in free[0] if not torch.equal(free[0][name], free[1][name])]
    print(f"\nwithout deterministic mode, gradients differing between two passes: {free_differ or 'none'}")
    pinned_differ = [name for name in pinned[0] if not torch.equal(pinned[0][name], pinned[1][name])]
    assert not pinned_differ, f"deterministic mode: gradients differ between two passes: {pinned_differ}"
