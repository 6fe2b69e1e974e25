"""The gateway as a user meets it: real uvicorn servers on 127.0.0.1, spoken to over HTTP.

Two real policy servers serve the test artifacts (tests/gateway/artifacts): the incumbent 41
always answers `none`; the candidate 42 answers `discount_10`, or the blocked `discount_90` when
the context says `risky: 1`. Every gateway is fresh (its own routes and metrics registry), with
routes, stats and metrics on its control plane (`control_url`, behind its token) and decide and
feedback on its data plane (`url`). The attacks on each are in test_gateway_hardening.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as Endpoint

from activities.contracts import Route
from activities.errors import RouteConflict
from activities.routers.http_router import HttpTrafficRouter
from gateway.assignment import assign
from rollout_specs import HttpRouter
from runtime.processes import free_port
from tests.gateway.servers import GatewayServer, PolicyServer, UvicornThread
from tests.helpers.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TARGET = "offers"
BLOCKED = "discount_90"
SAFE = {"basket": 30.0, "risky": 0.0}
RISKY = {"basket": 30.0, "risky": 1.0}


@pytest.fixture
def policy_servers(incumbent: PolicyServer, candidate: PolicyServer) -> list[UvicornThread]:
    return [incumbent, candidate]


def _route(
    incumbent: PolicyServer,
    candidate: PolicyServer | None,
    *,
    generation: int = 1,
    mode: str = "split",
    percent: float = 50.0,
    scope: dict[str, list[str]] | None = None,
    rollout_id: str = "rollout-offers/run-1",
) -> dict[str, Any]:
    return {
        "rollout_id": rollout_id,
        "generation": generation,
        "incumbent": incumbent.as_version(),
        "candidate": candidate.as_version() if candidate else None,
        "mode": mode,
        "percent": percent,
        "scope": scope,
        "guardrails": {"blocked_actions": [BLOCKED]},
    }


async def _put(
    http: httpx.AsyncClient, gateway: GatewayServer, route: dict[str, Any], target: str = TARGET
) -> httpx.Response:
    return await http.put(
        f"{gateway.control_url}/v1/targets/{target}/route", json=route, headers=gateway.auth
    )


async def _read(
    http: httpx.AsyncClient, gateway: GatewayServer, target: str = TARGET
) -> httpx.Response:
    return await http.get(f"{gateway.control_url}/v1/targets/{target}/route", headers=gateway.auth)


async def _decide(
    http: httpx.AsyncClient,
    gateway: GatewayServer,
    unit: str,
    context: dict[str, float] = SAFE,
    attributes: dict[str, str] | None = None,
) -> dict[str, Any]:
    response = await http.post(
        f"{gateway.url}/v1/targets/{TARGET}/decide",
        json={"unit_id": unit, "context": context, "attributes": attributes or {}},
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def _metric(
    http: httpx.AsyncClient, gateway: GatewayServer, name: str, **labels: str
) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when there are none)."""
    text = (await http.get(f"{gateway.control_url}/metrics", headers=gateway.auth)).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


async def _stat(http: httpx.AsyncClient, gateway: GatewayServer, query: str) -> float | None:
    response = await http.get(
        f"{gateway.control_url}/v1/stats", params={"query": query}, headers=gateway.auth
    )
    assert response.status_code == 200, response.text
    value: float | None = response.json()["value"]
    return value


# ----------------------------------------------------------------------- the router contract


async def test_a_route_put_is_answered_and_read_back_as_applied(
    http: httpx.AsyncClient,
    gateway: GatewayServer,
    incumbent: PolicyServer,
    candidate: PolicyServer,
) -> None:
    route = _route(incumbent, candidate, scope={"region": ["eu-west-1"]})
    put = await _put(http, gateway, route)
    assert put.status_code == 200
    assert put.json() == route | {"percent": 50.0}
    read = await _read(http, gateway)
    assert read.status_code == 200
    assert read.json() == put.json()
    missing = await _read(http, gateway, "ranker")
    assert missing.status_code == 404
    assert "ranker has no route" in missing.json()["detail"]


