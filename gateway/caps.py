"""The caps a route puts on the candidate's actions: a parameter's value, an action's share.

- A value cap (`{field, max, action?}`) overrules a decision whose parameter `field` is above
  `max` (for every action, or only `action`'s).
- A share cap (`{action, max_share, window}`) overrules a decision that would make `action`
  more than `max_share` of the candidate's served decisions in the last `window`. Serving it
  would give the share (hits + 1) / (total + 1); above `max_share` the incumbent's decision is
  served instead, so the served share never passes the cap at any moment. What counts is what
  the candidate arm actually served, after every guardrail (an overruled decision counts with
  the incumbent's action it served), since that is what the cap limits in the world. The
  incumbent's decision served in the candidate's place is never refused, even when it is the
  capped action: the incumbent is the baseline, the cap limits the candidate's choices.

Each share window is a deque of one-second buckets with running sums, so recording a decision
and checking the share are O(1) amortised whatever the traffic: a bucket is appended at most once
a second and popped once when it leaves the window. A window lives with its target's route: it
is kept while the rollout, the candidate version, the mode and the share caps stay the same
(a new percent keeps it), and starts empty otherwise (a new rollout, or shadow -> split: the
candidate's would-be decisions in shadow are not what it served).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from enum import StrEnum

from activities.contracts import Route
from rollout_specs import ShareCap, ValueCap

__all__ = ["CapGuard", "Intervention", "ShareWindow"]


class Intervention(StrEnum):
    """Why the candidate's decision was overruled (the `kind` of an intervention)."""

    BLOCKED = "blocked"
    REVIEW = "review"
    VALUE = "value"
    SHARE = "share"


class ShareWindow:
    """One action's share of the served decisions over the last `seconds`, per one-second bucket.

    Buckets cover the seconds (now - seconds, now]: a window of 600 s holds at most 600 of them.
    """

    __slots__ = ("_buckets", "_hits", "_total", "max_share", "seconds")

    def __init__(self, seconds: float, max_share: float) -> None:
        self.seconds = seconds
        self.max_share = max_share
        self._buckets: deque[list[int]] = deque()  # [second, total, hits]
        self._total = 0
        self._hits = 0

    def _expire(self, second: int) -> None:
        horizon = second - self.seconds
        buckets = self._buckets
        while buckets and buckets[0][0] <= horizon:
            _, total, hits = buckets.popleft()
            self._total -= total
            self._hits -= hits

    def counts(self, now: float) -> tuple[int, int]:
        """(decisions of the action, all decisions) served in the window ending `now`."""
        self._expire(int(now))
        return self._hits, self._total

    def would_exceed(self, now: float) -> bool:
        """Whether serving the action once more now would put its share above the cap."""
        hits, total = self.counts(now)
        return (hits + 1) / (total + 1) > self.max_share

    def record(self, now: float, hit: bool) -> None:
        """One served decision at `now`; `hit` when it was the capped action."""
        second = int(now)
        buckets = self._buckets
        if buckets and buckets[-1][0] == second:
            bucket = buckets[-1]
        else:
            self._expire(second)
            bucket = [second, 0, 0]
            buckets.append(bucket)
        bucket[1] += 1
        self._total += 1
        if hit:
            bucket[2] += 1
            self._hits += 1


class _TargetCaps:
    """One target's caps, as its current route states them, with its share windows."""

    __slots__ = ("key", "route", "shares", "values")

    def __init__(self, route: Route, key: tuple[object, ...]) -> None:
        self.route = route
        self.key = key
        self.values: tuple[ValueCap, ...] = ()
        self.shares: dict[str, ShareWindow] = {}
        for cap in route.guardrails.caps:
            if isinstance(cap, ShareCap):
                self.shares[cap.action] = ShareWindow(cap.window.total_seconds(), cap.max_share)
        self.refresh(route)

    def refresh(self, route: Route) -> None:
        """Take a new route whose share caps are the same: the windows go on counting."""
        self.route = route
        self.values = tuple(cap for cap in route.guardrails.caps if isinstance(cap, ValueCap))


def _share_key(route: Route) -> tuple[object, ...]:
    """What a share window belongs to: a new key starts the windows empty."""
    candidate = route.candidate.version if route.candidate is not None else None
    shares = tuple(
        (cap.action, cap.max_share, cap.window)
        for cap in route.guardrails.caps
        if isinstance(cap, ShareCap)
    )
    return (route.rollout_id, candidate, route.mode, shares)


class CapGuard:
    """Checks the candidate's decisions against their route's caps, per target.

    Args:
        clock: Seconds (monotonic by default: windows are relative, and a wall-clock step must
            neither empty nor double one); tests pass their own.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._targets: dict[str, _TargetCaps] = {}

    def _caps(self, target: str, route: Route) -> _TargetCaps:
        caps = self._targets.get(target)
        if caps is not None and caps.route is route:
            return caps
        key = _share_key(route)
        if caps is None or caps.key != key:
            caps = self._targets[target] = _TargetCaps(route, key)
        else:
            caps.refresh(route)
        return caps

    def check(
        self, target: str, route: Route, action: str, params: Mapping[str, float] | None
    ) -> tuple[Intervention, str] | None:
        """The cap the candidate's `action` (with `params`) breaks, as (kind, guardrail), or None.

        Value caps come first (a decision above a value cap is refused whatever the share),
        then the action's share cap; the guardrail is the field of a value cap and the action
        of a share cap.
        """
        caps = self._caps(target, route)
        if params:
            for cap in caps.values:
                if cap.action is not None and cap.action != action:
                    continue
                value = params.get(cap.field)
                if value is not None and value > cap.max:
                    return Intervention.VALUE, cap.field
        window = caps.shares.get(action)
        if window is not None and window.would_exceed(self._clock()):
            return Intervention.SHARE, action
        return None

    def served(self, target: str, route: Route, action: str) -> None:
        """The candidate arm served `action` (its own, or the incumbent's in its place)."""
        caps = self._caps(target, route)
        if not caps.shares:
            return
        now = self._clock()
        for capped, window in caps.shares.items():
            window.record(now, capped == action)
