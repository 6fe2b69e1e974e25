"""A check runs inside its workflow task while monitoring answers within QUICK_CHECK; slow
monitoring moves it to an activity, whose verdicts are the real ones, not `error` for the
slowness, and the following checks stay activities (which a rollback cancels at once) before
they move back."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle

from activities.contracts import Outcome
from runtime.rollouts import query_status, send_command, submit_rollout
from tests.conftest import build_spec, long_stage_document, record_history, spec_document
from tests.helpers.history import check_kind
from tests.helpers.servers import MetricsServer, RouterServer
from tests.helpers.waiting import wait_until
from workflows.messages import StatusResult
from workflows.rollout import QUICK_CHECK, SLOW_MONITORING_CHECKS
from workflows.state import AuditAction, Phase

pytestmark = pytest.mark.usefixtures("worker")

SLOW_ANSWER = QUICK_CHECK.total_seconds() * 3
"""How long slow monitoring takes here: past a quick check, well within the monitoring timeout."""


async def _check_kinds(client: Client, workflow_id: str) -> list[str]:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return [kind for event in history.events if (kind := check_kind(event)) is not None]


async def test_slow_monitoring_moves_checks_to_activities_then_back_and_its_verdicts_count(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    metrics.set("error_rate", 0.0)
    spec = build_spec(long_stage_document(router.url, metrics.url))
    target = spec.spec.target
    handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
    await wait_until(
        lambda: _has(client, spec.workflow_id, "quick"), what="a check in the workflow task"
    )

    metrics.slow_seconds = SLOW_ANSWER
    metrics.set("error_rate", "slow")
    await wait_until(
        lambda: _has(client, spec.workflow_id, "activity"), what="a check moved to an activity"
    )
    metrics.set("error_rate", 0.0)

    async def back_in_the_task() -> list[str] | None:
        kinds = await _check_kinds(client, spec.workflow_id)
        moved = kinds.index("activity")
        return kinds if "quick" in kinds[moved:] else None

    kinds = await wait_until(back_in_the_task, timeout=60.0, what="checks back in the task")
    moved = kinds.index("activity")
    assert kinds[moved - 1] == "quick-failed", "the quick check gave up before the activity ran"
    following = kinds[moved + 1 : moved + 1 + SLOW_MONITORING_CHECKS]
    assert following == ["activity"] * SLOW_MONITORING_CHECKS, (
        f"after slow monitoring the next checks run as activities: {kinds}"
    )

    status = await query_status(client, target)
    assert status.state.no_evidence_streak == 0, "slow monitoring was never counted as missing"
    assert status.state.last_check is not None
    assert [v.outcome for v in status.state.last_check.verdicts] == [Outcome.PASS]
    await send_command(client, target, "rollback", actor="alice", reason="test over")
    await handle.result()
    await record_history(handle, "quick_check_fell_back")


async def _has(client: Client, workflow_id: str, kind: str) -> bool:
    return kind in await _check_kinds(client, workflow_id)


async def _advancing_canary_mid_check(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> tuple[str, WorkflowHandle[Any, Any]]:
    """A canary whose first check advances it (its 1 s bake is done by then), submitted and
    caught in that check, on monitoring slow enough to be caught mid-check yet within the
    check's 0.5 s in its workflow task: the target and the rollout's handle."""
    document = spec_document(router.url, metrics.url)
    document["spec"]["stages"] = [
        {"name": "canary", "percent": 10, "min_duration": "1s"},
        {"name": "full", "percent": 100, "min_duration": "1h"},
    ]
    metrics.slow_seconds = QUICK_CHECK.total_seconds() * 0.8
    metrics.set("error_rate", "slow")
    spec = build_spec(document)
    handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
    await wait_until(lambda: metrics.queries, what="the canary's first check")
    return spec.spec.target, handle


def _never_advanced(status: StatusResult, router: RouterServer) -> None:
    assert [stage.name for stage in status.state.stages] == ["canary"]
    assert AuditAction.ADVANCE not in [entry.action for entry in status.state.audit]
    assert [route["mode"] for route in router.history if route["mode"] == "split"] == ["split"]


async def test_a_rollback_requested_while_a_check_holds_its_task_wins_over_its_verdict(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    # The rollback arrives while the advancing check runs inside its workflow task, where
    # nothing can cancel it: the rollback must still win, with no route for the next stage.
    target, handle = await _advancing_canary_mid_check(client, router, metrics, task_queue)

    await send_command(client, target, "rollback", actor="bob", reason="pager")
    await handle.result()

    status = await query_status(client, target)
    _never_advanced(status, router)
    assert status.state.rollback is not None
    assert status.state.rollback.actor == "bob"
    await record_history(handle, "rollback_during_quick_check")


async def test_a_pause_sent_while_a_check_holds_its_task_keeps_the_stage(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    target, handle = await _advancing_canary_mid_check(client, router, metrics, task_queue)

    await send_command(client, target, "pause", actor="bob", reason="looking at a ticket")

    status = await query_status(client, target)
    assert status.state.phase is Phase.PAUSED
    assert status.state.paused_by is not None
    assert status.state.paused_by.actor == "bob"
    _never_advanced(status, router)
    await send_command(client, target, "rollback", actor="bob", reason="test over")
    await handle.result()
