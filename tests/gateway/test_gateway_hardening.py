"""The attacks the reference gateway once fell to, each replayed against a real gateway.

- router takeover: an unauthenticated route PUT on the client port with `generation: 10**30`
  and an `incumbent.uri` of the attacker's choosing made every later lockgate PUT (the rollback
  included) a 409 forever, and the URI made the gateway fetch any URL and echo its answer;
- evidence forgery: `reward: 1000` moved a candidate's mean from 0.1 to 20.1, and `1e308`
  overflowed its sum of squares (`/v1/stats` 500, `/metrics` +Inf, every reward trigger `error`);
- unbounded input: a 100 MB route was read and fsynced; targets and action labels grew without
  limit.

Every server is real (uvicorn on 127.0.0.1); the body-limit tests speak raw HTTP/1.1 over a
socket so they can declare 100 MB and send only a little of it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as Endpoint

from tests.gateway.servers import GatewayServer, PolicyServer, UvicornThread

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TARGET = "offers"
SAFE = {"basket": 30.0, "risky": 0.0}
MB = 1024 * 1024
ANSWER_WITHIN = 10.0
"""Seconds a refusal may take to arrive; it comes at once, this only bounds a broken test."""


@pytest.fixture
def policy_servers(incumbent: PolicyServer, candidate: PolicyServer) -> list[UvicornThread]:
    return [incumbent, candidate]


class Recorder:
    """A server that answers anything, remembering every request: an attacker's or an internal
    service's URL, to prove the gateway never called it."""

    def __init__(self, status: int = 200, body: str = '{"action": "none"}') -> None:
        self.requests: list[str] = []

        async def anything(request: Request) -> Response:
            self.requests.append(f"{request.method} {request.url.path}")
            return Response(body, status_code=status, media_type="application/json")

        methods = ["GET", "POST", "PUT", "DELETE"]
        app = Starlette(routes=[Endpoint("/{path:path}", anything, methods=methods)])
        self.server = UvicornThread(app, name="recorder")

    @property
    def url(self) -> str:
        """Its base URL."""
        return self.server.url


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    recording = Recorder()
    with recording.server:
        yield recording


def _route(
    incumbent: PolicyServer | str,
    candidate: PolicyServer | str | None = None,
    *,
    generation: int = 1,
    mode: str = "split",
    percent: float = 50.0,
    rollout_id: str = "rollout-offers/run-1",
) -> dict[str, Any]:
    def version(server: PolicyServer | str, name: str) -> dict[str, str]:
        return {"version": name, "uri": server if isinstance(server, str) else server.url}

    return {
        "rollout_id": rollout_id,
        "generation": generation,
        "incumbent": version(incumbent, "41"),
        "candidate": None if candidate is None else version(candidate, "42"),
        "mode": mode if candidate is not None else "off",
        "percent": percent if candidate is not None else 0.0,
        "scope": None,
        "guardrails": {"blocked_actions": ["discount_90"]},
    }


async def _put(
    http: httpx.AsyncClient,
    gateway: GatewayServer,
    route: dict[str, Any],
    target: str = TARGET,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await http.put(
        f"{gateway.control_url}/v1/targets/{target}/route",
        json=route,
        headers=gateway.auth if headers is None else headers,
    )


async def _read(http: httpx.AsyncClient, gateway: GatewayServer) -> httpx.Response:
    return await http.get(f"{gateway.control_url}/v1/targets/{TARGET}/route", headers=gateway.auth)


async def _decide(http: httpx.AsyncClient, gateway: GatewayServer, unit: str) -> dict[str, Any]:
    response = await http.post(
        f"{gateway.url}/v1/targets/{TARGET}/decide", json={"unit_id": unit, "context": SAFE}
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _now_ms() -> int:
    return int(time.time() * 1000)


# ----------------------------------------------------------------------- router takeover


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer not-the-token-at-all-0123456789",
        "Bearer",
        "Basic bG9ja2dhdGU6c2VjcmV0",
        "{token}",  # the token without its scheme
        "Bearer {token}x",  # the token and one more character
        "Bearer {prefix}",  # most of the token
    ],
)
async def test_without_the_token_the_control_plane_answers_401_and_changes_nothing(
    http: httpx.AsyncClient,
    gateway: GatewayServer,
    incumbent: PolicyServer,
    candidate: PolicyServer,
    authorization: str | None,
) -> None:
    assert gateway.token is not None
    assert (await _put(http, gateway, _route(incumbent, candidate))).status_code == 200
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization.format(
            token=gateway.token, prefix=gateway.token[:-1]
        )
    takeover = _route(incumbent, candidate, generation=2, percent=100)
    refused = await _put(http, gateway, takeover, headers=headers)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert gateway.token not in refused.text
    assert gateway.token[:8] not in refused.text
    for path in (f"/v1/targets/{TARGET}/route", "/v1/stats?query=x", "/metrics"):
        read = await http.get(f"{gateway.control_url}{path}", headers=headers)
        assert read.status_code == 401, path
        assert read.json() == refused.json(), "every refusal is the same: nothing to learn"
    assert (await _read(http, gateway)).json()["percent"] == 50.0, "the route is unchanged"


