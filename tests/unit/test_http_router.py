"""HttpTrafficRouter against scripted router answers (httpx.MockTransport, no network)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from activities.contracts import Route, RouteMode
from activities.errors import RouteConflict, RouterError, RouterUnavailable
from activities.http_boundary import Unreachable
from activities.routers.http_router import HttpTrafficRouter
from rollout_specs import Guardrails, HttpRouter, PolicyVersion
from tests.helpers.scripted import NO_WAIT, Scripted

BASE_URL = "http://router.test:8080"
ROUTE_URL = f"{BASE_URL}/v1/targets/ranker/route"
ROUTE = Route(
    rollout_id="rollout-ranker",
    generation=3,
    incumbent=PolicyVersion(version="41"),
    candidate=PolicyVersion(version="42", uri="s3://policies/ranker/42"),
    mode=RouteMode.SPLIT,
    percent=10.0,
    scope={"region": ["eu-west-1"]},
    guardrails=Guardrails(blocked_actions=["discount_90"]),
)
# The router contract (docs/router-contract.md), spelled out independently of the Route model.
ROUTE_JSON: dict[str, Any] = {
    "rollout_id": "rollout-ranker",
    "generation": 3,
    "incumbent": {"version": "41", "uri": None},
    "candidate": {"version": "42", "uri": "s3://policies/ranker/42"},
    "mode": "split",
    "percent": 10.0,
    "scope": {"region": ["eu-west-1"]},
    "guardrails": {"blocked_actions": ["discount_90"]},
}


class InMemoryRouter:
    """The contract's happy path: PUT stores the body, GET answers it or 404."""

    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            self.routes[request.url.path] = request.content
            return httpx.Response(200, content=request.content)
        stored = self.routes.get(request.url.path)
        if stored is None:
            return httpx.Response(404, json={"detail": "no route"})
        return httpx.Response(200, content=stored)


@pytest.fixture
def scripted() -> Scripted:
    return Scripted()


@pytest.fixture
async def http_router(scripted: Scripted) -> AsyncIterator[HttpTrafficRouter]:
    config = HttpRouter(type="http", url=BASE_URL, timeout=timedelta(seconds=4))
    async with httpx.AsyncClient(transport=httpx.MockTransport(scripted)) as client:
        yield HttpTrafficRouter(config, client, read_retries=NO_WAIT)


async def test_put_sends_the_contract_body_to_the_target_path(
    scripted: Scripted, http_router: HttpTrafficRouter
) -> None:
    scripted.script(httpx.Response(200, json=ROUTE_JSON))

    acknowledged = await http_router.put_route("ranker", ROUTE)

    (request,) = scripted.requests
    assert request.method == "PUT"
    assert str(request.url) == ROUTE_URL
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == ROUTE_JSON
    assert request.extensions["timeout"]["read"] == pytest.approx(4.0, abs=0.05)
    assert acknowledged == ROUTE


async def test_put_ignores_fields_the_router_adds(
    scripted: Scripted, http_router: HttpTrafficRouter
) -> None:
    scripted.script(httpx.Response(200, json={**ROUTE_JSON, "applied_at": "2025-01-01T00:00:00Z"}))

    assert await http_router.put_route("ranker", ROUTE) == ROUTE


async def test_409_is_a_conflict_quoting_the_router_and_is_not_retried(
    scripted: Scripted, http_router: HttpTrafficRouter
) -> None:
    detail = (
        "target ranker holds generation 5 (rollout rollout-ranker); refusing older generation 3"
    )
    scripted.script(httpx.Response(409, json={"detail": detail}))

    with pytest.raises(RouteConflict) as caught:
        await http_router.put_route("ranker", ROUTE)

    assert detail in str(caught.value)
    assert len(scripted.requests) == 1


async def test_put_5xx_is_unavailable_and_left_to_temporal_to_retry(
    scripted: Scripted, http_router: HttpTrafficRouter
) -> None:
    scripted.script(httpx.Response(500, json={"detail": "config store down"}))

    with pytest.raises(
        RouterUnavailable, match=re.escape("HTTP 500 (config store down)")
    ) as caught:
        await http_router.put_route("ranker", ROUTE)

    assert ROUTE_URL in str(caught.value)
    assert len(scripted.requests) == 1


async def test_put_connection_refused_is_unavailable(
    scripted: Scripted, http_router: HttpTrafficRouter
) -> None:
    scripted.script(httpx.ConnectError("Connection refused"))

    with pytest.raises(RouterUnavailable, match="could not be reached") as caught:
        await http_router.put_route("ranker", ROUTE)

    assert isinstance(caught.value.__cause__, Unreachable)
    assert isinstance(caught.value.__cause__.__cause__, httpx.ConnectError)
    assert len(scripted.requests) == 1


async def test_other_4xx_is_a_router_error_with_its_detail(
    scripted: Scripted, http_router: HttpTrafficRouter
) -> None:
    scripted.script(httpx.Response(422, json={"detail": "unknown policy version 42"}))

    with pytest.raises(
        RouterError, match=re.escape("HTTP 422 (unknown policy version 42)")
    ) as caught:
        await http_router.put_route("ranker", ROUTE)

    assert caught.type is RouterError


async def test_get_404_means_no_route(scripted: Scripted, http_router: HttpTrafficRouter) -> None:
    scripted.script(httpx.Response(404, json={"detail": "target ranker has no route"}))

    assert await http_router.get_route("ranker") is None
    (request,) = scripted.requests
    assert request.method == "GET"
    assert str(request.url) == ROUTE_URL


async def test_get_is_retried_on_5xx(scripted: Scripted, http_router: HttpTrafficRouter) -> None:
    scripted.script(httpx.Response(503), httpx.Response(200, json=ROUTE_JSON))

    assert await http_router.get_route("ranker") == ROUTE
    assert len(scripted.requests) == 2


async def test_get_5xx_on_every_attempt_is_unavailable(
    scripted: Scripted, http_router: HttpTrafficRouter
) -> None:
    scripted.script(httpx.Response(503, json={"detail": "restarting"}))

    with pytest.raises(RouterUnavailable, match="restarting"):
        await http_router.get_route("ranker")

    assert len(scripted.requests) == 3


async def test_get_of_something_that_is_not_a_route_is_an_error(
    scripted: Scripted, http_router: HttpTrafficRouter
) -> None:
    scripted.script(httpx.Response(200, json={"weights": {"41": 90, "42": 10}}))

    with pytest.raises(RouterError, match=r"not a route \(.*rollout_id: Field required") as caught:
        await http_router.get_route("ranker")

    assert caught.type is RouterError


async def test_round_trip_through_a_router_that_keeps_what_it_is_given() -> None:
    config = HttpRouter(type="http", url=BASE_URL)
    async with httpx.AsyncClient(transport=httpx.MockTransport(InMemoryRouter())) as client:
        http_router = HttpTrafficRouter(config, client)

        assert await http_router.get_route("ranker") is None
        assert await http_router.put_route("ranker", ROUTE) == ROUTE
        assert await http_router.get_route("ranker") == ROUTE
        assert await http_router.get_route("pricing") is None