async def test_the_same_generation_again_changes_nothing(
    http: httpx.AsyncClient,
    gateway: GatewayServer,
    incumbent: PolicyServer,
    candidate: PolicyServer,
) -> None:
    first = await _put(http, gateway, _route(incumbent, candidate, generation=4, percent=10))
    retry = await _put(http, gateway, _route(incumbent, candidate, generation=4, percent=10))
    assert retry.status_code == 200
    assert retry.json() == first.json()
    conflicting_retry = await _put(
        http, gateway, _route(incumbent, candidate, generation=4, percent=90)
    )
    assert conflicting_retry.status_code == 200
    assert conflicting_retry.json()["percent"] == 10
    read = await _read(http, gateway)
    assert read.json()["percent"] == 10


async def test_an_older_generation_is_refused_with_409_naming_the_holder(
    http: httpx.AsyncClient,
    gateway: GatewayServer,
    incumbent: PolicyServer,
    candidate: PolicyServer,
) -> None:
    held = _route(incumbent, candidate, generation=1_700_000_000_500, rollout_id="rollout-offers/b")
    assert (await _put(http, gateway, held)).status_code == 200
    older = _route(
        incumbent, candidate, generation=1_700_000_000_000, rollout_id="rollout-offers/a"
    )
    refused = await _put(http, gateway, older)
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert "generation 1700000000500" in detail
    assert "rollout-offers/b" in detail
    read = await _read(http, gateway)
    assert read.json()["rollout_id"] == "rollout-offers/b"


async def test_lockgates_own_router_client_drives_the_gateway(
    http: httpx.AsyncClient,
    gateway: GatewayServer,
    incumbent: PolicyServer,
    candidate: PolicyServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the worker reads the token where the spec's auth block says, as in production
    assert gateway.token is not None
    monkeypatch.setenv("LOCKGATE_TEST_GATEWAY_TOKEN", gateway.token)
    config = HttpRouter.model_validate(
        {
            "type": "http",
            "url": gateway.control_url,
            "auth": {"type": "bearer", "token": {"env": "LOCKGATE_TEST_GATEWAY_TOKEN"}},
        }
    )
    router = HttpTrafficRouter(config, http)
    route = Route.model_validate(
        _route(incumbent, candidate, generation=5, scope={"region": ["eu-west-1"]})
    )
    assert await router.put_route(TARGET, route) == route
    assert await router.get_route(TARGET) == route  # what lockgate compares after every PUT
    assert await router.put_route(TARGET, route) == route  # a retried PUT
    with pytest.raises(RouteConflict, match="holds generation 5"):
        await router.put_route(TARGET, route.model_copy(update={"generation": 4}))
    assert await router.get_route("ranker") is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"generation": 0}, "generation: Input should be greater than or equal to 1"),
        ({"incumbent": None}, "incumbent"),
        ({"mode": "canary"}, "mode: Input should be 'off', 'shadow' or 'split'"),
        ({"percent": 101}, "percent: Input should be less than or equal to 100"),
        ({"candidate": None}, "mode split needs a candidate"),
    ],
)
async def test_a_malformed_route_is_refused_with_422_and_the_reason(
    http: httpx.AsyncClient,
    gateway: GatewayServer,
    incumbent: PolicyServer,
    candidate: PolicyServer,
    change: dict[str, Any],
    message: str,
) -> None:
    refused = await _put(http, gateway, _route(incumbent, candidate) | change)
    assert refused.status_code == 422
    assert message in refused.json()["detail"]
    assert (await _read(http, gateway)).status_code == 404


