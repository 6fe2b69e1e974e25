"""Where the gateway keeps its routes: its own table, or a Redis shared by several replicas.

One gateway keeps its routes in a `RoutingTable` (memory, or its state file): `LocalRouteStore`.
Several replicas behind one load balancer must serve one route state, so they keep it in one
Redis (`--route-store redis://...`): `RedisRouteStore`. Both answer the same three questions,
asynchronously: the route to report (`get`), the route to serve a decision from (`serving`),
and a write under the contract's generation rules (`put`).

**Why every decision asks Redis.** When a PUT (a rollback above all) has been answered, no
replica may serve a decision from an older route. Each decision therefore reads the target's
generation from Redis (one `HGET`, a few tens of microseconds on a local network) and serves the
route this replica cached for that generation, fetching the route body only when the
generation changed. A write is one Lua script, so it is atomic in Redis and the PUT is
answered only after Redis applied it; Redis serves commands one at a time, so every `HGET`
that reaches it after the script has run sees the new generation. Hence the bound: a decision
whose request reached a replica after the PUT's answer is served from that route or a newer
one, with no delay, no leases and no heartbeats to tune. Concurrent decisions of one target
share reads, but only a read not yet sent when they arrived (`RedisRouteStore._generation`), so
heavy traffic costs Redis at most one read in flight per target and replica, never staleness.

**When Redis cannot be reached** nothing is confirmed, so nothing is written and no candidate is
served:

- a PUT or GET on the control plane raises `RouteStoreUnavailableError` (HTTP 503, "route not
  applied"): lockgate retries a rollback until it lands, which it can only do once Redis is
  back, and then every replica sees it on its next decision;
- a decision is served by the **incumbent alone** of the last route this replica confirmed
  (mode `off`: no candidate, no shadow call), since serving the candidate of a route that may
  already have been rolled back is what the store exists to prevent; a target this replica
  never confirmed raises `RouteStoreUnavailableError` (503).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Final, Protocol

import redis
import redis.asyncio
from pydantic import ValidationError
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from activities.contracts import Route, RouteMode
from gateway.admission import RouteRefusedError, RouteRules
from gateway.routing_table import (
    DEFAULT_MAX_TARGETS,
    PutResult,
    RoutingTable,
    TooManyTargetsError,
    conflict,
    too_many_targets,
)
from gateway.validation import describe

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "DEFAULT_STORE_TIMEOUT",
    "LocalRouteStore",
    "RedisRouteStore",
    "RouteStore",
    "RouteStoreUnavailableError",
    "incumbent_only",
]

DEFAULT_KEY_PREFIX: Final = "lockgate:gateway:"
"""Prefix of every Redis key the gateway writes, so the store can share a Redis database."""
DEFAULT_STORE_TIMEOUT: Final = 0.5
"""Seconds one Redis command may take (connecting included) before the store counts as down: a
decision waits at most this long before the incumbent serves it."""

LOG_EVERY: Final = 10.0
"""Seconds between two log lines about an unreachable store (decisions go on meanwhile)."""

_log = logging.getLogger("gateway.route_store")

# KEYS: the set of targets, the target's hash {generation, route}.
# ARGV: generation (decimal), route JSON, target, max targets.
# Generations are compared as decimal strings (longer is larger, then lexicographically):
# Lua numbers are doubles, exact only up to 2^53, and a generation may be up to 2^63 - 1.
_PUT_SCRIPT: Final = """
local held = redis.call('HGET', KEYS[2], 'generation')
if held then
  local new = ARGV[1]
  local order
  if #new ~= #held then
    order = (#new < #held) and -1 or 1
  elseif new == held then
    order = 0
  else
    order = (new < held) and -1 or 1
  end
  if order < 0 then
    return {'older', redis.call('HGET', KEYS[2], 'route')}
  end
  if order == 0 then
    return {'same', redis.call('HGET', KEYS[2], 'route')}
  end
elseif redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return {'full', tostring(redis.call('SCARD', KEYS[1]))}
end
redis.call('HSET', KEYS[2], 'generation', ARGV[1], 'route', ARGV[2])
redis.call('SADD', KEYS[1], ARGV[3])
return {'set', ARGV[2]}
"""


@dataclass(eq=False)
class _Read:
    """One `HGET` of a target's generation, shared by every decision that joined it unsent."""

    future: asyncio.Future[bytes | str | None]
    previous: _Read | None
    sent: bool = False

    def __post_init__(self) -> None:
        # a failure nobody waits for any more (all callers gone) is not an unhandled error
        self.future.add_done_callback(lambda done: done.cancelled() or done.exception())


class RouteStoreUnavailableError(Exception):
    """The shared route store cannot be reached (or holds garbage): nothing was confirmed.

    The control plane answers it 503 ("route not applied"), so lockgate retries; a decision
    answers it 503 only when this replica has never confirmed a route for the target.
    """


class RouteStore(Protocol):
    """What the gateway's endpoints need from wherever the routes are kept."""

    async def get(self, target: str) -> Route | None:
        """The route held for `target` now (for the control plane), or None."""
        ...

    async def serving(self, target: str) -> Route | None:
        """The route to serve `target`'s next decision from, or None when it has none."""
        ...

    async def put(self, target: str, route: Route) -> PutResult:
        """Apply `route` under the generation rules (see gateway.routing_table)."""
        ...

    async def aclose(self) -> None:
        """Release connections when the gateway stops."""
        ...


class LocalRouteStore:
    """One gateway's own routes (memory or state file): the single-replica default, unchanged."""

    def __init__(self, table: RoutingTable) -> None:
        self.table = table

    async def get(self, target: str) -> Route | None:
        """The route in the table."""
        return self.table.get(target)

    async def serving(self, target: str) -> Route | None:
        """The route in the table: this process is the only writer, so it is always current."""
        return self.table.get(target)

    async def put(self, target: str, route: Route) -> PutResult:
        """`RoutingTable.put`: persisted to the state file (if any) before it returns."""
        return self.table.put(target, route)

    async def aclose(self) -> None:
        """Nothing to release."""


class RedisRouteStore:
    """Routes shared by every gateway replica through one Redis.

    Keys (under `prefix`): `targets`, the set of targets with a route (for `max_targets`), and
    `route:<target>`, a hash with the route's `generation` (decimal) and `route` (its JSON).

    Args:
        url: `redis://[user:password@]host:port/db` (or `rediss://` for TLS, `unix://`).
        rules: The admission rules every route passes before it is written.
        max_targets: Most targets with a route, across all replicas.
        prefix: Prefix of the keys.
        timeout: Seconds one command may take before the store counts as unreachable.
    """

    def __init__(
        self,
        url: str,
        *,
        rules: RouteRules | None = None,
        max_targets: int = DEFAULT_MAX_TARGETS,
        prefix: str = DEFAULT_KEY_PREFIX,
        timeout: float = DEFAULT_STORE_TIMEOUT,
    ) -> None:
        if max_targets < 1:
            raise ValueError("max_targets must be at least 1")
        if timeout <= 0:
            raise ValueError("the route store's timeout must be positive")
        self.url = url
        self._rules = rules
        self._max_targets = max_targets
        self._prefix = prefix
        self._timeout = timeout
        # no retries inside a command: a decision must not wait several timeouts, and lockgate
        # already retries a refused PUT
        self._client = redis.asyncio.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
        )
        self._put_script = self._client.register_script(_PUT_SCRIPT)
        self._confirmed: dict[str, tuple[int, Route]] = {}
        """Per target, the newest route this replica read from Redis, by generation."""
        self._reads: dict[str, _Read] = {}
        """Per target, the latest generation read, sent or waiting its turn."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._quiet_until = 0.0

    def _key(self, target: str) -> str:
        return f"{self._prefix}route:{target}"

    def check_stored(self) -> list[str]:
        """Refuse to start on a store that is unreachable or holds a route the rules refuse.

        Runs once before serving (synchronously: no event loop yet), like the state file's
        check: a replica started with other `--policy-uri`s than the one that wrote a route
        must not serve it. Returns the targets found.

        Raises:
            RouteStoreUnavailableError: Redis cannot be reached, or a stored route is invalid
                or refused by `rules`.
        """
        client = redis.Redis.from_url(
            self.url, socket_timeout=self._timeout * 4, socket_connect_timeout=self._timeout * 4
        )
        try:
            with client:
                members = client.smembers(f"{self._prefix}targets")
                names = sorted(_text(name) for name in members)
                stored = [client.hget(self._key(name), "route") for name in names]
        except RedisError as exc:
            raise RouteStoreUnavailableError(
                f"cannot reach the route store {_safe(self.url)}: {exc}"
            ) from None
        for name, raw in zip(names, stored, strict=True):
            if raw is None:
                continue
            route = self._parse(name, raw)
            if self._rules is not None:
                try:
                    self._rules.check(name, route)
                except RouteRefusedError as exc:
                    raise RouteStoreUnavailableError(
                        f"{_safe(self.url)}: the route of target {name} would be refused by "
                        f"this gateway: {exc}; start every replica with the same options"
                    ) from None
        return names

    async def get(self, target: str) -> Route | None:
        """The route Redis holds for `target` now.

        Raises:
            RouteStoreUnavailableError: Redis cannot be reached, or holds an invalid route.
        """
        try:
            raw = await self._client.hget(self._key(target), "route")
        except RedisError as exc:
            raise self._down(exc) from None
        if raw is None:
            return None
        route = self._parse(target, raw)
        self._remember(target, route)
        return route

    async def serving(self, target: str) -> Route | None:
        """The current route, confirmed by one `HGET` of its generation; see the module doc.

        Raises:
            RouteStoreUnavailableError: Redis cannot be reached and this replica never
                confirmed a route for `target`.
        """
        cached = self._confirmed.get(target)
        try:
            generation = await self._generation(target)
            if generation is None:
                self._confirmed.pop(target, None)
                return None
            if cached is not None and int(generation) == cached[0]:
                return cached[1]
            raw = await self._client.hget(self._key(target), "route")
            if raw is None:  # removed between the two reads
                self._confirmed.pop(target, None)
                return None
            route = self._parse(target, raw)
        except (RedisError, OSError, RouteStoreUnavailableError, ValueError) as exc:
            if cached is None:
                raise self._down(exc) from None
            now = time.monotonic()
            if now >= self._quiet_until:
                self._quiet_until = now + LOG_EVERY
                _log.warning(
                    "route store %s unreachable (%s): targets are served by their incumbent "
                    "alone until it answers",
                    _safe(self.url),
                    exc,
                )
            return incumbent_only(cached[1])
        return self._remember(target, route)

    async def _generation(self, target: str) -> bytes | str | None:
        """The target's generation as Redis holds it, read *after* this call began.

        Concurrent decisions share reads: a caller joins the next read that has not been sent
        yet (it will reach Redis after the caller arrived, so it cannot be stale for it), or
        starts one, sent as soon as the read already in flight (if any) comes back. A target
        thus has at most one read in flight and one waiting, however many decisions arrive.
        """
        read = self._reads.get(target)
        if read is not None and not read.sent:
            return await asyncio.shield(read.future)
        joined = _Read(asyncio.get_running_loop().create_future(), previous=read)
        self._reads[target] = joined
        if read is None:  # nothing in flight: send it from here, no task needed
            await self._send(target, joined)
            return joined.future.result()
        task = asyncio.create_task(self._send(target, joined))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(joined.future)

    async def _send(self, target: str, read: _Read) -> None:
        if read.previous is not None:
            await asyncio.wait([read.previous.future])
            read.previous = None
        read.sent = True
        try:
            value = await self._client.hget(self._key(target), "generation")
        except Exception as exc:  # every caller sees it; RedisError above all
            read.future.set_exception(exc)
        else:
            read.future.set_result(value)
        finally:
            if not read.future.done():  # cancelled: its callers must not wait forever
                read.future.cancel()
            if self._reads.get(target) is read:
                del self._reads[target]

    async def put(self, target: str, route: Route) -> PutResult:
        """Apply `route` in one atomic script; answered only once Redis applied it.

        Raises:
            RouteRefusedError: The route breaks an admission rule (TooManyTargetsError: a new
                target when `max_targets` are held); nothing was written.
            RouteConflictError: Redis holds a newer generation for the target.
            RouteStoreUnavailableError: Redis cannot be reached; the route may or may not have
                been applied, and retrying the same generation is safe either way.
        """
        if self._rules is not None:
            self._rules.check(target, route)
        try:
            outcome, held = await self._put_script(
                keys=[f"{self._prefix}targets", self._key(target)],
                args=[str(route.generation), route.model_dump_json(), target, self._max_targets],
            )
        except RedisError as exc:
            raise self._down(exc) from None
        kind = _text(outcome)
        if kind == "full":
            error: TooManyTargetsError = too_many_targets(int(held), target)
            raise error
        stored = self._parse(target, held)
        if kind == "older":
            raise conflict(target, stored, route)
        self._remember(target, stored)
        return PutResult(stored, changed=kind == "set")

    async def aclose(self) -> None:
        """Close the connection pool (reads still in flight end first)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        await self._client.aclose()

    def _remember(self, target: str, route: Route) -> Route:
        """Cache `route` unless a concurrent read already cached a newer one; return the newest."""
        cached = self._confirmed.get(target)
        if cached is not None and cached[0] > route.generation:
            return cached[1]
        self._confirmed[target] = (route.generation, route)
        return route

    def _parse(self, target: str, raw: bytes | str) -> Route:
        try:
            return Route.model_validate_json(raw)
        except ValidationError as exc:
            raise RouteStoreUnavailableError(
                f"the route store {_safe(self.url)} holds an invalid route for target {target}: "
                f"{describe(exc)}"
            ) from None

    def _down(self, exc: Exception) -> RouteStoreUnavailableError:
        if isinstance(exc, RouteStoreUnavailableError):
            return exc
        return RouteStoreUnavailableError(
            f"the route store {_safe(self.url)} cannot be reached ({type(exc).__name__}: {exc}); "
            "nothing was confirmed"
        )


def incumbent_only(route: Route) -> Route:
    """`route` with its candidate taken out: what a replica serves when it cannot confirm it."""
    return route.model_copy(
        update={"mode": RouteMode.OFF, "candidate": None, "percent": 0.0, "scope": None}
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _safe(url: str) -> str:
    """The store's URL without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    credentials, _, host = rest.partition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user + ':***' if user else '***'}@{host}"
