"""Checks both score commands make before they answer: the model's own vocabulary, a real probability.

    from experiment.model_checks import check_probability, check_same_vocabulary
    probability = check_probability(model_output, "the model")       # NaN / outside [0, 1] -> ValueError

    python -m pytest experiment/tests/test_model_checks.py -q

A score command that answers "p(delay) = nan -> no delay expected" with exit
0 is a confident answer from a broken model (diverged weights, a damaged
file); a vocabulary other than the one saved with the model maps values to
other codes (2020 scored as 2019) while every size still fits.  Both are
refused with one line (configs.console.run_main: exit 2).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def check_probability(probability: Any, source: str) -> float:
    """`probability` as a float in [0, 1], or ValueError naming `source`."""
    value = float(probability)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{source} gave p(delay) = {value}, which is not a probability in [0, 1]: the model is "
                         f"broken (diverged or damaged weights), so there is no answer; retrain it or use another")
    return value


def check_same_vocabulary(vocabularies: Any, saved: Any, *, given: str | Path, saved_source: str | Path) -> None:
    """A --vocabulary must be the model's own, value for value (data.vocab.Vocabularies), or ValueError."""
    if vocabularies.to_json_dict() == saved.to_json_dict():
        return
    changed = [column for column in saved.values
               if list(saved.values[column]) != list(vocabularies.values.get(column, []))]
    column = changed[0] if changed else next(iter(saved.values))
    given_values, saved_values = list(vocabularies.values.get(column, [])), list(saved.values[column])
    raise ValueError(f"--vocabulary {given} differs from the vocabulary saved with the model ({saved_source}) in "
                     f"column(s) {', '.join(changed) or 'set'} (e.g. {column}: {given_values}"
                     f" vs the model's {saved_values}), so the model's codes would mean other values; "
                     f"leave out --vocabulary to use the model's own")


__all__ = ["check_probability", "check_same_vocabulary"]
