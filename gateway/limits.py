"""Request body limits: every endpoint reads at most its own few bytes, then answers 413.

Without a limit one request can make the gateway hold (and, for a route, fsync) any amount of
data. The limit is enforced twice:

- a declared `Content-Length` above the endpoint's limit is answered 413 before a byte of the
  body is read;
- a body without a length (chunked) is counted as it arrives, and answered 413 as soon as it
  passes the limit.

A 413 closes the connection, so the rest of an oversized body is never read whole. Closing a
socket with unread data makes the kernel send a reset, which can destroy the answer before the
client reads it; so, as web servers do ("lingering close"), the answer is sent first and what
the client is still sending is then read and discarded for a moment (at most LINGER_BYTES, for
at most LINGER_SECONDS, stopping once it pauses for LINGER_IDLE) before the connection closes.
Each endpoint has its own `BodyLimit` (Starlette route middleware), so a path that is no
endpoint is a plain 404; endpoints without a body (the GETs) have a limit of 0: a body there
is refused. (Starlette's own `max_body_size` reads the body before refusing it and keeps the
connection open, so the server would go on reading the rest to discard it.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "DEFAULT_BODY_LIMITS",
    "DEFAULT_DECIDE_BYTES",
    "DEFAULT_FEEDBACK_BYTES",
    "DEFAULT_REVIEW_BYTES",
    "DEFAULT_ROUTE_BYTES",
    "LINGER_BYTES",
    "LINGER_IDLE",
    "LINGER_SECONDS",
    "BodyLimit",
    "BodyLimits",
    "admit",
    "read_body",
    "refuse",
]

DEFAULT_ROUTE_BYTES = 64 * 1024
"""A route is a few hundred bytes; 64 KiB leaves room for long scopes and guardrail lists."""
DEFAULT_DECIDE_BYTES = 8 * 1024
"""A decide request is a unit id, a feature vector and a few labels: well under 1 KiB usually."""
DEFAULT_FEEDBACK_BYTES = 1024
"""A feedback is a decision id and a number."""
DEFAULT_REVIEW_BYTES = 4 * 1024
"""A review verdict is a word, an actor and a reason of a sentence or two."""
LINGER_SECONDS = 2.0
"""Longest a refused request's remaining body is discarded before the connection closes."""
LINGER_IDLE = 0.25
"""A client that sends nothing for this long has sent what it will: close at once."""
LINGER_BYTES = 1024 * 1024
"""Most bytes discarded after a refusal; a client sending more is cut off (and may see a reset)."""


@dataclass(frozen=True)
class BodyLimits:
    """The largest body, in bytes, each kind of request may carry."""

    route: int = DEFAULT_ROUTE_BYTES
    decide: int = DEFAULT_DECIDE_BYTES
    feedback: int = DEFAULT_FEEDBACK_BYTES
    review: int = DEFAULT_REVIEW_BYTES

    def __post_init__(self) -> None:
        if min(self.route, self.decide, self.feedback, self.review) < 1:
            raise ValueError("body limits must be at least 1 byte")


DEFAULT_BODY_LIMITS = BodyLimits()
"""The limits `python -m gateway` starts with (decide's can be raised: --max-decide-bytes)."""


class _TooLarge(Exception):
    """Raised from `receive` when the body passes the limit; turned into a 413 by BodyLimit."""


class BodyLimit:
    """ASGI middleware answering 413 to a body larger than `limit` bytes.

    Args:
        app: The endpoint whose requests are limited.
        limit: The most bytes a request body may have; 0 for an endpoint that takes none.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        if limit < 0:
            raise ValueError("a body limit cannot be negative")
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with a counting `receive`, or answer 413 at once."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit
        if not await admit(scope, receive, send, limit):
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except _TooLarge:
            if started:  # pragma: no cover - every endpoint reads its body before answering
                raise
            await refuse(receive, send, 413, _too_large(limit))


async def admit(scope: Scope, receive: Receive, send: Send, limit: int) -> bool:
    """The declared length's check: `BodyLimit`'s first, and an endpoint's that reads its body.

    The decide endpoint does without the middleware, whose two wrapping callables per request
    cost more than counting the bytes where they are read; both answer the same.

    Returns:
        True when the declared length is within `limit`; False when it is not, or malformed,
        and the refusal (413, or 400) was sent.
    """
    declared = _content_length(scope)
    if declared is None:
        await refuse(receive, send, 400, "Content-Length must be one whole number of bytes")
        return False
    if declared > limit:
        await refuse(receive, send, 413, _too_large(limit))
        return False
    return True


async def read_body(receive: Receive, send: Send, limit: int) -> bytes | None:
    """The whole request body, counted as it arrives, as `BodyLimit` counts it.

    Returns:
        The body; None when it passed `limit`, and the 413 was sent.

    Raises:
        ClientDisconnect: The client went away before the end of the body (as starlette's
            `Request.body()` raises it).
    """
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk: bytes = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                await refuse(receive, send, 413, _too_large(limit))
                return None
            if not message.get("more_body", False):
                if not chunks:
                    return chunk  # the common case: the whole body in one message
                chunks.append(chunk)
                return b"".join(chunks)
            chunks.append(chunk)
        elif kind == "http.disconnect":
            raise ClientDisconnect()


def _too_large(limit: int) -> str:
    if limit == 0:
        return "this endpoint takes no request body"
    return f"the request body is larger than the {limit} bytes this endpoint accepts"


def _content_length(scope: Scope) -> int | None:
    """The declared body length (0 when none is declared), or None when it is malformed."""
    values = [value for name, value in scope["headers"] if name == b"content-length"]
    if not values:
        return 0
    text = values[0].strip()
    if len(set(values)) != 1 or not text.isdigit():
        return None
    return int(text) if len(text) <= 18 else 10**18  # never a 4,000-digit int()


async def refuse(
    receive: Receive,
    send: Send,
    status: int,
    detail: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Answer `{"detail": ...}` with `status` and close, never reading the body whole.

    The answer goes first; what the client is still sending is then discarded briefly (bounded
    in bytes and time), so that closing does not reset the answer away before it is read.

    Args:
        receive: The request's own `receive` (not a limiting wrapper).
        send: The request's `send`.
        status: The HTTP status, e.g. 413 or 401.
        detail: What was wrong and what to send instead.
        headers: More response headers (e.g. `www-authenticate`).
    """
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),  # the rest of the body is never read
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": True})
    await _linger(receive)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _linger(receive: Receive) -> None:
    """Discard the body the client is still sending, within the LINGER_* bounds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LINGER_SECONDS
    discarded = 0
    while discarded <= LINGER_BYTES:
        left = deadline - loop.time()
        if left <= 0:
            return
        try:
            async with asyncio.timeout(min(LINGER_IDLE, left)):
                message = await receive()
        except TimeoutError:
            return
        if message["type"] != "http.request":
            return  # the client hung up
        discarded += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
