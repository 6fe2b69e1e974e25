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
- **cost**: a call that waits for its turn costs CPU (a timer, a wake-up) and latency, and
  with the lean client below a kept-alive connection costs next to nothing: at 32 concurrent
  decisions, 32 per server served 2-12% more decisions per second than 8 with one policy call
  each (bare proxy, off, split), and 29% more in shadow, where each decision holds a turn at
  both servers (benchmarks/gateway.py's rows, measured side by side; with httpx it was the
  reverse: 8 about doubled the throughput of 32).

The calls go through gateway.policy_http, a lean HTTP/1.1 client (a tenth of httpx's CPU per
call); a version whose uri the gateway serves from an artifact (`--policy-artifact`,
gateway.in_process) is evaluated in this process and never called.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway import fast_json
from gateway.admission import PolicyServers
from gateway.policy_http import Endpoint, PolicyHttp, PolicyHttpError
from rollout_specs import PolicyVersion

if TYPE_CHECKING:
    from gateway.in_process import InProcessPolicies, InProcessPolicy

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
DEFAULT_PER_SERVER = 32
MAX_ACTION_LENGTH = 128
"""Characters an action may have: actions are metric label values and answer fields."""
MAX_PARAMS = 16
"""Parameters one answer may carry: each is a metric label value (`field`) and a sum to keep."""
TIMED_OUT = "its policy server timed out"
UNREACHABLE = "its policy server could not be reached"
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


def policy_http_client(timeout: float = DEFAULT_TIMEOUT) -> PolicyHttp:
    """The one pooled client the gateway uses for every policy server (gateway.policy_http).

    Connections are kept alive (a decision costs one round trip, not a handshake), and every
    phase has a bound, so a hung policy server costs a decision at most about `timeout`
    seconds instead of holding it forever. The pool has no cap of its own: `PolicyClient`
    bounds the calls per server, which bounds the connections.

    Args:
        timeout: Seconds allowed to write a request and read its answer; connecting gets at
            most about half of it.
    """
    return PolicyHttp(timeout)


class _Server:
    """One policy server: its `/act` URL, parsed once, and the gate on its calls in flight."""

    __slots__ = ("endpoint", "gate", "url")

    def __init__(self, uri: str, per_server: int) -> None:
        self.url = uri.rstrip("/") + "/act"
        self.endpoint = Endpoint.parse(self.url)
        self.gate = asyncio.Semaphore(per_server)