async def test_a_restarted_gateway_with_a_state_file_keeps_its_routes(
    http: httpx.AsyncClient, tmp_path: Path, incumbent: PolicyServer, candidate: PolicyServer
) -> None:
    state = tmp_path / "routes.json"
    route = _route(incumbent, candidate, generation=3, percent=100)
    with GatewayServer([incumbent, candidate], state_file=state) as first:
        assert (await _put(http, first, route)).status_code == 200
        before = await _decide(http, first, "user-1")
    with GatewayServer([incumbent, candidate], state_file=state) as restarted:
        read = await _read(http, restarted)
        assert read.status_code == 200
        assert read.json() == route | {"percent": 100.0}
        after = await _decide(http, restarted, "user-1")
        assert (
            (after["arm"], after["version"])
            == (before["arm"], before["version"])
            == (
                "candidate",
                "42",
            )
        )
        stale = await _put(http, restarted, _route(incumbent, candidate, generation=2))
        assert stale.status_code == 409


# ----------------------------------------------------------------------------- decisions


async def test_deciding_for_a_target_without_a_route_is_404(
    http: httpx.AsyncClient, gateway: GatewayServer
) -> None:
    response = await http.post(
        f"{gateway.url}/v1/targets/{TARGET}/decide", json={"unit_id": "u", "context": SAFE}
    )
    assert response.status_code == 404
    assert "has no route" in response.json()["detail"]


