"""Heartbeats while an activity waits on the network, so a cancel or a dead worker is noticed.

Temporal delivers an activity's cancellation on its next heartbeat, and notices a dead worker
when heartbeats stop. Activities that wait on a router or on monitoring therefore heartbeat on
a timer while they wait: a rollback can cancel a check or a stage route in flight at once, and
a killed worker's activity is retried after the heartbeat timeout rather than its full timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from temporalio import activity

__all__ = ["HEARTBEAT_EVERY", "heartbeating"]

HEARTBEAT_EVERY = 1.0
"""Seconds between heartbeats; the workflow's heartbeat timeouts are a few times this."""


@contextlib.asynccontextmanager
async def heartbeating(every: float = HEARTBEAT_EVERY) -> AsyncIterator[None]:
    """Heartbeat every `every` seconds while the block runs.

    Outside an activity, or in a local activity (which runs inside a workflow task and has no
    heartbeat of its own), nothing.
    """
    if not activity.in_activity() or activity.info().is_local:
        yield
        return

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
