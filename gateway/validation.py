"""Pydantic's validation errors as one readable line, for HTTP details and start-up errors."""

from __future__ import annotations

from pydantic import ValidationError

__all__ = ["describe"]


def describe(error: ValidationError) -> str:
    """`field.path: message; ...` for every problem, so a client sees all of them at once.

    Pydantic's own text spreads each error over lines with documentation links; a `detail` in a
    JSON answer or a log line reads better as one line that still names every field.
    """
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)