async def test_a_malformed_decide_request_is_422(
    http: httpx.AsyncClient, gateway: GatewayServer, incumbent: PolicyServer
) -> None:
    await _put(http, gateway, _route(incumbent, None, mode="off"))
    response = await http.post(
        f"{gateway.url}/v1/targets/{TARGET}/decide", json={"context": {"basket": "lots"}}
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "unit_id: Field required" in detail
    assert "context.basket" in detail


async def test_mode_off_serves_the_incumbent_to_everyone(
    http: httpx.AsyncClient, gateway: GatewayServer, incumbent: PolicyServer
) -> None:
    await _put(http, gateway, _route(incumbent, None, mode="off"))
    answers = [await _decide(http, gateway, f"user-{n}") for n in range(20)]
    assert {(a["arm"], a["version"], a["mode"], a["action"]) for a in answers} == {
        ("incumbent", "41", "off", "none")
    }
    assert len({a["decision_id"] for a in answers}) == 20
    assert all(a["shadow_action"] is None and a["guardrail"] is None for a in answers)
    decisions = "lockgate_decisions_total"
    labels = {"target": TARGET, "arm": "incumbent", "version": "41", "mode": "off"}
    assert await _metric(http, gateway, decisions, **labels, action="none") == 20
    assert (
        await _metric(http, gateway, "lockgate_decision_latency_seconds_count", arm="incumbent")
        == 20
    )


async def test_split_assignment_is_sticky_and_survives_a_raised_percent(
    http: httpx.AsyncClient,
    gateway: GatewayServer,
    incumbent: PolicyServer,
    candidate: PolicyServer,
) -> None:
    rollout = "rollout-offers/run-7"
    units = [f"user-{n}" for n in range(300)]
    await _put(http, gateway, _route(incumbent, candidate, percent=30, rollout_id=rollout))
    first = {u: (await _decide(http, gateway, u))["arm"] for u in units}
    again = {u: (await _decide(http, gateway, u))["arm"] for u in units}
    assert first == again
    # the gateway places units exactly as the documented hash does
    assert first == {u: assign(rollout, u, 30, None, {}).value for u in units}
    on_candidate = {u for u, arm in first.items() if arm == "candidate"}
    assert 0.2 < len(on_candidate) / len(units) < 0.4

    await _put(
        http, gateway, _route(incumbent, candidate, generation=2, percent=60, rollout_id=rollout)
    )
    raised = {u: await _decide(http, gateway, u) for u in units}
    assert all(raised[u]["arm"] == "candidate" for u in on_candidate)
    served = {(a["arm"], a["version"], a["action"]) for a in raised.values()}
    assert served == {("candidate", "42", "discount_10"), ("incumbent", "41", "none")}


async def test_a_scoped_split_gives_the_candidate_only_to_units_in_scope(
    http: httpx.AsyncClient,
    gateway: GatewayServer,
    incumbent: PolicyServer,
    candidate: PolicyServer,
) -> None:
    scope = {"region": ["eu-west-1"]}
    await _put(http, gateway, _route(incumbent, candidate, percent=100, scope=scope))
    inside = await _decide(http, gateway, "user-1", attributes={"region": "eu-west-1"})
    outside = await _decide(http, gateway, "user-1", attributes={"region": "us-east-1"})
    unlabelled = await _decide(http, gateway, "user-1")
    assert inside["version"] == "42"
    assert outside["version"] == unlabelled["version"] == "41"


async def test_shadow_serves_the_incumbent_and_records_the_candidate(
    http: httpx.AsyncClient,
    gateway: GatewayServer,
    incumbent: PolicyServer,
    candidate: PolicyServer,
) -> None:
    await _put(http, gateway, _route(incumbent, candidate, mode="shadow", percent=0))
    calm = [await _decide(http, gateway, f"user-{n}") for n in range(5)]
    risky = await _decide(http, gateway, "user-9", context=RISKY)
    for answer in [*calm, risky]:
        assert (answer["action"], answer["arm"], answer["version"], answer["mode"]) == (
            "none",
            "incumbent",
            "41",
            "shadow",
        )
    assert {a["shadow_action"] for a in calm} == {"discount_10"}
    assert (risky["shadow_action"], risky["guardrail"]) == (BLOCKED, BLOCKED)

    mirrored = {"target": TARGET, "arm": "candidate", "version": "42", "mode": "shadow"}
    assert (
        await _metric(http, gateway, "lockgate_decisions_total", **mirrored, action="discount_10")
        == 5
    )
    assert await _metric(http, gateway, "lockgate_decisions_total", **mirrored, action=BLOCKED) == 1
    assert (
        await _metric(http, gateway, "lockgate_decisions_total", arm="incumbent", mode="shadow")
        == 6
    )
    assert await _metric(http, gateway, "lockgate_shadow_agreements_total", agree="false") == 6
    assert await _metric(http, gateway, "lockgate_shadow_agreements_total", agree="true") == 0
    violations = await _metric(
        http, gateway, "lockgate_guardrail_violations_total", version="42", guardrail=BLOCKED
    )
    assert violations == 1
    assert await _stat(http, gateway, f"guardrail_violations target={TARGET} version=42") == 1
    # The candidate's own latency, which no served decision's latency shows in shadow.
    calls = "lockgate_policy_latency_seconds_count"
    assert await _metric(http, gateway, calls, **mirrored) == 6
    assert await _metric(http, gateway, calls, arm="incumbent", version="41", mode="shadow") == 6


async def test_a_blocked_candidate_action_is_replaced_by_the_incumbents_and_counted(
    http: httpx.AsyncClient,
    gateway: GatewayServer,
    incumbent: PolicyServer,
    candidate: PolicyServer,
) -> None:
    await _put(http, gateway, _route(incumbent, candidate, percent=100))
    guarded = [await _decide(http, gateway, f"user-{n}", context=RISKY) for n in range(3)]
    free = await _decide(http, gateway, "user-7", context=SAFE)
    for answer in guarded:
        assert (answer["action"], answer["arm"], answer["version"], answer["guardrail"]) == (
            "none",
            "candidate",
            "42",
            BLOCKED,
        )
    assert (free["action"], free["guardrail"]) == ("discount_10", None)
    labels = {"target": TARGET, "arm": "candidate", "version": "42", "guardrail": BLOCKED}
    assert await _metric(http, gateway, "lockgate_guardrail_violations_total", **labels) == 3
    # the blocked action was never served
    assert await _metric(http, gateway, "lockgate_decisions_total", action=BLOCKED) == 0
    assert await _stat(http, gateway, f"guardrail_violations target={TARGET} version=42") == 3


async def test_a_candidate_that_is_down_is_counted_and_the_incumbent_serves(
    http: httpx.AsyncClient, incumbent: PolicyServer
) -> None:
    doomed = PolicyServer(ARTIFACTS / "offers-42.json")
    with GatewayServer([incumbent, doomed]) as gateway:
        with doomed:
            await _put(http, gateway, _route(incumbent, doomed, percent=100))
            assert (await _decide(http, gateway, "user-1"))["version"] == "42"
        # the candidate's server is gone: connection refused
        answers = [await _decide(http, gateway, f"user-{n}") for n in range(4)]
        served = {(a["arm"], a["version"], a["action"]) for a in answers}
        assert served == {("incumbent", "41", "none")}
        errors = await _metric(
            http, gateway, "lockgate_decision_errors_total", arm="candidate", version="42"
        )
        assert errors == 4
        error_rate = await _stat(http, gateway, f"error_rate target={TARGET} version=42")
        assert error_rate == pytest.approx(4 / 5)


def _hanging_policy_server() -> UvicornThread:
    """A policy server that accepts every call and never answers (until the caller hangs up)."""

    async def act(request: Request) -> Response:
        await request.body()
        while (await request.receive())["type"] != "http.disconnect":
            pass
        return Response(status_code=504)

    return UvicornThread(Starlette(routes=[Endpoint("/act", act, methods=["POST"])]), name="hung")


async def test_a_hung_candidate_costs_a_bounded_wait_and_never_the_incumbents_turn(
    http: httpx.AsyncClient, incumbent: PolicyServer
) -> None:
    with (
        _hanging_policy_server() as hung,
        GatewayServer([incumbent, hung], policy_timeout=0.25, policy_concurrency=2) as gateway,
    ):
        route = _route(incumbent, None, percent=100) | {
            "candidate": {"version": "42", "uri": hung.url}
        }
        await _put(http, gateway, route)
        started = time.monotonic()
        answers = await asyncio.gather(*(_decide(http, gateway, f"user-{n}") for n in range(6)))
        elapsed = time.monotonic() - started
        # 2 calls in flight time out after 0.25s; the 4 queued behind them give up after 0.25s
        assert elapsed < 3.0
        assert {(a["arm"], a["version"], a["action"]) for a in answers} == {
            ("incumbent", "41", "none")
        }
        errors = await _metric(http, gateway, "lockgate_decision_errors_total", version="42")
        assert errors == 6
        # A failed call's latency is its wait: a hung candidate shows as slow, not as absent.
        waited = await _metric(http, gateway, "lockgate_policy_latency_seconds_sum", version="42")
        assert waited >= 6 * 0.25


async def test_an_incumbent_that_is_down_is_a_502(
    http: httpx.AsyncClient, candidate: PolicyServer
) -> None:
    doomed = PolicyServer(ARTIFACTS / "offers-41.json")
    with GatewayServer([doomed, candidate]) as gateway:
        with doomed:
            await _put(http, gateway, _route(doomed, candidate, mode="shadow"))
        response = await http.post(
            f"{gateway.url}/v1/targets/{TARGET}/decide", json={"unit_id": "u", "context": SAFE}
        )
        assert response.status_code == 502
        detail = response.json()["detail"]
        assert detail == "incumbent 41 gave no action: its policy server could not be reached"
        errors = await _metric(http, gateway, "lockgate_decision_errors_total", arm="incumbent")
        assert errors == 1


async def test_a_context_the_policy_cannot_use_fails_the_policy_call(
    http: httpx.AsyncClient,
    gateway: GatewayServer,
    incumbent: PolicyServer,
    candidate: PolicyServer,
) -> None:
    await _put(http, gateway, _route(incumbent, candidate, percent=100))
    response = await http.post(
        f"{gateway.url}/v1/targets/{TARGET}/decide", json={"unit_id": "u", "context": {}}
    )
    assert response.status_code == 502
    # the gateway's words; what the policy server said (its 422 detail) stays in the log
    detail = response.json()["detail"]
    assert detail == "incumbent 41 gave no action: its policy server answered HTTP 422"


# ------------------------------------------------------------------------------ feedback


async def _feedback(
    http: httpx.AsyncClient,
    gateway: GatewayServer,
    decision_id: str,
    reward: float,
    target: str = TARGET,
) -> httpx.Response:
    return await http.post(
        f"{gateway.url}/v1/targets/{target}/feedback",
        json={"decision_id": decision_id, "reward": reward},
    )


async def test_a_reward_is_attributed_to_the_arm_and_version_that_served(
    http: httpx.AsyncClient,
    gateway: GatewayServer,
    incumbent: PolicyServer,
    candidate: PolicyServer,
) -> None:
    await _put(http, gateway, _route(incumbent, candidate, percent=50))
    answers = [await _decide(http, gateway, f"user-{n}") for n in range(40)]
    rewards = {"incumbent": 0.25, "candidate": 1.0}
    for answer in answers:
        response = await _feedback(http, gateway, answer["decision_id"], rewards[answer["arm"]])
        assert response.status_code == 200
        assert (response.json()["arm"], response.json()["version"]) == (
            answer["arm"],
            answer["version"],
        )
    served = {arm: sum(a["arm"] == arm for a in answers) for arm in rewards}
    assert all(served.values())

    for arm, version in [("incumbent", "41"), ("candidate", "42")]:
        labels = {"target": TARGET, "arm": arm, "version": version}
        count, reward = served[arm], rewards[arm]
        assert await _metric(http, gateway, "lockgate_rewarded_decisions_total", **labels) == count
        assert await _metric(http, gateway, "lockgate_rewards_total", **labels) == count * reward
        squares = await _metric(http, gateway, "lockgate_reward_squares_total", **labels)
        assert squares == count * reward**2
        query = f"target={TARGET} version={version} window=5m"
        assert await _stat(http, gateway, f"mean_reward {query}") == pytest.approx(reward)
        assert await _stat(http, gateway, f"rewarded {query}") == count
        assert await _stat(http, gateway, f"decisions {query}") == count


async def test_feedback_for_an_unknown_or_rewarded_decision_is_refused(
    http: httpx.AsyncClient, gateway: GatewayServer, incumbent: PolicyServer
) -> None:
    await _put(http, gateway, _route(incumbent, None, mode="off"))
    decision = (await _decide(http, gateway, "user-1"))["decision_id"]

    unknown = await _feedback(http, gateway, "no-such-decision", 1.0)
    assert unknown.status_code == 404
    assert "no decision no-such-decision" in unknown.json()["detail"]
    elsewhere = await _feedback(http, gateway, decision, 1.0, target="ranker")
    assert elsewhere.status_code == 404
    negative = await _feedback(http, gateway, decision, -1.0)
    assert negative.status_code == 422
    assert "reward -1 is outside [0, 1]" in negative.json()["detail"]

    assert (await _feedback(http, gateway, decision, 1.0)).status_code == 200
    twice = await _feedback(http, gateway, decision, 1.0)
    assert twice.status_code == 409
    assert "already has its reward" in twice.json()["detail"]
    assert await _metric(http, gateway, "lockgate_rewarded_decisions_total") == 1


async def test_a_decision_older_than_the_ttl_takes_no_reward(
    http: httpx.AsyncClient, incumbent: PolicyServer
) -> None:
    with GatewayServer([incumbent], decision_ttl=1e-9) as gateway:
        await _put(http, gateway, _route(incumbent, None, mode="off"))
        decision = (await _decide(http, gateway, "user-1"))["decision_id"]
        expired = await _feedback(http, gateway, decision, 1.0)
        assert expired.status_code == 404


# --------------------------------------------------------------------------------- stats


async def test_stats_answer_null_without_data_and_400_for_a_bad_query(
    http: httpx.AsyncClient, gateway: GatewayServer
) -> None:
    assert await _stat(http, gateway, "error_rate target=offers version=42 window=30s") is None
    unknown = await http.get(
        f"{gateway.control_url}/v1/stats",
        params={"query": "p99 target=offers version=42"},
        headers=gateway.auth,
    )
    assert unknown.status_code == 400
    assert "unknown stat 'p99'" in unknown.json()["detail"]
    missing = await http.get(f"{gateway.control_url}/v1/stats", headers=gateway.auth)
    assert missing.status_code == 400


# ----------------------------------------------------------------------- the policy server


async def test_the_policy_server_answers_an_action_with_every_probability(
    http: httpx.AsyncClient, candidate: PolicyServer
) -> None:
    answer = (
        await http.post(f"{candidate.url}/act", json={"context": RISKY | {"extra": 1}})
    ).json()
    assert answer["action"] == BLOCKED
    assert answer["version"] == "42"
    assert set(answer["probabilities"]) == {"none", "discount_10", BLOCKED}
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0)
    health = (await http.get(f"{candidate.url}/healthz")).json()
    assert (health["status"], health["version"]) == ("ok", "42")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"context": {"basket": 1.0}}, "lacks feature(s) risky"),
        ({"context": {"basket": "many", "risky": 0}}, "feature basket must be a number"),
        ({"ctx": {}}, '{"context": {feature: number, ...}}'),
        ([1, 2], '{"context": {feature: number, ...}}'),
    ],
)
async def test_the_policy_server_refuses_a_bad_context_with_422(
    http: httpx.AsyncClient, incumbent: PolicyServer, body: object, message: str
) -> None:
    response = await http.post(f"{incumbent.url}/act", json=body)
    assert response.status_code == 422
    assert message in response.json()["detail"]


