"""A rollback never waits: not for a check on hung monitoring, not for a stage route in flight,
and a router held by someone else is named in the escalation while lockgate keeps retrying."""

from __future__ import annotations

import time
from typing import Any

import pytest
from temporalio.client import Client

from runtime.rollouts import query_status, send_command, submit_rollout
from tests.conftest import build_spec, record_history, spec_document
from tests.helpers.servers import MetricsServer, RouterServer
from tests.helpers.waiting import wait_until
from workflows.state import Phase

pytestmark = pytest.mark.usefixtures("worker")

LANDS_WITHIN = 10.0
"""Seconds a rollback may take to reach the router here; the work it preempts would take 60+."""


def _document(router: RouterServer, metrics: MetricsServer) -> dict[str, Any]:
    document = spec_document(router.url, metrics.url)
    # Slow backends are allowed a minute: waiting them out would hold a rollback that long.
    document["spec"]["monitoring"]["timeout"] = "60s"
    document["spec"]["router"]["timeout"] = "60s"
    document["spec"]["stages"][0]["min_duration"] = "1h"
    return document


async def _rolled_back_route(router: RouterServer, target: str) -> dict[str, Any] | None:
    route = router.current(target)
    return route if route is not None and route["mode"] == "off" else None


async def test_a_manual_rollback_cancels_a_check_stuck_on_hung_monitoring(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    metrics.set("error_rate", 0.0)
    spec = build_spec(_document(router, metrics))
    target = spec.spec.target
    await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
    await wait_until(lambda: metrics.queries, what="the first check")
    metrics.set("error_rate", "hang")
    asked = len(metrics.queries)
    await wait_until(lambda: len(metrics.queries) > asked, what="a check stuck on monitoring")

    requested = time.monotonic()
    await send_command(client, target, "rollback", actor="bob", reason="support tickets")
    route = await wait_until(
        lambda: _rolled_back_route(router, target), timeout=LANDS_WITHIN, what="the rollback"
    )
    print(f"\nrollback at the router {time.monotonic() - requested:.2f}s after the request")

    assert route["incumbent"]["version"] == "41"
    status = await wait_until(
        lambda: _phase(client, target, Phase.ROLLED_BACK), what="the rollout to end"
    )
    assert status.state.rollback is not None
    assert status.state.rollback.actor == "bob"
    await record_history(client.get_workflow_handle(spec.workflow_id), "rollback_preempts_check")


async def test_a_rollback_cancels_a_stage_route_the_router_is_stuck_on(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    metrics.set("error_rate", 0.0)
    document = _document(router, metrics)
    document["spec"]["stages"][0]["min_duration"] = "1s"
    spec = build_spec(document)
    target = spec.spec.target
    router.hang_puts("split")  # the canary's PUT never gets an answer
    await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
    await wait_until(
        lambda: _phase(client, target, Phase.RUNNING, stage="canary"), what="the canary's route"
    )

    await send_command(client, target, "rollback", actor="bob", reason="wrong candidate")
    await wait_until(
        lambda: _rolled_back_route(router, target), timeout=LANDS_WITHIN, what="the rollback"
    )

    status = await wait_until(
        lambda: _phase(client, target, Phase.ROLLED_BACK), what="the rollout to end"
    )
    modes = [route["mode"] for route in router.history]
    assert modes == ["shadow", "off"], "the canary never landed; the rollback superseded it"
    assert [s.name for s in status.state.stages] == ["shadow", "canary"]
    assert status.state.stages[-1].outcome == "rolled_back"
    await record_history(client.get_workflow_handle(spec.workflow_id), "rollback_preempts_route")


async def test_a_route_held_by_another_writer_is_named_and_the_rollback_still_lands(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    metrics.set("error_rate", 0.0)
    document = spec_document(router.url, metrics.url)
    document["spec"]["stages"][0]["min_duration"] = "1h"
    spec = build_spec(document)
    target = spec.spec.target
    await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
    shadow = await wait_until(lambda: router.current(target), what="the shadow route")
    intruder = {**shadow, "rollout_id": "intruder/run-7", "generation": 10**15, "percent": 100}
    intruder.update(mode="split")
    router.impose(target, intruder)

    await send_command(client, target, "rollback", actor="bob", reason="shadow looks wrong")
    status = await wait_until(
        lambda: _escalated_naming(client, target, "intruder/run-7"), what="the escalation"
    )
    assert status.state.phase is Phase.ROLLING_BACK
    escalation = status.state.escalation or ""
    assert f"generation {10**15}" in escalation
    assert "mode=split percent=100" in escalation, "it says what the holder serves"

    router.drop(target)  # an operator removes the stray route; lockgate's retry then lands
    final = await wait_until(
        lambda: _phase(client, target, Phase.ROLLED_BACK), timeout=30, what="the rollback"
    )
    assert final.state.escalation is None
    route = router.current(target)
    assert route is not None
    assert route["mode"] == "off"
    assert route["rollout_id"] == final.state.rollout_id
    actions = [entry.action for entry in final.state.audit]
    assert actions[-3:] == ["rollback", "escalated", "rollback_landed"]
    await record_history(client.get_workflow_handle(spec.workflow_id), "route_conflict_named")


async def _phase(client: Client, target: str, phase: Phase, stage: str | None = None) -> Any:
    status = await query_status(client, target)
    if status.state.phase is not phase:
        return None
    if stage is not None and (not status.state.stages or status.state.stages[-1].name != stage):
        return None
    return status


async def _escalated_naming(client: Client, target: str, holder: str) -> Any:
    status = await query_status(client, target)
    return status if holder in (status.state.escalation or "") else None
