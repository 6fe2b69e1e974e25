"""The holdback after promotion, on a real Temporal dev server and the real reference gateway.

After the last stage a share of units stays on the previous incumbent, still compared with the
candidate by a `compare` trigger. Monitoring is the scripted loopback Prometheus: each arm's
conversion counts are set by the test, so the comparison passes, or fails during the holdback.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from activities.contracts import Outcome
from rollout_specs import RolloutSpec
from runtime.rollouts import CommandRefused, query_status, send_command, submit_rollout
from tests.conftest import build_spec, spec_document
from tests.helpers.reviews import ReviewStack, review_stack, route_percent
from tests.helpers.servers import MetricsServer
from tests.helpers.waiting import wait_until
from workflows.state import AuditAction, Phase
from workflows.visibility import PERCENT, PHASE, STAGE

pytestmark = pytest.mark.usefixtures("worker")

HELD_BACK = 10
"""Percent of decisions kept on the incumbent during the holdback."""


@pytest.fixture
def stack() -> Iterator[ReviewStack]:
    """The gateway in front of policy servers 41 and 42 (no proposal is routed to humans)."""
    with review_stack() as running:
        yield running


def _conversions(metrics: MetricsServer, version: str, rate: float, n: int = 20_000) -> None:
    """The arm's conversions as monitoring will answer them: `n` decisions at `rate`."""
    metrics.set(f"conv_count_{version}", float(n))
    metrics.set(f"conv_total_{version}", float(round(n * rate)))


def _spec(stack: ReviewStack, metrics: MetricsServer, duration: str) -> RolloutSpec:
    """canary 50% then full 100%, then a holdback of HELD_BACK% for `duration`."""
    document: dict[str, Any] = spec_document(stack.gateway.control_url, metrics.url)
    body = document["spec"]
    body["incumbent"] = stack.incumbent
    body["candidate"] = stack.candidate
    body["stages"] = [
        {"name": "canary", "percent": 50, "min_duration": "1s"},
        {"name": "full", "percent": 100, "min_duration": "1s"},
    ]
    body["metrics"] = {
        "conv": {"count": "conv_count_{{version}}", "total": "conv_total_{{version}}"}
    }
    body["rollback_triggers"].append(
        {"name": "conversion", "compare": {"metric": "conv", "max_drop": 0.05}}
    )
    body["holdback"] = {"percent": HELD_BACK, "duration": duration}
    metrics.set("error_rate", 0.0)
    _conversions(metrics, "41", 0.5)
    _conversions(metrics, "42", 0.5)
    return build_spec(document)


async def _serving(stack: ReviewStack, target: str) -> tuple[str, str]:
    """The mode of the route the gateway holds for `target`, and its incumbent's version."""
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{stack.gateway.control_url}/v1/targets/{target}/route")
    route = response.json()
    return route["mode"], route["incumbent"]["version"]


async def _in_holdback(client: Client, stack: ReviewStack, target: str) -> None:
    async def holding_back() -> bool:
        status = await query_status(client, target)
        return status.state.phase is Phase.HOLDBACK and status.state.stage_routed

    await wait_until(holding_back, what="the holdback phase")
    assert await route_percent(stack.gateway, target) == 100 - HELD_BACK


async def test_a_holdback_that_stays_healthy_completes_after_its_duration(
    client: Client, stack: ReviewStack, metrics: MetricsServer, task_queue: str
) -> None:
    spec = _spec(stack, metrics, duration="4s")
    target = spec.spec.target
    handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
    await _in_holdback(client, stack, target)

    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(PHASE) == "holdback"
    assert attributes.get(STAGE) == "holdback"
    assert attributes.get(PERCENT) == 100.0 - HELD_BACK

    result = await handle.result()
    assert result.phase is Phase.COMPLETED
    status = await query_status(client, target)
    state = status.state
    assert [(s.name, s.outcome) for s in state.stages] == [
        ("canary", "advanced"),
        ("full", "advanced"),
        ("holdback", "advanced"),
    ]
    holdback = state.stages[-1]
    assert holdback.ended_at is not None
    assert holdback.ended_at - holdback.started_at >= timedelta(seconds=4)
    assert holdback.checks >= 1
    started = next(e for e in state.audit if e.stage == "holdback")
    assert started.action == AuditAction.STAGE_STARTED
    assert started.reason == (
        f"holdback: split {100 - HELD_BACK}% ({HELD_BACK}% of decisions stay on 41 for 4s, "
        "compared with 42)"
    )
    advance = [e for e in state.audit if e.action == AuditAction.ADVANCE]
    assert advance[-1].stage == "holdback"
    assert [e.action for e in state.audit][-1] == AuditAction.COMPLETED
    assert state.last_check is not None
    judged = {v.trigger: v.outcome for v in state.last_check.verdicts}
    assert judged == {"error-rate": Outcome.PASS, "conversion": Outcome.PASS}
    assert await _serving(stack, target) == ("off", "42")  # 42 is the incumbent for everyone


