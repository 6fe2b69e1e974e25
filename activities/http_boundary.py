"""The one HTTP boundary of every backend: a deadline per request, brief retries, one excerpt.

Monitoring providers, routers, webhooks and the offline scorer all send their requests through
`send`, so they share one rule: a request, every retry and every byte of its answer included,
ends by its deadline. httpx's own timeouts are per read (a server that drips one byte a second
never trips a one-second read timeout), so the deadline is an `asyncio.timeout` around the whole
call, and a drip or a hang costs exactly the deadline, never more.

Providers and routers, lockgate's and plugins', go through `request`, which adds one error ladder
on top of `send`: each backend supplies only the words of its errors (a `Ladder`).

Temporal's retry policy is lockgate's durable retry: it survives worker restarts and is visible
in the workflow's history. The retries here are a second, much smaller layer, there only so that
one dropped connection or one 503 from a restarting server does not cost a whole activity
attempt; they always fit inside the deadline. Writes are not retried here (their retries belong
in the history) unless the caller knows the write is a pure read in disguise, such as batch
scoring.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

__all__ = [
    "NO_RETRIES",
    "READ_RETRIES",
    "Ladder",
    "ReadRetries",
    "Unreachable",
    "excerpt",
    "request",
    "send",
]

logger = logging.getLogger(__name__)

_EXCERPT_CHARS = 200


@dataclass(frozen=True)
class ReadRetries:
    """How hard one request tries, inside its deadline, before its caller gives up.

    A value object rather than constants, so unit tests can keep the attempt count and drop the
    waits instead of sleeping.

    Attributes:
        attempts: Total tries, the first one included.
        first_wait: Seconds before the second try; each later wait doubles.
        max_wait: Cap on any single wait, in seconds.
    """

    attempts: int = 3
    first_wait: float = 0.2
    max_wait: float = 1.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts is {self.attempts}; a read needs at least 1 attempt")
        if self.first_wait < 0 or self.max_wait < self.first_wait:
            raise ValueError(
                f"waits of {self.first_wait}s..{self.max_wait}s are invalid; "
                "use 0 <= first_wait <= max_wait"
            )


READ_RETRIES = ReadRetries()
"""For idempotent reads: 3 attempts, waiting 0.2 s then 0.4 s, all inside the deadline."""
NO_RETRIES = ReadRetries(attempts=1, first_wait=0.0, max_wait=0.0)
"""For writes: one attempt; Temporal retries the activity and records each attempt."""


class Unreachable(Exception):
    """No complete answer: the connection failed, or the deadline passed first.

    The message says which and how many attempts were made, without the service's name, so each
    caller can prefix its own (`Prometheus at ...`, `router at ...`) and its own fix.

    Attributes:
        timed_out: True when the deadline passed (a hang, a drip, a slow answer); False when the
            connection itself failed (refused, reset, DNS).
        attempts: How many attempts were started.
    """

    def __init__(self, message: str, *, timed_out: bool, attempts: int) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.attempts = attempts


class _ServerError(Exception):
    """Carries a 5xx response through tenacity, which retries on exceptions."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    deadline: float,
    retries: ReadRetries = NO_RETRIES,
    params: Mapping[str, str] | None = None,
    json: Any = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """Send one request and read its whole answer within `deadline` seconds, retries included.

    Only failures that a second try can plausibly fix are retried: the connection (refused,
    reset) and the server's own errors (5xx). A 4xx is the caller's mistake and comes back at
    once, because repeating a bad request only delays the error the engineer must read.

    Args:
        client: The shared, pooled client of the worker.
        method: `GET`, `PUT`, `POST`, ...
        url: Full URL.
        deadline: Seconds for the whole call: connecting, every attempt, every wait between
            attempts and the complete body.
        retries: Attempts and waits; writes keep the default single attempt.
        params: Query-string parameters.
        json: A JSON body.
        headers: Extra request headers.

    Returns:
        The first response below 500, or the last 5xx response once the attempts are spent, so
        the caller can quote the server's own error text.

    Raises:
        Unreachable: The deadline passed, the last attempt could not connect, or httpx could
            not make or read the request at all.
    """
    if deadline <= 0:
        raise ValueError(f"deadline is {deadline}s; a request needs a positive deadline")
    started = time.monotonic()
    attempts = 0
    retrying = AsyncRetrying(
        stop=stop_after_attempt(retries.attempts),
        wait=wait_exponential(
            multiplier=retries.first_wait, min=retries.first_wait, max=retries.max_wait
        ),
        retry=retry_if_exception_type((httpx.TransportError, _ServerError)),
        before_sleep=_log_retry(method, url),
        reraise=True,
    )
    try:
        async with asyncio.timeout(deadline):
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    left = max(0.001, deadline - (time.monotonic() - started))
                    response = await client.request(
                        method, url, params=params, json=json, headers=headers, timeout=left
                    )
                    if response.status_code >= 500:
                        raise _ServerError(response)
                    return response
    except _ServerError as exc:
        return exc.response
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise Unreachable(
            f"did not answer within {deadline:g}s ({_tries(attempts)})",
            timed_out=True,
            attempts=attempts,
        ) from exc
    except httpx.TransportError as exc:
        raise Unreachable(
            f"could not be reached ({_tries(attempts)}, {type(exc).__name__}: {exc})",
            timed_out=False,
            attempts=attempts,
        ) from exc
    except httpx.HTTPError as exc:  # e.g. an invalid URL or a body that cannot be decoded
        raise Unreachable(
            f"failed ({_tries(attempts)}, {type(exc).__name__}: {exc})",
            timed_out=False,
            attempts=attempts,
        ) from exc
    # AsyncRetrying either yields until an attempt returns or re-raises the last error.
    raise AssertionError("tenacity ended without an outcome")  # pragma: no cover


