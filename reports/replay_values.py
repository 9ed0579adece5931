"""The scripted metric curve of a callback replay: read, checked and written back for JSON.

Values are rounded to float32 before either framework sees them, as real
metrics are (Keras logs are Python floats made from float32 tensors;
Lightning's `self.log` stores a float32 tensor).  reports/replay.py runs them.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Sequence

import numpy as np

# Keras's ModelCheckpoint formats the path with `filepath.format(epoch=..., **logs)`,
# so the monitored key must be a plain format-field name and not one of Keras's own.
_MONITOR_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED_MONITORS = ("epoch", "batch", "step")


class ReplayError(ValueError):
    """A replay request that cannot be run (bad values, mode, patience, file)."""



def parse_values(text: str) -> list[float]:
    """'0.69, 0.72,nan,-inf' -> [0.69, 0.72, nan, -inf]; commas, spaces or new lines separate."""
    items = [item for item in re.split(r"[,\s]+", text.strip()) if item]
    if not items:
        raise ReplayError("no values given: pass e.g. --values 0.69,0.72,0.71")
    values = []
    for position, item in enumerate(items, start=1):
        try:
            values.append(float(item))  # accepts nan, inf, -inf, Infinity
        except ValueError:
            raise ReplayError(f"cannot read value {position} ({item!r}) as a number; "
                              f"use numbers, nan, inf or -inf") from None
    return values


def read_values_file(path: str | Path) -> list[float]:
    path = Path(path)
    if not path.is_file():
        raise ReplayError(f"values file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ReplayError(f"cannot read values file {path}: {error}") from None
    return parse_values(text)


def json_safe(value: float | None) -> float | str | None:
    """A float for JSON: finite -> shortest float32 repr, NaN/inf -> 'nan'/'inf'/'-inf', None -> None."""
    if value is None:
        return None
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(str(np.float32(value)))  # 0.7315999865531921 -> 0.7316


def _float32(value: float) -> float:
    with np.errstate(over="ignore"):
        return float(np.float32(value))


def check_request(values: Sequence[float], monitor: str, mode: str | None, patience: int,
                   min_delta: float, lightning_defaults: bool) -> list[float]:
    if len(values) == 0:
        raise ReplayError("no values given: the curve needs at least one epoch")
    try:
        scripted = [_float32(float(value)) for value in values]
    except (TypeError, ValueError):
        raise ReplayError(f"values must be numbers, got {list(values)!r}") from None
    if not isinstance(monitor, str) or not _MONITOR_PATTERN.match(monitor) or monitor in _RESERVED_MONITORS:
        raise ReplayError(f"monitor must be a metric name such as val_accuracy or val_loss, got {monitor!r}")
    if mode is None:
        if not lightning_defaults:
            raise ReplayError("mode is required (min or max): the project's callbacks never fall back to "
                              "Lightning's silent default 'min'; omit it only with --lightning-defaults")
    elif mode not in ("min", "max"):
        raise ReplayError(f"mode must be 'min' or 'max', got {mode!r}")
    if not isinstance(patience, int) or isinstance(patience, bool) or patience < 0:
        raise ReplayError(f"patience must be an integer >= 0, got {patience!r}")
    if not isinstance(min_delta, (int, float)) or isinstance(min_delta, bool) or not math.isfinite(min_delta):
        raise ReplayError(f"min_delta must be a finite number, got {min_delta!r}")
    return scripted
