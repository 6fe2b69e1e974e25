"""Reviews end to end in the workflow: the real gateway queues proposals, humans judge them.

A real Temporal dev server, the real worker, the real reference gateway with two real policy
servers: the candidate always proposes `refund_full`, an action only a human may let through,
so the gateway serves the incumbent's decision and queues the candidate's. Reviewers list and
judge the proposals through the workflow (never the router directly); the canary stage waits for
its min_reviews before it advances.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from temporalio.client import Client

from activities.contracts import ReviewCounts
from activities.reviews import Verdict
from rollout_specs import workflow_id_for
from runtime.rollouts import (
    CommandRefused,
    list_reviews,
    query_status,
    send_command,
    send_review,
    submit_rollout,
)
from tests.conftest import build_spec, record_history
from tests.helpers.reviews import (
    ReviewStack,
    decide,
    review_spec_document,
    review_stack,
    route_percent,
)
from tests.helpers.servers import MetricsServer
from tests.helpers.waiting import wait_until
from workflows.state import AuditAction, Phase

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def stack() -> Iterator[ReviewStack]:
    with review_stack() as running:
        yield running


async def test_verdicts_are_audited_counted_and_gate_the_stage(
    client: Client, stack: ReviewStack, metrics: MetricsServer, task_queue: str
) -> None:
    gateway = stack.gateway
    metrics.set("error_rate", 0.0)
    spec = build_spec(review_spec_document(stack, metrics.url))
    target = spec.spec.target
    await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)

    async def canary_routed() -> bool:
        return await route_percent(gateway, target) == 50

    await wait_until(canary_routed, what="the canary route at the gateway")
    proposed = await decide(gateway, target, units=40)
    assert len(proposed) >= 4, "half the units go to the candidate, which always proposes"

    listed = await list_reviews(client, target, actor="bob", limit=3)
    assert [p.id for p in listed.pending] == proposed[:3]  # oldest first, at most the limit
    first = listed.pending[0]
    assert (first.action, first.version, first.context) == ("refund_full", "42", {"basket": 1.0})
    assert (listed.stage, listed.stage_reviews, listed.min_reviews) == ("canary", 0, 2)

    approved = await send_review(
        client, target, proposal_id=proposed[0], verdict=Verdict.APPROVE, actor="bob"
    )
    assert approved.message == (
        f"approved proposal {proposed[0]}; 1 approved, 0 rejected; stage canary: 1 of 2 "
        "proposals reviewed"
    )
    with pytest.raises(CommandRefused, match="already reviewed: approve by bob"):
        await send_review(
            client, target, proposal_id=proposed[0], verdict=Verdict.REJECT, actor="carol",
            reason="no refunds",
        )  # fmt: skip
    with pytest.raises(CommandRefused, match="no proposal 'nope' is waiting"):
        await send_review(client, target, proposal_id="nope", verdict=Verdict.APPROVE, actor="bob")
    with pytest.raises(CommandRefused, match="a rejection needs a reason"):
        await send_review(
            client, target, proposal_id=proposed[1], verdict=Verdict.REJECT, actor="x"
        )

    # Every trigger passes and the 1s bake is long over, yet one review is missing: it waits.
    async def baked_and_checked() -> bool:
        status = await query_status(client, target)
        return status.state.stage_index > 0 or status.state.stages[0].checks >= 4

    await wait_until(baked_and_checked, what="checks while a review is missing")
    status = await query_status(client, target)
    assert (status.state.stage_index, status.state.phase) == (0, Phase.RUNNING)
    assert await route_percent(gateway, target) == 50

    rejected = await send_review(
        client, target, proposal_id=proposed[1], verdict=Verdict.REJECT, actor="carol",
        reason="refund larger than the basket",
    )  # fmt: skip
    assert rejected.message.startswith(f"rejected proposal {proposed[1]}; 1 approved, 1 rejected")

    handle = client.get_workflow_handle(workflow_id_for(target))
    await handle.result()
    await record_history(handle, "reviews_gate_a_stage")
    status = await query_status(client, target)
    state = status.state
    assert state.phase is Phase.COMPLETED
    assert state.reviews == ReviewCounts(approved=1, rejected=1)
    assert [(record.name, record.reviews) for record in state.stages] == [
        ("canary", 2),
        ("full", 0),
    ]
    reviews = [(e.actor, e.reason) for e in state.audit if e.action == AuditAction.REVIEW]
    assert reviews == [
        ("bob", f"approve proposal {proposed[0]}: refund_full for unit {first.unit_id} "
                "(version 42)"),
        ("carol", f"reject proposal {proposed[1]}: refund_full for unit "
                  f"{listed.pending[1].unit_id} (version 42): refund larger than the basket"),
    ]  # fmt: skip
    advance = next(e for e in state.audit if e.action == AuditAction.ADVANCE)
    assert advance.stage == "canary"
    # The router's refusals (409, 404) were answered at once, never retried.
    assert await _review_attempts(client, target) == [1, 1, 1, 1]


async def _review_attempts(client: Client, target: str) -> list[int]:
    """The attempt count of every record_review activity in the rollout's history, in order."""
    handle = client.get_workflow_handle(workflow_id_for(target))
    reviews: set[int] = set()
    attempts = []
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            scheduled = event.activity_task_scheduled_event_attributes
            if scheduled.activity_type.name == "record_review":
                reviews.add(event.event_id)
        elif event.HasField("activity_task_started_event_attributes"):
            started = event.activity_task_started_event_attributes
            if started.scheduled_event_id in reviews:
                attempts.append(started.attempt)
    return attempts