async def test_a_candidate_shown_worse_during_the_holdback_is_reverted(
    client: Client, stack: ReviewStack, metrics: MetricsServer, task_queue: str
) -> None:
    spec = _spec(stack, metrics, duration="1h")
    target = spec.spec.target
    handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
    await _in_holdback(client, stack, target)

    _conversions(metrics, "42", 0.3)  # the new version converts far worse than the held-back one
    result = await handle.result()

    assert result.phase is Phase.ROLLED_BACK
    assert result.outcome.startswith("rolled back to 41 by trigger:conversion: the holdback")
    assert await _serving(stack, target) == ("off", "41")  # everyone is back on 41
    status = await query_status(client, target)
    state = status.state
    assert (state.stages[-1].name, state.stages[-1].outcome) == ("holdback", "rolled_back")
    rollback = next(e for e in state.audit if e.action == AuditAction.ROLLBACK)
    assert rollback.actor == "trigger:conversion"
    assert rollback.stage == "holdback"
    assert rollback.reason.startswith("the holdback reverts to 41: trigger conversion failed")
    assert rollback.evidence is not None
    assert (rollback.evidence.trigger, rollback.evidence.outcome) == ("conversion", Outcome.FAIL)
    assert [e.action for e in state.audit][-1] == AuditAction.ROLLBACK_LANDED


async def test_promote_ends_the_holdback_early_and_pause_holds_it(
    client: Client, stack: ReviewStack, metrics: MetricsServer, task_queue: str
) -> None:
    spec = _spec(stack, metrics, duration="1h")
    target = spec.spec.target
    handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
    await _in_holdback(client, stack, target)

    paused = await send_command(client, target, "pause", actor="bob", reason="look first")
    assert paused.phase is Phase.PAUSED
    with pytest.raises(CommandRefused, match="resume it before promoting"):
        await send_command(client, target, "promote", actor="bob", reason="enough")
    resumed = await send_command(client, target, "resume", actor="bob", reason="looked")
    assert resumed.phase is Phase.HOLDBACK

    promoted = await send_command(client, target, "promote", actor="carol", reason="seen enough")
    assert promoted.message == "the holdback ends now; 42 becomes the incumbent"
    result = await handle.result()

    assert result.phase is Phase.COMPLETED
    assert await _serving(stack, target) == ("off", "42")
    state = (await query_status(client, target)).state
    assert (state.stages[-1].name, state.stages[-1].outcome) == ("holdback", "promoted")
    promote = next(e for e in state.audit if e.action == AuditAction.PROMOTE)
    assert (promote.actor, promote.reason, promote.stage) == ("carol", "seen enough", "holdback")
    assert not [e for e in state.audit if e.action == AuditAction.ROLLBACK]


async def test_missing_data_in_the_holdback_holds_then_escalates_and_rollback_reverts(
    client: Client, stack: ReviewStack, metrics: MetricsServer, task_queue: str
) -> None:
    spec = _spec(stack, metrics, duration="1h")
    target = spec.spec.target
    handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
    await _in_holdback(client, stack, target)

    metrics.set("conv_count_41", None)  # the held-back arm's data goes missing

    async def escalated() -> bool:
        status = await query_status(client, target)
        return status.state.phase is Phase.ESCALATED

    await wait_until(escalated, what="escalation after missing_data_limit checks")
    state = (await query_status(client, target)).state
    assert state.escalation is not None
    assert state.escalation.startswith("no evidence for 3 consecutive checks")
    assert (state.stages[-1].name, state.stages[-1].outcome) == ("holdback", None)
    held = [e for e in state.audit if e.action == AuditAction.ESCALATED]
    assert [e.stage for e in held] == ["holdback"]
    assert await route_percent(stack.gateway, target) == 100 - HELD_BACK

    await send_command(client, target, "rollback", actor="bob", reason="no data, no trust")
    result = await handle.result()
    assert result.phase is Phase.ROLLED_BACK
    assert result.outcome == "rolled back to 41 by bob: no data, no trust"
    assert await _serving(stack, target) == ("off", "41")
