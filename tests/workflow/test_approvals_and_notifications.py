"""Approval gates (four eyes, approver lists, timeouts) and webhook notifications."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from temporalio.client import Client

from rollout_specs import workflow_id_for
from runtime.rollouts import CommandRefused, query_status, send_command, submit_rollout
from tests.conftest import build_spec, record_history, spec_document
from tests.helpers.servers import MetricsServer, RouterServer, WebhookServer
from tests.helpers.waiting import wait_until
from workflows.state import Phase

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    with WebhookServer() as server:
        yield server


def _document(
    router: RouterServer, metrics: MetricsServer, approval: dict[str, Any] | None = None
) -> dict[str, Any]:
    metrics.set("error_rate", 0.0)
    document = spec_document(router.url, metrics.url)
    if approval is not None:
        document["spec"]["stages"][1]["approval"] = approval
    return document


async def _phase(client: Client, target: str) -> Phase:
    return (await query_status(client, target)).state.phase


async def test_a_stage_waits_for_an_approver_who_is_not_the_submitter(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    document = _document(
        router, metrics, {"approvers": ["alice", "bob", "carol"], "required": 2, "timeout": "1h"}
    )
    spec = build_spec(document)
    target = spec.spec.target
    await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)

    async def awaiting() -> bool:
        return await _phase(client, target) is Phase.AWAITING_APPROVAL

    await wait_until(awaiting, what="the canary stage to await approval")
    # The UI's list filter finds it by phase (visibility is eventually consistent).
    query = f'LockgateTarget = "{target}" AND LockgatePhase = "awaiting_approval"'

    async def listed() -> bool:
        return any([w async for w in client.list_workflows(query)])

    await wait_until(listed, what="the rollout listed as awaiting_approval")
    assert [r["mode"] for r in router.history] == ["shadow"], "no traffic moves before approval"

    with pytest.raises(CommandRefused, match="four eyes: alice submitted this rollout"):
        await send_command(client, target, "approve", actor="alice", reason="lgtm")
    with pytest.raises(CommandRefused, match="dave is not an approver of stage canary"):
        await send_command(client, target, "approve", actor="dave", reason="lgtm")
    first = await send_command(client, target, "approve", actor="bob", reason="numbers fine")
    assert "needs 1 more approval" in first.message
    with pytest.raises(CommandRefused, match="bob has already approved stage canary"):
        await send_command(client, target, "approve", actor="bob", reason="again")
    assert [r["mode"] for r in router.history] == ["shadow"], "one approval of two moves nothing"

    await send_command(client, target, "approve", actor="carol", reason="agreed")
    await wait_until(
        lambda: (router.current(target) or {}).get("percent") == 10, what="the approved canary"
    )
    status = await query_status(client, target)
    assert status.state.stages[1].approved_by == ["bob", "carol"]
    trail = [(e.actor, e.action) for e in status.state.audit]
    assert ("lockgate", "approval_needed") in trail
    assert trail.index(("bob", "approve")) < trail.index(("carol", "approve"))
    with pytest.raises(CommandRefused, match="nothing awaits approval"):
        await send_command(client, target, "approve", actor="bob", reason="late")
    await send_command(client, target, "rollback", actor="bob", reason="cleanup")
    handle = client.get_workflow_handle(workflow_id_for(target))
    await handle.result()
    await record_history(handle, "approved_by_two_then_rolled_back")


async def test_an_unapproved_stage_rolls_back_at_its_timeout_when_told_to(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    document = _document(
        router, metrics, {"approvers": ["bob"], "timeout": "3s", "on_timeout": "rollback"}
    )
    spec = build_spec(document)
    target = spec.spec.target
    await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
    handle = client.get_workflow_handle(workflow_id_for(target))
    await handle.result()
    status = await query_status(client, target)
    assert status.state.phase is Phase.ROLLED_BACK
    assert status.state.rollback is not None
    assert "got 0 of 1 approval(s) within 3s" in status.state.rollback.reason
    assert [r["mode"] for r in router.history] == ["shadow", "off"]
    await record_history(handle, "approval_timeout_rollback")


async def test_an_unapproved_stage_holds_for_a_human_at_its_timeout_by_default(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    spec = build_spec(_document(router, metrics, {"approvers": ["bob"], "timeout": "2s"}))
    target = spec.spec.target
    await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)

    async def escalated() -> bool:
        return await _phase(client, target) is Phase.ESCALATED

    await wait_until(escalated, what="the approval timeout to escalate")
    status = await query_status(client, target)
    assert status.state.escalation is not None
    assert "still waiting for approvals" in status.state.escalation
    # A late approval still counts: holding means waiting, not giving up.
    await send_command(client, target, "approve", actor="bob", reason="back from lunch")
    await wait_until(
        lambda: (router.current(target) or {}).get("percent") == 10, what="the late approval"
    )
    await send_command(client, target, "rollback", actor="bob", reason="cleanup")


async def test_webhooks_hear_each_event_and_a_broken_one_never_delays_a_rollback(
    client: Client,
    router: RouterServer,
    metrics: MetricsServer,
    webhook: WebhookServer,
    task_queue: str,
) -> None:
    document = _document(router, metrics)
    document["spec"]["stages"][1]["min_duration"] = "1h"
    with WebhookServer() as broken:
        broken.refuse_next(10_000, status=500)
        document["spec"]["notify"] = [
            {"type": "webhook", "url": f"{webhook.url}/hooks/lockgate"},
            {"type": "webhook", "url": broken.url, "events": ["rolled_back", "paused"]},
        ]
        spec = build_spec(document)
        target = spec.spec.target
        await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
        await wait_until(
            lambda: (router.current(target) or {}).get("percent") == 10, what="the canary"
        )
        await send_command(client, target, "pause", actor="bob", reason="look closer")
        await wait_until(lambda: "paused" in webhook.events(), what="the paused notification")
        await wait_until(lambda: broken.refused >= 1, what="a refused delivery to the broken hook")

        metrics.set("error_rate", 0.5)
        await wait_until(
            lambda: (router.current(target) or {}).get("mode") == "off",
            timeout=15,
            what="the rollback, while a webhook keeps failing",
        )
        await wait_until(
            lambda: "rolled_back" in webhook.events(), what="the rolled_back notification"
        )

    events = webhook.events()
    assert events[:2] == ["stage_started", "stage_started"]  # shadow, then canary
    assert events.index("paused") < events.index("rolled_back")
    rolled_back = webhook.received[events.index("rolled_back")]
    assert rolled_back["target"] == target
    assert rolled_back["phase"] == "rolled_back"
    assert "rolled back to 41 by trigger:error-rate" in rolled_back["text"]
    status = await query_status(client, target)
    rollback = next(e for e in status.state.audit if e.action == "rollback")
    assert rollback.evidence is not None, "an automatic rollback keeps the verdict behind it"
    assert rollback.evidence.trigger == "error-rate"
    assert rollback.evidence.value == 0.5
