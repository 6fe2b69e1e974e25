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

import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from gateway.segments import Segments

_RANDOM_BLOCK = 4096
_random = b""
_used = _RANDOM_BLOCK


def new_decision_id() -> str:
    """A random version 4 UUID, as 32 hex digits (`uuid.uuid4().hex`), for a decision.

    The same randomness (os.urandom) read 4 KiB at a time: one system call per 256 decisions
    instead of one each, 0.3 us instead of 1.5 us on the decide path.
    """
    global _random, _used
    if _used + 16 > _RANDOM_BLOCK:
        _random, _used = os.urandom(_RANDOM_BLOCK), 0
    raw = bytearray(_random[_used : _used + 16])
    _used += 16
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    return raw.hex()


__all__ = [
    "AlreadyRewardedError",
    "PendingDecisions",
    "Served",
    "UnknownDecisionError",
    "new_decision_id",
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
        # Plain tuples of strings and a float, not Served objects: the garbage collector stops
        # tracking such a tuple once it has seen it, so up to `capacity` remembered decisions
        # cost its collections nothing; as objects, they made every decision ~5 us dearer in
        # collections alone, and growing, with a long pause at each full collection.
        self._entries: OrderedDict[str, tuple[str, str, str, float, Segments]] = OrderedDict()
        self._rewarded: set[str] = set()
        self._oldest = float("inf")
        """When the oldest entry was taken (inf: none), so most adds forget nothing unlooked."""

    def __len__(self) -> int:
        return len(self._entries)

    def add(
        self, decision_id: str, target: str, arm: str, version: str, segments: Segments = ()
    ) -> None:
        """Remember a decision just served, forgetting the oldest beyond the bounds."""
        now = self._clock()
        entries = self._entries
        # str(): an arm given as a StrEnum member (a tracked object) becomes its plain value
        entries[decision_id] = (target, str(arm), version, now, segments)
        if len(entries) == 1:
            self._oldest = now
        elif len(entries) > self.capacity or now - self._oldest > self.ttl:
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
        entry = self._entries.get(decision_id)
        if entry is None or entry[0] != target:
            raise UnknownDecisionError(decision_id)
        if decision_id in self._rewarded:
            raise AlreadyRewardedError(decision_id)
        self._rewarded.add(decision_id)
        return Served(*entry)

    def _forget(self, now: float) -> None:
        entries = self._entries
        while entries:
            oldest_id, oldest = next(iter(entries.items()))
            if len(entries) <= self.capacity and now - oldest[3] <= self.ttl:
                self._oldest = oldest[3]
                return
            del entries[oldest_id]
            self._rewarded.discard(oldest_id)
        self._oldest = float("inf")
