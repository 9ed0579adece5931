"""Comparing a Keras result with a Lightning result, Hugging Face PT/TF style.

Every parity check in this suite goes through `compare_arrays`, which checks,
in this order, and fails with a message naming the quantity:

1. type    - both are array-likes that NumPy can read (a torch tensor is
             detached and moved to the CPU first; a Keras/TF tensor goes
             through numpy());
2. shape   - identical shapes (no broadcasting: a (n, 1) vs (n,) mismatch is
             a bug, not a rounding error);
3. values  - max |actual - expected| <= atol, where atol is a *named*
             tolerance constant whose one-line reason is in the test module.

It returns the measured max-abs-diff so a test can print or record it.

    from parity_tests.compare import compare_arrays
    diff = compare_arrays(torch_probabilities, keras_probabilities,
                          atol=INFERENCE_ATOL, name="inference probabilities")

`compare_weight_dicts` applies the same check to two canonical weight
mappings (experiment/weights.py names) key by key.

Run the suite:  python -m pytest parity_tests -q
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np


def to_numpy(value: Any) -> np.ndarray:
    """torch tensor / Keras or TF tensor / NumPy / Python number -> NumPy array (no copy if possible)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor
        return value.detach().cpu().numpy()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):  # tf.Tensor, keras.Variable (TF backend)
        return np.asarray(value.numpy())
    return np.asarray(value)


def compare_arrays(actual: Any, expected: Any, *, atol: float, name: str, reason: str | None = None) -> float:
    """Assert type, shape, then max-abs-diff <= atol; return the measured max-abs-diff.

    `name` says what is compared ("inference probabilities"); `reason` (for
    example the tolerance's one-line rationale) is appended to a failure.
    """
    suffix = f" ({reason})" if reason else ""
    try:
        actual_array = to_numpy(actual)
        expected_array = to_numpy(expected)
    except Exception as error:  # noqa: BLE001 - any conversion failure is a type mismatch here
        raise AssertionError(f"{name}: cannot compare {type(actual).__name__} with "
                             f"{type(expected).__name__}: {error}") from None
    for label, array in (("actual", actual_array), ("expected", expected_array)):
        if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise AssertionError(f"{name}: {label} is not numeric (dtype {array.dtype}, "
                                 f"type {type(actual if label == 'actual' else expected).__name__})")
    if actual_array.shape != expected_array.shape:
        raise AssertionError(f"{name}: shape {actual_array.shape} (actual) != {expected_array.shape} (expected){suffix}")
    if actual_array.size == 0:
        return 0.0
    actual64 = actual_array.astype(np.float64)
    expected64 = expected_array.astype(np.float64)
    not_finite = ~np.isfinite(actual64) | ~np.isfinite(expected64)
    if not_finite.any():
        mismatch = not_finite & ~((actual64 == expected64) | (np.isnan(actual64) & np.isnan(expected64)))
        if mismatch.any():
            raise AssertionError(f"{name}: non-finite values differ at {int(mismatch.sum())} position(s){suffix}")
    difference = np.abs(np.where(not_finite, 0.0, actual64 - expected64))
    max_diff = float(difference.max())
    if not max_diff <= atol:
        where = np.unravel_index(int(difference.argmax()), difference.shape)
        raise AssertionError(
            f"{name}: max abs diff {max_diff:.3e} > atol {atol:.1e} at index {tuple(int(i) for i in where)} "
            f"(actual {actual64[where]:.9g}, expected {expected64[where]:.9g}; "
            f"{int((difference > atol).sum())} of {difference.size} values off){suffix}")
    return max_diff


def compare_relative(actual: Any, expected: Any, *, rtol: float, name: str, reason: str | None = None) -> float:
    """Scalar (or array) check on |actual - expected| / max(|expected|, tiny) <= rtol; returns the relative diff."""
    actual_array = to_numpy(actual).astype(np.float64)
    expected_array = to_numpy(expected).astype(np.float64)
    if actual_array.shape != expected_array.shape:
        raise AssertionError(f"{name}: shape {actual_array.shape} (actual) != {expected_array.shape} (expected)")
    scale = np.maximum(np.abs(expected_array), np.finfo(np.float64).tiny)
    relative = float(np.max(np.abs(actual_array - expected_array) / scale)) if actual_array.size else 0.0
    if not relative <= rtol:
        suffix = f" ({reason})" if reason else ""
        raise AssertionError(f"{name}: relative diff {relative:.3e} > rtol {rtol:.1e} "
                             f"(actual {actual_array.ravel()[:3]}, expected {expected_array.ravel()[:3]}){suffix}")
    return relative


def compare_weight_dicts(actual: Mapping[str, Any], expected: Mapping[str, Any], *, atol: float,
                         name: str, reason: str | None = None) -> dict[str, float]:
    """compare_arrays for every canonical name; the key sets must be equal.  Returns name -> max diff."""
    missing = sorted(set(expected) - set(actual))
    unexpected = sorted(set(actual) - set(expected))
    if missing or unexpected:
        raise AssertionError(f"{name}: keys differ; missing {missing or 'none'}, unexpected {unexpected or 'none'}")
    return {key: compare_arrays(actual[key], expected[key], atol=atol, name=f"{name} [{key}]", reason=reason)
            for key in sorted(expected)}