async def test_the_data_port_has_no_route_stats_or_metrics_endpoint(
    http: httpx.AsyncClient, gateway: GatewayServer, incumbent: PolicyServer
) -> None:
    # even with the token: the client port has no control endpoint at all
    put = await http.put(
        f"{gateway.url}/v1/targets/{TARGET}/route", json=_route(incumbent), headers=gateway.auth
    )
    assert put.status_code == 404
    for path in (f"/v1/targets/{TARGET}/route", "/v1/stats?query=x", "/metrics"):
        assert (await http.get(f"{gateway.url}{path}", headers=gateway.auth)).status_code == 404
    assert (await _read(http, gateway)).status_code == 404, "no route was set"
    # and the readiness probes on both ports say nothing about the routes
    for url in (gateway.url, gateway.control_url):
        assert (await http.get(f"{url}/healthz")).json() == {"status": "ok"}


@pytest.mark.parametrize(
    "generation",
    [10**30, 2**63, 2**63 - 1, "in two days"],
    ids=["10**30", "2**63", "int64 max", "two days ahead"],
)
async def test_a_generation_out_of_bounds_is_refused_and_lockgate_keeps_the_route(
    http: httpx.AsyncClient,
    gateway: GatewayServer,
    incumbent: PolicyServer,
    candidate: PolicyServer,
    generation: int | str,
) -> None:
    """The takeover's generation: even with the token, it can no longer lock lockgate out."""
    held = _route(incumbent, candidate, generation=_now_ms(), percent=10)
    assert (await _put(http, gateway, held)).status_code == 200
    far = _now_ms() + 2 * 24 * 3600 * 1000 if generation == "in two days" else generation
    takeover = _route(incumbent, None, generation=int(far), rollout_id="attacker")
    refused = await _put(http, gateway, takeover)
    assert refused.status_code == 422
    assert "generation" in refused.json()["detail"]
    assert (await _read(http, gateway)).json()["rollout_id"] == "rollout-offers/run-1"
    # lockgate's next change, and its rollback, still land
    raised = _route(incumbent, candidate, generation=_now_ms() + 1, percent=50)
    assert (await _put(http, gateway, raised)).status_code == 200
    rollback = _route(incumbent, None, generation=_now_ms() + 2)
    assert (await _put(http, gateway, rollback)).status_code == 200
    assert (await _read(http, gateway)).json()["mode"] == "off"


async def test_a_generation_an_hour_ahead_is_clock_skew_and_accepted(
    http: httpx.AsyncClient, gateway: GatewayServer, incumbent: PolicyServer
) -> None:
    route = _route(incumbent, generation=_now_ms() + 3600 * 1000)
    assert (await _put(http, gateway, route)).status_code == 200


@pytest.mark.parametrize("role", ["incumbent", "candidate"])
async def test_a_route_naming_another_policy_server_is_refused_and_nothing_is_fetched(
    http: httpx.AsyncClient,
    gateway: GatewayServer,
    incumbent: PolicyServer,
    candidate: PolicyServer,
    recorder: Recorder,
    role: str,
) -> None:
    """The takeover's URI, a request forgery: the gateway never calls a URL it was not given."""
    route = (
        _route(recorder.url, candidate)
        if role == "incumbent"
        else _route(incumbent, recorder.url, percent=100)
    )
    refused = await _put(http, gateway, route)
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert f"{role}.uri" in detail
    assert "not one of this gateway's policy servers" in detail
    assert incumbent.url in detail, "the detail names the allowed servers, to fix the route"
    decide = await http.post(
        f"{gateway.url}/v1/targets/{TARGET}/decide", json={"unit_id": "u", "context": SAFE}
    )
    assert decide.status_code == 404, "no route was held"
    assert recorder.requests == [], "not one request reached the URI"


