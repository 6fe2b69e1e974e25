"""The RL guardrails on the real stack: caps enforced at serving, one region harmed, overspend.

Each test serves one of the simulator's guardrail candidates behind the reference gateway,
judged by a real Prometheus, and runs the guardrails demo spec (rollout_specs/examples/
demo-guardrails.yaml) with short bakes; each candidate must be rolled back by the guardrail
made for it, with evidence a release engineer can read. Prometheus is required, as for the
other whole-rollout tests.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client

from activities.contracts import TriggerVerdict
from rollout_specs import RolloutSpec, parse_spec
from runtime.client import connect
from runtime.demo import REVIEWER, review_as_scripted
from runtime.preflight import preflight
from runtime.processes import ManagedProcess
from runtime.rollouts import query_status, submit_rollout
from runtime.settings import Settings
from runtime.stack import GATEWAY_TOKEN_ENV, DemoStack, demo_spec
from tests.e2e.demo_stack import prometheus_value, running_stack
from workflows.messages import StatusResult
from workflows.state import AuditAction, Phase

pytestmark = pytest.mark.e2e
RATE = 200.0


@pytest_asyncio.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DemoStack]:
    async with running_stack(tmp_path_factory.mktemp("stack"), "overuse-capped") as demo:
        yield demo


@pytest_asyncio.fixture
async def client(stack: DemoStack) -> Client:
    return await connect(Settings(temporal_address=stack.temporal_address))


@pytest.fixture
def traffic() -> Iterator[list[ManagedProcess]]:
    processes: list[ManagedProcess] = []
    yield processes
    for process in processes:
        process.stop()


def _spec(
    stack: DemoStack, scenario: str, *, without: tuple[str, ...] = (), **changes: Any
) -> RolloutSpec:
    """The guardrails demo spec for a fresh target, fast, with `changes` to its spec body.

    `without` names triggers to leave out: a test of one guardrail must not race another on a
    loaded machine (a slow per-segment test against a spend budget counted per second).
    """
    target = f"offers-{scenario[:5]}-{uuid.uuid4().hex[:6]}"
    document = demo_spec(stack, target=target, fast=True, guardrails=True).model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    body = document["spec"]
    body["rollback_triggers"] = [t for t in body["rollback_triggers"] if t["name"] not in without]
    body.update(changes)
    return parse_spec(document, f"guardrails demo for {scenario}")


async def _run(
    stack: DemoStack,
    client: Client,
    spec: RolloutSpec,
    scenario: str,
    traffic: list[Any],
    rate: float = RATE,
) -> None:
    await stack.restart_candidate(scenario)
    traffic.append(await stack.start_traffic(spec.spec.target, scenario, rate=rate))
    await submit_rollout(client, spec, submitted_by="e2e", task_queue="lockgate")


async def _rolled_back_by(client: Client, spec: RolloutSpec, trigger: str) -> TriggerVerdict:
    """Wait for the rollout's end; it must be a rollback by `trigger`, whose verdict is returned."""
    result = await client.get_workflow_handle(spec.workflow_id).result()
    status: StatusResult = await query_status(client, spec.spec.target)
    assert result["phase"] == Phase.ROLLED_BACK.value, status.state.outcome
    assert status.state.rollback is not None
    assert status.state.rollback.actor == f"trigger:{trigger}", status.state.rollback
    entry = next(e for e in status.state.audit if e.action == AuditAction.ROLLBACK)
    assert entry.evidence is not None
    return entry.evidence


@pytest.mark.timeout(240)
async def test_a_capped_action_is_held_to_its_share_and_its_overuse_rolls_back(
    stack: DemoStack, client: Client, traffic: list[ManagedProcess]
) -> None:
    """The candidate picks discount_20 in ~30% of decisions; the router serves it in at most
    about the cap's 5% (the incumbent's own ~3% habit aside), counts every intervention, and
    the intervention rate rolls the candidate back."""
    stages = [
        {"name": "canary", "percent": 50, "min_duration": "1h"},
        {"name": "full", "percent": 100, "min_duration": "6s"},
    ]
    spec = _spec(stack, "overuse-capped", stages=stages, without=("voucher-spend",))
    await _run(stack, client, spec, "overuse-capped", traffic)

    verdict = await _rolled_back_by(client, spec, "cap-interventions")

    assert verdict.value is not None
    assert verdict.value > 0.05, verdict.detail
    target = spec.spec.target
    served = await prometheus_value(
        stack,
        f'sum(lockgate_decisions_total{{target="{target}",version="42",mode="split",'
        f'action="discount_20"}}) / sum(lockgate_decisions_total{{target="{target}",'
        f'version="42",mode="split"}})',
    )
    overruled = await prometheus_value(
        stack,
        f'sum(lockgate_guardrail_interventions_total{{target="{target}",kind="share",'
        f'guardrail="discount_20"}})',
    )
    assert served is not None
    assert served < 0.08, f"served share of discount_20: {served}"
    assert overruled is not None
    assert overruled > 0


