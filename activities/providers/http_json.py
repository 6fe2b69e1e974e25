"""Any HTTP endpoint that answers a query with JSON holding one number.

For teams whose metrics live behind their own service rather than Prometheus: lockgate sends the
rendered query as `?query=...` and reads the number at the spec's `value_path`. The rules are
Prometheus's: a missing value or `null` is no data, never 0, and a value that is not a number is
an error rather than something to coerce.
"""

from __future__ import annotations

import math

import httpx

from activities.credentials import auth_headers
from activities.errors import NoDataError, ProviderError, ProviderUnavailable
from activities.http_boundary import READ_RETRIES, Ladder, ReadRetries, excerpt, request
from activities.providers.base import Sample
from rollout_specs import HttpMonitoring

__all__ = ["HttpJsonProvider"]


class HttpJsonProvider:
    """Reads one number per query from a JSON endpoint, at a dotted path such as `data.value`.

    Path segments are object keys, or list indexes when they are digits (`results.0.value`).
    Built by the backend registry around the worker's shared client.
    """

    def __init__(
        self,
        config: HttpMonitoring,
        client: httpx.AsyncClient,
        *,
        read_retries: ReadRetries = READ_RETRIES,
    ) -> None:
        self._url = config.url
        self._path = config.value_path
        self._timeout = config.timeout.total_seconds()
        self._client = client
        self._retries = read_retries
        self._auth = config.auth

    async def query(self, query: str) -> Sample:
        """Send `query` and return the number found at `value_path`.

        Args:
            query: The rendered query, sent as the `query` parameter.

        Returns:
            The value, without labels or warnings (the endpoint has no place for them).

        Raises:
            ProviderUnavailable: The endpoint could not be reached, timed out, or answered 5xx
                on every attempt.
            NoDataError: The path is missing or `null`, or the value is NaN or infinite.
            ProviderError: The endpoint refused the query (4xx), did not answer JSON, or holds
                something other than a number at the path.
        """
        response = await self._get(query)
        try:
            document: object = response.json()
        except ValueError as exc:
            raise ProviderError(
                f"{self._url} answered query {query!r} with a body that is not JSON "
                f"({excerpt(response.text)!r}); check monitoring.url"
            ) from exc
        return Sample(value=self._number(self._walk(document, query), query))

    async def query_by(self, query: str, label: str) -> dict[str, float]:
        """Not supported: this provider answers one number per query."""
        raise ProviderError(
            f"the http monitoring provider answers one number per query; a by-{label} query "
            f"({query!r}) needs Prometheus"
        )

    async def query_pairs(
        self, query: str, first: str, second: str
    ) -> dict[tuple[str, str], float]:
        """Not supported: this provider answers one number per query."""
        raise ProviderError(
            f"the http monitoring provider answers one number per query; a by-({first}, "
            f"{second}) query ({query!r}) needs Prometheus"
        )

    async def _get(self, query: str) -> httpx.Response:
        url, attempts = self._url, self._retries.attempts
        ladder = Ladder(
            who=url,
            unavailable=ProviderUnavailable,
            refused=ProviderError,
            slow_fix="check the endpoint, or raise monitoring.timeout",
            down_fix="check monitoring.url and that the endpoint is up",
            server_error=lambda response: (
                f"{url} answered HTTP {response.status_code} to all {attempts} attempts "
                f"({excerpt(response.text) or 'empty body'})"
            ),
            refusal=lambda response: (
                f"{url} refused query {query!r} with HTTP {response.status_code} "
                f"({excerpt(response.text) or 'empty body'}); check the trigger's query and "
                "monitoring.url"
            ),
        )
        return await request(
            self._client, "GET", url, ladder=ladder, params={"query": query},
            deadline=self._timeout, retries=self._retries, headers=auth_headers(self._auth),
        )  # fmt: skip

    def _walk(self, document: object, query: str) -> object:
        """Follow `value_path`; a path that ends early is no data, a wrong shape is an error."""
        node = document
        walked: list[str] = []
        for segment in self._path.split("."):
            where = f"`{'.'.join(walked)}`" if walked else "the answer"
            if node is None:
                raise self._no_data(query, f"{where} is null")
            if isinstance(node, dict):
                if segment not in node:
                    raise self._no_data(query, f"{where} has no key {segment!r}")
                node = node[segment]
            elif isinstance(node, list):
                if not segment.isdigit():
                    raise self._wrong_shape(
                        query, f"{where} is a list, so the next segment must be an index"
                    )
                if int(segment) >= len(node):
                    raise self._no_data(query, f"{where} has only {len(node)} item(s)")
                node = node[int(segment)]
            else:
                raise self._wrong_shape(query, f"{where} is {_kind(node)}, not an object")
            walked.append(segment)
        if node is None:
            raise self._no_data(query, f"`{self._path}` is null")
        return node

    def _number(self, node: object, query: str) -> float:
        # bool is an int in Python, but `true` is not a measurement.
        if isinstance(node, bool) or not isinstance(node, int | float):
            raise self._wrong_shape(query, f"`{self._path}` is {_kind(node)}, not a number")
        try:
            value = float(node)
        except OverflowError as exc:
            raise self._wrong_shape(query, f"`{self._path}` is too large for a float") from exc
        if math.isnan(value) or math.isinf(value):
            raise self._no_data(
                query,
                f"`{self._path}` is {value}, typically a ratio over no traffic; there is no "
                "evidence yet",
            )
        return value

    def _no_data(self, query: str, problem: str) -> NoDataError:
        return NoDataError(f"{self._url} has no value for query {query!r}: {problem}")

    def _wrong_shape(self, query: str, problem: str) -> ProviderError:
        return ProviderError(
            f"{self._url} answered query {query!r} with an unexpected shape: {problem}; make "
            "monitoring.value_path point at a JSON number"
        )


def _kind(node: object) -> str:
    if isinstance(node, bool):
        return f"the boolean {str(node).lower()}"
    if isinstance(node, str):
        return f"the string {excerpt(node)!r}"
    if isinstance(node, dict):
        return "an object"
    if isinstance(node, list):
        return "a list"
    if isinstance(node, int | float):
        return f"the number {node}"
    return type(node).__name__
