"""Prometheus as a monitoring backend, through its instant-query API (`GET /api/v1/query`).

An instant query may name its evaluation time (`time=`): Prometheus then answers as a rule
evaluated at that past instant would have, which is how `lockgate backtest` replays the checks of a
rollout that never ran (`PrometheusProvider.at`).

The provider is strict on purpose: a rollout advances on evidence, so anything other than exactly
one finite number is an error that says what came back and how to fix the query. It never returns
0 for "no data" and never picks one series out of several.
"""

from __future__ import annotations

import copy
import math
from datetime import datetime

import httpx

from activities.credentials import auth_headers
from activities.errors import (
    AmbiguousResultError,
    NoDataError,
    PartialDataError,
    ProviderError,
    ProviderUnavailable,
)
from activities.http_boundary import READ_RETRIES, Ladder, ReadRetries, excerpt, request
from activities.providers.base import Sample
from rollout_specs import PrometheusMonitoring

__all__ = ["PrometheusProvider"]

_SHOWN_SERIES = 3


class PrometheusProvider:
    """Answers each query with Prometheus's single current value, or a precise error.

    Built by the backend registry around the worker's shared client, so connections are pooled
    across checks; unit tests pass a client over `httpx.MockTransport`.
    """

    def __init__(
        self,
        config: PrometheusMonitoring,
        client: httpx.AsyncClient,
        *,
        read_retries: ReadRetries = READ_RETRIES,
        time: datetime | None = None,
    ) -> None:
        self._endpoint = config.url.rstrip("/") + "/api/v1/query"
        self._timeout = config.timeout.total_seconds()
        self._client = client
        self._retries = read_retries
        self._auth = config.auth
        self._time = _evaluation_time(time)

    def at(self, time: datetime) -> PrometheusProvider:
        """The same provider answering as of `time` (timezone-aware), for replaying past checks.

        Every query is then an instant query evaluated at `time`: a `[5m]` window ends there, as
        it would have for a check run at that instant. The client and settings are shared.
        """
        view = copy.copy(self)
        view._time = _evaluation_time(time)
        return view

    async def query(self, query: str) -> Sample:
        """Run `query` as an instant query and return its one value.

        Args:
            query: A rendered PromQL expression that yields one series or a scalar.

        Returns:
            The value and the series' labels.

        Raises:
            ProviderUnavailable: Prometheus could not be reached, gave no complete answer
                within monitoring.timeout (retries included), or answered 5xx on every attempt.
            NoDataError: No series matched, or the value is NaN or infinite.
            AmbiguousResultError: Several series matched.
            PartialDataError: Prometheus attached warnings (e.g. a partial response).
            ProviderError: Prometheus refused the query, or answered something that is not an
                instant value.
        """
        response = await self._get(query)
        body = self._decode(response, query)
        data = _object(body.get("data"))
        if data is None:
            raise self._shape_error(query, "it has no `data` object")
        result_type = data.get("resultType")
        result = data.get("result")
        if result_type == "vector":
            return self._from_vector(result, query)
        if result_type == "scalar":
            return Sample(value=self._finite(result, query))
        if result_type == "matrix":
            raise ProviderError(
                f"query {query!r} returned a range vector from {self._endpoint}, but a check "
                "needs an instant value; wrap the range selector in a function such as "
                "rate(...[5m]) or avg_over_time(...[5m])"
            )
        if result_type == "string":
            raise ProviderError(
                f"query {query!r} returned a string from {self._endpoint}, but a check needs a "
                "number; query a metric instead"
            )
        raise self._shape_error(query, f"its resultType is {result_type!r}")

    async def query_by(self, query: str, label: str) -> dict[str, float]:
        """Run `query` and return one value per value of `label` (e.g. counts by action).

        Raises NoDataError when no series matched; a series without the label, a duplicate
        label value or a non-finite value is an error, never skipped.
        """
        values = await self._labelled(query, (label,))
        return {key[0]: value for key, value in values.items()}

    async def query_pairs(
        self, query: str, first: str, second: str
    ) -> dict[tuple[str, str], float]:
        """Run `query` and return one value per (`first`, `second`) label pair (a table)."""
        values = await self._labelled(query, (first, second))
        return {(key[0], key[1]): value for key, value in values.items()}

    async def _labelled(self, query: str, labels: tuple[str, ...]) -> dict[tuple[str, ...], float]:
        by = ", ".join(labels)
        response = await self._get(query)
        data = _object(self._decode(response, query).get("data"))
        if data is None or data.get("resultType") != "vector":
            raise self._shape_error(query, f"a by-({by}) query needs an instant vector")
        result = data.get("result")
        if not isinstance(result, list):
            raise self._shape_error(query, "its vector result is not a list")
        if not result:
            raise NoDataError(
                f"query {query!r} matched no series in Prometheus at {self._endpoint}"
            )
        values: dict[tuple[str, ...], float] = {}
        for item in result:
            series = _object(item) or {}
            found = _labels(series.get("metric"))
            key = tuple(found.get(label) for label in labels)
            if any(part is None for part in key) or key in values:
                raise self._shape_error(
                    query, f"each series needs its own ({by}) labels; aggregate with sum by ({by})"
                )
            values[tuple(str(part) for part in key)] = self._finite(series.get("value"), query)
        return values

    async def _get(self, query: str) -> httpx.Response:
        endpoint, attempts = self._endpoint, self._retries.attempts
        ladder = Ladder(
            who=f"Prometheus at {endpoint}",
            unavailable=ProviderUnavailable,
            refused=ProviderError,
            slow_fix="check that it is healthy, or raise monitoring.timeout if the query is "
            "legitimately slow",
            down_fix="check monitoring.url and that Prometheus is up",
            server_error=lambda response: (
                f"Prometheus at {endpoint} answered HTTP {response.status_code} to all "
                f"{attempts} attempts ({_error_text(response)}); it is overloaded or restarting"
            ),
            refusal=lambda response: self._refusal(response, query),
        )
        params = {"query": query} if self._time is None else {"query": query, "time": self._time}
        return await request(
            self._client, "GET", endpoint, ladder=ladder, params=params,
            deadline=self._timeout, retries=self._retries, headers=auth_headers(self._auth),
        )  # fmt: skip

    def _refusal(self, response: httpx.Response, query: str) -> str:
        status = response.status_code
        if status >= 400:
            return (
                f"Prometheus at {self._endpoint} rejected query {query!r} with HTTP {status} "
                f"({_error_text(response)}); fix the trigger's query"
            )
        return (
            f"Prometheus at {self._endpoint} answered HTTP {status}, not 200; point "
            "monitoring.url at the Prometheus server itself"
        )

    def _decode(self, response: httpx.Response, query: str) -> dict[str, object]:
        try:
            decoded: object = response.json()
        except ValueError as exc:
            raise ProviderError(
                f"Prometheus at {self._endpoint} answered query {query!r} with a body that is "
                f"not JSON ({excerpt(response.text)!r}); check that monitoring.url is "
                "Prometheus and not a proxy or login page"
            ) from exc
        body = _object(decoded)
        if body is None:
            raise self._shape_error(query, "it is not a JSON object")
        if body.get("status") != "success":
            raise ProviderError(
                f"Prometheus at {self._endpoint} reported status {body.get('status')!r} for "
                f"query {query!r} ({_prometheus_error(body)})"
            )
        # Older servers put info annotations among the warnings; those do not weaken the answer.
        warnings = [w for w in _strings(body.get("warnings")) if not w.startswith("PromQL info:")]
        if warnings:
            raise PartialDataError(
                f"Prometheus at {self._endpoint} warned about query {query!r}: "
                f"{excerpt('; '.join(warnings))}; a possibly partial answer is not evidence, "
                "so this check cannot tell (fix the store or the query behind the warning)"
            )
        return body

    def _from_vector(self, result: object, query: str) -> Sample:
        if not isinstance(result, list):
            raise self._shape_error(query, "its vector result is not a list")
        if not result:
            raise NoDataError(
                f"query {query!r} matched no series in Prometheus at {self._endpoint}; the "
                "metric may not be exported yet, or its labels match nothing (no traffic?)"
            )
        series = [_object(item) or {} for item in result]
        labels = [_labels(item.get("metric")) for item in series]
        if len(series) > 1:
            shown = ", ".join(_format_labels(item) for item in labels[:_SHOWN_SERIES])
            more = f" and {len(series) - _SHOWN_SERIES} more" if len(series) > _SHOWN_SERIES else ""
            raise AmbiguousResultError(
                f"query {query!r} returned {len(series)} series from {self._endpoint} "
                f"({shown}{more}), but a check needs exactly one; aggregate with sum() or "
                "avg(), or narrow the label selector"
            )
        return Sample(
            value=self._finite(series[0].get("value"), query),
            labels=labels[0],
        )

    def _finite(self, point: object, query: str) -> float:
        """The number of a `[timestamp, "value"]` pair, refusing NaN and infinities as no data."""
        if not (isinstance(point, list) and len(point) == 2 and isinstance(point[1], str)):
            raise self._shape_error(query, 'a sample is not a [timestamp, "value"] pair')
        try:
            value = float(point[1])
        except ValueError as exc:
            raise self._shape_error(query, f"sample value {point[1]!r} is not a number") from exc
        if math.isnan(value):
            raise NoDataError(
                f"query {query!r} returned NaN from {self._endpoint}, typically 0/0 when there "
                "was no traffic in the window; there is no evidence yet"
            )
        if math.isinf(value):
            raise NoDataError(
                f"query {query!r} returned {point[1]} from {self._endpoint}, a division by "
                "zero (e.g. errors over no requests); there is no evidence yet"
            )
        return value

    def _shape_error(self, query: str, problem: str) -> ProviderError:
        return ProviderError(
            f"Prometheus at {self._endpoint} answered query {query!r} with an unexpected "
            f"body: {problem}; check that monitoring.url points at the Prometheus HTTP API"
        )