async def test_the_policy_server_refuses_features_whose_scores_overflow_with_422(
    http: httpx.AsyncClient, candidate: PolicyServer
) -> None:
    # risky = 1e307 is finite, but the candidate weighs it 200x: its score is infinite, and
    # before the refusal the answer was NaN probabilities (null) and an action drawn from them
    huge = {"basket": 1.0, "risky": 1e307}
    single = await http.post(f"{candidate.url}/act", json={"context": huge})
    assert single.status_code == 422
    assert "action scores overflow" in single.json()["detail"]
    for sample in (False, True):
        batch = await http.post(
            f"{candidate.url}/act", json={"contexts": [SAFE, huge], "sample": sample}
        )
        if sample:  # deciding: the refused context answers its own detail, the other stands
            decisions = batch.json()["decisions"]
            assert "action" in decisions[0]
            assert "action scores overflow" in decisions[1]["detail"]
        else:  # scoring: the whole batch is refused, naming the context
            assert batch.status_code == 422
            assert batch.json()["detail"].startswith("contexts[1]: the features are too large")


# ------------------------------------------------------------------------ the commands


def _spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


async def _ready(http: httpx.AsyncClient, url: str, process: subprocess.Popen[bytes]) -> None:
    async def healthy() -> bool:
        assert process.poll() is None, "the process exited before it was ready"
        try:
            return (await http.get(f"{url}/healthz")).status_code == 200
        except httpx.TransportError:
            return False

    await wait_until(healthy, timeout=30, interval=0.05, what=f"{url}/healthz")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
