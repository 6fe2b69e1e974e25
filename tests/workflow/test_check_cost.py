"""What a check costs the Temporal server: its history events, counted, and no search-attribute
write when nothing changed (every event is a write on the server)."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from runtime.rollouts import query_status, send_command, submit_rollout
from tests.conftest import build_spec, spec_document
from tests.helpers.servers import MetricsServer, RouterServer
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.usefixtures("worker")

EVENTS_PER_CHECK = 11
"""The timer started and fired; the workflow task scheduled, started and completed that
schedules the check; the check's activity scheduled, started and completed; the workflow task
scheduled, started and completed that judges it."""


def _long_stage(router: RouterServer, metrics: MetricsServer) -> dict[str, Any]:
    document = spec_document(router.url, metrics.url)
    document["spec"]["stages"] = [
        {"name": "canary", "percent": 10, "min_duration": "1h"},
        {"name": "full", "percent": 100, "min_duration": "1h"},
    ]
    return document


async def _checks(client: Client, target: str) -> int:
    status = await query_status(client, target)
    return status.state.checks_total


async def _at_least(client: Client, target: str, checks: int) -> bool:
    return await _checks(client, target) >= checks


async def test_a_check_writes_eleven_history_events_and_no_search_attribute(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    metrics.set("error_rate", 0.0)
    spec = build_spec(_long_stage(router, metrics))
    handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
    target = spec.spec.target
    await wait_until(lambda: _at_least(client, target, 2), what="the canary's first checks")

    first = await _checks(client, target)
    events_before = len((await handle.fetch_history()).events)
    await wait_until(lambda: _at_least(client, target, first + 5), what="five more checks")
    history = await handle.fetch_history()
    checks = await _checks(client, target)
    added = history.events[events_before:]

    per_check = len(added) / (checks - first)
    assert per_check <= EVENTS_PER_CHECK + 0.5, f"{per_check:.1f} events per check"
    kinds = {event.event_type for event in added}
    assert EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES not in kinds, (
        "search attributes re-sent although nothing changed"
    )
    await send_command(client, target, "rollback", actor="alice", reason="test over")
    await handle.result()
