"""A rollout on a real Temporal dev server, with real activities against loopback servers."""

from __future__ import annotations

import time

import pytest
from temporalio.client import Client, WorkflowFailureError

from activities.contracts import RouteMode
from rollout_specs import workflow_id_for
from runtime.rollouts import RolloutAlreadyRunning, query_status, submit_rollout
from tests.conftest import build_spec, record_history, spec_document
from tests.helpers.servers import MetricsServer, RouterServer, metric_key
from tests.helpers.waiting import wait_until
from workflows.state import Phase
from workflows.visibility import PERCENT, PHASE, STAGE, TARGET

pytestmark = pytest.mark.usefixtures("worker")


async def test_happy_path_walks_every_stage_and_makes_the_candidate_the_incumbent(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    metrics.set("error_rate", 0.001)
    spec = build_spec(spec_document(router.url, metrics.url))
    handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
    result = await handle.result()
    await record_history(handle, "completed")

    assert result.phase is Phase.COMPLETED
    applied = [(r["mode"], r["percent"], r["incumbent"]["version"]) for r in router.history]
    assert applied == [
        ("shadow", 0, "41"),
        ("split", 10, "41"),
        ("split", 50, "41"),
        ("split", 100, "41"),
        ("off", 0, "42"),
    ]
    generations = [r["generation"] for r in router.history]
    assert generations == sorted(set(generations)), "every route change has a newer generation"
    assert router.history[1]["guardrails"] == {"blocked_actions": ["discount_90"]}

    status = await query_status(client, spec.spec.target)
    assert [s.outcome for s in status.state.stages] == ["advanced"] * 4
    assert all(s.checks >= 1 for s in status.state.stages), "no stage advanced without a check"
    assert status.state.audit[0].actor == "alice"
    assert status.state.audit[-1].action == "completed"

    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(TARGET) == spec.spec.target
    assert attributes.get(PHASE) == "completed"
    assert attributes.get(STAGE) == "full"
    assert attributes.get(PERCENT) == 100.0


async def test_a_breach_rolls_back_at_the_first_check_that_sees_it(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    metrics.set("error_rate", 0.0)
    document = spec_document(router.url, metrics.url)
    document["spec"]["stages"][2]["min_duration"] = "1h"
    spec = build_spec(document)
    handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
    target = spec.spec.target

    await wait_until(
        lambda: (router.current(target) or {}).get("percent") == 50, what="the 50% stage"
    )
    queries_before = len(metrics.queries)
    breached_at = time.monotonic()
    metrics.set("error_rate", 0.2)
    await wait_until(lambda: (router.current(target) or {}).get("mode") == "off", what="rollback")
    landed_after = time.monotonic() - breached_at
    result = await handle.result()
    await record_history(handle, "trigger_rollback")

    assert result.phase is Phase.ROLLED_BACK
    assert len(metrics.queries) - queries_before == 1, "rolled back on the first breaching check"
    final = router.current(target)
    assert final is not None
    assert final["incumbent"]["version"] == "41"
    assert final["candidate"] is None
    status = await query_status(client, target)
    assert status.state.rollback is not None
    assert status.state.rollback.actor == "trigger:error-rate"
    assert "0.2 is above 0.05" in status.state.rollback.reason
    assert status.state.stages[-1].outcome == "rolled_back"
    print(f"\nbreach-to-rollback (route reset on the router): {landed_after:.2f}s")


@pytest.mark.parametrize("answer", [None, "nan", "down", "multi"])
async def test_missing_or_broken_data_holds_the_stage_and_never_advances(
    client: Client,
    router: RouterServer,
    metrics: MetricsServer,
    task_queue: str,
    answer: str | None,
) -> None:
    metrics.set("error_rate", answer)
    spec = build_spec(spec_document(router.url, metrics.url))
    handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
    target = spec.spec.target

    async def escalated() -> bool:
        status = await query_status(client, target)
        return status.state.phase is Phase.ESCALATED

    await wait_until(escalated, what="escalation after missing_data_limit checks")
    status = await query_status(client, target)
    assert status.state.stage_index == 0
    assert status.state.escalation is not None
    assert "no evidence for 3 consecutive checks" in status.state.escalation
    assert [r["mode"] for r in router.history] == ["shadow"], "never advanced past shadow"
    assert status.state.last_check is not None
    assert status.state.last_check.verdicts[0].outcome.value in ("inconclusive", "error")

    metrics.set("error_rate", 0.0)  # evidence returns: the stage earns its gate and moves on
    result = await handle.result()
    await record_history(handle, f"escalated_then_completed_{answer}")
    assert result.phase is Phase.COMPLETED


async def test_on_missing_data_rollback_rolls_back_after_the_limit(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    document = spec_document(router.url, metrics.url)
    document["spec"]["on_missing_data"] = "rollback"
    spec = build_spec(document)
    handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
    result = await handle.result()

    assert result.phase is Phase.ROLLED_BACK
    assert "no evidence for 3 consecutive checks" in result.outcome
    assert len(metrics.queries) == 3
    assert [r["mode"] for r in router.history] == ["shadow", "off"]


async def test_rollback_is_retried_until_the_router_accepts_it_and_escalates_meanwhile(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    metrics.set("error_rate", 0.0)
    document = spec_document(router.url, metrics.url)
    document["spec"]["stages"][1]["min_duration"] = "1h"
    spec = build_spec(document)
    handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
    target = spec.spec.target
    await wait_until(lambda: (router.current(target) or {}).get("percent") == 10, what="canary")

    router.refuse_next(4, status=503)
    metrics.set("error_rate", 0.9)

    async def escalated_while_rolling_back() -> bool:
        status = await query_status(client, target)
        return status.state.phase is Phase.ROLLING_BACK and status.state.escalation is not None

    await wait_until(escalated_while_rolling_back, what="escalation of a refused rollback")
    assert router.current(target)["mode"] == "split"  # type: ignore[index]
    result = await handle.result()
    await record_history(handle, "refused_rollback_retried")

    assert result.phase is Phase.ROLLED_BACK
    final = router.current(target)
    assert final is not None
    assert final["mode"] == "off"
    status = await query_status(client, target)
    assert [e.action for e in status.state.audit].count("escalated") == 1
    assert status.state.escalation is None


async def test_a_stage_route_that_cannot_be_verified_rolls_back(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    metrics.set("error_rate", 0.0)
    router.corrupt_reads(True)
    spec = build_spec(spec_document(router.url, metrics.url))
    handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)

    async def rolling_back() -> bool:
        status = await query_status(client, spec.spec.target)
        return status.state.rollback is not None

    await wait_until(rolling_back, what="the rollback after a route mismatch")
    router.corrupt_reads(False)
    result = await handle.result()
    assert result.phase is Phase.ROLLED_BACK
    assert "could not apply stage shadow's route" in result.outcome
    assert "after lockgate set" in result.outcome


async def test_a_second_submit_for_a_running_target_is_refused_naming_the_rollout(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    metrics.set("error_rate", 0.0)
    document = spec_document(router.url, metrics.url)
    document["spec"]["stages"][0]["min_duration"] = "1h"
    spec = build_spec(document)
    first = await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)

    with pytest.raises(RolloutAlreadyRunning) as refused:
        await submit_rollout(client, spec, submitted_by="bob", task_queue=task_queue)
    message = str(refused.value)
    assert workflow_id_for(spec.spec.target) in message
    assert first.result_run_id is not None
    assert first.result_run_id in message
    assert "candidate 42" in message
    await first.terminate("test cleanup")


async def test_an_invalid_input_fails_the_workflow_at_once(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    document = spec_document(router.url, metrics.url)
    document["spec"]["rollback_triggers"] = []
    payload = {"spec": document, "submitted_by": "mallory"}
    handle = await client.start_workflow(
        "Rollout", payload, id=workflow_id_for("invalid-input"), task_queue=task_queue
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    assert "at least one rollback trigger" in str(failed.value.cause)
    assert not router.history


async def test_percent_shown_in_the_ui_follows_the_stage(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    metrics.set("error_rate", 0.0)
    document = spec_document(router.url, metrics.url)
    document["spec"]["stages"][1]["min_duration"] = "1h"
    spec = build_spec(document)
    handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)

    async def at_canary() -> bool:
        attributes = (await handle.describe()).typed_search_attributes
        return attributes.get(STAGE) == "canary" and attributes.get(PERCENT) == 10.0

    await wait_until(at_canary, what="search attributes of the canary stage")
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(PHASE) == "running"
    assert router.current(spec.spec.target)["mode"] == RouteMode.SPLIT.value  # type: ignore[index]
    await handle.terminate("test cleanup")


async def test_a_split_only_trigger_is_not_asked_during_shadow(
    client: Client, router: RouterServer, metrics: MetricsServer, task_queue: str
) -> None:
    metrics.set("error_rate", 0.0)
    metrics.set("reward_gap", 0.01)
    document = spec_document(router.url, metrics.url)
    document["spec"]["rollback_triggers"].append(
        {
            "name": "reward-gap",
            "query": "reward_gap",
            "threshold": {"below": -0.05},
            "modes": ["split"],
        }
    )
    spec = build_spec(document)
    handle = await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
    assert (await handle.result()).phase is Phase.COMPLETED

    asked = [metric_key(q) for q in metrics.queries]
    assert asked[0] == "error_rate", "shadow's one check asks only the trigger that judges shadow"
    assert asked[1:3] == ["error_rate", "reward_gap"] or asked[1:3] == ["reward_gap", "error_rate"]
    assert asked.count("reward_gap") == asked.count("error_rate") - 1
