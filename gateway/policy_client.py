"""The gateway's side of a policy server: `POST {uri}/act`, one pooled client, one error type.

A route names each policy version with `uri` = the base URL of its policy server, and only the
policy servers the gateway was started with are ever called (gateway.admission.PolicyServers;
routes naming others are refused before they are held, and this client checks again). Every
failure to get an action (no uri, a server not allowed, connection refused, timeout, a non-200,
an answer without an action or with unusable `params`, too many calls already waiting) is a
`PolicyError`, so the decide path has one thing to handle per arm. Its `reason` is what a client
may be told (never text the policy server sent); its message, for the gateway's log, has the
whole story.

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
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from gateway.admission import PolicyServers
from rollout_specs import PolicyVersion

__all__ = [
    "MAX_ACTION_LENGTH",
    "MAX_PARAMS",
    "PARAM_NAME",
    "PolicyAnswer",
    "PolicyClient",
    "PolicyError",
    "policy_http_client",
]

DEFAULT_TIMEOUT = 1.0
DEFAULT_PER_SERVER = 8
MAX_ACTION_LENGTH = 128
"""Characters an action may have: actions are metric label values and answer fields."""
MAX_PARAMS = 16
"""Parameters one answer may carry: each is a metric label value (`field`) and a sum to keep."""
PARAM_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,63}")
"""A parameter's name: spelled like a metric label name, so it reads the same in every query."""


@dataclass(frozen=True, slots=True)
class PolicyAnswer:
    """A policy's action and, when the policy gives any, its numeric parameters.

    The parameters travel with the action because caps judge them (a discount's `amount`) and
    spend is summed from them; None (not an empty mapping) when the policy gave none, so the
    common answer costs nothing more.
    """

    action: str
    params: Mapping[str, float] | None = None


class PolicyError(Exception):
    """A policy server could not give an action.

    The message (for the gateway's log) says which server and why, quoting what it answered;
    `reason` says why in the gateway's own words, safe to put in an answer to any client.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


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
        allowed: The only policy servers it may call.
        per_server: Most calls in flight to one policy server; more wait their turn.
        queue_timeout: Seconds a call may wait for its turn before it fails.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        allowed: PolicyServers,
        *,
        per_server: int = DEFAULT_PER_SERVER,
        queue_timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if per_server < 1:
            raise ValueError("per_server must be at least 1")
        self._http = http
        self._allowed = allowed
        self._per_server = per_server
        self._queue_timeout = queue_timeout
        self._servers: dict[str, _Server] = {}

    async def act(self, policy: PolicyVersion, context: Mapping[str, float]) -> PolicyAnswer:
        """The action `policy` takes in `context`, with its parameters if it gives any.

        Raises:
            PolicyError: The version has no uri, its server is not allowed, or it failed to
                answer with an action.
        """
        if not policy.uri:
            reason = "it has no uri to be served from"
            raise PolicyError(f"policy version {policy.version}: {reason}", reason)
        server = self._servers.get(policy.uri)
        if server is None:
            if not self._allowed.allows(policy.uri):
                reason = "its uri is not one of this gateway's policy servers"
                raise PolicyError(f"{policy.uri}: {reason}", reason)
            server = self._servers[policy.uri] = _Server(policy.uri, self._per_server)
        payload = json.dumps({"context": dict(context)}, separators=(",", ":"))
        await self._take_turn(server)
        try:
            response = await self._http.post(server.url, content=payload)
        except httpx.TimeoutException as exc:
            raise PolicyError(
                f"{server.url} timed out ({type(exc).__name__})", "its policy server timed out"
            ) from exc
        except httpx.HTTPError as exc:
            raise PolicyError(
                f"{server.url} failed: {type(exc).__name__}: {exc}",
                "its policy server could not be reached",
            ) from exc
        finally:
            server.gate.release()
        return _answer(server.url, response)

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
                f"within {self._queue_timeout:g}s; the server is too slow or hung",
                "its policy server is too slow: too many calls already waiting",
            ) from None


def _answer(url: httpx.URL, response: httpx.Response) -> PolicyAnswer:
    if response.status_code != 200:
        raise PolicyError(
            f"{url} answered {response.status_code}: {response.text[:200]}",
            f"its policy server answered HTTP {response.status_code}",
        )
    unusable = "its policy server answered without a usable action"
    try:
        document = json.loads(response.content)
        action = document["action"]
    except (ValueError, KeyError, TypeError) as exc:
        raise PolicyError(
            f"{url} answered without an action: {response.text[:200]}", unusable
        ) from exc
    if not isinstance(action, str) or not 0 < len(action) <= MAX_ACTION_LENGTH:
        raise PolicyError(
            f"{url} answered an action that is not a string of 1-{MAX_ACTION_LENGTH} "
            f"characters: {str(action)[:200]!r}",
            unusable,
        )
    params = document.get("params")
    if params is None:
        return PolicyAnswer(action)
    problem = _params_problem(params)
    if problem is not None:
        raise PolicyError(
            f"{url} answered unusable params ({problem}): {str(params)[:200]}",
            "its policy server answered unusable action parameters",
        )
    return PolicyAnswer(action, {name: float(value) for name, value in params.items()})


def _params_problem(params: object) -> str | None:
    """What is wrong with an answer's `params`, or None when it is usable."""
    if not isinstance(params, dict):
        return "not an object"
    if len(params) > MAX_PARAMS:
        return f"{len(params)} parameters, more than {MAX_PARAMS}"
    for name, value in params.items():
        if not PARAM_NAME.fullmatch(name):
            return f"the name {name[:80]!r} is not a label name (letters, digits, _; at most 64)"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{name} is not a number"
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an integer too large for a float
            finite = False
        if not finite:
            return f"{name} is not finite"
    return None


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