@pytest.mark.parametrize(
    "spelling",
    ["{url}/", "{url}//", "HTTP://127.0.0.1:{port}", "http://localhost:{port}", "{url}/act"],
)
async def test_only_spellings_of_an_allowed_server_pass_the_allow_list(
    http: httpx.AsyncClient,
    gateway: GatewayServer,
    incumbent: PolicyServer,
    spelling: str,
) -> None:
    uri = spelling.format(url=incumbent.url, port=incumbent.port)
    answer = await _put(http, gateway, _route(uri))
    same_server = spelling in ("{url}/", "{url}//", "HTTP://127.0.0.1:{port}")
    assert answer.status_code == (200 if same_server else 422), answer.text


async def test_a_policy_servers_error_text_is_never_echoed_to_a_client(
    http: httpx.AsyncClient, candidate: PolicyServer
) -> None:
    secret = "internal-db-password=hunter2 at 10.0.0.7"
    failing = Recorder(status=500, body=json.dumps({"detail": secret}))
    with failing.server, GatewayServer([failing.url, candidate]) as gateway:
        assert (await _put(http, gateway, _route(failing.url))).status_code == 200
        response = await http.post(
            f"{gateway.url}/v1/targets/{TARGET}/decide", json={"unit_id": "u", "context": SAFE}
        )
    assert response.status_code == 502
    assert secret not in response.text
    assert "hunter2" not in response.text
    assert (
        response.json()["detail"]
        == "incumbent 41 gave no action: its policy server answered HTTP 500"
    )


# ---------------------------------------------------------------------- evidence forgery


async def _reward_evidence(http: httpx.AsyncClient, gateway: GatewayServer) -> dict[str, Any]:
    """Everything a reward trigger could read about version 41's rewards."""
    evidence: dict[str, Any] = {}
    for stat in ("mean_reward", "rewarded", "reward_sum", "reward_squares"):
        answer = await http.get(
            f"{gateway.control_url}/v1/stats",
            params={"query": f"{stat} target={TARGET} version=41 window=5m"},
            headers=gateway.auth,
        )
        assert answer.status_code == 200, answer.text
        evidence[stat] = answer.json()["value"]
    text = (await http.get(f"{gateway.control_url}/metrics", headers=gateway.auth)).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(("lockgate_reward", "lockgate_rewarded")):
                evidence[sample.name] = sample.value
    return evidence


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ('{{"decision_id": "{decision}", "reward": 1000}}', 422, "reward 1000 is outside [0, 1]"),
        ('{{"decision_id": "{decision}", "reward": 1e308}}', 422, "is outside [0, 1]"),
        ('{{"decision_id": "{decision}", "reward": -0.5}}', 422, "is outside [0, 1]"),
        ('{{"decision_id": "{decision}", "reward": NaN}}', 422, "reward"),
        ('{{"decision_id": "{decision}", "reward": Infinity}}', 422, "reward"),
        ('{{"decision_id": "{decision}", "reward": 1e999}}', 422, "reward"),
        ('{{"decision_id": "0123456789abcdef0123456789abcdef", "reward": 1}}', 404, "no decision"),
        ('{{"decision_id": "{decision}{decision}x", "reward": 1}}', 422, "decision_id"),
    ],
    ids=["1000", "1e308", "negative", "NaN", "Infinity", "overflowing", "unknown", "long"],
)
async def test_forged_feedback_is_refused_and_the_evidence_is_unchanged(
    http: httpx.AsyncClient,
    gateway: GatewayServer,
    incumbent: PolicyServer,
    body: str,
    status: int,
    message: str,
) -> None:
    assert (await _put(http, gateway, _route(incumbent))).status_code == 200
    honest = [(await _decide(http, gateway, f"user-{n}"))["decision_id"] for n in range(10)]
    for decision_id in honest:
        sent = await http.post(
            f"{gateway.url}/v1/targets/{TARGET}/feedback",
            json={"decision_id": decision_id, "reward": 0.1},
        )
        assert sent.status_code == 200
    before = await _reward_evidence(http, gateway)
    assert before["mean_reward"] == pytest.approx(0.1)

    forged_for = (await _decide(http, gateway, "attacker"))["decision_id"]
    forged = await http.post(
        f"{gateway.url}/v1/targets/{TARGET}/feedback",
        content=body.format(decision=forged_for),
        headers={"content-type": "application/json"},
    )
    assert forged.status_code == status, forged.text
    assert message in forged.json()["detail"]
    assert await _reward_evidence(http, gateway) == before, "no trace in any stat or series"
    # the decision can still take its one honest reward, and only one
    url = f"{gateway.url}/v1/targets/{TARGET}/feedback"
    honest_reward = {"decision_id": forged_for, "reward": 1}
    assert (await http.post(url, json=honest_reward)).status_code == 200
    assert (await http.post(url, json=honest_reward)).status_code == 409
    after = await _reward_evidence(http, gateway)
    assert (after["rewarded"], after["mean_reward"]) == (11, pytest.approx(2.0 / 11))