@pytest.mark.timeout(420)
async def test_a_candidate_better_on_average_but_harming_one_region_is_rolled_back(
    stack: DemoStack, client: Client, traffic: list[ManagedProcess]
) -> None:
    """+1.3% on average, -14% in ap-south-1: the average compare test cannot see it; the
    segments trigger holds the stage (no region shown unharmed) until it shows the harm, and
    names the region."""
    stages = [
        {"name": "half", "percent": 50, "min_duration": "6s"},
        {"name": "full", "percent": 100, "min_duration": "6s"},
    ]
    spec = _spec(stack, "harm-one-region", stages=stages, without=("voucher-spend",))
    await _run(stack, client, spec, "harm-one-region", traffic, rate=300)

    verdict = await _rolled_back_by(client, spec, "no-region-harmed")

    assert "ap-south-1" in verdict.detail, verdict.detail
    assert verdict.evidence is not None
    assert verdict.evidence.upper is not None
    assert verdict.evidence.upper < -0.05
    status = await query_status(client, spec.spec.target)
    assert [s.outcome for s in status.state.stages] == ["rolled_back"], "never promoted"


@pytest.mark.timeout(240)
async def test_an_overspending_candidate_is_rolled_back_by_its_budget(
    stack: DemoStack, client: Client, traffic: list[ManagedProcess]
) -> None:
    """Vouchers four times the incumbent's: the spend trigger stops the candidate once the
    budget is spent, and says what was spent against what budget."""
    spec = _spec(stack, "overspend")
    body = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    for trigger in body["spec"]["rollback_triggers"]:
        if trigger["name"] == "voucher-spend":
            trigger["spend"] = {"field": "amount", "budget": 4000}
    spec = parse_spec(body, "overspend")
    await _run(stack, client, spec, "overspend", traffic)

    verdict = await _rolled_back_by(client, spec, "voucher-spend")

    assert verdict.value is not None
    assert verdict.value > 4000
    assert "budget" in verdict.detail
    assert "of 4000" in verdict.detail, verdict.detail


@pytest.mark.timeout(300)
async def test_proposals_reviewers_reject_are_never_served_and_roll_the_candidate_back(
    stack: DemoStack, client: Client, traffic: list[ManagedProcess]
) -> None:
    """The candidate proposes full refunds; none is served, each waits for a reviewer, and once
    reviewers are shown to reject more than a third, the candidate is rolled back. The reviewer
    is scripted (simulator.reviewer) but goes through `lockgate review`'s own path."""
    stages = [
        {"name": "half", "percent": 50, "min_duration": "1h"},
        {"name": "full", "percent": 100, "min_duration": "6s"},
    ]
    spec = _spec(stack, "review-rejected", stages=stages, without=("voucher-spend",))
    await _run(stack, client, spec, "review-rejected", traffic)
    reviewing = asyncio.create_task(review_as_scripted(client, spec.spec.target, every=0.5))
    try:
        verdict = await _rolled_back_by(client, spec, "reviewers")
    finally:
        given = await asyncio.wait_for(reviewing, timeout=30)

    assert verdict.evidence is not None
    assert verdict.evidence.lower is not None
    assert verdict.evidence.lower > 0.34, verdict.detail
    status = await query_status(client, spec.spec.target)
    reviews = [e for e in status.state.audit if e.action == AuditAction.REVIEW]
    assert len(reviews) == given >= 10
    assert {e.actor for e in reviews} == {REVIEWER}
    assert status.state.reviews.approved + status.state.reviews.rejected == given
    assert status.state.reviews.rejected > status.state.reviews.approved
    target = spec.spec.target
    served_refunds = await prometheus_value(
        stack, f'sum(lockgate_decisions_total{{target="{target}",action="refund_full"}})'
    )
    assert not served_refunds, "a reviewed action was served"


async def test_preflight_runs_every_guardrail_query_of_the_spec(
    stack: DemoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lockgate validate --preflight` sends the segments and spend queries (with their own
    variables) and the review-capable router answers: nothing in the guardrails spec is left
    for the first check to discover."""
    monkeypatch.setenv(GATEWAY_TOKEN_ENV, stack.control_token)
    spec = _spec(stack, "preflight")

    report = await preflight(spec)

    assert report.problems == []
    # error-rate and cap-interventions: 1 each; reward-regression and segments: 1 per arm;
    # spend: the candidate's; reviewers: none (it reads the rollout's own audited verdicts).
    assert report.queries == 1 + 1 + 2 + 2 + 1
