"""The loopback fakes behave as specified: workflow and e2e tests trust them as fixtures.

The first part speaks raw HTTP to the servers; the second checks that lockgate's real backends
and the fakes agree on the wire format, so a workflow test failing is never the fake's fault.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from activities.contracts import Route, RouteMode
from activities.errors import (
    AmbiguousResultError,
    NoDataError,
    ProviderUnavailable,
    RouteConflict,
)
from activities.http_boundary import READ_RETRIES
from activities.providers.http_json import HttpJsonProvider
from activities.providers.prometheus import PrometheusProvider
from activities.routers.http_router import HttpTrafficRouter
from rollout_specs import HttpMonitoring, HttpRouter, PolicyVersion, PrometheusMonitoring
from tests.helpers.servers import MetricsServer, RouterServer, metric_key

NO_WAIT = dataclasses.replace(READ_RETRIES, first_wait=0, max_wait=0)


def route_body(
    generation: int, percent: float = 10.0, rollout: str = "rollout-ranker"
) -> dict[str, Any]:
    return {
        "rollout_id": rollout,
        "generation": generation,
        "incumbent": {"version": "41", "uri": None},
        "candidate": {"version": "42", "uri": None},
        "mode": "split",
        "percent": percent,
        "scope": None,
        "guardrails": {"blocked_actions": []},
    }


@pytest.fixture
def router_server() -> Iterator[RouterServer]:
    with RouterServer() as server:
        yield server


@pytest.fixture
def metrics_server() -> Iterator[MetricsServer]:
    with MetricsServer() as server:
        yield server


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as client:
        yield client


def route_url(server: RouterServer, target: str = "ranker") -> str:
    return f"{server.url}/v1/targets/{target}/route"


# RouterServer


def test_router_server_listens_on_loopback_with_an_os_chosen_port(
    router_server: RouterServer,
) -> None:
    assert router_server.url.startswith("http://127.0.0.1:")
    assert router_server.port > 0


def test_put_stores_the_route_and_get_answers_it(
    router_server: RouterServer, http: httpx.Client
) -> None:
    put = http.put(route_url(router_server), json=route_body(1))
    got = http.get(route_url(router_server))

    assert (put.status_code, put.json()) == (200, route_body(1))
    assert (got.status_code, got.json()) == (200, route_body(1))
    assert router_server.current("ranker") == route_body(1)
    assert router_server.history == [route_body(1)]


def test_get_without_a_route_is_404(router_server: RouterServer, http: httpx.Client) -> None:
    response = http.get(route_url(router_server, "pricing"))

    assert response.status_code == 404
    assert router_server.current("pricing") is None


def test_the_same_generation_is_acknowledged_with_the_stored_route(
    router_server: RouterServer, http: httpx.Client
) -> None:
    http.put(route_url(router_server), json=route_body(2, percent=10))

    again = http.put(route_url(router_server), json=route_body(2, percent=50))

    assert (again.status_code, again.json()) == (200, route_body(2, percent=10))
    assert router_server.history == [route_body(2, percent=10)]


def test_an_older_generation_is_refused_with_409_naming_the_holder(
    router_server: RouterServer, http: httpx.Client
) -> None:
    http.put(route_url(router_server), json=route_body(5))

    older = http.put(route_url(router_server), json=route_body(3, rollout="rollout-old"))

    assert older.status_code == 409
    assert older.json() == {
        "detail": "target ranker holds generation 5 (rollout rollout-ranker); "
        "refusing older generation 3"
    }
    assert router_server.current("ranker") == route_body(5)


def test_newer_generations_replace_the_route_and_are_recorded_in_order(
    router_server: RouterServer, http: httpx.Client
) -> None:
    for generation, percent in [(1, 0.0), (2, 10.0), (3, 100.0)]:
        http.put(route_url(router_server), json=route_body(generation, percent))

    assert [body["percent"] for body in router_server.history] == [0.0, 10.0, 100.0]
    assert router_server.current("ranker") == route_body(3, 100.0)


def test_refuse_next_answers_the_next_requests_with_the_status(
    router_server: RouterServer, http: httpx.Client
) -> None:
    router_server.refuse_next(2)
    refused_put = http.put(route_url(router_server), json=route_body(1))
    refused_get = http.get(route_url(router_server))
    accepted = http.put(route_url(router_server), json=route_body(1))

    assert refused_put.status_code == refused_get.status_code == 503
    assert "detail" in refused_put.json()
    assert accepted.status_code == 200
    assert router_server.history == [route_body(1)]

    router_server.refuse_next(1, status=500)
    assert http.get(route_url(router_server)).status_code == 500
    assert http.get(route_url(router_server)).status_code == 200


def test_corrupt_reads_report_a_different_percent_until_turned_off(
    router_server: RouterServer, http: httpx.Client
) -> None:
    http.put(route_url(router_server), json=route_body(1, percent=10))

    router_server.corrupt_reads(True)
    lying = http.get(route_url(router_server)).json()
    router_server.corrupt_reads(False)
    honest = http.get(route_url(router_server)).json()

    assert lying["percent"] != 10
    assert {**lying, "percent": 10} == route_body(1, percent=10)
    assert honest == route_body(1, percent=10)
    assert router_server.current("ranker") == route_body(1, percent=10)


def test_a_route_missing_contract_fields_is_refused(
    router_server: RouterServer, http: httpx.Client
) -> None:
    response = http.put(route_url(router_server), json={"generation": 1, "percent": 5})

    assert response.status_code == 422
    assert "lacks" in response.json()["detail"]
    assert router_server.history == []


def test_concurrent_puts_are_all_recorded(router_server: RouterServer) -> None:
    def put(index: int) -> int:
        with httpx.Client(timeout=5.0) as client:
            body = route_body(1, rollout=f"rollout-t{index}")
            return client.put(route_url(router_server, f"t{index}"), json=body).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(put, range(24)))

    assert statuses == [200] * 24
    assert sorted(body["rollout_id"] for body in router_server.history) == sorted(
        f"rollout-t{index}" for index in range(24)
    )


def test_close_releases_the_port_and_can_be_repeated(http: httpx.Client) -> None:
    server = RouterServer()
    url = route_url(server)
    server.close()
    server.close()

    with pytest.raises(httpx.ConnectError):
        http.get(url)


# MetricsServer


def prometheus_query(server: MetricsServer, http: httpx.Client, query: str) -> httpx.Response:
    return http.get(f"{server.url}/api/v1/query", params={"query": query})


def test_a_float_is_one_series_with_that_value(
    metrics_server: MetricsServer, http: httpx.Client
) -> None:
    metrics_server.set("error_rate", 0.0125)

    body = prometheus_query(metrics_server, http, 'error_rate{target="ranker"}').json()

    assert body["status"] == "success"
    assert body["data"]["resultType"] == "vector"
    (series,) = body["data"]["result"]
    assert float(series["value"][1]) == 0.0125
    assert metrics_server.queries == ['error_rate{target="ranker"}']


@pytest.mark.parametrize(
    ("query", "key"),
    [
        ('error_rate{target="ranker"}', "error_rate"),
        ("  latency_p99 ", "latency_p99"),
        ("sum(rate(x[5m]))", "sum"),
        ('reward_mean {arm="candidate"}', "reward_mean"),
    ],
)
def test_the_metric_key_is_the_text_before_the_first_brace_or_parenthesis(
    query: str, key: str
) -> None:
    assert metric_key(query) == key


@pytest.mark.parametrize("value", [None, "unset"])
def test_none_and_unset_metrics_answer_an_empty_vector(
    metrics_server: MetricsServer, http: httpx.Client, value: str | None
) -> None:
    if value is None:
        metrics_server.set("error_rate", None)

    body = prometheus_query(metrics_server, http, "error_rate").json()

    assert body["data"] == {"resultType": "vector", "result": []}


def test_nan_down_and_multi(metrics_server: MetricsServer, http: httpx.Client) -> None:
    metrics_server.set("ratio", "nan")
    metrics_server.set("broken", "down")
    metrics_server.set("split", "multi")

    nan = prometheus_query(metrics_server, http, "ratio").json()
    down = prometheus_query(metrics_server, http, "broken")
    multi = prometheus_query(metrics_server, http, "split").json()

    assert nan["data"]["result"][0]["value"][1] == "NaN"
    assert down.status_code == 503
    assert down.json()["status"] == "error"
    assert len(multi["data"]["result"]) == 2


def test_stats_endpoint_answers_from_the_same_table(
    metrics_server: MetricsServer, http: httpx.Client
) -> None:
    metrics_server.set("error_rate", 0.5)
    metrics_server.set("ratio", "nan")
    metrics_server.set("broken", "down")

    def stats(query: str) -> httpx.Response:
        return http.get(f"{metrics_server.url}/v1/stats", params={"query": query})

    assert stats('error_rate{target="ranker"}').json() == {"value": 0.5}
    assert stats("missing").json() == {"value": None}
    assert math.isnan(stats("ratio").json()["value"])
    assert stats("broken").status_code == 503
    assert metrics_server.queries == ['error_rate{target="ranker"}', "missing", "ratio", "broken"]


def test_a_query_parameter_is_required(metrics_server: MetricsServer, http: httpx.Client) -> None:
    response = http.get(f"{metrics_server.url}/api/v1/query")

    assert response.status_code == 400
    assert response.json()["errorType"]


def test_set_refuses_values_it_cannot_serve(metrics_server: MetricsServer) -> None:
    with pytest.raises(ValueError, match="must be a float, None, or one of"):
        metrics_server.set("error_rate", "high")
    with pytest.raises(ValueError, match="must be a bare name"):
        metrics_server.set('error_rate{target="x"}', 1.0)


# lockgate's real backends against the fakes


@pytest.fixture
async def async_http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


async def test_prometheus_provider_reads_the_metrics_server(
    metrics_server: MetricsServer, async_http: httpx.AsyncClient
) -> None:
    config = PrometheusMonitoring(type="prometheus", url=metrics_server.url)
    provider = PrometheusProvider(config, async_http, read_retries=NO_WAIT)
    metrics_server.set("error_rate", 0.02)
    metrics_server.set("split", "multi")
    metrics_server.set("broken", "down")

    assert (await provider.query('error_rate{target="ranker"}')).value == 0.02
    with pytest.raises(NoDataError):
        await provider.query("unset_metric")
    with pytest.raises(AmbiguousResultError):
        await provider.query("split")
    with pytest.raises(ProviderUnavailable):
        await provider.query("broken")
    assert metrics_server.queries.count("broken") == 3


async def test_http_json_provider_reads_the_stats_endpoint(
    metrics_server: MetricsServer, async_http: httpx.AsyncClient
) -> None:
    config = HttpMonitoring(type="http", url=f"{metrics_server.url}/v1/stats")
    provider = HttpJsonProvider(config, async_http, read_retries=NO_WAIT)
    metrics_server.set("error_rate", 0.25)
    metrics_server.set("ratio", "nan")

    assert (await provider.query("error_rate")).value == 0.25
    with pytest.raises(NoDataError):
        await provider.query("ratio")
    with pytest.raises(NoDataError):
        await provider.query("unset_metric")


async def test_http_router_and_router_server_agree_on_the_contract(
    router_server: RouterServer, async_http: httpx.AsyncClient
) -> None:
    router = HttpTrafficRouter(
        HttpRouter(type="http", url=router_server.url), async_http, read_retries=NO_WAIT
    )
    route = Route(
        rollout_id="rollout-ranker",
        generation=2,
        incumbent=PolicyVersion(version="41"),
        candidate=PolicyVersion(version="42"),
        mode=RouteMode.SPLIT,
        percent=10.0,
    )

    assert await router.get_route("ranker") is None
    assert await router.put_route("ranker", route) == route
    router_server.refuse_next(1)
    assert await router.get_route("ranker") == route
    assert router_server.history == [route.model_dump(mode="json")]

    with pytest.raises(RouteConflict, match="holds generation 2"):
        await router.put_route("ranker", route.model_copy(update={"generation": 1}))

    router_server.corrupt_reads(True)
    read_back = await router.get_route("ranker")
    assert read_back is not None
    assert read_back.percent != route.percent