async def test_feedback_counts_once_and_only_for_decisions_this_gateway_issued(
    http: httpx.AsyncClient, gateway: GatewayServer, incumbent: PolicyServer
) -> None:
    assert (await _put(http, gateway, _route(incumbent))).status_code == 200
    decision = (await _decide(http, gateway, "user-1"))["decision_id"]
    url = f"{gateway.url}/v1/targets/{TARGET}/feedback"
    assert (await http.post(url, json={"decision_id": decision, "reward": 1})).status_code == 200
    replays = await asyncio.gather(
        *(http.post(url, json={"decision_id": decision, "reward": 1}) for _ in range(20))
    )
    assert {r.status_code for r in replays} == {409}
    made_up = await http.post(url, json={"decision_id": "f" * 32, "reward": 1})
    assert made_up.status_code == 404
    evidence = await _reward_evidence(http, gateway)
    assert (evidence["rewarded"], evidence["reward_sum"]) == (1, 1.0)


async def test_the_reward_range_is_the_gateways_to_choose(
    http: httpx.AsyncClient, incumbent: PolicyServer
) -> None:
    from gateway.admission import RewardRange

    with GatewayServer([incumbent], reward_range=RewardRange(0, 5)) as gateway:
        assert (await _put(http, gateway, _route(incumbent))).status_code == 200
        url = f"{gateway.url}/v1/targets/{TARGET}/feedback"
        first, second = [(await _decide(http, gateway, f"u{n}"))["decision_id"] for n in (1, 2)]
        assert (await http.post(url, json={"decision_id": first, "reward": 5})).status_code == 200
        over = await http.post(url, json={"decision_id": second, "reward": 5.5})
        assert over.status_code == 422
        assert "outside [0, 5]" in over.json()["detail"]


# ----------------------------------------------------------------------- unbounded input


