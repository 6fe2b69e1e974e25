"""The gateway's HTTP/1.1 client for policy calls: one POST per decision, kept-alive, lean.

A policy call is the gateway's hottest path, and a general-purpose client spends most of a
decision's CPU on it: httpx measured ~450 us of CPU per call on the benchmark machine (request
and response models, auth and redirect machinery, anyio streams, a syscall per idle pooled
connection on every request, headers and body written separately), against ~30 us for asyncio
streams writing the request in one piece and reading the answer back. Policy servers answer a
small JSON document to a small JSON document, so the client needs only a narrow part of
HTTP/1.1, and it does that part completely:

- one `POST` per call, head and body in one write, over kept-alive connections pooled per
  origin (the caller bounds the calls in flight per server, which bounds the pool);
- answers framed by `Content-Length`, `Transfer-Encoding: chunked`, or the end of the
  connection (HTTP/1.0 and `Connection: close` answers are read whole, the connection dropped);
  interim `1xx` answers are skipped; an answer longer than MAX_ANSWER_BYTES fails the call;
- `https` with the system's certificate store and hostname checking;
- bounds: connecting gets `connect_timeout`, writing the request and reading the whole answer
  `timeout`, so a hung server costs a call at most about their sum;
- a pooled connection the server closed while idle is never reused (its end of stream was
  seen), and when the server closes one just as it is reused, without answering a byte, the
  call is retried once on a new connection: the server never read that request.

Every failure is a `PolicyHttpError` (`timed_out` tells a bound from the rest), which the
policy client turns into its own error.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass

import httpx

__all__ = ["MAX_ANSWER_BYTES", "Endpoint", "PolicyHttp", "PolicyHttpError"]

MAX_ANSWER_BYTES = 4 * 1024 * 1024
"""Largest answer read from a policy server (an action is a few hundred bytes)."""
_MAX_HEAD_LINES = 100
_MAX_LINE = 64 * 1024


class PolicyHttpError(Exception):
    """A policy call got no complete HTTP answer; `timed_out` when a time bound ended it."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A URL parsed once (parsing costs more than a call's bookkeeping): origin and request head.

    Raises:
        ValueError: The URL is not http(s) with a host.
    """

    https: bool
    host: str
    port: int
    head: bytes
    """The request line and fixed headers, up to the content length's value."""

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """The endpoint of an http(s) URL."""
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"{url} is not an http(s) URL")
        https = parsed.scheme == "https"
        port = parsed.port or (443 if https else 80)
        host_header = parsed.netloc.decode("ascii")
        path = parsed.raw_path.decode("ascii") or "/"
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {host_header}\r\n"
            "content-type: application/json\r\naccept: application/json\r\ncontent-length: "
        ).encode("ascii")
        return cls(https, parsed.host, port, head)