@dataclass(frozen=True)
class Ladder:
    """How one backend words each way a request can fail: the one error ladder of every backend.

    The rungs are fixed here (no answer, a 5xx after the retries, any other status that is not a
    success) so that providers and routers classify failures alike: the first two are the
    service's trouble and raise `unavailable` (retryable, "check it is up"), the last is a refusal
    of what lockgate asked and raises `refused`. Each backend supplies only the words.

    Attributes:
        who: Names the service in messages, e.g. `Prometheus at http://...`.
        unavailable: The backend's error for no usable answer (e.g. ProviderUnavailable).
        refused: The backend's error for a refusal (e.g. ProviderError).
        slow_fix: The advice after a deadline passed (a hang, a drip, a slow answer).
        down_fix: The advice after the connection failed.
        server_error: The message for a 5xx answer that outlasted the retries.
        refusal: The message for any other answer that is not 2xx.
    """

    who: str
    unavailable: Callable[[str], Exception]
    refused: Callable[[str], Exception]
    slow_fix: str
    down_fix: str
    server_error: Callable[[httpx.Response], str]
    refusal: Callable[[httpx.Response], str]


async def request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    ladder: Ladder,
    deadline: float,
    retries: ReadRetries = NO_RETRIES,
    params: Mapping[str, str] | None = None,
    json: Any = None,
    headers: Mapping[str, str] | None = None,
    passes: Collection[int] = (),
) -> httpx.Response:
    """`send`, then the ladder: a 2xx answer (or a status in `passes`), or the backend's error.

    Args:
        client: The shared, pooled client of the worker.
        method: `GET`, `PUT`, ...
        url: Full URL.
        ladder: The backend's words for each failure.
        deadline: Seconds for the whole call, retries included.
        retries: Attempts and waits; writes keep the default single attempt.
        params: Query-string parameters.
        json: A JSON body.
        headers: Extra request headers.
        passes: Statuses the caller handles itself (a router's 404 or 409).

    Returns:
        The response, when its status is 2xx or in `passes`.

    Raises:
        Exception: `ladder.unavailable(...)` or `ladder.refused(...)`, chained to the cause.
    """
    try:
        response = await send(
            client, method, url, deadline=deadline, retries=retries, params=params, json=json,
            headers=headers,
        )  # fmt: skip
    except Unreachable as exc:
        fix = ladder.slow_fix if exc.timed_out else ladder.down_fix
        raise ladder.unavailable(f"{ladder.who} {exc}; {fix}") from exc
    status = response.status_code
    if 200 <= status < 300 or status in passes:
        return response
    if status >= 500:
        raise ladder.unavailable(ladder.server_error(response))
    raise ladder.refused(ladder.refusal(response))


def excerpt(text: str, limit: int = _EXCERPT_CHARS) -> str:
    """`text` on one line and at most `limit` characters: enough to recognise, never a page."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _tries(attempts: int) -> str:
    return "1 attempt" if attempts == 1 else f"{attempts} attempts"


def _log_retry(method: str, url: str) -> Callable[[RetryCallState], None]:
    """A tenacity `before_sleep` hook, so each hidden retry still leaves a trace in the log."""

    def log(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        cause = (
            str(error) if isinstance(error, _ServerError) else f"{type(error).__name__}: {error}"
        )
        logger.warning(
            "%s %s failed (%s); retrying in %.1fs after attempt %d",
            method,
            url,
            cause,
            state.upcoming_sleep,
            state.attempt_number,
        )

    return log
