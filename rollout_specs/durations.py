"""The one duration type of the spec language.

Release engineers write durations the way they write them everywhere else (`30s`, `5m`,
`1h30m`), while Temporal's pydantic converter round-trips `timedelta` as ISO 8601 (`PT30S`).
Both forms are accepted so a spec survives the trip into the workflow unchanged.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema

__all__ = ["DURATION_PATTERN", "Duration", "format_duration", "parse_duration"]

DURATION_PATTERN = r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_HINT = "write a duration like 30s, 5m, 1h or 1h30m"


def parse_duration(text: str) -> timedelta:
    """Parse `30s`-style text; raise ValueError that says how to write it."""
    compact = text.strip().replace(" ", "")
    if not compact or not re.fullmatch(DURATION_PATTERN, compact):
        raise ValueError(f"{text!r} is not a duration; {_HINT}")
    seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(compact))
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
            return value
        return parse_duration(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a duration; {_HINT}")
    raise ValueError(f"{value!r} has no unit; {_HINT}")


def _not_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError(f"a duration cannot be negative; {_HINT}")
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_coerce),
    AfterValidator(_not_negative),
    PlainSerializer(lambda v: format_duration(v), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["30s", "1h30m"]}),
]
"""A span of time (zero or more) written as `30s`, `5m`, `1h` or `1h30m`."""
