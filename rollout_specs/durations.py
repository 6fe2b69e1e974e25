"""The one duration type of the spec language.

Release engineers write durations the way they write them everywhere else (`30s`, `5m`,
`1h30m`), while Temporal's pydantic converter round-trips `timedelta` as ISO 8601 (`PT30S`).
Both forms are accepted so a spec survives the trip into the workflow unchanged.

Every duration is at most MAX_DURATION (365 days): a longer bake or timeout is a typo, and an
unbounded one (`1000000000d`) overflows `timedelta` instead of failing with the fix. Durations
are whole milliseconds, the precision their JSON form keeps: `0.0004s` would reach the workflow
as `0s`.
"""

from __future__ import annotations

import math
import re
import reprlib
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema

__all__ = [
    "DURATION_PATTERN",
    "MAX_DURATION",
    "Duration",
    "format_duration",
    "parse_duration",
    "shown",
]

DURATION_PATTERN = r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_HINT = "write a duration like 30s, 5m, 1h or 1h30m"
MAX_DURATION = timedelta(days=365)
"""The longest duration a spec may hold, so no bake, timeout or interval is effectively forever."""
_MAX_TEXT = 64
"""Longer text is no duration anyone writes; refusing it first keeps parsing and messages small."""


class _ShortRepr(reprlib.Repr):
    """reprlib's cut-short repr, and no int turned into 5,000 digits of text (a ValueError)."""

    def __init__(self) -> None:
        super().__init__()  # Python 3.11's Repr takes no keyword arguments
        self.maxstring = self.maxother = self.maxlong = 60
        self.maxlist = self.maxdict = self.maxset = self.maxtuple = 4
        self.maxlevel = 2

    def repr_int(self, x: int, level: int) -> str:
        """Small ints as usual; a huge one by its size, without converting it to text."""
        if x.bit_length() > 192:
            return f"<a number of about {int(x.bit_length() * 0.30103) + 1} digits>"
        return super().repr_int(x, level)


_SHOWN = _ShortRepr()


def shown(value: Any) -> str:
    """`repr(value)` cut short, for quoting what was written in an error line.

    A spec may hold a 200 KB string or a 5,000-digit number; the error names it, it does not
    echo it (or crash converting it to text).
    """
    return _SHOWN.repr(value)


def _too_long(shown_value: str) -> str:
    return (
        f"{shown_value} is longer than {format_duration(MAX_DURATION)}, the longest duration a "
        f"spec may hold; write at most {format_duration(MAX_DURATION)}"
    )


def parse_duration(text: str) -> timedelta:
    """Parse `30s`-style text; raise ValueError that says how to write it.

    At most MAX_DURATION: `1000000000d` is refused with the limit, never an OverflowError.
    """
    compact = text.strip().replace(" ", "")
    if not compact or len(compact) > _MAX_TEXT or not re.fullmatch(DURATION_PATTERN, compact):
        raise ValueError(f"{shown(text)} is not a duration; {_HINT}")
    seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(compact))
    if not math.isfinite(seconds) or seconds > MAX_DURATION.total_seconds():
        raise ValueError(_too_long(shown(text)))
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Render a timedelta back in the spec's own notation, for humans and for PromQL windows."""
    total_ms = round(value.total_seconds() * 1000)
    if total_ms % 1000:
        return f"{total_ms}ms"
    seconds = total_ms // 1000
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _coerce(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        if value.startswith("P"):  # ISO 8601, as the Temporal converter writes it
            if len(value) > _MAX_TEXT:
                raise ValueError(f"{shown(value)} is not a duration; {_HINT}")
            return value
        return parse_duration(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{shown(value)} is not a duration; {_HINT}")
    raise ValueError(f"{shown(value)} has no unit; {_HINT}")


def _in_range(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError(f"a duration cannot be negative; {_HINT}")
    if value > MAX_DURATION:
        raise ValueError(_too_long(format_duration(value)))
    if value % timedelta(milliseconds=1):
        raise ValueError(
            f"{value.total_seconds():g}s is more precise than a millisecond, which is all a "
            "spec keeps; round it to whole milliseconds"
        )
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_coerce),
    AfterValidator(_in_range),
    PlainSerializer(lambda v: format_duration(v), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["30s", "1h30m"]}),
]
"""A span of time (zero to 365 days, in whole milliseconds) written as `30s`, `5m` or `1h30m`."""
