"""What a check costs the Temporal server: its history events, counted, and no search-attribute
write when nothing changed (every event is a write on the server)."""

from __future__ import annotations

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from runtime.rollouts import query_status, send_command, submit_rollout
from tests.conftest import build_spec, long_stage_document
from tests.helpers.history import check_kind
from tests.helpers.servers import MetricsServer, RouterServer
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.usefixtures("worker")

EVENTS_PER_CHECK = 6
"""The timer started and fired; the workflow task scheduled, started and completed that runs
the check inside it (a local activity) and starts the next timer; the check's marker. Before
checks ran in the workflow task, a check cost eleven: its activity's three events and a second
workflow task of three."""


def _timer_starts(events: list[HistoryEvent]) -> list[int]:
    return [i for i, e in enumerate(events) if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]


async def _checks(client: Client, target: str) -> int:
    status = await query_status(client, target)
    return status.state.checks_total


async def _at_least(client: Client, target: str, checks: int) -> bool:
    return await _checks(client, target) >= checks


async def test_a_check_writes_six_history_events_and_no_search_attribute(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    metrics.set("error_rate", 0.0)
    spec = build_spec(long_stage_document(router.url, metrics.url))
    handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
    target = spec.spec.target
    await wait_until(lambda: _at_least(client, target, 2), what="the canary's first checks")

    events_before = len((await handle.fetch_history()).events)

    async def six_more_timers() -> list[HistoryEvent] | None:
        added = list((await handle.fetch_history()).events)[events_before:]
        return added if len(_timer_starts(added)) >= 6 else None

    added = await wait_until(six_more_timers, what="six more checks")
    # Whole check cycles only: from one check's timer to the last one started.
    timers = _timer_starts(added)
    cycles = added[timers[0] + 1 : timers[-1] + 1]
    checks = [e for e in cycles if check_kind(e) in ("quick", "activity")]
    assert len(checks) == len(timers) - 1 >= 5, "every timer is one check's interval"
    per_check = len(cycles) / len(checks)
    assert per_check <= EVENTS_PER_CHECK, f"{per_check:.1f} events per check"
    kinds = {event.event_type for event in added}
    assert EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES not in kinds, (
        "search attributes re-sent although nothing changed"
    )
    await send_command(client, target, "rollback", actor="alice", reason="test over")
    await handle.result()
