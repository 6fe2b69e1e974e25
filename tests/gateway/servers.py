"""Real gateway and policy servers for tests: uvicorn on 127.0.0.1, on ports the OS picks.

Each server runs `uvicorn.Server` on its own event loop in a background thread, over a socket
bound before the thread starts (so `.url` is known at once and no port can be raced for), and is
a context manager: entering waits (bounded) until uvicorn has finished its startup, leaving
stops it and waits (bounded) for the thread to end. The gateway's two planes run as two uvicorn
servers on that one loop, as `python -m gateway` runs them (they share state without threads).

    with PolicyServer(INCUMBENT) as incumbent, PolicyServer(CANDIDATE) as candidate:
        with GatewayServer([incumbent, candidate], state_file=tmp_path / "routes.json") as gw:
            httpx.put(f"{gw.control_url}/v1/targets/offers/route", json=..., headers=gw.auth)
            httpx.post(f"{gw.url}/v1/targets/offers/decide", json=...)

Leaving a `PolicyServer` really closes its socket, so "the candidate's server is down" is a
connection refused, as in production.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import uvicorn
from starlette.types import ASGIApp

from gateway.app import create_gateway
from gateway.control import ControlToken
from gateway.policies import LinearSoftmaxPolicy, PolicyArtifact, load_policy
from gateway.policy_server import create_policy_app

__all__ = ["GatewayServer", "PolicyServer", "UvicornThread"]

START_TIMEOUT: Final = 10.0
"""Seconds a server may take to start (or to stop) before the test fails."""


class _Server(uvicorn.Server):
    """uvicorn's server, telling another thread when its startup is over (or failed)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.startup_over = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.startup_over.set()


class UvicornThread:
    """ASGI apps served by uvicorn on one event loop in a background thread, each on its own
    port, as a context manager (`.url` is the first app's)."""

    def __init__(self, app: ASGIApp, name: str = "server", *more: ASGIApp) -> None:
        self.name = name
        self._sockets = [_loopback_socket() for _ in (app, *more)]
        self._servers = [
            _Server(
                uvicorn.Config(
                    each,
                    log_level="warning",
                    access_log=False,
                    lifespan="on",
                    timeout_graceful_shutdown=5,
                )
            )
            for each in (app, *more)
        ]
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"{name}-{self.port}", daemon=True)

    @property
    def ports(self) -> list[int]:
        """The ports the OS gave the servers, in the order of the apps."""
        return [int(sock.getsockname()[1]) for sock in self._sockets]

    @property
    def port(self) -> int:
        """The port the OS gave the (first) server."""
        return self.ports[0]

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:43817 (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        async def serve_all() -> None:
            await asyncio.gather(
                *(
                    server.serve(sockets=[sock])
                    for server, sock in zip(self._servers, self._sockets, strict=True)
                )
            )

        try:
            asyncio.run(serve_all())
        except BaseException as exc:  # SystemExit from a failed startup included
            self._failure = exc
            for server in self._servers:
                server.should_exit = True
                server.startup_over.set()

    def start(self) -> Self:
        """Start serving; return once uvicorn accepts connections on every port."""
        self._thread.start()
        for server in self._servers:
            if not server.startup_over.wait(START_TIMEOUT):
                self.stop()
                raise RuntimeError(f"{self.name} did not start within {START_TIMEOUT}s")
        if not all(server.started for server in self._servers):
            for server in self._servers:
                server.should_exit = True
            self._thread.join(START_TIMEOUT)
            self._close()
            raise RuntimeError(f"{self.name} failed to start: {self._failure!r}")
        return self

    def stop(self) -> None:
        """Stop serving (in-flight requests finish) and close the sockets."""
        for server in self._servers:
            server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(START_TIMEOUT)
        self._close()
        if self._thread.is_alive():
            raise RuntimeError(f"{self.name} did not stop within {START_TIMEOUT}s")

    def _close(self) -> None:
        for sock in self._sockets:
            sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _loopback_socket() -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets whose proto says TCP,
    # and without it Nagle + delayed ACKs add ~40 ms to every response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class GatewayServer(UvicornThread):
    """The real gateway (`gateway.app.create_gateway`): its data plane on `.url`, its control
    plane on `.control_url` behind a fresh random token (`.auth` is the header to send).

    Args:
        policy_servers: The policy servers (or their URLs) routes may name.
        state_file: Keep routes in this file; a second server on the same file restores them.
        token: The control token; None draws a random one.
        insecure: Serve the control plane without any token (`--insecure-control-plane`).
        **options: More keyword arguments of `create_gateway` (`policy_timeout`,
            `decision_ttl`, `reward_range`...).
    """

    def __init__(
        self,
        policy_servers: Iterable[UvicornThread | str] = (),
        state_file: Path | None = None,
        token: str | None = None,
        insecure: bool = False,
        **options: Any,
    ) -> None:
        self.token = None if insecure else token or secrets.token_urlsafe(32)
        gateway = create_gateway(
            policy_uris=[p if isinstance(p, str) else p.url for p in policy_servers],
            control_token=None if self.token is None else ControlToken.from_secret(self.token),
            insecure_control_plane=insecure,
            state_file=state_file,
            **options,
        )
        super().__init__(gateway.data, "gateway", gateway.control)

    @property
    def control_url(self) -> str:
        """Base URL of the control plane (routes, stats, metrics)."""
        return f"http://127.0.0.1:{self.ports[1]}"

    @property
    def auth(self) -> dict[str, str]:
        """The control plane's `Authorization` header (none when it has no token)."""
        return {} if self.token is None else {"Authorization": f"Bearer {self.token}"}


class PolicyServer(UvicornThread):
    """A real policy server (`gateway.policy_server`) for one artifact.

    Args:
        artifact: An artifact file, a parsed artifact or its JSON document, or a policy.
        seed: Seed of the server's action sampler.
    """

    def __init__(
        self,
        artifact: Path | str | PolicyArtifact | LinearSoftmaxPolicy | dict[str, Any],
        seed: int = 0,
    ) -> None:
        policy = _policy(artifact)
        self.version = policy.version
        super().__init__(create_policy_app(policy, seed=seed), name=f"policy-{policy.version}")

    def as_version(self) -> dict[str, str]:
        """This server as a route's `{version, uri}`."""
        return {"version": self.version, "uri": self.url}


def _policy(
    artifact: Path | str | PolicyArtifact | LinearSoftmaxPolicy | dict[str, Any],
) -> LinearSoftmaxPolicy:
    if isinstance(artifact, LinearSoftmaxPolicy):
        return artifact
    if isinstance(artifact, PolicyArtifact):
        return LinearSoftmaxPolicy(artifact)
    if isinstance(artifact, dict):
        return LinearSoftmaxPolicy(PolicyArtifact.model_validate(artifact))
    return load_policy(Path(artifact))
