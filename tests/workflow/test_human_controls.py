"""Humans stay in charge: pause, resume, promote and rollback, and what the rollout refuses."""

from __future__ import annotations

import pytest
from temporalio.client import Client

from rollout_specs import workflow_id_for
from runtime.rollouts import CommandRefused, query_status, send_command, submit_rollout
from tests.conftest import build_spec, record_history, spec_document
from tests.helpers.servers import MetricsServer, RouterServer
from tests.helpers.waiting import wait_until
from workflows.messages import StatusResult
from workflows.state import Phase

pytestmark = pytest.mark.usefixtures("worker")


async def _start(
    client: Client,
    router: RouterServer,
    metrics: MetricsServer,
    task_queue: str,
    **stage_minutes: str,
) -> str:
    metrics.set("error_rate", 0.0)
    document = spec_document(router.url, metrics.url)
    for stage in document["spec"]["stages"]:
        stage["min_duration"] = stage_minutes.get(stage["name"], stage["min_duration"])
    spec = build_spec(document)
    await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
    return spec.spec.target


async def _checks_in_stage(client: Client, target: str) -> int:
    status = await query_status(client, target)
    return status.state.stages[-1].checks if status.state.stages else 0


async def test_pause_holds_a_passing_stage_and_resume_lets_it_advance(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    target = await _start(client, router, metrics, task_queue, shadow="1h")
    await wait_until(lambda: router.current(target), what="the shadow route")

    paused = await send_command(client, target, "pause", actor="bob", reason="holiday freeze")
    assert paused.phase is Phase.PAUSED

    # Passing checks past min_duration would advance an unpaused stage; paused, it stays.
    with pytest.raises(CommandRefused, match="paused; resume it before promoting"):
        await send_command(client, target, "promote", actor="bob", reason="ship it")
    status = await query_status(client, target)
    assert status.state.paused_by is not None
    assert status.state.paused_by.actor == "bob"

    with pytest.raises(CommandRefused, match="already paused by bob"):
        await send_command(client, target, "pause", actor="carol", reason="me too")

    resumed = await send_command(client, target, "resume", actor="bob", reason="freeze over")
    assert resumed.phase is Phase.RUNNING
    await send_command(client, target, "promote", actor="bob", reason="shadow looks fine")
    await wait_until(
        lambda: (router.current(target) or {}).get("percent") == 10, what="the canary stage"
    )
    await send_command(client, target, "rollback", actor="bob", reason="enough")
    handle = client.get_workflow_handle(workflow_id_for(target))
    await handle.result()
    await record_history(handle, "pause_resume_promote_rollback")
    status = await query_status(client, target)
    assert status.state.stages[0].outcome == "promoted"
    actions = [(e.actor, e.action, e.reason) for e in status.state.audit if e.actor == "bob"]
    assert actions == [
        ("bob", "pause", "holiday freeze"),
        ("bob", "resume", "freeze over"),
        ("bob", "promote", "shadow looks fine"),
        ("bob", "rollback", "enough"),
    ]


async def test_a_paused_stage_past_its_bake_does_not_advance(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    target = await _start(client, router, metrics, task_queue, shadow="4s")
    await wait_until(lambda: router.current(target), what="the shadow route")
    await send_command(client, target, "pause", actor="bob", reason="look first")

    async def past_the_bake() -> bool:
        return await _checks_in_stage(client, target) >= 6

    await wait_until(past_the_bake, what="passing checks past the 4s bake while paused")
    status = await query_status(client, target)
    assert status.state.phase is Phase.PAUSED
    assert status.state.stage_index == 0
    assert [r["mode"] for r in router.history] == ["shadow"]

    await send_command(client, target, "resume", actor="bob", reason="looked")
    await wait_until(
        lambda: (router.current(target) or {}).get("percent") == 10, what="advance after resume"
    )
    await send_command(client, target, "rollback", actor="bob", reason="cleanup")


async def test_pausing_never_disarms_the_rollback_triggers(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    target = await _start(client, router, metrics, task_queue, canary="1h")
    await wait_until(lambda: (router.current(target) or {}).get("percent") == 10, what="canary")
    await send_command(client, target, "pause", actor="bob", reason="investigating")
    metrics.set("error_rate", 0.5)
    await wait_until(lambda: (router.current(target) or {}).get("mode") == "off", what="rollback")

    async def rolled_back() -> StatusResult | None:  # the router answers before the workflow
        status = await query_status(client, target)  # has read its answer
        return status if status.state.phase is Phase.ROLLED_BACK else None

    status = await wait_until(rolled_back, what="the rolled_back phase")
    assert status.state.rollback is not None
    assert status.state.rollback.actor == "trigger:error-rate"


async def test_manual_rollback_lands_and_later_commands_are_refused(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    target = await _start(client, router, metrics, task_queue, canary="1h")
    await wait_until(lambda: (router.current(target) or {}).get("percent") == 10, what="canary")

    with pytest.raises(CommandRefused, match="needs a reason"):
        await send_command(client, target, "rollback", actor="bob", reason="  ")
    with pytest.raises(CommandRefused, match="not paused"):
        await send_command(client, target, "resume", actor="bob", reason="why not")

    result = await send_command(client, target, "rollback", actor="bob", reason="bad vibes")
    assert result.message == "rolling back to the incumbent"
    await wait_until(lambda: (router.current(target) or {}).get("mode") == "off", what="rollback")
    final = router.current(target)
    assert final is not None
    assert final["incumbent"]["version"] == "41"

    async def ended() -> bool:
        return (await query_status(client, target)).state.phase is Phase.ROLLED_BACK

    await wait_until(ended, what="the rolled_back phase")
    handle = client.get_workflow_handle(workflow_id_for(target))
    await handle.result()
    await record_history(handle, "manual_rollback")
    status = await query_status(client, target)
    assert status.state.outcome == "rolled back to 41 by bob: bad vibes"
    with pytest.raises(CommandRefused, match="not running"):
        await send_command(client, target, "pause", actor="bob", reason="too late")