class PolicyClient:
    """Asks the policy server of a `PolicyVersion` for an action.

    Args:
        http: The shared pooled client (`policy_http_client`).
        allowed: The only policy servers it may call.
        per_server: Most calls in flight to one policy server; more wait their turn.
        queue_timeout: Seconds a call may wait for its turn before it fails.
        in_process: Artifacts evaluated in the gateway, by the URL of the policy server each
            replaces (gateway.in_process): a version with that uri is never called over HTTP.
    """

    def __init__(
        self,
        http: PolicyHttp,
        allowed: PolicyServers,
        *,
        per_server: int = DEFAULT_PER_SERVER,
        queue_timeout: float = DEFAULT_TIMEOUT,
        in_process: InProcessPolicies | None = None,
    ) -> None:
        if per_server < 1:
            raise ValueError("per_server must be at least 1")
        self._http = http
        self._allowed = allowed
        self._per_server = per_server
        self._queue_timeout = queue_timeout
        self._in_process = in_process
        self._servers: dict[str, _Server | InProcessPolicy] = {}

    async def act(self, policy: PolicyVersion, context: Mapping[str, float]) -> PolicyAnswer:
        """The action `policy` takes in `context`, with its parameters if it gives any.

        Raises:
            PolicyError: The version has no uri, its server is not allowed, or it failed to
                answer with an action.
        """
        server = self._server_of(policy)
        if not isinstance(server, _Server):
            return server.act(context)
        payload = fast_json.dumps({"context": context if type(context) is dict else dict(context)})
        status, body = await self._post(server, payload)
        return _answer(server.url, status, body)

    def _server_of(self, policy: PolicyVersion) -> _Server | InProcessPolicy:
        """Where `policy` is served from.

        Raises:
            PolicyError: It has no uri, or its server is not allowed.
        """
        if not policy.uri:
            reason = "it has no uri to be served from"
            raise PolicyError(f"policy version {policy.version}: {reason}", reason)
        server = self._servers.get(policy.uri)
        if server is None:
            server = self._server(policy.uri)
        return server

    async def _post(self, server: _Server, payload: bytes) -> tuple[int, bytes]:
        """One call to `server`, in its turn: the answer's status and body."""
        await self._take_turn(server)
        try:
            return await self._http.post(server.endpoint, payload)
        except PolicyHttpError as exc:
            if exc.timed_out:
                raise PolicyError(f"{server.url} timed out: {exc}", TIMED_OUT) from exc
            raise PolicyError(f"{server.url} failed: {exc}", UNREACHABLE) from exc
        finally:
            server.gate.release()

    async def act_many(
        self, policy: PolicyVersion, contexts: Sequence[Mapping[str, float]]
    ) -> list[PolicyAnswer | PolicyError]:
        """The action `policy` takes in each context, in one call (the batch form, sampling).

        `POST {uri}/act` with `{"contexts": [...], "sample": true}` (gateway.policy_server):
        the server decides each context as the single form would. A context it refused is a
        PolicyError in its place; the others stand.

        Raises:
            PolicyError: The whole call failed (as `act` fails), or the answer is not one
                decision per context; and for a version served in-process, which is never
                called (the decider evaluates those itself).
        """
        server = self._server_of(policy)
        if not isinstance(server, _Server):
            reason = "it is evaluated in-process, not called"
            raise PolicyError(f"policy version {policy.version}: {reason}", reason)
        payload = fast_json.dumps({"contexts": list(contexts), "sample": True})
        status, body = await self._post(server, payload)
        return _answers(server.url, status, body, len(contexts))

    def serves_in_process(self, policy: PolicyVersion) -> bool:
        """Whether `policy` is evaluated in this process.

        Its `act` then does no I/O, so there is nothing to overlap it with: the decider runs
        it without a task.
        """
        if self._in_process is None or not policy.uri:
            return False
        server = self._servers.get(policy.uri)
        if server is not None:
            return not isinstance(server, _Server)
        return self._in_process.get(policy.uri) is not None

    def _server(self, uri: str) -> _Server | InProcessPolicy:
        """The server (or in-process policy) of a uri first seen, remembered for the next call."""
        local = self._in_process.get(uri) if self._in_process is not None else None
        if local is not None:
            self._servers[uri] = local
            return local
        if not self._allowed.allows(uri):
            reason = "its uri is not one of this gateway's policy servers"
            raise PolicyError(f"{uri}: {reason}", reason)
        server = self._servers[uri] = _Server(uri, self._per_server)
        return server

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


_UNUSABLE = "its policy server answered without a usable action"


def _answer(url: str, status: int, body: bytes) -> PolicyAnswer:
    if status != 200:
        raise PolicyError(
            f"{url} answered {status}: {_text(body)}", f"its policy server answered HTTP {status}"
        )
    try:
        document = fast_json.loads(body)
    except ValueError as exc:
        raise PolicyError(f"{url} answered without an action: {_text(body)}", _UNUSABLE) from exc
    return _decision(url, document, body)


def _answers(url: str, status: int, body: bytes, count: int) -> list[PolicyAnswer | PolicyError]:
    """A sampling batch answer: one decision, or the error of one context, per context."""
    if status != 200:
        raise PolicyError(
            f"{url} answered {status}: {_text(body)}", f"its policy server answered HTTP {status}"
        )
    try:
        decisions = fast_json.loads(body)["decisions"]
    except (ValueError, KeyError, TypeError) as exc:
        raise PolicyError(f"{url} answered no decisions: {_text(body)}", _UNUSABLE) from exc
    if not isinstance(decisions, list) or len(decisions) != count:
        raise PolicyError(f"{url} answered not one decision per context: {_text(body)}", _UNUSABLE)
    answers: list[PolicyAnswer | PolicyError] = []
    for document in decisions:
        if isinstance(document, dict) and "detail" in document and "action" not in document:
            message = f"{url} refused a context: {str(document['detail'])[:200]}"
            answers.append(PolicyError(message, "its policy server answered HTTP 422"))
            continue
        try:
            answers.append(_decision(url, document, body))
        except PolicyError as exc:
            answers.append(exc)
    return answers


def _decision(url: str, document: Any, body: bytes) -> PolicyAnswer:
    """The action (and parameters) of one decision a policy server answered."""
    unusable = _UNUSABLE
    try:
        action = document["action"]
    except (KeyError, TypeError) as exc:
        raise PolicyError(f"{url} answered without an action: {_text(body)}", unusable) from exc
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


def _text(body: bytes) -> str:
    """The start of an answer, for the log."""
    return body[:200].decode("utf-8", "replace")
