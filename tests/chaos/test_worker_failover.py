"""Fault: one of two workers on a task queue SIGKILLed, at the worst moment, while 5 rollouts bake.

The worker running most of the rollouts is frozen (SIGSTOP) until the server has handed it a
workflow task, then SIGKILLed: a crash in the middle of a task, not between two. Guarantee: the
surviving worker takes every rollout over at once: no rollout's checks stall for more than 3 s
beyond the check interval (measured from the monitoring server's own record of when each
rollout's queries arrived, from the freeze on), every rollout completes, and every invariant of
tests/chaos/invariants.py holds for each of them.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Final

import pytest
from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.api.history.v1 import HistoryEvent

from tests.chaos.cluster import CHECK_INTERVAL, Cluster
from tests.chaos.invariants import assert_nothing_lost
from tests.helpers.waiting import wait_until
from workflows.state import Phase

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

ROLLOUTS: Final = 5
MAX_STALL: Final = 3.0
"""Seconds a rollout's next check may come later than the check interval says."""


async def test_a_worker_killed_mid_task_stalls_no_rollouts_checks(cluster: Cluster) -> None:
    await cluster.start_worker()
    specs = [cluster.spec(["3s", "3s", "3s", "2s"]) for _ in range(ROLLOUTS)]
    targets = [spec.spec.target for spec in specs]
    for spec in specs:
        await cluster.submit(spec)

    def every_rollout_checked_twice() -> bool:
        return all(len(cluster.metrics.answered(t)) >= 2 for t in targets)

    await wait_until(every_rollout_checked_twice, what="two checks of every rollout", timeout=30)
    logged = {id(w): Cluster.workflow_tasks_logged(w) for w in cluster.workers}
    victim = max(cluster.workers, key=lambda w: sum(logged[id(w)].values()))
    assert logged[id(victim)], "the worker to kill runs some of the rollouts"
    identity = Cluster.identity(victim)
    Cluster.freeze(victim)
    died_at = time.time()

    async def tasks_in_flight_on_the_victim() -> list[str]:
        histories = await asyncio.gather(*(cluster.history(t) for t in targets))
        return [t for t, h in zip(targets, histories, strict=True) if _in_flight(h, identity)]

    caught = await wait_until(
        tasks_in_flight_on_the_victim, what="a workflow task in flight on the frozen worker"
    )
    victim.kill()

    results = await asyncio.gather(*(cluster.result(t, timeout=60) for t in targets))
    assert [r.phase for r in results] == [Phase.COMPLETED] * ROLLOUTS, [r.outcome for r in results]
    for spec in specs:
        await assert_nothing_lost(cluster, spec, through="full", rollback=None)

    stalls = {t: _worst_stall(cluster, t, died_at) for t in targets}
    lost = {t: _lost_tasks(await cluster.history(t), identity) for t in targets}
    report = "\n".join(
        f"  {t}: worst stall {stalls[t]:.2f}s; "
        + (f"lost on the dead worker: {'; '.join(lost[t])}" if lost[t] else "nothing in flight")
        for t in targets
    )
    print(f"\nkilled {identity} with a workflow task in flight for {caught}:\n{report}")
    idle = [t for t in targets if not lost[t]]
    assert all(stalls[t] <= MAX_STALL for t in idle), (
        f"rollouts idle at the kill stalled:\n{report}"
    )
    assert max(stalls.values()) <= MAX_STALL, f"rollouts caught mid-task stalled:\n{report}"


def _in_flight(history: list[HistoryEvent], identity: str) -> bool:
    """Whether the run's last event is a workflow task started by `identity` (still running)."""
    last = history[-1]
    return (
        last.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
        and last.workflow_task_started_event_attributes.identity == identity
    )


def _lost_tasks(history: list[HistoryEvent], identity: str) -> list[str]:
    """The tasks the dead worker took with it: timed-out workflow tasks, re-tried activities."""
    by_id = {event.event_id: event for event in history}
    lost = []
    for event in history:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
            timed_out = event.workflow_task_timed_out_event_attributes
            started = by_id.get(timed_out.started_event_id)
            if started is None:  # never started: a sticky task the dead worker did not pick up
                lost.append("a workflow task waiting on the dead worker's sticky queue")
                continue
            if started.workflow_task_started_event_attributes.identity == identity:
                waited = event.event_time.ToDatetime() - started.event_time.ToDatetime()
                kind = TimeoutType.Name(timed_out.timeout_type)
                lost.append(f"a workflow task ({kind} after {waited.total_seconds():.1f}s)")
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started_activity = event.activity_task_started_event_attributes
            if started_activity.attempt > 1:
                failure = started_activity.last_failure.message
                lost.append(f"an activity attempt ({failure})")
    return lost


def _worst_stall(cluster: Cluster, target: str, since: float) -> float:
    """The longest wait beyond the check interval between two checks of `target` after `since`."""
    times = [q.at for q in cluster.metrics.answered(target)]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times) if later > since]
    assert gaps, f"{target} was not checked after the kill"
    return max(gaps) - CHECK_INTERVAL