class _Connection:
    __slots__ = ("expired", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.expired = False

    def expire(self) -> None:
        """The exchange's time is up: drop the connection, which ends the read in progress."""
        self.expired = True
        self.writer.transport.abort()

    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class _Reset(Exception):
    """A reused connection ended before the first byte of the answer: safe to send again."""


class PolicyHttp:
    """The pooled client every policy call of one gateway shares.

    Args:
        timeout: Seconds to write a request and read its whole answer.
        connect_timeout: Seconds to open a connection (and finish TLS); defaults to about half
            of `timeout`, as a connection refused or a black-holed address should fail fast.
    """

    def __init__(self, timeout: float, connect_timeout: float | None = None) -> None:
        self.timeout = timeout
        self.connect_timeout = (
            connect_timeout if connect_timeout is not None else min(timeout, 0.5 * timeout + 0.05)
        )
        self._idle: dict[tuple[bool, str, int], list[_Connection]] = {}
        self._tls: ssl.SSLContext | None = None
        self._closed = False

    async def post(self, endpoint: Endpoint, body: bytes) -> tuple[int, bytes]:
        """POST `body` (JSON) to `endpoint`; the answer's status and body.

        Raises:
            PolicyHttpError: No complete answer (refused, reset, malformed, too long, or a time
                bound passed).
        """
        if self._closed:
            raise PolicyHttpError("the gateway is stopping: its policy client is closed")
        request = b"%b%d\r\n\r\n%b" % (endpoint.head, len(body), body)
        key = (endpoint.https, endpoint.host, endpoint.port)
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if not connection.usable():
                connection.close()
                continue
            try:
                return await self._exchange(key, connection, request)
            except _Reset:
                break  # the server closed it as we reused it; send once more, afresh
        connection = await self._connect(endpoint)
        try:
            return await self._exchange(key, connection, request)
        except _Reset:
            raise PolicyHttpError(
                f"{endpoint.host}:{endpoint.port} closed the connection without answering"
            ) from None

    async def _connect(self, endpoint: Endpoint) -> _Connection:
        tls: ssl.SSLContext | None = None
        if endpoint.https:
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    endpoint.host, endpoint.port, ssl=tls, limit=_MAX_LINE
                )
        except TimeoutError:
            raise PolicyHttpError(
                f"connecting to {endpoint.host}:{endpoint.port} took over "
                f"{self.connect_timeout:g}s (ConnectTimeout)",
                timed_out=True,
            ) from None
        except OSError as exc:
            raise PolicyHttpError(
                f"cannot connect to {endpoint.host}:{endpoint.port}: {type(exc).__name__}: {exc}"
            ) from exc
        return _Connection(reader, writer)

    async def _exchange(
        self, key: tuple[bool, str, int], connection: _Connection, request: bytes
    ) -> tuple[int, bytes]:
        """One request and its answer on `connection`, which goes back to the pool if it can."""
        reusable = False
        # A bare timer that aborts the connection, rather than asyncio.timeout: that one was
        # ~7% of the gateway's profile in split (a Timeout, a lookup of the current task,
        # rescheduling, and cancelling the task when it fires); ending the read is all we need.
        timer = asyncio.get_running_loop().call_later(self.timeout, connection.expire)
        try:
            connection.writer.write(request)
            status, body, reusable = await _read_answer(connection.reader)
        except (
            _Reset,
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
        ) as exc:
            if connection.expired:
                raise PolicyHttpError(
                    f"no whole answer within {self.timeout:g}s (ReadTimeout)", timed_out=True
                ) from None
            if isinstance(exc, _Reset):
                raise
            raise PolicyHttpError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            timer.cancel()
            if reusable and not connection.expired and not self._closed:
                self._idle.setdefault(key, []).append(connection)
            else:
                connection.close()
        return status, body

    async def aclose(self) -> None:
        """Close every pooled connection; calls after this fail (the gateway is stopping)."""
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    async def __aenter__(self) -> PolicyHttp:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, whether the connection can carry another request).

    Raises:
        _Reset: The connection ended before the answer's first byte.
        ValueError: The answer is not HTTP/1.x, or is too long.
        asyncio.IncompleteReadError: The connection ended inside the answer.
    """
    try:
        line = await reader.readline()
    except ConnectionResetError:
        raise _Reset from None
    if not line:
        raise _Reset
    status, length, chunked, keep_alive = await _read_head(reader, line)
    while 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
        line = await reader.readline()
        if not line:
            raise asyncio.IncompleteReadError(b"", None)
        status, length, chunked, keep_alive = await _read_head(reader, line)
    if status in (204, 304):
        return status, b"", keep_alive
    if chunked:
        return status, await _read_chunks(reader), keep_alive
    if length >= 0:
        if length > MAX_ANSWER_BYTES:
            raise ValueError(f"an answer of {length} bytes (at most {MAX_ANSWER_BYTES})")
        return status, await reader.readexactly(length), keep_alive
    parts: list[bytes] = []  # framed by the end of the connection
    size = 0
    while part := await reader.read(65536):
        size += len(part)
        if size > MAX_ANSWER_BYTES:
            raise ValueError(f"an answer of more than {MAX_ANSWER_BYTES} bytes")
        parts.append(part)
    return status, b"".join(parts), False


async def _read_head(reader: asyncio.StreamReader, line: bytes) -> tuple[int, int, bool, bool]:
    """An answer's head: (status, content length or -1, chunked, keep-alive).

    `line` is its status line, already read; this reads its headers.
    """
    version, _, rest = line.partition(b" ")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise ValueError(f"not an HTTP/1.x status line: {line[:80]!r}")
    status = int(rest[:3])
    length = -1
    chunked = False
    keep_alive = version == b"HTTP/1.1"
    for _ in range(_MAX_HEAD_LINES):
        line = await reader.readline()
        if line in (b"\r\n", b"\n"):
            return status, length, chunked, keep_alive
        if not line:
            raise asyncio.IncompleteReadError(b"", None)
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            token = value.strip().lower()
            if token == b"close":
                keep_alive = False
            elif token == b"keep-alive":
                keep_alive = True
    raise ValueError(f"more than {_MAX_HEAD_LINES} header lines")


async def _read_chunks(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        line = await reader.readline()
        if not line:
            raise asyncio.IncompleteReadError(b"", None)
        length = int(line.split(b";", 1)[0].strip(), 16)
        if length == 0:
            while (trailer := await reader.readline()) not in (b"\r\n", b"\n"):
                if not trailer:
                    raise asyncio.IncompleteReadError(b"", None)
            return b"".join(parts)
        size += length
        if size > MAX_ANSWER_BYTES:
            raise ValueError(f"an answer of more than {MAX_ANSWER_BYTES} bytes")
        parts.append(await reader.readexactly(length))
        await reader.readexactly(2)  # the chunk's CRLF
