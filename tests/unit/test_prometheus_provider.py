"""PrometheusProvider against scripted Prometheus answers (httpx.MockTransport, no network)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from activities.errors import (
    AmbiguousResultError,
    NoDataError,
    PartialDataError,
    ProviderError,
    ProviderUnavailable,
)
from activities.http_boundary import Unreachable
from activities.providers.prometheus import PrometheusProvider
from rollout_specs import PrometheusMonitoring
from tests.helpers.scripted import NO_WAIT, Scripted

BASE_URL = "http://prometheus.test:9090"
ENDPOINT = f"{BASE_URL}/api/v1/query"
QUERY = 'error_rate{target="ranker",version="42"}'


@pytest.fixture
def prometheus() -> Scripted:
    return Scripted()


@pytest.fixture
async def provider(prometheus: Scripted) -> AsyncIterator[PrometheusProvider]:
    config = PrometheusMonitoring(type="prometheus", url=BASE_URL, timeout=timedelta(seconds=2))
    async with httpx.AsyncClient(transport=httpx.MockTransport(prometheus)) as client:
        yield PrometheusProvider(config, client, read_retries=NO_WAIT)


def success(data: object, **extra: object) -> httpx.Response:
    return httpx.Response(200, json={"status": "success", "data": data, **extra})


def vector(*series: tuple[dict[str, str], str]) -> httpx.Response:
    result = [{"metric": labels, "value": [1700000000.123, value]} for labels, value in series]
    return success({"resultType": "vector", "result": result})


def failure(status: int, error_type: str, error: str) -> httpx.Response:
    return httpx.Response(status, json={"status": "error", "errorType": error_type, "error": error})


async def test_one_series_gives_its_value_and_labels_and_an_info_annotation_is_no_warning(
    prometheus: Scripted, provider: PrometheusProvider
) -> None:
    prometheus.script(
        success(
            {
                "resultType": "vector",
                "result": [{"metric": {"target": "ranker"}, "value": [1700000000, "0.0125"]}],
            },
            warnings=["PromQL info: metric might not be a counter"],
            infos=["PromQL info: metric might not be a histogram"],
        )
    )

    sample = await provider.query(QUERY)

    assert sample.value == 0.0125
    assert sample.labels == {"target": "ranker"}


PARTIAL = "remote read: partial response, 1 of 3 stores failed to answer"


@pytest.mark.parametrize(
    "data",
    [
        {"resultType": "vector", "result": [{"metric": {}, "value": [1700000000, "0"]}]},
        {"resultType": "scalar", "result": [1700000000, "0"]},
        {"resultType": "vector", "result": []},
    ],
    ids=["vector", "scalar", "empty"],
)
async def test_an_answer_with_warnings_is_an_error_never_a_value(
    prometheus: Scripted, provider: PrometheusProvider, data: object
) -> None:
    # A partial sum of 0 errors can hide the one store whose series breaches.
    prometheus.script(success(data, warnings=[PARTIAL]))

    with pytest.raises(PartialDataError, match="partial response, 1 of 3 stores") as caught:
        await provider.query(QUERY)

    assert "not evidence" in str(caught.value)


async def test_a_by_label_answer_with_warnings_is_an_error(
    prometheus: Scripted, provider: PrometheusProvider
) -> None:
    prometheus.script(
        success(
            {"resultType": "vector", "result": [{"metric": {"action": "a"}, "value": [1, "3"]}]},
            warnings=[PARTIAL],
        )
    )

    with pytest.raises(PartialDataError):
        await provider.query_by("sum by (action) (x)", "action")


async def test_sends_an_instant_query_with_the_configured_timeout(
    prometheus: Scripted, provider: PrometheusProvider
) -> None:
    prometheus.script(vector(({}, "1")))

    await provider.query(QUERY)

    (request,) = prometheus.requests
    assert request.method == "GET"
    assert str(request.url.copy_with(query=None)) == ENDPOINT
    assert request.url.params["query"] == QUERY
    assert request.extensions["timeout"]["read"] == pytest.approx(2.0, abs=0.05)


async def test_a_scalar_result_is_a_value(
    prometheus: Scripted, provider: PrometheusProvider
) -> None:
    prometheus.script(success({"resultType": "scalar", "result": [1700000000, "3.5"]}))

    sample = await provider.query("scalar(up)")

    assert sample.value == 3.5
    assert sample.labels == {}


async def test_an_empty_vector_is_no_data_not_zero(
    prometheus: Scripted, provider: PrometheusProvider
) -> None:
    prometheus.script(vector())

    with pytest.raises(NoDataError, match="matched no series"):
        await provider.query(QUERY)


@pytest.mark.parametrize("value", ["NaN", "+Inf", "-Inf"])
async def test_nan_and_infinities_are_no_data(
    prometheus: Scripted, provider: PrometheusProvider, value: str
) -> None:
    prometheus.script(vector(({}, value)))

    with pytest.raises(NoDataError, match="no evidence yet") as caught:
        await provider.query(QUERY)

    assert value in str(caught.value)


async def test_nan_message_explains_the_usual_cause(
    prometheus: Scripted, provider: PrometheusProvider
) -> None:
    prometheus.script(vector(({}, "NaN")))

    with pytest.raises(NoDataError, match=r"returned NaN .* 0/0 when there was no traffic"):
        await provider.query(QUERY)


async def test_several_series_are_ambiguous_and_never_one_of_them(
    prometheus: Scripted, provider: PrometheusProvider
) -> None:
    prometheus.script(vector(*(({"arm": f"a{i}"}, str(i)) for i in range(5))))

    with pytest.raises(AmbiguousResultError) as caught:
        await provider.query(QUERY)

    message = str(caught.value)
    assert "returned 5 series from http://prometheus.test:9090/api/v1/query" in message
    assert '{arm="a0"}, {arm="a1"}, {arm="a2"} and 2 more' in message
    assert "a3" not in message
    assert "aggregate with sum() or avg(), or narrow the label selector" in message


async def test_a_bad_query_is_an_error_with_prometheus_text_and_is_not_retried(
    prometheus: Scripted, provider: PrometheusProvider
) -> None:
    prometheus.script(
        failure(400, "bad_data", 'invalid parameter "query": 1:11: parse error: unexpected "}"')
    )

    with pytest.raises(ProviderError) as caught:
        await provider.query("error_rate}")

    assert caught.type is ProviderError
    assert 'bad_data: invalid parameter "query": 1:11: parse error' in str(caught.value)
    assert "HTTP 400" in str(caught.value)
    assert len(prometheus.requests) == 1


async def test_an_execution_error_is_an_error(
    prometheus: Scripted, provider: PrometheusProvider
) -> None:
    prometheus.script(failure(422, "execution", "many-to-many matching not allowed"))

    with pytest.raises(ProviderError, match="many-to-many matching not allowed") as caught:
        await provider.query(QUERY)

    assert caught.type is ProviderError


async def test_5xx_is_retried_three_times_then_unavailable(
    prometheus: Scripted, provider: PrometheusProvider
) -> None:
    prometheus.script(failure(503, "unavailable", "TSDB not ready"))

    with pytest.raises(ProviderUnavailable) as caught:
        await provider.query(QUERY)

    assert len(prometheus.requests) == 3
    assert ENDPOINT in str(caught.value)
    assert "HTTP 503" in str(caught.value)
    assert "TSDB not ready" in str(caught.value)


async def test_a_5xx_then_a_good_answer_succeeds(
    prometheus: Scripted, provider: PrometheusProvider
) -> None:
    prometheus.script(failure(503, "unavailable", "restarting"), vector(({}, "0.5")))

    sample = await provider.query(QUERY)

    assert sample.value == 0.5
    assert len(prometheus.requests) == 2


async def test_connection_refused_is_unavailable_with_url_and_cause(
    prometheus: Scripted, provider: PrometheusProvider
) -> None:
    prometheus.script(httpx.ConnectError("[Errno 111] Connection refused"))

    with pytest.raises(ProviderUnavailable) as caught:
        await provider.query(QUERY)

    message = str(caught.value)
    assert f"Prometheus at {ENDPOINT} could not be reached (3 attempts" in message
    assert "ConnectError: [Errno 111] Connection refused" in message
    assert isinstance(caught.value.__cause__, Unreachable)
    assert isinstance(caught.value.__cause__.__cause__, httpx.ConnectError)
    assert len(prometheus.requests) == 3


async def test_a_timeout_is_unavailable_and_names_the_timeout(
    prometheus: Scripted, provider: PrometheusProvider
) -> None:
    prometheus.script(httpx.ReadTimeout("timed out"))

    with pytest.raises(ProviderUnavailable, match=r"did not answer within 2s \(3 attempts"):
        await provider.query(QUERY)


async def test_a_body_that_is_not_json_is_an_error(
    prometheus: Scripted, provider: PrometheusProvider
) -> None:
    prometheus.script(httpx.Response(200, text="<html>Please log in</html>"))

    with pytest.raises(ProviderError, match=r"not JSON .*Please log in") as caught:
        await provider.query(QUERY)

    assert caught.type is ProviderError


async def test_a_non_success_status_in_the_body_is_an_error(
    prometheus: Scripted, provider: PrometheusProvider
) -> None:
    prometheus.script(
        httpx.Response(200, json={"status": "error", "errorType": "timeout", "error": "too slow"})
    )

    with pytest.raises(ProviderError, match=r"status 'error'.*timeout: too slow") as caught:
        await provider.query(QUERY)

    assert caught.type is ProviderError


@pytest.mark.parametrize(
    ("result_type", "result", "expected"),
    [
        ("matrix", [{"metric": {}, "values": [[1, "1"]]}], "range vector"),
        ("string", [1700000000, "hello"], "returned a string"),
    ],
)
async def test_non_instant_results_are_errors(
    prometheus: Scripted,
    provider: PrometheusProvider,
    result_type: str,
    result: object,
    expected: str,
) -> None:
    prometheus.script(success({"resultType": result_type, "result": result}))

    with pytest.raises(ProviderError, match=expected) as caught:
        await provider.query(QUERY)

    assert caught.type is ProviderError


async def test_a_malformed_sample_is_an_error_not_a_guess(
    prometheus: Scripted, provider: PrometheusProvider
) -> None:
    prometheus.script(vector(({}, "lots")))

    with pytest.raises(ProviderError, match="'lots' is not a number") as caught:
        await provider.query(QUERY)

    assert caught.type is ProviderError


async def test_query_by_gives_one_value_per_label(
    prometheus: Scripted, provider: PrometheusProvider
) -> None:
    prometheus.script(vector(({"action": "none"}, "120"), ({"action": "discount_10"}, "30.5")))
    counts = await provider.query_by("sum by (action) (x)", "action")
    assert counts == {"none": 120.0, "discount_10": 30.5}


async def test_query_by_refuses_series_without_the_label_and_empty_results(
    prometheus: Scripted, provider: PrometheusProvider
) -> None:
    prometheus.script(vector(({"action": "none"}, "1"), ({"job": "gateway"}, "2")))
    with pytest.raises(ProviderError, match=r"aggregate with sum by \(action\)"):
        await provider.query_by("x", "action")
    prometheus.script(vector())
    with pytest.raises(NoDataError):
        await provider.query_by("x", "action")
