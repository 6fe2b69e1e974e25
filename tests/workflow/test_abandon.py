"""`abandon`: the last resort for a stuck rollout ends it cleanly, and only when it is stuck.

A rollout whose route cannot land (a router that hangs or is gone) waits forever by design; the
abandon update stops it wherever it waits, cancels the activity in flight, records who and why,
and ends it in `abandoned` without sending any route. The run's history replays.
"""

from __future__ import annotations

import logging

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from activities.contracts import APPLY_ROUTE
from runtime.rollouts import (
    CommandRefused,
    pending_activities,
    query_status,
    send_command,
    submit_rollout,
)
from tests.conftest import build_spec, spec_document
from tests.helpers.servers import MetricsServer, RouterServer
from tests.helpers.waiting import wait_until
from worker import workflow_runner
from workflows.messages import RolloutResult
from workflows.rollout import RolloutWorkflow
from workflows.state import Phase

pytestmark = pytest.mark.usefixtures("worker")


async def _start(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str, shadow: str
) -> tuple[str, WorkflowHandle[RolloutWorkflow, RolloutResult]]:
    metrics.set("error_rate", 0.0)
    document = spec_document(router.url, metrics.url)
    document["spec"]["stages"][0]["min_duration"] = shadow
    spec = build_spec(document)
    handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
    return spec.spec.target, handle


async def _replays(handle: WorkflowHandle[RolloutWorkflow, RolloutResult]) -> None:
    replayer = Replayer(
        workflows=[RolloutWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )
    result = await replayer.replay_workflow(await handle.fetch_history())
    assert result.replay_failure is None


async def test_abandon_cancels_a_hung_rollback_and_ends_abandoned(
    client: Client,
    router: RouterServer,
    metrics: MetricsServer,
    task_queue: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="temporalio.activity")
    target, handle = await _start(client, router, metrics, task_queue, shadow="1h")
    await wait_until(lambda: router.current(target), what="the shadow route")
    router.hang_puts("off")  # the rollback's PUT never gets an answer
    await send_command(client, target, "rollback", actor="bob", reason="bad numbers")

    async def hung_route() -> bool:
        pending = pending_activities(await handle.describe())
        return any(p.activity == APPLY_ROUTE and p.state == "started" for p in pending)

    await wait_until(hung_route, what="the rollback's route in flight")
    with pytest.raises(CommandRefused, match="say why"):
        await send_command(client, target, "abandon", actor="carol", reason=" ")
    done = await send_command(client, target, "abandon", actor="carol", reason="router is wedged")
    assert done.message.startswith("abandoned;")

    result = await handle.result()
    assert result.phase is Phase.ABANDONED
    assert result.outcome.startswith("abandoned by carol: router is wedged"), result.outcome
    state = (await query_status(client, target)).state
    assert state.phase is Phase.ABANDONED
    assert state.escalation is None
    assert state.stages[-1].outcome == "abandoned"
    actions = [(e.actor, e.action) for e in state.audit]
    assert actions[-3:] == [("bob", "rollback"), ("carol", "abandon"), ("lockgate", "ended")]
    assert [r["mode"] for r in router.history] == ["shadow"], "abandon sends no route"
    assert any(
        r.getMessage().startswith("Completing as cancelled") and "apply_route" in r.getMessage()
        for r in caplog.records
    ), "the hung route's activity heard the cancel before the workflow ended"
    await _replays(handle)

    with pytest.raises(CommandRefused, match="not running"):
        await send_command(client, target, "abandon", actor="carol", reason="again", force=True)


async def test_abandon_ends_a_promotion_that_cannot_land(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    target, handle = await _start(client, router, metrics, task_queue, shadow="1s")
    router.hang_puts("off")  # the final route (the candidate as incumbent) never lands

    async def landing() -> bool:
        state = (await query_status(client, target)).state
        return state.phase is Phase.PROMOTING and state.landing_since is not None

    await wait_until(landing, timeout=60, what="the promotion's landing loop")
    await send_command(client, target, "abandon", actor="carol", reason="router rebuilt by hand")
    result = await handle.result()
    assert result.phase is Phase.ABANDONED
    assert "gave the candidate 100%" in result.outcome, result.outcome
    await _replays(handle)


async def test_abandon_refuses_a_healthy_rollout_unless_forced(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    target, handle = await _start(client, router, metrics, task_queue, shadow="1h")
    await wait_until(lambda: router.current(target), what="the shadow route")
    with pytest.raises(CommandRefused, match="the rollout is not stuck"):
        await send_command(client, target, "abandon", actor="carol", reason="changed my mind")
    with pytest.raises(ValueError, match="only abandon takes force"):
        await send_command(client, target, "pause", actor="carol", reason="x", force=True)

    forced = await send_command(
        client, target, "abandon", actor="carol", reason="wrong spec", force=True
    )
    assert forced.message.startswith("abandoned (forced);")
    result = await handle.result()
    assert result.phase is Phase.ABANDONED
    state = (await query_status(client, target)).state
    assert ("carol", "abandon") in [(e.actor, e.action) for e in state.audit]
    assert result.outcome.startswith("abandoned (forced) by carol: wrong spec"), result.outcome
    await _replays(handle)
