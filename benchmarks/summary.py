"""The statistics of the benchmark: medians of repetitions, latency percentiles, ratios, a linear fit.

    from benchmarks.summary import summarize_samples, latency_percentiles, ratio, fit_line
    summarize_samples([17.2, 16.9, 17.4])          # {'median': 17.2, 'min': 16.9, 'max': 17.4, 'count': 3, ...}
    latency_percentiles([1.1, 1.0, 1.3, 9.0])      # {'p50': 1.2, 'p99': 8.769, 'count': 4, ...} (ms in, ms out)
    ratio(3.1, 17.0)                               # 0.1824 = lightning / keras
    fit_line([400_000, 800_000, 1_600_000], [0.9, 1.7, 3.3])   # slope, intercept, r_squared, predict()

Why medians: the machine is shared with other jobs, so one repetition can be
slowed down by a neighbour; the median of several ignores one such outlier
where a mean would not.  Percentiles are NumPy's default linear
interpolation between the two nearest ranks (numpy.percentile
method="linear"), so p50 of an even count is the mean of the two middle
samples, like statistics.median.

Only plain floats go in and out, so the results can be written as JSON
directly and tested with scripted samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


def check_samples(samples: Sequence[float], what: str) -> np.ndarray:
    """The samples as a float64 array; a ValueError for none or for a non-finite one."""
    values = np.asarray(list(samples), dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"{what}: need at least one sample, got {list(samples)!r}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what}: every sample must be a finite number, got {values.tolist()!r}")
    return values


def percentile(samples: Sequence[float], rank: float) -> float:
    """The `rank`-th percentile (0..100) of the samples, linear interpolation between ranks."""
    if not 0.0 <= rank <= 100.0:
        raise ValueError(f"a percentile rank must be within 0..100, got {rank}")
    return float(np.percentile(check_samples(samples, f"percentile {rank}"), rank))


def median(samples: Sequence[float]) -> float:
    return percentile(samples, 50.0)


def summarize_samples(samples: Sequence[float], what: str = "samples") -> dict[str, Any]:
    """Median, min, max and count of repeated measurements, with the samples themselves kept."""
    values = check_samples(samples, what)
    return {"median": float(np.median(values)), "min": float(values.min()), "max": float(values.max()),
            "count": int(values.size), "samples": [float(value) for value in values]}


def latency_percentiles(milliseconds: Sequence[float]) -> dict[str, Any]:
    """p50, p90, p99, mean and max of per-call latencies (milliseconds)."""
    values = check_samples(milliseconds, "latencies")
    return {"p50": float(np.percentile(values, 50)), "p90": float(np.percentile(values, 90)),
            "p99": float(np.percentile(values, 99)), "mean": float(values.mean()), "max": float(values.max()),
            "count": int(values.size)}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing (a phase that did not run)."""
    if numerator is None or denominator is None:
        return None
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator <= 0:
        raise ValueError(f"ratio needs finite numbers and a positive denominator, got {numerator} / {denominator}")
    return float(numerator) / float(denominator)


@dataclass(frozen=True)
class LineFit:
    """seconds = intercept + slope * rows, least squares, and how well that describes the points."""

    slope: float          # seconds per row
    intercept: float      # seconds at 0 rows: the per-epoch fixed cost
    r_squared: float      # 1.0 when the points lie on the line (also when they are all equal)

    def predict(self, rows: float) -> float:
        return self.intercept + self.slope * float(rows)

    def as_dict(self) -> dict[str, float]:
        return {"slope_seconds_per_million_rows": self.slope * 1e6, "intercept_seconds": self.intercept,
                "r_squared": self.r_squared}


def fit_line(rows: Sequence[float], seconds: Sequence[float]) -> LineFit:
    """Least-squares line through (rows, seconds); needs two or more distinct row counts."""
    x = check_samples(rows, "rows")
    y = check_samples(seconds, "seconds")
    if x.size != y.size:
        raise ValueError(f"fit_line: {x.size} row counts but {y.size} timings")
    if np.unique(x).size < 2:
        raise ValueError(f"fit_line needs at least two different row counts, got {x.tolist()}")
    slope, intercept = np.polyfit(x, y, 1)
    residual = float(np.sum((y - (intercept + slope * x)) ** 2))
    spread = float(np.sum((y - y.mean()) ** 2))
    r_squared = 1.0 - residual / spread if spread > 0 else 1.0
    return LineFit(slope=float(slope), intercept=float(intercept), r_squared=float(r_squared))


def describe_growth(rows: Sequence[float], seconds: Sequence[float]) -> dict[str, Any]:
    """The scaling note's figures: the line, and seconds per million rows at each size.

    Linear growth shows as a near-constant cost per row (and r_squared near
    1); a fixed per-epoch cost shows as a per-row cost that falls as the
    rows grow, and as a positive intercept.
    """
    fit = fit_line(rows, seconds)
    per_million = [float(time) / float(count) * 1e6 for count, time in zip(rows, seconds)]
    return {**fit.as_dict(), "seconds_per_million_rows": per_million,
            "largest_over_smallest_per_row": per_million[-1] / per_million[0] if per_million[0] > 0 else None}


__all__ = ["check_samples", "percentile", "median", "summarize_samples", "latency_percentiles", "ratio",
           "LineFit", "fit_line", "describe_growth"]
