"""What lockgate needs from a monitoring backend: one number per query, or a clear error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["MetricProvider", "Sample"]


@dataclass(frozen=True)
class Sample:
    """One finite number answered by monitoring, with the labels of its series."""

    value: float
    labels: dict[str, str] = field(default_factory=dict)


class MetricProvider(Protocol):
    """A monitoring backend. Providers are dumb and strict: judging happens in checks.py.

    `query` returns exactly one finite Sample, or raises NoDataError (empty, NaN),
    AmbiguousResultError (several series), PartialDataError (an answer with warnings),
    ProviderUnavailable (transport, timeout, 5xx) or ProviderError (any other refusal, e.g. a bad
    query). It never returns 0 for "no data". Each query ends within monitoring.timeout, its
    retries included.
    """

    async def query(self, query: str) -> Sample:
        """Run one query now and return its single value."""
        ...

    async def query_by(self, query: str, label: str) -> dict[str, float]:
        """Run one query and return a value per value of `label` (counts by action)."""
        ...

    async def query_pairs(
        self, query: str, first: str, second: str
    ) -> dict[tuple[str, str], float]:
        """Run one query and return a value per (`first`, `second`) label pair (paired counts)."""
        ...
