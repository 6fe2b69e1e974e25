"""Decisions waiting for their reward, so a late reward reaches the arm that served.

Rewards arrive seconds to hours after the decision (a click, a purchase), by decision id. The
gateway remembers who served each decision until its reward arrives, with two bounds so a client
that never sends feedback cannot grow it without limit: at most `capacity` decisions (the oldest
is forgotten first) and at most `ttl` seconds each. A rewarded decision is remembered as rewarded
until it ages out, so a duplicate reward is refused instead of counted twice. With each decision
it keeps the unit's segments (at most gateway.segments.MAX_LABELS pairs of strings shared with the
metrics' label sets), so the reward also counts in the segments the decision was taken in.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from gateway.segments import Segments

__all__ = [
    "AlreadyRewardedError",
    "PendingDecisions",
    "Served",
    "UnknownDecisionError",
]

DEFAULT_CAPACITY = 1_000_000
DEFAULT_TTL = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Served:
    """Who served one decision, when (monotonic seconds), and in which segments of units."""

    target: str
    arm: str
    version: str
    at: float
    segments: Segments = ()


class UnknownDecisionError(LookupError):
    """No decision has that id for the target: never taken, expired, or evicted (HTTP 404)."""


class AlreadyRewardedError(LookupError):
    """The decision already has its reward; a second one would count twice (HTTP 409)."""


class PendingDecisions:
    """decision id -> who served it, bounded in size and in age.

    Entries are kept in the order they were taken, which is also the order they expire in, so
    forgetting the old ones is a pop from the front: O(1) per decision.
    """

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1 or ttl <= 0:
            raise ValueError("capacity must be at least 1 and ttl positive")
        self.capacity = capacity
        self.ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[str, Served] = OrderedDict()
        self._rewarded: set[str] = set()

    def __len__(self) -> int:
        return len(self._entries)

    def add(
        self, decision_id: str, target: str, arm: str, version: str, segments: Segments = ()
    ) -> None:
        """Remember a decision just served, forgetting the oldest beyond the bounds."""
        now = self._clock()
        self._entries[decision_id] = Served(target, arm, version, now, segments)
        self._forget(now)

    def reward(self, decision_id: str, target: str) -> Served:
        """Claim a decision's one reward.

        Args:
            decision_id: The id the decide answer carried.
            target: The target the feedback was posted to; it must be the decision's.

        Returns:
            Who served the decision, to attribute the reward to.

        Raises:
            UnknownDecisionError: No live decision has that id for that target.
            AlreadyRewardedError: Its reward was already recorded.
        """
        now = self._clock()
        self._forget(now)
        served = self._entries.get(decision_id)
        if served is None or served.target != target:
            raise UnknownDecisionError(decision_id)
        if decision_id in self._rewarded:
            raise AlreadyRewardedError(decision_id)
        self._rewarded.add(decision_id)
        return served

    def _forget(self, now: float) -> None:
        entries = self._entries
        while entries:
            oldest_id, oldest = next(iter(entries.items()))
            if len(entries) <= self.capacity and now - oldest.at <= self.ttl:
                return
            del entries[oldest_id]
            self._rewarded.discard(oldest_id)