async def _raw_exchange(
    port: int, head: str, body: bytes, *, finish: bool = False
) -> tuple[int, bytes]:
    """Send `head` and `body` (never more) over a fresh connection; return the answer's status
    and the rest of the answer, read until the gateway closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode() + body)
        if finish:
            writer.write(b"0\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), ANSWER_WITHIN)  # until EOF
    finally:
        writer.close()
    status = int(answer.split(b" ", 2)[1])
    return status, answer


async def test_a_100_mb_route_is_refused_with_413_without_being_read(
    http: httpx.AsyncClient, gateway: GatewayServer, incumbent: PolicyServer
) -> None:
    assert (await _put(http, gateway, _route(incumbent))).status_code == 200
    head = (
        f"PUT /v1/targets/{TARGET}/route HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        f"authorization: Bearer {gateway.token}\r\ncontent-type: application/json\r\n"
        f"content-length: {100 * MB}\r\n\r\n"
    )
    # 64 KiB of the declared 100 MB: the answer comes (and the connection closes) anyway
    status, answer = await _raw_exchange(gateway.ports[1], head, b"{" + b" " * 65_535)
    assert status == 413
    assert b"connection: close" in answer.lower()
    assert b"larger than the 65536 bytes" in answer
    assert (await _read(http, gateway)).json()["generation"] == 1, "the route is unchanged"


async def test_an_unauthenticated_100_mb_route_is_refused_with_401_without_being_read(
    gateway: GatewayServer,
) -> None:
    head = (
        f"PUT /v1/targets/{TARGET}/route HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        f"content-length: {100 * MB}\r\n\r\n"
    )
    status, answer = await _raw_exchange(gateway.ports[1], head, b"x" * 4096)
    assert status == 401
    assert b"connection: close" in answer.lower()


@pytest.mark.parametrize(
    ("path", "limit"),
    [(f"/v1/targets/{TARGET}/decide", 8192), (f"/v1/targets/{TARGET}/feedback", 1024)],
)
async def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(
    gateway: GatewayServer, incumbent: PolicyServer, http: httpx.AsyncClient, path: str, limit: int
) -> None:
    """No Content-Length to refuse up front: the body is counted as it arrives."""
    assert (await _put(http, gateway, _route(incumbent))).status_code == 200
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        "transfer-encoding: chunked\r\n\r\n"
    )
    piece = b'{"unit_id": "' + b"u" * 1000
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(limit // 1000 + 1))
    # past the limit, and never finished: the gateway answers without waiting for the end
    status, answer = await _raw_exchange(gateway.port, head, chunks)
    assert status == 413
    assert f"larger than the {limit} bytes".encode() in answer


@pytest.mark.parametrize(
    ("plane", "method", "path", "size"),
    [
        ("control", "PUT", f"/v1/targets/{TARGET}/route", 64 * 1024 + 1),
        ("data", "POST", f"/v1/targets/{TARGET}/decide", 8 * 1024 + 1),
        ("data", "POST", f"/v1/targets/{TARGET}/feedback", 1024 + 1),
        ("control", "GET", "/metrics", 1),
        ("data", "GET", "/healthz", 1),
    ],
)
async def test_every_endpoint_has_a_body_limit(
    http: httpx.AsyncClient,
    gateway: GatewayServer,
    incumbent: PolicyServer,
    plane: str,
    method: str,
    path: str,
    size: int,
) -> None:
    assert (await _put(http, gateway, _route(incumbent))).status_code == 200
    url = gateway.control_url if plane == "control" else gateway.url
    answer = await http.request(method, f"{url}{path}", content=b" " * size, headers=gateway.auth)
    assert answer.status_code == 413, answer.text


async def test_the_number_of_targets_is_bounded(
    http: httpx.AsyncClient, incumbent: PolicyServer
) -> None:
    with GatewayServer([incumbent], max_targets=2) as gateway:
        for target in ("offers", "ranker"):
            assert (await _put(http, gateway, _route(incumbent), target=target)).status_code == 200
        third = await _put(http, gateway, _route(incumbent), target="pricing")
        assert third.status_code == 422
        assert "already routes 2 targets" in third.json()["detail"]
        newer = _route(incumbent, generation=2)
        assert (await _put(http, gateway, newer, target="offers")).status_code == 200


@pytest.mark.parametrize("target", ["Offers", "offers_v2", "a" * 64, "-offers", "%2e%2e"])
async def test_a_target_that_is_not_a_lockgate_target_name_is_refused(
    http: httpx.AsyncClient, gateway: GatewayServer, incumbent: PolicyServer, target: str
) -> None:
    answer = await _put(http, gateway, _route(incumbent), target=target)
    assert answer.status_code == 422
    assert "not a lockgate target name" in answer.json()["detail"]


def _counting_policy() -> UvicornThread:
    """A policy server whose every answer is a new action: a0, a1, a2, ..."""
    counter = itertools.count()

    async def act(request: Request) -> Response:
        await request.body()
        return JSONResponse({"action": f"a{next(counter)}"})

    return UvicornThread(Starlette(routes=[Endpoint("/act", act, methods=["POST"])]))


async def test_actions_beyond_the_cap_are_counted_as_other_and_still_served(
    http: httpx.AsyncClient,
) -> None:
    with _counting_policy() as policy, GatewayServer([policy], max_actions=3) as gateway:
        assert (await _put(http, gateway, _route(policy.url))).status_code == 200
        served = [(await _decide(http, gateway, f"u{n}"))["action"] for n in range(6)]
        assert served == [f"a{n}" for n in range(6)], "the decision is the policy's"
        text = (await http.get(f"{gateway.control_url}/metrics", headers=gateway.auth)).text
    labels = {
        sample.labels["action"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "lockgate_decisions_total"
    }
    assert labels == {"a0": 1, "a1": 1, "a2": 1, "other": 3}


async def test_an_oversized_action_is_a_policy_failure_not_a_label(
    http: httpx.AsyncClient,
) -> None:
    wordy = Recorder(body=json.dumps({"action": "x" * 129}))
    with wordy.server, GatewayServer([wordy.url]) as gateway:
        assert (await _put(http, gateway, _route(wordy.url))).status_code == 200
        response = await http.post(
            f"{gateway.url}/v1/targets/{TARGET}/decide", json={"unit_id": "u", "context": SAFE}
        )
        assert response.status_code == 502
        assert "without a usable action" in response.json()["detail"]
        text = (await http.get(f"{gateway.control_url}/metrics", headers=gateway.auth)).text
    assert "x" * 129 not in text


@pytest.fixture
async def insecure(
    incumbent: PolicyServer,
) -> AsyncIterator[GatewayServer]:
    with GatewayServer([incumbent], insecure=True) as gateway:
        yield gateway


async def test_an_insecure_control_plane_is_open_but_still_only_on_its_own_port(
    http: httpx.AsyncClient, insecure: GatewayServer, incumbent: PolicyServer
) -> None:
    route = _route(incumbent)
    put = await http.put(f"{insecure.control_url}/v1/targets/{TARGET}/route", json=route)
    assert put.status_code == 200
    data = await http.put(f"{insecure.url}/v1/targets/{TARGET}/route", json=route)
    assert data.status_code == 404