def _evaluation_time(time: datetime | None) -> str | None:
    """Prometheus's `time` parameter (Unix seconds, to the millisecond), or None for now.

    A naive datetime is refused: its instant would depend on the machine's timezone.
    """
    if time is None:
        return None
    if time.tzinfo is None or time.utcoffset() is None:
        raise ValueError(f"evaluation time {time.isoformat()} has no timezone; give one (UTC)")
    return f"{time.timestamp():.3f}"


def _object(value: object) -> dict[str, object] | None:
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return value
    return None


def _strings(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    return [str(item) for item in value]


def _labels(value: object) -> dict[str, str]:
    labels = _object(value) or {}
    return {key: str(label) for key, label in labels.items()}


def _format_labels(labels: dict[str, str]) -> str:
    name = labels.get("__name__", "")
    pairs = ", ".join(
        f'{key}="{value}"' for key, value in sorted(labels.items()) if key != "__name__"
    )
    return f"{name}{{{pairs}}}"


def _prometheus_error(body: dict[str, object]) -> str:
    error = body.get("error")
    if error is None:
        return "no error text"
    error_type = body.get("errorType")
    return f"{error_type}: {error}" if error_type else str(error)


def _error_text(response: httpx.Response) -> str:
    """Prometheus's own `errorType: error` text, or an excerpt of whatever else answered."""
    try:
        decoded: object = response.json()
    except ValueError:
        return excerpt(response.text) or "empty body"
    body = _object(decoded)
    if body is None or "error" not in body:
        return excerpt(response.text)
    return _prometheus_error(body)
