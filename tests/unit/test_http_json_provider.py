"""HttpJsonProvider against scripted JSON answers (httpx.MockTransport, no network)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Protocol

import httpx
import pytest

from activities.errors import NoDataError, ProviderError, ProviderUnavailable
from activities.http_boundary import Unreachable
from activities.providers.http_json import HttpJsonProvider
from rollout_specs import HttpMonitoring
from tests.helpers.scripted import NO_WAIT, Scripted

URL = "http://stats.test/v1/stats"
QUERY = "error_rate ranker 42"


class ProviderFactory(Protocol):
    def __call__(self, value_path: str = "value") -> HttpJsonProvider: ...


@pytest.fixture
def endpoint() -> Scripted:
    return Scripted()


@pytest.fixture
async def make_provider(endpoint: Scripted) -> AsyncIterator[ProviderFactory]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(endpoint)) as client:

        def make(value_path: str = "value") -> HttpJsonProvider:
            config = HttpMonitoring(
                type="http", url=URL, value_path=value_path, timeout=timedelta(seconds=3)
            )
            return HttpJsonProvider(config, client, read_retries=NO_WAIT)

        yield make


async def test_reads_the_number_at_the_default_path_and_sends_the_query(
    endpoint: Scripted, make_provider: ProviderFactory
) -> None:
    endpoint.script(httpx.Response(200, json={"value": 0.02}))

    sample = await make_provider().query(QUERY)

    assert sample.value == 0.02
    (request,) = endpoint.requests
    assert request.method == "GET"
    assert request.url.params["query"] == QUERY
    assert request.extensions["timeout"]["read"] == pytest.approx(3.0, abs=0.05)


async def test_follows_keys_and_list_indexes(
    endpoint: Scripted, make_provider: ProviderFactory
) -> None:
    endpoint.script(httpx.Response(200, json={"data": {"results": [{"v": 7}, {"v": 9}]}}))

    sample = await make_provider("data.results.1.v").query(QUERY)

    assert sample.value == 9.0


@pytest.mark.parametrize(
    ("body", "path", "expected"),
    [
        ({"other": 1}, "value", "the answer has no key 'value'"),
        ({"value": None}, "value", "`value` is null"),
        ({"data": None}, "data.value", "`data` is null"),
        ({"data": {"results": []}}, "data.results.0.v", "`data.results` has only 0 item(s)"),
    ],
)
async def test_a_missing_or_null_value_is_no_data_not_zero(
    endpoint: Scripted,
    make_provider: ProviderFactory,
    body: object,
    path: str,
    expected: str,
) -> None:
    endpoint.script(httpx.Response(200, json=body))

    with pytest.raises(NoDataError) as caught:
        await make_provider(path).query(QUERY)

    assert expected in str(caught.value)


@pytest.mark.parametrize(
    ("value", "described"),
    [
        ("0.5", "the string '0.5'"),
        (True, "the boolean true"),
        ({"v": 1}, "an object"),
        ([1, 2], "a list"),
    ],
)
async def test_a_value_that_is_not_a_number_is_an_error(
    endpoint: Scripted, make_provider: ProviderFactory, value: object, described: str
) -> None:
    endpoint.script(httpx.Response(200, json={"value": value}))

    with pytest.raises(ProviderError) as caught:
        await make_provider().query(QUERY)

    assert caught.type is ProviderError
    assert f"`value` is {described}, not a number" in str(caught.value)


async def test_a_path_through_a_number_is_an_error(
    endpoint: Scripted, make_provider: ProviderFactory
) -> None:
    endpoint.script(httpx.Response(200, json={"data": 4}))

    with pytest.raises(ProviderError, match="`data` is the number 4, not an object") as caught:
        await make_provider("data.value").query(QUERY)

    assert caught.type is ProviderError


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
async def test_nan_and_infinities_are_no_data(
    endpoint: Scripted, make_provider: ProviderFactory, literal: bytes
) -> None:
    endpoint.script(httpx.Response(200, content=b'{"value": ' + literal + b"}"))

    with pytest.raises(NoDataError, match="no evidence yet"):
        await make_provider().query(QUERY)


async def test_5xx_is_retried_three_times_then_unavailable(
    endpoint: Scripted, make_provider: ProviderFactory
) -> None:
    endpoint.script(httpx.Response(503, json={"detail": "warming up"}))

    with pytest.raises(ProviderUnavailable) as caught:
        await make_provider().query(QUERY)

    assert len(endpoint.requests) == 3
    assert f"{URL} answered HTTP 503 to all 3 attempts" in str(caught.value)
    assert "warming up" in str(caught.value)


async def test_a_5xx_then_a_good_answer_succeeds(
    endpoint: Scripted, make_provider: ProviderFactory
) -> None:
    endpoint.script(httpx.Response(502), httpx.Response(200, json={"value": 1}))

    assert (await make_provider().query(QUERY)).value == 1.0
    assert len(endpoint.requests) == 2


async def test_a_4xx_is_an_error_and_is_not_retried(
    endpoint: Scripted, make_provider: ProviderFactory
) -> None:
    endpoint.script(httpx.Response(400, json={"detail": "unknown metric error_rate"}))

    with pytest.raises(ProviderError, match=r"HTTP 400.*unknown metric error_rate") as caught:
        await make_provider().query(QUERY)

    assert caught.type is ProviderError
    assert len(endpoint.requests) == 1


async def test_connection_refused_is_unavailable(
    endpoint: Scripted, make_provider: ProviderFactory
) -> None:
    endpoint.script(httpx.ConnectError("Connection refused"))

    with pytest.raises(
        ProviderUnavailable, match=re.escape(f"{URL} could not be reached")
    ) as caught:
        await make_provider().query(QUERY)

    assert isinstance(caught.value.__cause__, Unreachable)
    assert isinstance(caught.value.__cause__.__cause__, httpx.ConnectError)
    assert len(endpoint.requests) == 3


async def test_a_body_that_is_not_json_is_an_error(
    endpoint: Scripted, make_provider: ProviderFactory
) -> None:
    endpoint.script(httpx.Response(200, text="value=0.5"))

    with pytest.raises(ProviderError, match="not JSON") as caught:
        await make_provider().query(QUERY)

    assert caught.type is ProviderError
