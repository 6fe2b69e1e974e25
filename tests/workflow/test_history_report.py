"""Audit trail and report of real rollouts, read back from a real Temporal server's history."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.registry import BackendRegistry
from runtime.history import RolloutRecord, fetch_audit_trail, fetch_record
from runtime.report import render_report
from runtime.rollouts import send_command, submit_rollout
from tests.conftest import ARTIFACTS, build_spec, spec_document
from tests.helpers.servers import MetricsServer, RouterServer
from tests.helpers.waiting import wait_until
from worker import build_worker, http_client
from workflows.state import Phase

REPORTS = ARTIFACTS / "reports"


def _write_report(record: RolloutRecord, name: str) -> str:
    page = render_report(record, generated_at=datetime.now(UTC))
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / f"{name}.html").write_text(page, encoding="utf-8")
    return page


def _assert_checks_match_the_state(record: RolloutRecord) -> None:
    state = record.state
    assert len(record.checks) == state.checks_total, "every counted check is in the history"
    for stage in state.stages:
        found = [c for c in record.checks if c.stage == stage.name]
        assert len(found) == stage.checks, f"stage {stage.name}: history vs state"
    times = [c.result.checked_at for c in record.checks]
    assert times == sorted(times)
    assert state.last_check is not None
    assert record.checks[-1].result == state.last_check


async def test_a_trigger_rollback_is_reported_from_the_history(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str, worker: None
) -> None:
    metrics.set("error_rate", 0.0)
    document = spec_document(router.url, metrics.url)
    document["spec"]["stages"][2]["min_duration"] = "1h"
    spec = build_spec(document)
    target = spec.spec.target
    handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
    await wait_until(lambda: (router.current(target) or {}).get("percent") == 50, what="half")
    await send_command(client, target, "pause", actor="bob", reason="<hold> & look")
    metrics.set("error_rate", 0.2)
    result = await handle.result()
    assert result.phase is Phase.ROLLED_BACK

    record = await fetch_record(client, target)
    assert record.complete
    assert record.notes == []
    assert record.status == "completed"
    assert record.run_ids == [handle.result_run_id]
    _assert_checks_match_the_state(record)
    assert [s.name for s in record.state.stages] == ["shadow", "canary", "half"]
    tripped = record.checks[-1].result.verdicts[0]
    assert (tripped.trigger, tripped.outcome.value, tripped.value) == ("error-rate", "fail", 0.2)
    rollback = record.state.rollback
    assert rollback is not None
    assert rollback.actor == "trigger:error-rate"
    assert rollback.at >= record.checks[-1].result.checked_at

    page = _write_report(record, "trigger_rollback")
    assert page.count("<svg") == 1
    figure = re.search(r'<figure id="trigger-error-rate".*?</figure>', page, re.S)
    assert figure is not None
    assert "rollback (trigger:error-rate)" in figure.group(0), "the rollback moment is marked"
    for stage in ("shadow", "canary", "half"):
        assert f" {stage}</text>" in figure.group(0)
    assert "&lt;hold&gt; &amp; look" in page

    trail = await fetch_audit_trail(client, target)
    assert trail.complete
    assert trail.entries == record.state.audit
    who = [(e.actor, e.action) for e in trail.entries]
    assert who[0] == ("alice", "submitted")
    assert ("bob", "pause") in who
    assert ("trigger:error-rate", "rollback") in who
    assert who[-1] == ("lockgate", "rollback_landed")


async def test_without_a_worker_the_trail_is_rebuilt_from_history_and_says_so(
    client: Client, router: RouterServer, metrics: MetricsServer
) -> None:
    metrics.set("error_rate", 0.0)
    document = spec_document(router.url, metrics.url)
    document["spec"]["stages"][0]["min_duration"] = "1h"
    spec = build_spec(document)
    target = spec.spec.target
    queue = f"q-{uuid.uuid4().hex[:8]}"
    async with http_client() as http, build_worker(client, queue, BackendRegistry(http)):
        handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=queue)
        await wait_until(lambda: router.current(target), what="the shadow route")
        await send_command(client, target, "pause", actor="bob", reason="look")
        await send_command(client, target, "rollback", actor="carol", reason="enough")
        await handle.result()
        live = await fetch_record(client, target)
    # The worker is gone: the status query cannot be answered any more.

    trail = await fetch_audit_trail(client, target)
    assert not trail.complete
    assert "no worker answered the status query" in trail.notes[0]
    assert [(e.actor, e.action) for e in trail.entries] == [
        ("alice", "submitted"),
        ("bob", "pause"),
        ("carol", "rollback"),
    ]
    assert trail.phase == "rolled_back"
    assert trail.outcome == "rolled back to 41 by carol: enough"

    rebuilt = await fetch_record(client, target)
    assert not rebuilt.complete
    assert rebuilt.checks == live.checks, "the checks come from the history either way"
    assert rebuilt.state.checks_total == live.state.checks_total
    page = _write_report(rebuilt, "no_worker")
    assert "no worker answered the status query" in page


async def test_history_and_report_follow_every_run_of_a_continued_rollout(
    short_history_env: WorkflowEnvironment, router: RouterServer, metrics: MetricsServer
) -> None:
    client = short_history_env.client
    metrics.set("error_rate", 0.0)
    document = spec_document(router.url, metrics.url)
    document["spec"]["stages"][1]["min_duration"] = "12s"
    spec = build_spec(document)
    target = spec.spec.target
    queue = f"q-{uuid.uuid4().hex[:8]}"
    async with http_client() as http, build_worker(client, queue, BackendRegistry(http)):
        handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=queue)
        await client.get_workflow_handle(handle.id).result()
        record = await fetch_record(client, target)
        trail = await fetch_audit_trail(client, target)

    assert record.complete
    assert len(record.run_ids) >= 2, "the rollout continued as new"
    assert record.run_ids[0] == handle.result_run_id
    runs_with_checks = {c.run_id for c in record.checks}
    assert runs_with_checks <= set(record.run_ids)
    assert len(runs_with_checks) >= 2, "checks come from several runs"
    _assert_checks_match_the_state(record)
    assert record.state.phase is Phase.COMPLETED
    page = _write_report(record, "continued_as_new")
    assert "promoted" in page
    assert trail.entries[0].actor == "alice", "the trail survived continue-as-new"
    assert trail.entries[-1].action == "completed"

    # Without a worker: the latest run's carried state still holds the trail up to it.
    rebuilt = await fetch_audit_trail(client, target)
    assert not rebuilt.complete
    assert "carried into run" in rebuilt.notes[0]
    assert rebuilt.entries[0].actor == "alice"
    assert rebuilt.entries == trail.entries[: len(rebuilt.entries)]
    assert rebuilt.phase == "completed"
