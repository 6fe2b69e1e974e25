"""A rollout's bake never reads the workflow task's clock, so a stale clock cannot split replay.

With the Temporal Python SDK 1.35, a worker that first meets a rollout through a query (a status
read while it takes the rollout over from a dead worker) runs its next workflow task with the
previous task's time: `workflow.now()` reads seconds stale there, and only there, while every
later replay reads the right time. Reproduced with a bare workflow: killed workers, a status
reader, then a replay of the history, found 3 and 6.6 s apart. A bake judged on that clock could
advance live and hold on replay, and the rollout would stop on a nondeterminism error at the
next worker restart.

So the test records a whole rollout, then replays its history once for every workflow task with
that one task's clock moved CLOCK_SLIP seconds early and once late, the other events untouched:
each replay must issue exactly the commands the live run issued.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Final

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from runtime.rollouts import query_status, send_command, submit_rollout
from tests.conftest import build_spec, record_history, spec_document
from tests.helpers.servers import MetricsServer, RouterServer
from tests.helpers.waiting import wait_until
from worker import workflow_runner
from workflows.messages import RolloutResult
from workflows.rollout import RolloutWorkflow
from workflows.state import Phase

pytestmark = pytest.mark.usefixtures("worker")

CLOCK_SLIP: Final = timedelta(seconds=5)
"""How far one task's clock is moved: past the 2 s sticky timeout and 3 s heartbeat a takeover
waits out, so past the gaps measured."""

Scenario = Callable[
    [Client, RouterServer, MetricsServer, str],
    Awaitable[WorkflowHandle[RolloutWorkflow, RolloutResult]],
]


def _slipped(history: WorkflowHistory, event_id: int, slip: timedelta) -> WorkflowHistory:
    """The history with one workflow task's start time moved by `slip`."""
    copy = History()
    copy.events.extend(history.events)
    event = next(e for e in copy.events if e.event_id == event_id)
    moved = event.event_time.ToDatetime() + slip
    event.event_time.FromDatetime(moved)
    return WorkflowHistory(history.workflow_id, list(copy.events))


async def _baked_through(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> WorkflowHandle[RolloutWorkflow, RolloutResult]:
    """Every stage bakes on passing checks and advances: the decisions are the bakes' ends."""
    document = spec_document(router.url, metrics.url)
    for stage, bake in zip(document["spec"]["stages"], ["3s", "2s", "2s", "1s"], strict=True):
        stage["min_duration"] = bake
    handle = await submit_rollout(
        client, build_spec(document), submitted_by="alice", task_queue=task_queue
    )
    result = await handle.result()
    assert result.phase is Phase.COMPLETED, result.outcome
    await record_history(handle, "bake_measured_on_evidence")
    return handle


async def _approved_late_then_tripped(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> WorkflowHandle[RolloutWorkflow, RolloutResult]:
    """An approval times out and escalates, a late approval moves the canary, a trigger trips."""
    document = spec_document(router.url, metrics.url)
    document["spec"]["stages"][1]["approval"] = {"approvers": ["bob"], "timeout": "2s"}
    document["spec"]["stages"][1]["min_duration"] = "1h"
    spec = build_spec(document)
    target = spec.spec.target
    handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)

    async def escalated() -> bool:
        return (await query_status(client, target)).state.phase is Phase.ESCALATED

    await wait_until(escalated, what="the approval timeout to escalate")
    await send_command(client, target, "approve", actor="bob", reason="back from lunch")
    await wait_until(
        lambda: (router.current(target) or {}).get("percent") == 10, what="the late approval"
    )
    metrics.set("error_rate", 0.5)
    result = await handle.result()
    assert result.phase is Phase.ROLLED_BACK, result.outcome
    return handle


@pytest.mark.parametrize("run", [_baked_through, _approved_late_then_tripped])
async def test_no_decision_moves_with_one_tasks_clock(
    run: Scenario, client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    metrics.set("error_rate", 0.0)
    handle = await run(client, router, metrics, task_queue)
    history = await handle.fetch_history()

    replayer = Replayer(
        workflows=[RolloutWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )
    tasks = [
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
    ]
    assert len(tasks) >= 8, "the rollout ran checks in several stages"
    diverged = []
    for event_id in tasks:
        for slip in (-CLOCK_SLIP, CLOCK_SLIP):
            replayed = await replayer.replay_workflow(
                _slipped(history, event_id, slip), raise_on_replay_failure=False
            )
            if replayed.replay_failure is not None:
                diverged.append(
                    f"task started at event {event_id}, clock {slip}: {replayed.replay_failure!r}"
                )
    assert not diverged, "\n".join(diverged)
