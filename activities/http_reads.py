"""Short, bounded retries for idempotent HTTP reads, and nothing else.

Temporal's retry policy is lockgate's durable retry: it survives worker restarts and is visible in
the workflow's history. This module is the second, much smaller layer, there only so that one
dropped connection or one 503 from a restarting Prometheus does not cost a whole activity attempt
(and a check interval). It is deliberately bounded, at most three attempts and about a second of
waiting, so the two layers never multiply into an unbounded wait, and it is only for reads: a
write is retried by Temporal alone, where the history records every attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

__all__ = ["READ_RETRIES", "ReadRetries", "get_with_retries"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadRetries:
    """How hard one read tries before its caller reports the backend unavailable.

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
"""The production policy: 3 attempts, waiting 0.2 s then 0.4 s (never more than 1 s)."""


class _ServerError(Exception):
    """Carries a 5xx response through tenacity, which retries on exceptions."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


async def get_with_retries(
    client: httpx.AsyncClient,
    url: str,
    *,
    params: Mapping[str, str] | None = None,
    attempt_timeout: float,
    policy: ReadRetries = READ_RETRIES,
) -> httpx.Response:
    """GET `url`, retrying briefly on transport errors and 5xx answers.

    Only failures that a second try can plausibly fix are retried: the connection (refused,
    reset, timed out) and the server's own errors. A 4xx is the caller's mistake and comes back at
    once, because repeating a bad query only delays the error the engineer must read.

    Args:
        client: The shared, pooled client of this backend.
        url: Full URL to read.
        params: Query-string parameters.
        attempt_timeout: Seconds allowed for each attempt; the worst case is about
            `policy.attempts * attempt_timeout` plus the waits.
        policy: Attempts and waits; tests pass one without waits.

    Returns:
        The first response below 500, or the last 5xx response once the attempts are spent, so
        the caller can quote the server's own error text.

    Raises:
        httpx.TransportError: The last attempt's connection error, once the attempts are spent.
    """
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait_exponential(
            multiplier=policy.first_wait, min=policy.first_wait, max=policy.max_wait
        ),
        retry=retry_if_exception_type((httpx.TransportError, _ServerError)),
        before_sleep=_log_retry(url),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                response = await client.get(url, params=params, timeout=attempt_timeout)
                if response.status_code >= 500:
                    raise _ServerError(response)
                return response
    except _ServerError as exc:
        return exc.response
    # AsyncRetrying either yields until an attempt returns or re-raises the last error.
    raise AssertionError("tenacity ended without an outcome")  # pragma: no cover


def _log_retry(url: str) -> Callable[[RetryCallState], None]:
    """A tenacity `before_sleep` hook, so each hidden retry still leaves a trace in the log."""

    def log(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        cause = (
            str(error) if isinstance(error, _ServerError) else f"{type(error).__name__}: {error}"
        )
        logger.warning(
            "GET %s failed (%s); retrying in %.1fs after attempt %d",
            url,
            cause,
            state.upcoming_sleep,
            state.attempt_number,
        )

    return log
