"""Caps enforced at serving (issue 14), and the action parameters they judge.

A real gateway and two real policy servers on 127.0.0.1 (uvicorn threads): the incumbent 41
always answers `none`; the candidate 42 answers `discount` (with `amount` = the context's
`basket`) when the context says `want_discount: 1`, `refund_full` (amount 500) for
`want_refund: 1`, else `none`. The share caps' windows run on a clock the test moves, so
sliding a window takes no sleep.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as Endpoint

from gateway.admission import PolicyServers
from gateway.caps import ShareWindow
from gateway.policies import ArtifactError, LinearSoftmaxPolicy, PolicyArtifact, load_policy
from gateway.policy_client import PolicyClient, PolicyError, policy_http_client
from rollout_specs import PolicyVersion
from tests.gateway.servers import GatewayServer, PolicyServer, UvicornThread

TARGET = "offers"
INCUMBENT: dict[str, Any] = {
    "name": "offers",
    "version": "41",
    "actions": ["none"],
    "features": [],
    "weights": [[]],
    "bias": [0.0],
}
CANDIDATE: dict[str, Any] = {
    "name": "offers",
    "version": "42",
    "actions": ["none", "discount", "refund_full"],
    "features": ["basket", "want_discount", "want_refund"],
    "weights": [[0.0, 0.0, 0.0], [0.0, 200.0, 0.0], [0.0, 0.0, 200.0]],
    "bias": [100.0, 0.0, 0.0],
    "parameters": {
        "discount": {"amount": {"intercept": 0.0, "weights": {"basket": 1.0}}},
        "refund_full": {"amount": {"intercept": 500.0}},
    },
}
NONE = {"basket": 30.0, "want_discount": 0.0, "want_refund": 0.0}
REFUND = {"basket": 30.0, "want_discount": 0.0, "want_refund": 1.0}


def discount(basket: float = 30.0) -> dict[str, float]:
    """The context in which the candidate picks `discount` with amount = basket."""
    return {"basket": basket, "want_discount": 1.0, "want_refund": 0.0}


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def incumbent() -> Iterator[PolicyServer]:
    with PolicyServer(INCUMBENT) as server:
        yield server


@pytest.fixture(scope="module")
def candidate() -> Iterator[PolicyServer]:
    with PolicyServer(CANDIDATE) as server:
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def gateway(
    incumbent: PolicyServer, candidate: PolicyServer, clock: Clock
) -> Iterator[GatewayServer]:
    with GatewayServer([incumbent, candidate], monotonic_clock=clock) as server:
        yield server


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, trust_env=False) as http:
        yield http


class Stack:
    """The test's view of one gateway: routes, decisions, metrics and stats over HTTP."""

    def __init__(
        self,
        client: httpx.Client,
        gateway: GatewayServer,
        incumbent: PolicyServer,
        candidate: PolicyServer,
    ) -> None:
        self.client = client
        self.gateway = gateway
        self.incumbent = incumbent
        self.candidate = candidate
        self.generation = 0

    def route(self, guardrails: dict[str, Any], mode: str = "split", percent: float = 100) -> None:
        """Put a route with these guardrails (a newer generation each time)."""
        self.generation += 1
        route = {
            "rollout_id": "rollout-offers/run-1",
            "generation": self.generation,
            "incumbent": self.incumbent.as_version(),
            "candidate": self.candidate.as_version(),
            "mode": mode,
            "percent": percent,
            "guardrails": guardrails,
        }
        answer = self.client.put(
            f"{self.gateway.control_url}/v1/targets/{TARGET}/route",
            json=route,
            headers=self.gateway.auth,
        )
        assert answer.status_code == 200, answer.text

    def decide(
        self, context: dict[str, float], unit: str = "u-1", attributes: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """One decision's answer (200 asserted)."""
        answer = self.client.post(
            f"{self.gateway.url}/v1/targets/{TARGET}/decide",
            json={"unit_id": unit, "context": context, "attributes": attributes or {}},
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels` (0 if none)."""
        text = self.client.get(
            f"{self.gateway.control_url}/metrics", headers=self.gateway.auth
        ).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )

    def stat(self, query: str) -> float | None:
        """`/v1/stats`'s value for `query`."""
        answer = self.client.get(
            f"{self.gateway.control_url}/v1/stats",
            params={"query": query},
            headers=self.gateway.auth,
        )
        assert answer.status_code == 200, answer.text
        value: float | None = answer.json()["value"]
        return value


@pytest.fixture
def stack(
    client: httpx.Client, gateway: GatewayServer, incumbent: PolicyServer, candidate: PolicyServer
) -> Stack:
    return Stack(client, gateway, incumbent, candidate)


# ------------------------------------------------------------------------------ share caps


def test_a_share_window_never_lets_the_share_pass_the_cap_and_forgets_old_seconds() -> None:
    window = ShareWindow(seconds=10, max_share=0.25)
    served = 0
    for step in range(40):
        hit = not window.would_exceed(100.0)
        window.record(100.0, hit)
        served += hit
        hits, total = window.counts(100.0)
        assert hits / total <= 0.25, step
    assert window.counts(100.0) == (served, 40)
    assert served == 10
    assert window.counts(109.9) == (10, 40)  # still inside (100, 110)
    assert window.counts(110.0) == (0, 0)  # the second 100 has left the window


def test_a_share_cap_keeps_the_served_share_under_it_and_lifts_as_the_window_slides(
    stack: Stack, clock: Clock
) -> None:
    stack.route({"caps": [{"action": "discount", "max_share": 0.5, "window": "10s"}]})
    served: list[tuple[float, str]] = []
    refused = 0

    def ask(context: dict[str, float]) -> dict[str, Any]:
        nonlocal refused
        answer = stack.decide(context)
        assert (answer["arm"], answer["version"]) == ("candidate", "42")
        served.append((clock.now, answer["action"]))
        if answer["intervention"] is not None:
            assert (answer["intervention"], answer["guardrail"]) == ("share", "discount")
            assert answer["action"] == "none"
            refused += 1
        inside = [action for at, action in served if int(at) > int(clock.now) - 10]
        assert inside.count("discount") / len(inside) <= 0.5
        return answer

    clock.now = 100.0
    for _ in range(4):
        ask(NONE)
    phase_a = [ask(discount())["action"] for _ in range(8)]
    assert phase_a == ["discount"] * 4 + ["none", "discount", "none", "discount"]
    clock.now = 105.0
    phase_b = [ask(discount())["action"] for _ in range(4)]
    assert phase_b == ["none", "discount", "none", "discount"]
    clock.now = 111.0  # second 100 has left the window; second 105 (2 of 4 discounts) is in it
    for _ in range(4):
        ask(NONE)
    phase_c = [ask(discount())["action"] for _ in range(4)]
    assert phase_c == ["discount"] * 4
    assert refused == 4
    assert (
        stack.metric(
            "lockgate_guardrail_interventions_total",
            target=TARGET,
            guardrail="discount",
            kind="share",
        )
        == refused
    )
    assert stack.stat(f"interventions target={TARGET} version=42 window=1h") == refused
    # an overruled decision is still the candidate's, counted with the action served
    assert (
        stack.metric("lockgate_decisions_total", arm="candidate", version="42", action="none")
        == 8 + refused
    )


def test_a_new_percent_keeps_the_window_and_a_new_rollout_mode_starts_it_empty(
    stack: Stack, clock: Clock
) -> None:
    caps = {"caps": [{"action": "discount", "max_share": 0.5, "window": "1m"}]}
    stack.route(caps)
    assert [stack.decide(discount())["action"] for _ in range(3)] == ["none", "discount", "none"]
    stack.route(caps, percent=100)  # same rollout, same caps: the window goes on
    assert stack.decide(discount())["action"] == "discount"
    assert stack.decide(discount())["action"] == "none"
    stack.route(caps, mode="shadow")
    assert stack.decide(discount())["intervention"] == "share"  # a window of its own, empty
    stack.route(caps)  # split again, from the shadow window: empty, the first is refused
    assert stack.decide(discount())["intervention"] == "share"


# ------------------------------------------------------------------------------ value caps


def test_a_value_cap_overrules_a_parameter_above_it_for_every_action(stack: Stack) -> None:
    stack.route({"caps": [{"field": "amount", "max": 100}]})
    fine = stack.decide(discount(80.0))
    assert (fine["action"], fine["params"], fine["intervention"]) == (
        "discount",
        {"amount": 80.0},
        None,
    )
    big = stack.decide(discount(150.0))
    assert (big["action"], big["arm"], big["guardrail"], big["intervention"], big["params"]) == (
        "none",
        "candidate",
        "amount",
        "value",
        None,
    )
    assert stack.decide(REFUND)["intervention"] == "value"  # amount 500
    assert stack.decide(discount(100.0))["action"] == "discount"  # the cap itself is served
    assert (
        stack.metric(
            "lockgate_guardrail_interventions_total",
            target=TARGET,
            guardrail="amount",
            kind="value",
        )
        == 2
    )
    # spend: the served parameters only, by the arm that decided
    assert (
        stack.metric("lockgate_action_value_total", arm="candidate", version="42", field="amount")
        == 180.0
    )
    assert stack.stat(f"action_value target={TARGET} version=42 field=amount") == 180.0
    assert stack.stat(f"action_value target={TARGET} version=42 field=other") == 0.0
    assert stack.stat(f"interventions target={TARGET} version=42") == 2


def test_a_value_cap_with_an_action_caps_only_that_actions_parameter(stack: Stack) -> None:
    stack.route({"caps": [{"field": "amount", "max": 100, "action": "refund_full"}]})
    assert stack.decide(discount(150.0))["action"] == "discount"
    refund = stack.decide(REFUND)
    assert (refund["action"], refund["guardrail"], refund["intervention"]) == (
        "none",
        "amount",
        "value",
    )


def test_the_serving_order_is_blocked_then_review_then_value_then_share(stack: Stack) -> None:
    stack.route(
        {
            "blocked_actions": ["refund_full"],
            "caps": [
                {"field": "amount", "max": 100},
                {"action": "discount", "max_share": 0.5, "window": "1m"},
            ],
        }
    )
    blocked = stack.decide(REFUND)  # above the value cap too: blocked comes first
    assert (blocked["intervention"], blocked["guardrail"]) == ("blocked", "refund_full")
    assert (
        stack.metric(
            "lockgate_guardrail_violations_total", guardrail="refund_full", arm="candidate"
        )
        == 1
    )
    capped = stack.decide(discount(150.0))  # above the value cap and past the share: value
    assert (capped["intervention"], capped["guardrail"]) == ("value", "amount")
    stack.route({"review": {"actions": ["refund_full"]}, "caps": [{"field": "amount", "max": 1}]})
    assert stack.decide(REFUND)["intervention"] == "review"


def test_in_shadow_would_be_interventions_are_counted_and_the_incumbent_serves(
    stack: Stack,
) -> None:
    stack.route({"caps": [{"field": "amount", "max": 100}]}, mode="shadow")
    answer = stack.decide(discount(150.0))
    assert (answer["action"], answer["arm"], answer["version"], answer["shadow_action"]) == (
        "none",
        "incumbent",
        "41",
        "discount",
    )
    assert (answer["guardrail"], answer["intervention"], answer["params"]) == (
        "amount",
        "value",
        None,
    )
    assert stack.decide(discount(50.0))["intervention"] is None
    assert stack.metric("lockgate_guardrail_interventions_total", kind="value") == 1
    # nothing of the candidate's was served: no spend
    assert stack.metric("lockgate_action_value_total") == 0


def test_without_guardrails_the_answer_says_nothing_was_overruled(stack: Stack) -> None:
    stack.route({})
    answer = stack.decide(discount(20.0))
    assert {k: answer[k] for k in ("action", "guardrail", "intervention", "proposal")} == {
        "action": "discount",
        "guardrail": None,
        "intervention": None,
        "proposal": None,
    }
    assert answer["params"] == {"amount": 20.0}
    assert stack.decide(NONE)["params"] is None


# ------------------------------------------------------------------------------ parameters


def test_an_artifact_gives_listed_actions_their_linear_parameters() -> None:
    policy = LinearSoftmaxPolicy(PolicyArtifact.model_validate(CANDIDATE))
    assert policy.parameters("discount", {"basket": 42.0}) == {"amount": 42.0}
    assert policy.parameters("refund_full", {}) == {"amount": 500.0}
    assert policy.parameters("none", {"basket": 1.0}) is None


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"refund": {"amount": {"intercept": 1}}}, "names the action 'refund'"),
        ({"discount": {"amount": {"intercept": 1, "weights": {"age": 2}}}}, "names age"),
        ({"discount": {"a-b": {"intercept": 1}}}, "'a-b' is not a parameter name"),
        ({"discount": {"amount": {}}}, "intercept"),
        ({"discount": {f"p{i}": {"intercept": 1} for i in range(17)}}, "at most 16"),
    ],
)
def test_bad_parameters_are_refused_naming_the_problem(
    tmp_path: Path, parameters: dict[str, Any], message: str
) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({**CANDIDATE, "parameters": parameters}))
    with pytest.raises(ArtifactError, match=message):
        load_policy(path)


def test_an_infinite_parameter_value_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(
        json.dumps(
            {**CANDIDATE, "parameters": {"discount": {"amount": {"intercept": float("inf")}}}}
        ).replace("Infinity", "1e999")
    )
    with pytest.raises(ArtifactError, match="amount"):
        load_policy(path)


class _Scripted:
    """A policy server that answers whatever body the test sets."""

    def __init__(self) -> None:
        self.body = b"{}"
        self.server = UvicornThread(
            Starlette(routes=[Endpoint("/act", self._act, methods=["POST"])]), "scripted"
        )

    async def _act(self, request: Request) -> Response:
        return Response(self.body, media_type="application/json")


@pytest.fixture(scope="module")
def scripted() -> Iterator[_Scripted]:
    policy = _Scripted()
    with policy.server:
        yield policy


@pytest.mark.parametrize(
    "params",
    [
        "[1]",
        '{"amount": "12"}',
        '{"amount": true}',
        '{"amount": NaN}',
        '{"amount": Infinity}',
        '{"amount": 1' + "0" * 400 + "}",
        '{"a-b": 1}',
        '{"' + "a" * 65 + '": 1}',
        "{" + ",".join(f'"p{i}": 1' for i in range(17)) + "}",
    ],
)
async def test_unusable_params_are_a_failed_policy_call(scripted: _Scripted, params: str) -> None:
    scripted.body = ('{"action": "discount", "params": ' + params + "}").encode()
    async with policy_http_client() as http:
        client = PolicyClient(http, PolicyServers([scripted.server.url]))
        with pytest.raises(PolicyError) as caught:
            await client.act(PolicyVersion(version="42", uri=scripted.server.url), {})
    assert caught.value.reason == "its policy server answered unusable action parameters"


async def test_usable_params_come_back_as_floats_and_null_means_none(scripted: _Scripted) -> None:
    version = PolicyVersion(version="42", uri=scripted.server.url)
    async with policy_http_client() as http:
        client = PolicyClient(http, PolicyServers([scripted.server.url]))
        scripted.body = b'{"action": "discount", "params": {"amount": 12, "rate": 0.5}}'
        answer = await client.act(version, {})
        assert (answer.action, answer.params) == ("discount", {"amount": 12.0, "rate": 0.5})
        scripted.body = b'{"action": "discount", "params": null}'
        assert (await client.act(version, {})).params is None
        scripted.body = b'{"action": "none"}'
        assert (await client.act(version, {})).params is None