async def test_the_commands_serve_and_stop_cleanly_on_a_signal(
    http: httpx.AsyncClient, tmp_path: Path, stop: signal.Signals
) -> None:
    policy_port, gateway_port, control_port = free_port(), free_port(), free_port()
    policy_url = f"http://127.0.0.1:{policy_port}"
    token = "a-token-from-the-environment-0123456789"
    policy = _spawn("-m", "gateway.policy_server", "--policy", str(ARTIFACTS / "offers-41.json"),
                    "--port", str(policy_port), "--seed", "1")  # fmt: skip
    gateway = _spawn("-m", "gateway", "--port", str(gateway_port),
                     "--control-port", str(control_port), "--control-token-env", "GW_TOKEN",
                     "--policy-uri", policy_url, "--state-file", str(tmp_path / "routes.json"),
                     env={"GW_TOKEN": token})  # fmt: skip
    try:
        gateway_url, control_url = (
            f"http://127.0.0.1:{gateway_port}",
            f"http://127.0.0.1:{control_port}",
        )
        await _ready(http, policy_url, policy)
        await _ready(http, gateway_url, gateway)
        await _ready(http, control_url, gateway)
        route = {
            "rollout_id": "r",
            "generation": 1,
            "incumbent": {"version": "41", "uri": policy_url},
        }
        put = f"{control_url}/v1/targets/{TARGET}/route"
        assert (await http.put(put, json=route)).status_code == 401
        authorized = {"Authorization": f"Bearer {token}"}
        assert (await http.put(put, json=route, headers=authorized)).status_code == 200
        decided = await http.post(
            f"{gateway_url}/v1/targets/{TARGET}/decide", json={"unit_id": "u", "context": SAFE}
        )
        assert decided.json()["action"] == "none"
        for process in (gateway, policy):
            process.send_signal(stop)
            output, _ = process.communicate(timeout=15)
            assert process.returncode == 0, output.decode()
            assert b"Traceback" not in output
    finally:
        for process in (gateway, policy):
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=15)


