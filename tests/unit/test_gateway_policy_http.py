"""The policy calls' HTTP/1.1 client (gateway.policy_http), against scripted raw servers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from gateway.policy_http import MAX_ANSWER_BYTES, Endpoint, PolicyHttp, PolicyHttpError

Answer = Callable[[bytes], bytes | None]
"""Given a request (head and body), the raw bytes to answer; None closes without answering."""


@asynccontextmanager
async def _server(answer: Answer, *, close_after: bool = False) -> AsyncIterator[list[bytes]]:
    """A raw server answering every request on a connection; yields the requests it read."""
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                request = head + await reader.readexactly(length)
                requests.append(request)
                raw = answer(request)
                if raw is None:
                    break
                writer.write(raw)
                await writer.drain()
                if close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    requests.append(f"http://127.0.0.1:{port}/act".encode())  # [0]: the URL
    async with server:
        yield requests


def _ok(body: bytes = b'{"action": "none"}') -> Answer:
    return lambda request: b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body)


async def test_one_request_in_one_piece_and_kept_alive_connections() -> None:
    async with _server(_ok()) as requests, PolicyHttp(1.0) as http:
        endpoint = Endpoint.parse(requests[0].decode())
        for _ in range(3):
            assert await http.post(endpoint, b'{"context":{}}') == (200, b'{"action": "none"}')
        assert len(http._idle[(False, "127.0.0.1", endpoint.port)]) == 1  # one connection
    head, _, body = requests[1].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /act HTTP/1.1\r\nhost: 127.0.0.1:")
    assert b"content-type: application/json" in head
    assert body == b'{"context":{}}'


async def test_a_chunked_answer_is_read_whole() -> None:
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\n\r\n"
    async with _server(lambda request: chunked) as requests, PolicyHttp(1.0) as http:
        endpoint = Endpoint.parse(requests[0].decode())
        assert await http.post(endpoint, b"{}") == (200, b"hello")
        assert await http.post(endpoint, b"{}") == (200, b"hello")


async def test_an_answer_framed_by_the_end_of_the_connection_is_read_and_not_reused() -> None:
    old = b"HTTP/1.0 500 Oops\r\ncontent-type: text/plain\r\n\r\nbroken"
    async with _server(lambda request: old, close_after=True) as requests, PolicyHttp(1.0) as http:
        endpoint = Endpoint.parse(requests[0].decode())
        assert await http.post(endpoint, b"{}") == (500, b"broken")
        assert await http.post(endpoint, b"{}") == (500, b"broken")
        assert not http._idle.get((False, "127.0.0.1", endpoint.port))


async def test_an_interim_answer_is_skipped() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"
    async with _server(lambda request: raw) as requests, PolicyHttp(1.0) as http:
        assert await http.post(Endpoint.parse(requests[0].decode()), b"{}") == (200, b"{}")


async def test_a_connection_the_server_closes_after_answering_costs_no_failed_call() -> None:
    """Its close is seen before the reuse (not reused) or on it (sent again): both answer."""
    async with _server(_ok(), close_after=True) as requests, PolicyHttp(1.0) as http:
        endpoint = Endpoint.parse(requests[0].decode())
        for _ in range(5):
            assert (await http.post(endpoint, b"{}"))[0] == 200
    assert len(requests) == 6


async def test_a_reused_connection_closed_without_an_answer_is_retried_once_afresh() -> None:
    answers = iter([_ok()(b""), None, _ok()(b"")])
    async with _server(lambda request: next(answers)) as requests, PolicyHttp(1.0) as http:
        endpoint = Endpoint.parse(requests[0].decode())
        assert (await http.post(endpoint, b"{}"))[0] == 200
        assert (await http.post(endpoint, b"{}"))[0] == 200  # closed on reuse, then sent again
    assert len(requests) == 4


async def test_a_fresh_connection_closed_without_an_answer_fails() -> None:
    async with _server(lambda request: None) as requests, PolicyHttp(1.0) as http:
        with pytest.raises(PolicyHttpError, match="without answering") as raised:
            await http.post(Endpoint.parse(requests[0].decode()), b"{}")
    assert not raised.value.timed_out


async def test_a_server_that_does_not_answer_times_out() -> None:
    async with _server(lambda request: b"HTTP/1.1 200 OK\r\n") as requests, PolicyHttp(0.2) as http:
        with pytest.raises(PolicyHttpError) as raised:
            await http.post(Endpoint.parse(requests[0].decode()), b"{}")
    assert raised.value.timed_out


async def test_a_refused_connection_fails_fast() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with PolicyHttp(1.0) as http:
        with pytest.raises(PolicyHttpError, match="cannot connect") as raised:
            await http.post(Endpoint.parse(f"http://127.0.0.1:{port}/act"), b"{}")
    assert not raised.value.timed_out


@pytest.mark.parametrize(
    "raw",
    [
        b"SPDY/3 200 OK\r\n\r\n",
        b"HTTP/1.1 2xx OK\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (MAX_ANSWER_BYTES + 1),
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
    ],
)
async def test_a_malformed_or_oversized_answer_fails(raw: bytes) -> None:
    async with _server(lambda request: raw, close_after=True) as requests, PolicyHttp(1.0) as http:
        with pytest.raises(PolicyHttpError) as raised:
            await http.post(Endpoint.parse(requests[0].decode()), b"{}")
    assert not raised.value.timed_out


async def test_a_closed_client_refuses_calls() -> None:
    http = PolicyHttp(1.0)
    await http.aclose()
    with pytest.raises(PolicyHttpError, match="closed"):
        await http.post(Endpoint.parse("http://127.0.0.1:1/act"), b"{}")


def test_endpoints_are_http_urls_with_a_host() -> None:
    endpoint = Endpoint.parse("https://policies.internal/v2/act")
    assert (endpoint.https, endpoint.host, endpoint.port) == (True, "policies.internal", 443)
    assert endpoint.head.startswith(b"POST /v2/act HTTP/1.1\r\nhost: policies.internal\r\n")
    with pytest.raises(ValueError, match="not an http"):
        Endpoint.parse("ftp://policies.internal/act")
