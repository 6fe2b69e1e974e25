"""Shadow's candidate calls taken off the response path and sent in batches (`--shadow-mirror`).

In shadow, every decision asks two policy servers: the incumbent, whose action is served, and
the candidate, whose action is only recorded. Over HTTP the second call costs the gateway about
as much CPU as the first, and the candidate's server the work of a whole request, for a
decision nobody waits for. With `--shadow-mirror batched` the gateway answers as soon as the
incumbent has, and queues the candidate's context here; a background task sends what is queued
to the candidate's policy server in batches (the policy server's sampling batch form, `POST
/act` with `{"contexts": [...], "sample": true}`), and the decider records each mirrored
decision (decision, shadow pair, would-be guardrails, errors) when its batch answers.

Bounded: at most `capacity` mirrors wait. When the queue is full a mirror is dropped, and
counted (`lockgate_shadow_mirrors_dropped_total{target}`), rather than slowing the decisions
being served; the shadow evidence then covers fewer decisions, never wrong ones. A batch leaves
when it is full (`max_batch`) or `gather` seconds (10 ms) after its first mirror arrived, and
one round of batches is in flight at a time, so under load each batch carries tens of
decisions, and when the gateway is idle a mirror leaves 10 ms after its decision, alone.
Mirrors still queued when the gateway stops are dropped uncounted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from activities.contracts import Route
from rollout_specs import PolicyVersion

__all__ = ["DEFAULT_MAX_BATCH", "DEFAULT_QUEUE", "Mirror", "ShadowMirror"]

DEFAULT_QUEUE = 10_000
"""Mirrors that may wait for their batch (each holds one decision's context)."""
DEFAULT_MAX_BATCH = 256
"""Most contexts in one batch call (the policy server takes up to 10,000)."""
DEFAULT_GATHER = 0.01
"""Seconds a batch waits for more mirrors after its first (unless it fills first): a call
costs both sides about as much as tens of contexts in it, so a batch of one call per decision
would save little."""

_log = logging.getLogger("gateway.mirror")


@dataclass(frozen=True, slots=True)
class Mirror:
    """One shadow decision waiting for the candidate's answer.

    The route is the one the decision was served under, so the candidate's answer is judged
    by that route's guardrails even if the route changes before the batch answers.
    """

    target: str
    route: Route
    candidate: PolicyVersion
    context: Mapping[str, float]
    served: str
    """The incumbent's action, served: the other half of the shadow pair."""


class ShadowMirror:
    """The bounded queue of mirrors and the task sending them in batches.

    Args:
        send: Sends one batch (mirrors of one target and candidate) and records its answers;
            it should handle its own failures (an exception is logged and the batch lost).
        dropped: Called with the target of each mirror dropped from a full queue.
        capacity: Most mirrors waiting.
        max_batch: Most mirrors in one batch.
        gather: Seconds a batch waits for more mirrors after its first arrived.
    """

    def __init__(
        self,
        send: Callable[[list[Mirror]], Awaitable[None]],
        dropped: Callable[[str], None],
        *,
        capacity: int = DEFAULT_QUEUE,
        max_batch: int = DEFAULT_MAX_BATCH,
        gather: float = DEFAULT_GATHER,
    ) -> None:
        if capacity < 1 or max_batch < 1:
            raise ValueError("the mirror queue and its batches need room for at least one")
        self._send = send
        self._dropped = dropped
        self.capacity = capacity
        self.max_batch = max_batch
        self.gather = gather
        self._queue: deque[Mirror] = deque()
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def offer(self, mirror: Mirror) -> bool:
        """Queue `mirror` for its batch; False (and counted) when the queue is full.

        Must be called from the event loop the gateway serves on (the sender runs there).
        """
        if len(self._queue) >= self.capacity:
            self._dropped(mirror.target)
            return False
        queue = self._queue
        queue.append(mirror)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        if len(queue) == 1:
            self._wake.set()
        elif len(queue) >= self.max_batch:
            self._full.set()
        return True

    async def aclose(self) -> None:
        """Stop sending (the gateway is stopping); what is still queued is dropped."""
        task, self._task = self._task, None
        self._queue.clear()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                if len(self._queue) < self.max_batch and self.gather > 0:
                    self._full.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.gather):
                            await self._full.wait()
                batches = self._take()
                results = await asyncio.gather(
                    *(self._send(batch) for batch in batches), return_exceptions=True
                )
                for result in results:
                    if isinstance(result, Exception):
                        _log.error("a shadow mirror batch was lost: %r", result)

    def _take(self) -> list[list[Mirror]]:
        """Up to `max_batch` mirrors from the queue's front, grouped by target and candidate."""
        groups: dict[tuple[str, str | None, str], list[Mirror]] = {}
        queue = self._queue
        for _ in range(min(self.max_batch, len(queue))):
            mirror = queue.popleft()
            key = (mirror.target, mirror.candidate.uri, mirror.candidate.version)
            groups.setdefault(key, []).append(mirror)
        return list(groups.values())