_GATEWAY = ["-m", "gateway", "--port", "1", "--control-port", "2"]
_POLICY = ["--policy-uri", "http://127.0.0.1:9"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "gateway.policy_server", "--policy", "missing.json", "--port", "1"], "cannot read"),
        (
            [*_GATEWAY, *_POLICY, "--insecure-control-plane", "--state-file", "{artifact}"],
            "not a gateway state file",
        ),
        # an open control plane only when asked for by name
        ([*_GATEWAY, *_POLICY], "the control plane needs a token"),
        ([*_GATEWAY, *_POLICY, "--control-token-file", "{tmp}/absent"], "cannot read the control"),
        ([*_GATEWAY, *_POLICY, "--control-token-file", "{tmp}/short"], "fewer than 16 characters"),
        ([*_GATEWAY, *_POLICY, "--control-token-env", "GW_UNSET_TOKEN"], "GW_UNSET_TOKEN is unset"),
        (
            [
                *_GATEWAY,
                *_POLICY,
                "--control-token-file",
                "{tmp}/short",
                "--insecure-control-plane",
            ],
            "not allowed with argument",
        ),
        ([*_GATEWAY, "--insecure-control-plane"], "--policy-uri"),
        (
            [*_GATEWAY, "--insecure-control-plane", "--policy-uri", "http://u:p@127.0.0.1:9"],
            "is not a plain http(s) base URL",
        ),
        ([*_GATEWAY, *_POLICY, "--insecure-control-plane", "--reward-range=-1,1"], "counters"),
        ([*_GATEWAY, *_POLICY, "--insecure-control-plane", "--reward-range", "0,nan"], "finite"),
        (
            [
                "-m",
                "gateway",
                "--port",
                "3",
                "--control-port",
                "3",
                *_POLICY,
                "--insecure-control-plane",
            ],
            "different ports",
        ),
    ],
)
def test_the_commands_refuse_a_bad_start_with_exit_2(
    args: list[str], message: str, tmp_path: Path
) -> None:
    (tmp_path / "short").write_text("too-short\n", encoding="utf-8")
    argv = [
        a.replace("{artifact}", str(ARTIFACTS / "offers-41.json")).replace("{tmp}", str(tmp_path))
        for a in args
    ]
    env = {k: v for k, v in os.environ.items() if k != "GW_UNSET_TOKEN"}
    done = subprocess.run(
        [sys.executable, *argv], cwd=ROOT, capture_output=True, timeout=30, env=env
    )
    assert done.returncode == 2
    assert message in done.stderr.decode()
