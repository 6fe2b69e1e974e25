"""The gateway's side of a policy server: `POST {uri}/act`, one pooled client, one error type.

A route names each policy version with `uri` = the base URL of its policy server. Every failure
to get an action (no uri, connection refused, timeout, a non-200, an answer without an action,
too many calls already waiting) is a `PolicyError`, so the decide path has one thing to handle
per arm.

Each policy server gets a bounded number of calls in flight (`per_server`), for two reasons:

- **isolation**: a hung candidate can hold at most its own share of connections, never starve
  the incumbent's calls (which would turn a candidate fault into 502s for everyone);
- **cost**: httpcore's pool re-scans its connections on every request and checks each idle one
  with a syscall, so its CPU cost grows faster than linearly with open connections; a few busy
  connections per server serve more decisions per second than many half-idle ones (measured
  by benchmarks/gateway.py: 8 per server about doubles throughput against 32).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from collections.abc import Mapping

import httpx

from rollout_specs import PolicyVersion

__all__ = ["PolicyClient", "PolicyError", "policy_http_client"]

DEFAULT_TIMEOUT = 1.0
DEFAULT_PER_SERVER = 8


class PolicyError(Exception):
    """A policy server could not give an action; the message says which server and why."""


def policy_http_client(timeout: float = DEFAULT_TIMEOUT) -> httpx.AsyncClient:
    """The one pooled client the gateway uses for every policy server.

    Connections are kept alive (a decision costs one round trip, not a handshake), and every
    phase has a bound, so a hung policy server costs a decision at most `timeout` seconds
    instead of holding it forever. The pool's own cap is generous: `PolicyClient` bounds the
    calls per server, which bounds the connections.

    Args:
        timeout: Seconds allowed to read an answer (and to write the request, or wait for a
            pooled connection); connecting gets at most about half of it.
    """
    _remember_that_sniffio_is_absent()
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 0.5 * timeout + 0.05)),
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=1000),
        headers={"content-type": "application/json"},
        trust_env=False,  # policy servers are addressed directly, never through a proxy
    )


class _Server:
    """One policy server: its parsed `/act` URL and the gate on its calls in flight."""

    __slots__ = ("gate", "url")

    def __init__(self, uri: str, per_server: int) -> None:
        self.url = httpx.URL(uri.rstrip("/") + "/act")  # parsed once: parsing costs ~25us
        self.gate = asyncio.Semaphore(per_server)


class PolicyClient:
    """Asks the policy server of a `PolicyVersion` for an action.

    Args:
        http: The shared pooled client (`policy_http_client`).
        per_server: Most calls in flight to one policy server; more wait their turn.
        queue_timeout: Seconds a call may wait for its turn before it fails.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        per_server: int = DEFAULT_PER_SERVER,
        queue_timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if per_server < 1:
            raise ValueError("per_server must be at least 1")
        self._http = http
        self._per_server = per_server
        self._queue_timeout = queue_timeout
        self._servers: dict[str, _Server] = {}

    async def act(self, policy: PolicyVersion, context: Mapping[str, float]) -> str:
        """The action `policy` takes in `context`.

        Raises:
            PolicyError: The version has no uri, or its server failed to answer with an action.
        """
        if not policy.uri:
            raise PolicyError(f"policy version {policy.version} has no uri to be served from")
        server = self._servers.get(policy.uri)
        if server is None:
            server = self._servers[policy.uri] = _Server(policy.uri, self._per_server)
        payload = json.dumps({"context": dict(context)}, separators=(",", ":"))
        await self._take_turn(server)
        try:
            response = await self._http.post(server.url, content=payload)
        except httpx.TimeoutException as exc:
            raise PolicyError(f"{server.url} timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise PolicyError(f"{server.url} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            server.gate.release()
        return _action(server.url, response)

    async def _take_turn(self, server: _Server) -> None:
        if not server.gate.locked():
            await server.gate.acquire()  # free: returns at once, no timer needed
            return
        try:
            async with asyncio.timeout(self._queue_timeout):
                await server.gate.acquire()
        except TimeoutError:
            raise PolicyError(
                f"{server.url} already has {self._per_server} calls in flight and none ended "
                f"within {self._queue_timeout:g}s; the server is too slow or hung"
            ) from None


def _action(url: httpx.URL, response: httpx.Response) -> str:
    if response.status_code != 200:
        raise PolicyError(f"{url} answered {response.status_code}: {response.text[:200]}")
    try:
        action = json.loads(response.content)["action"]
    except (ValueError, KeyError, TypeError) as exc:
        raise PolicyError(f"{url} answered without an action: {response.text[:200]}") from exc
    if not isinstance(action, str):
        raise PolicyError(f"{url} answered a non-string action {action!r}")
    return action


def _remember_that_sniffio_is_absent() -> None:
    """Make httpcore's per-request `import sniffio` fail in a microsecond instead of ~100.

    httpcore 1.0 imports the optional `sniffio` inside every lock and event it sets up; since
    anyio 4.11 no longer installs sniffio, each of those imports fails, and Python does not
    cache a failed import, so every request scans `sys.path` several times (a sixth of the
    gateway's CPU under load; encode/httpcore#1103). A `None` in `sys.modules` is Python's
    documented way to say "not importable": the import then fails at once. Nothing changes
    when sniffio is installed.
    """
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]
