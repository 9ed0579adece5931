"""How the benchmark page writes a figure: numbers, integers, verdicts, load averages (one home for the page's formats)."""

from __future__ import annotations

from typing import Sequence

MISSING = "–"


def number(value: float | None, digits: int = 2) -> str:
    """A figure for the page; a dash when it was not measured."""
    if value is None:
        return MISSING
    return f"{value:,.{digits}f}"


def integer(value: float | None) -> str:
    return MISSING if value is None else f"{int(round(value)):,}"


def verdict(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[met]


def median_of(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def load_text(load: Sequence[float] | None) -> str:
    return MISSING if not load else " / ".join(f"{value:.2f}" for value in load)
