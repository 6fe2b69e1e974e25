"""The offline stage in the workflow: the real activity judges a real log before any traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from rollout_specs import workflow_id_for
from runtime.rollouts import query_status, send_command, submit_rollout
from simulator.artifacts import load_artifact
from simulator.offline_log import write_log
from tests.conftest import build_spec, record_history, spec_document
from tests.helpers.servers import MetricsServer, RouterServer
from tests.helpers.waiting import wait_until
from workflows.state import Phase

pytestmark = pytest.mark.usefixtures("worker")


def _document(
    router: RouterServer, metrics: MetricsServer, log: Path, **offline: Any
) -> dict[str, Any]:
    metrics.set("error_rate", 0.0)
    document = spec_document(router.url, metrics.url)
    gate = {
        "log": str(log),
        "max_regression": 0.03,
        "candidate_probabilities": "candidate_probabilities",
        **offline,
    }
    document["spec"]["stages"].insert(0, {"name": "offline", "offline_eval": gate})
    return document


async def test_a_candidate_that_passes_offline_goes_on_to_shadow(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str, tmp_path: Path
) -> None:
    log = tmp_path / "log.parquet"
    write_log(log, 20_000, seed=3, candidate=load_artifact("candidate.json"))
    spec = build_spec(_document(router, metrics, log))
    target = spec.spec.target
    await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
    await wait_until(lambda: router.current(target), what="the shadow route after the gate")
    status = await query_status(client, target)
    offline = status.state.stages[0]
    assert (offline.name, offline.outcome, offline.checks) == ("offline", "advanced", 1)
    passed = next(e for e in status.state.audit if e.action == "offline_passed")
    assert passed.evidence is not None
    assert passed.evidence.evidence is not None
    lower = passed.evidence.evidence.lower
    assert lower is not None
    assert lower > -0.03
    await send_command(client, target, "rollback", actor="alice", reason="cleanup")


async def test_a_candidate_that_fails_offline_is_rolled_back_before_any_traffic(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str, tmp_path: Path
) -> None:
    log = tmp_path / "log.parquet"
    write_log(log, 20_000, seed=3, candidate=load_artifact("candidate-broken.json"))
    spec = build_spec(_document(router, metrics, log))
    target = spec.spec.target
    await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
    handle = client.get_workflow_handle(workflow_id_for(target))
    await handle.result()
    await record_history(handle, "offline_gate_failed")
    status = await query_status(client, target)
    assert status.state.phase is Phase.ROLLED_BACK
    assert status.state.rollback is not None
    assert status.state.rollback.actor == "trigger:offline_eval"
    assert "offline gate failed" in status.state.rollback.reason
    assert [r["mode"] for r in router.history] == ["off"], "only the incumbent ever served"


async def test_a_log_too_small_to_judge_holds_for_a_human_who_may_override(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str, tmp_path: Path
) -> None:
    log = tmp_path / "log.jsonl"
    write_log(log, 60, seed=3, candidate=load_artifact("candidate.json"))
    spec = build_spec(_document(router, metrics, log))
    target = spec.spec.target
    await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)

    async def escalated() -> bool:
        return (await query_status(client, target)).state.phase is Phase.ESCALATED

    await wait_until(escalated, what="the refusal to judge to escalate")
    status = await query_status(client, target)
    assert status.state.escalation is not None
    assert "could not judge the candidate" in status.state.escalation
    assert status.state.last_check is not None
    assert status.state.last_check.verdicts[0].detail.startswith("refused to judge")
    assert router.history == [], "never a pass: no traffic moved"

    await send_command(
        client, target, "promote", actor="bob", reason="log is small; shadow will tell"
    )
    await wait_until(lambda: router.current(target), what="the shadow route after the override")
    status = await query_status(client, target)
    assert status.state.stages[0].outcome == "promoted"
    await send_command(client, target, "rollback", actor="bob", reason="cleanup")
    handle = client.get_workflow_handle(workflow_id_for(target))
    await handle.result()
    await record_history(handle, "offline_refusal_overridden")
