"""Real gateway and policy servers for tests: uvicorn on 127.0.0.1, on ports the OS picks.

Each server runs `uvicorn.Server` on its own event loop in a background thread, over a socket
bound before the thread starts (so `.url` is known at once and no port can be raced for), and is
a context manager: entering waits (bounded) until uvicorn has finished its startup, leaving
stops it and waits (bounded) for the thread to end.

    with PolicyServer(INCUMBENT) as incumbent, PolicyServer(CANDIDATE) as candidate:
        with GatewayServer(state_file=tmp_path / "routes.json") as gateway:
            httpx.put(f"{gateway.url}/v1/targets/offers/route", json=...)

Leaving a `PolicyServer` really closes its socket, so "the candidate's server is down" is a
connection refused, as in production.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import uvicorn
from starlette.types import ASGIApp

from gateway.app import create_app
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
    """Any ASGI app served by uvicorn from a background thread, as a context manager."""

    def __init__(self, app: ASGIApp, name: str = "server") -> None:
        self.name = name
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets whose proto says TCP,
        # and without it Nagle + delayed ACKs add ~40 ms to every response.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
        self._server = _Server(config)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"{name}-{self.port}", daemon=True)

    @property
    def port(self) -> int:
        """The port the OS gave the server."""
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:43817 (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._socket]))
        except BaseException as exc:  # SystemExit from a failed startup included
            self._failure = exc
            self._server.startup_over.set()

    def start(self) -> Self:
        """Start serving; return once uvicorn accepts connections."""
        self._thread.start()
        if not self._server.startup_over.wait(START_TIMEOUT):
            self.stop()
            raise RuntimeError(f"{self.name} did not start within {START_TIMEOUT}s")
        if not self._server.started:
            self._thread.join(START_TIMEOUT)
            self._socket.close()
            raise RuntimeError(f"{self.name} failed to start: {self._failure!r}")
        return self

    def stop(self) -> None:
        """Stop serving (in-flight requests finish) and close the socket."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(START_TIMEOUT)
        self._socket.close()
        if self._thread.is_alive():
            raise RuntimeError(f"{self.name} did not stop within {START_TIMEOUT}s")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class GatewayServer(UvicornThread):
    """The real gateway app (`gateway.app.create_app`), with its own routes and metrics.

    Args:
        state_file: Keep routes in this file; a second server on the same file restores them.
        **options: More keyword arguments of `create_app` (`policy_timeout`, `decision_ttl`...).
    """

    def __init__(self, state_file: Path | None = None, **options: Any) -> None:
        super().__init__(create_app(state_file=state_file, **options), name="gateway")


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