async def test_a_rollout_without_reviewed_actions_refuses_to_list(
    client: Client, stack: ReviewStack, metrics: MetricsServer, task_queue: str
) -> None:
    metrics.set("error_rate", 0.0)
    document = review_spec_document(stack, metrics.url)
    document["spec"]["guardrails"] = {}
    del document["spec"]["stages"][0]["min_reviews"]
    document["spec"]["stages"][0]["min_duration"] = "1h"
    spec = build_spec(document)
    target = spec.spec.target
    await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
    with pytest.raises(CommandRefused, match="routes no action to reviewers"):
        await list_reviews(client, target, actor="bob")
    with pytest.raises(CommandRefused, match="routes no action to reviewers"):
        await send_review(client, target, proposal_id="p1", verdict=Verdict.APPROVE, actor="bob")
    await send_command(client, target, "rollback", actor="bob", reason="done")
    await client.get_workflow_handle(workflow_id_for(target)).result()


async def test_a_router_that_cannot_be_reached_is_asked_a_few_times_then_refused(
    client: Client, stack: ReviewStack, metrics: MetricsServer, task_queue: str
) -> None:
    metrics.set("error_rate", 0.0)
    document = review_spec_document(stack, metrics.url)
    document["spec"]["router"]["timeout"] = "1s"
    spec = build_spec(document)
    target = spec.spec.target
    await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)

    async def canary_routed() -> bool:
        return await route_percent(stack.gateway, target) == 50

    await wait_until(canary_routed, what="the canary route at the gateway")
    control_url = stack.gateway.control_url
    stack.gateway.stop()  # connections are refused from now on
    with pytest.raises(CommandRefused) as refused:
        await list_reviews(client, target, actor="bob")
    assert str(refused.value).startswith(
        "the router's proposals could not be read: RouterUnavailable: router at "
        f"{control_url}/v1/targets/{target}/reviews could not be reached"
    )
    with pytest.raises(CommandRefused, match="the verdict was not recorded: RouterUnavailable"):
        await send_review(client, target, proposal_id="p1", verdict=Verdict.APPROVE, actor="bob")
    handle = client.get_workflow_handle(workflow_id_for(target))
    attempts = [
        event.activity_task_started_event_attributes.attempt
        async for event in handle.fetch_history_events()
        if event.HasField("activity_task_started_event_attributes")
    ]
    # The route's and the checks' activities took one attempt each; each review activity three.
    assert sorted(attempts)[-2:] == [3, 3]
    assert max(attempts) == 3
    status = await query_status(client, target)
    assert status.state.reviews == ReviewCounts()
    assert not [e for e in status.state.audit if e.action == AuditAction.REVIEW]
    await send_command(client, target, "rollback", actor="bob", reason="router gone")
    await send_command(client, target, "abandon", actor="bob", reason="router gone for good")
    await handle.result()
