"""Running apps under uvicorn the way the gateway's commands do: quiet, and a clean stop.

The gateway serves two apps on two ports (its data plane and its control plane), the policy
server one; both run every listener as a `uvicorn.Server` on one event loop, so the apps share
their state without threads. Every socket is bound before anything is served, so a port that is
taken fails the start at once (`OSError`) instead of leaving half a gateway up.

SIGINT and SIGTERM set every server's `should_exit`: each stops accepting connections, lets
in-flight requests finish and runs its app's shutdown (closing pooled connections); then the
command returns, so a supervisor (systemd, the demo, the e2e tests) sees exit status 0 rather
than a death by signal. A second SIGINT forces the exit without waiting for requests, and
requests still in flight after GRACEFUL_SHUTDOWN seconds are cut: a client that holds a request
open (sending its body a byte at a time) cannot keep the process from stopping.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp

__all__ = ["GRACEFUL_SHUTDOWN", "Listener", "bind", "serve", "serve_all"]

GRACEFUL_SHUTDOWN = 10
"""Seconds in-flight requests get to finish after SIGTERM (a decision takes milliseconds)."""


@dataclass(frozen=True)
class Listener:
    """One app on one host and port."""

    app: ASGIApp
    host: str
    port: int


class _Server(uvicorn.Server):
    """uvicorn's server, leaving the signals to `serve_all` (which stops every server at once).

    uvicorn's own handling installs its handler per server and re-raises the signal when the
    server stops; with two servers on one loop that would stop one, then the other, then kill
    the process by the re-raised signal.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on host:port.

    IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets whose proto says TCP, and
    without it Nagle and delayed ACKs add ~40 ms to every answer.

    Raises:
        OSError: The address cannot be bound (in use, not local, no permission).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def serve(app: ASGIApp, host: str, port: int) -> None:
    """Serve `app` on host:port until SIGINT or SIGTERM, without per-request logs.

    Raises:
        OSError: host:port cannot be bound.
    """
    serve_all([Listener(app, host, port)])


def serve_all(listeners: Sequence[Listener]) -> None:
    """Serve every listener on one event loop until SIGINT or SIGTERM, then return.

    Raises:
        OSError: One of the addresses cannot be bound; nothing was served.
    """
    sockets: list[socket.socket] = []
    try:
        for listener in listeners:
            sockets.append(bind(listener.host, listener.port))
        servers = [
            _Server(
                uvicorn.Config(
                    listener.app,
                    log_level="warning",
                    access_log=False,
                    timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
                )
            )
            for listener in listeners
        ]
        # Everything built so far (modules, the apps, their schemas and metrics: ~70,000
        # objects in the gateway) lives as long as the process; frozen, out of the collector's
        # sight, they no longer make every full collection walk them again (the gateway's
        # decide app driven in-process: collections 4 -> 2 us per decision, and each full
        # collection's pause, one every ~15,000 decisions, 40 -> 17 ms).
        gc.freeze()
        # the event loop uvicorn.run would pick (uvloop when installed)
        with asyncio.Runner(loop_factory=servers[0].config.get_loop_factory()) as runner:
            runner.run(_serve(servers, sockets))
    finally:
        for sock in sockets:
            sock.close()


async def _serve(servers: list[_Server], sockets: list[socket.socket]) -> None:
    loop = asyncio.get_running_loop()

    def stop(signum: int) -> None:
        for server in servers:
            server.handle_exit(signum, None)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signum)
    try:
        await asyncio.gather(
            *(server.serve(sockets=[sock]) for server, sock in zip(servers, sockets, strict=True))
        )
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
