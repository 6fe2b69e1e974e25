"""Times an activity reports for the workflow to decide on: the Temporal server's clock, recorded.

A workflow may branch only on what its history holds, or a replay decides otherwise than the
live run did. `workflow.now()` is the workflow task's start, which the history holds, but with
the Temporal Python SDK 1.35 a worker that first meets a rollout through a query reads it as the
previous task's time at its next task (seconds stale), while a replay reads the right one. An
activity's result is recorded as it was, so the times lockgate decides on (when a route landed,
when a check was made) come from the activity that saw them happen. They follow the server's
clock, as timers do (the time-skipping test server moves both by days): the attempt's start as
the server stamped it, plus how long the attempt has run by the worker's monotonic clock. A
local activity runs inside a workflow task and has no server-stamped start (its `started_time` is
the worker's wall clock, which the time-skipping server does not move), so it counts from the
workflow time it was scheduled at, which its caller passes in.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from temporalio import activity

__all__ = ["AttemptClock"]


class AttemptClock:
    """Started with an activity attempt; `now()` is the server's time at the moment of asking."""

    def __init__(self, scheduled_at: datetime | None = None) -> None:
        self._started = time.monotonic()
        self._scheduled_at = scheduled_at

    def now(self) -> datetime:
        """The attempt's server-stamped start plus how long it ran (outside one: the wall clock)."""
        if not activity.in_activity():
            return datetime.now(UTC)
        info = activity.info()
        started = info.started_time
        if info.is_local and self._scheduled_at is not None:
            started = self._scheduled_at
        if started.timestamp() <= 0:  # a server that leaves the attempt's start unset
            return datetime.now(UTC)
        ran = timedelta(seconds=time.monotonic() - self._started)
        return started.astimezone(UTC) + ran
