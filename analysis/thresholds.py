"""Fixed-threshold judging: the simplest rule a rollback trigger can have, applied strictly."""

from __future__ import annotations

import math

__all__ = ["breach", "describe_threshold"]


def breach(value: float, above: float | None, below: float | None) -> str | None:
    """Say how `value` breaks the threshold, or None when it is within it.

    The threshold is the healthy region: `above` is the highest tolerated value and `below` the
    lowest. A value exactly on a bound is tolerated. A non-finite value is not judged here: it
    is no data, and callers must never reach this function with it.
    """
    if not math.isfinite(value):
        raise ValueError(f"cannot judge a non-finite value {value!r}; it is no data")
    if above is not None and value > above:
        return f"{value:g} is above {above:g}"
    if below is not None and value < below:
        return f"{value:g} is below {below:g}"
    return None


def describe_threshold(above: float | None, below: float | None) -> str:
    """Render a threshold as the healthy region, e.g. `<= 0.01` or `in [0, 250]`."""
    if above is not None and below is not None:
        return f"in [{below:g}, {above:g}]"
    if above is not None:
        return f"<= {above:g}"
    if below is not None:
        return f">= {below:g}"
    raise ValueError("a threshold needs above, below, or both")
