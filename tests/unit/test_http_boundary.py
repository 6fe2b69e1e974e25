"""The HTTP boundary's deadline covers the whole request: a drip or a hang costs the deadline.

A real socket server on 127.0.0.1 answers with headers and then one byte at a time, slower than
any per-read timeout would notice; the request must end by its deadline all the same.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from activities.errors import ProviderUnavailable
from activities.http_boundary import READ_RETRIES, Unreachable, send
from activities.providers.prometheus import PrometheusProvider
from rollout_specs import PrometheusMonitoring

DRIP_BYTES = 200
DRIP_EVERY = 0.05
"""The dripping answer takes DRIP_BYTES * DRIP_EVERY = 10 s in all, one byte at a time."""


class _Dripping:
    """Accepts connections and answers 200 with a body it sends one byte per DRIP_EVERY."""

    def __init__(self, *, hang: bool = False) -> None:
        self.hang = hang
        self.stop = threading.Event()
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/api/v1/query"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            if self.hang:
                self.stop.wait()
                return
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {DRIP_BYTES}\r\n\r\n".encode()
            try:
                conn.sendall(head)
                for _ in range(DRIP_BYTES):
                    if self.stop.wait(DRIP_EVERY):
                        return
                    conn.sendall(b" ")
            except OSError:
                return  # the client gave up, as it should

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture(params=[False, True], ids=["dripping", "hanging"])
def server(request: pytest.FixtureRequest) -> Iterator[_Dripping]:
    dripping = _Dripping(hang=request.param)
    yield dripping
    dripping.close()


async def test_a_slow_answer_ends_at_the_deadline_not_at_each_read(server: _Dripping) -> None:
    async with httpx.AsyncClient() as client:
        started = time.monotonic()
        with pytest.raises(Unreachable, match=r"did not answer within 1s") as caught:
            await send(client, "GET", server.url, deadline=1.0, retries=READ_RETRIES)
        took = time.monotonic() - started

    assert caught.value.timed_out
    # The answer would take 10 s; a per-read timeout of 1 s never fires on it.
    assert took < 3.0, f"the 1 s deadline held the request for {took:.1f}s"


async def test_retries_happen_inside_the_deadline(server: _Dripping) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(Unreachable) as caught:
            await send(client, "GET", server.url, deadline=1.0, retries=READ_RETRIES)

    assert caught.value.attempts == 1, "a timed-out attempt is not retried past the deadline"
    assert server.connections == 1


async def test_a_refused_connection_is_retried_then_reported_as_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with httpx.AsyncClient() as client:
        with pytest.raises(Unreachable, match=r"could not be reached \(3 attempts") as caught:
            await send(
                client, "GET", f"http://127.0.0.1:{port}/", deadline=5.0, retries=READ_RETRIES
            )

    assert not caught.value.timed_out


async def test_a_deadline_must_be_positive() -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(ValueError, match="positive deadline"):
            await send(client, "GET", "http://127.0.0.1:9/", deadline=0)


async def test_a_dripping_prometheus_is_unavailable_within_monitoring_timeout(
    server: _Dripping,
) -> None:
    base = server.url.removesuffix("/api/v1/query")
    config = PrometheusMonitoring(type="prometheus", url=base, timeout=timedelta(seconds=1))
    async with httpx.AsyncClient() as client:
        provider = PrometheusProvider(config, client)
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable, match="did not answer within 1s"):
            await provider.query("up")
        took = time.monotonic() - started

    assert took < 3.0, f"monitoring.timeout 1s held the check for {took:.1f}s"
