"""The shared route store (gateway.route_store) against a real redis-server.

Two `RedisRouteStore`s on one Redis are two gateway replicas: what one writes, the other serves
on its very next decision, under the same generation rules as the single gateway's table. When
Redis is gone, no write is applied and no candidate is served.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from activities.contracts import Route, RouteMode
from gateway.admission import PolicyServers, RouteRefusedError, RouteRules
from gateway.route_store import (
    LocalRouteStore,
    RedisRouteStore,
    RouteStoreUnavailableError,
    incumbent_only,
)
from gateway.routing_table import RouteConflictError, RoutingTable, TooManyTargetsError
from rollout_specs import Guardrails, PolicyVersion
from runtime.processes import free_port
from tests.e2e.processes import REDIS_MISSING, RunningRedis, start_redis
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason=REDIS_MISSING)

INCUMBENT = "http://127.0.0.1:8101"
CANDIDATE = "http://127.0.0.1:8102"


def _route(generation: int, percent: float = 10.0, rollout_id: str = "rollout-offers/1") -> Route:
    return Route(
        rollout_id=rollout_id,
        generation=generation,
        incumbent=PolicyVersion(version="41", uri=INCUMBENT),
        candidate=PolicyVersion(version="42", uri=CANDIDATE),
        mode=RouteMode.SPLIT,
        percent=percent,
        scope={"region": ["eu-west-1"]},
        guardrails=Guardrails(blocked_actions=["discount_90"]),
    )


def _rules(*uris: str) -> RouteRules:
    return RouteRules(PolicyServers(uris or (INCUMBENT, CANDIDATE)), clock=lambda: 0.0)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRedis]:
    running = start_redis(tmp_path_factory.mktemp("redis"))
    yield running
    running.process.kill()


@pytest_asyncio.fixture
async def replicas(redis_server: RunningRedis) -> AsyncIterator[tuple[RedisRouteStore, ...]]:
    """Two replicas' stores on one Redis, under a prefix of this test's own."""
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    stores = tuple(
        RedisRouteStore(redis_server.url, rules=_rules(), max_targets=2, prefix=prefix)
        for _ in range(2)
    )
    yield stores
    for store in stores:
        await store.aclose()


async def test_a_route_put_on_one_replica_is_served_by_the_other_at_once(
    replicas: tuple[RedisRouteStore, ...],
) -> None:
    a, b = replicas
    assert await b.serving("offers") is None
    assert (await a.put("offers", _route(1))).changed
    assert await b.serving("offers") == _route(1)
    await a.put("offers", _route(2, percent=50))
    assert await b.serving("offers") == _route(2, percent=50), "no stale cached route"
    assert await b.get("offers") == _route(2, percent=50)


async def test_concurrent_decisions_share_reads_but_never_one_sent_before_they_arrived(
    replicas: tuple[RedisRouteStore, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = replicas
    await a.put("offers", _route(1))
    assert await b.serving("offers") == _route(1)
    real = b._client.hget
    gate = asyncio.Event()
    generation_reads = 0

    async def gated(key: str, field: str) -> bytes | str | None:
        nonlocal generation_reads
        if field == "generation":
            generation_reads += 1
            value = await real(key, field)  # read now, answered when the test opens the gate
            await gate.wait()
            return value
        return await real(key, field)

    monkeypatch.setattr(b._client, "hget", gated)
    early = asyncio.create_task(b.serving("offers"))
    await wait_until(lambda: generation_reads == 1, what="the first read sent")
    await a.put("offers", _route(2))  # answered while B's first read is still in flight
    late = [asyncio.create_task(b.serving("offers")) for _ in range(20)]
    await wait_until(
        lambda: any(not read.sent for read in b._reads.values()), what="a read queued", timeout=5
    )
    gate.set()
    assert await early == _route(1), "it began before the PUT: either route is right"
    assert await asyncio.gather(*late) == [_route(2)] * 20, "sent after they arrived"
    assert generation_reads == 2, "twenty decisions, one shared read"


async def test_the_generation_rules_hold_across_replicas(
    replicas: tuple[RedisRouteStore, ...],
) -> None:
    a, b = replicas
    await a.put("offers", _route(5, rollout_id="rollout-offers/new"))
    with pytest.raises(RouteConflictError) as refused:
        await b.put("offers", _route(4))
    assert "holds generation 5 of rollout rollout-offers/new" in str(refused.value)
    assert "generation 4 of rollout rollout-offers/1 is older" in str(refused.value)
    again = await b.put("offers", _route(5, percent=99))
    assert not again.changed, "the same generation is a retry"
    assert again.route == _route(5, rollout_id="rollout-offers/new")
    assert (await b.put("offers", _route(6))).changed
    assert await a.serving("offers") == _route(6)


async def test_generations_beyond_a_doubles_precision_compare_exactly(
    replicas: tuple[RedisRouteStore, ...],
) -> None:
    a, _ = replicas
    unrestricted = RedisRouteStore(a.url, prefix=f"test-{uuid.uuid4().hex[:8]}:")
    try:
        big = 2**62
        await unrestricted.put("offers", _route(big + 1))
        with pytest.raises(RouteConflictError):
            await unrestricted.put("offers", _route(big))  # equal to big + 1 as a double
        assert (await unrestricted.put("offers", _route(big + 2))).changed
        assert not (await unrestricted.put("offers", _route(big + 2))).changed
        assert (await unrestricted.put("offers", _route(10 * big))).changed  # one digit longer
    finally:
        await unrestricted.aclose()


async def test_max_targets_counts_every_replicas_targets(
    replicas: tuple[RedisRouteStore, ...],
) -> None:
    a, b = replicas
    await a.put("offers", _route(1))
    await b.put("ranker", _route(1))
    with pytest.raises(TooManyTargetsError, match="already routes 2 targets"):
        await a.put("search", _route(1))
    assert (await b.put("offers", _route(2))).changed, "held targets still change"


async def test_a_route_the_rules_refuse_is_never_written(
    replicas: tuple[RedisRouteStore, ...],
) -> None:
    a, b = replicas
    stray = _route(1).model_copy(
        update={"candidate": PolicyVersion(version="x", uri="http://evil:1")}
    )
    with pytest.raises(RouteRefusedError):
        await a.put("offers", stray)
    assert await b.get("offers") is None


async def test_a_replica_refuses_to_start_on_a_route_its_rules_refuse(
    redis_server: RunningRedis,
) -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    writer = RedisRouteStore(redis_server.url, prefix=prefix)
    await writer.put("offers", _route(1))
    await writer.aclose()
    assert RedisRouteStore(redis_server.url, prefix=prefix, rules=_rules()).check_stored() == [
        "offers"
    ]
    other = RedisRouteStore(redis_server.url, prefix=prefix, rules=_rules(INCUMBENT))
    with pytest.raises(RouteStoreUnavailableError, match="target offers would be refused"):
        other.check_stored()


def test_a_replica_refuses_to_start_without_its_store() -> None:
    store = RedisRouteStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    with pytest.raises(RouteStoreUnavailableError, match="cannot reach the route store"):
        store.check_stored()


async def test_without_redis_nothing_is_written_and_only_the_incumbent_serves(
    tmp_path: Path,
) -> None:
    running = start_redis(tmp_path / "redis")
    a = RedisRouteStore(running.url, timeout=0.2)
    b = RedisRouteStore(running.url, timeout=0.2)
    try:
        await a.put("offers", _route(1, percent=100))
        assert await b.serving("offers") == _route(1, percent=100)
        running.process.kill()

        served = await b.serving("offers")
        assert served == incumbent_only(_route(1, percent=100))
        assert served is not None
        assert served.candidate is None
        assert served.mode is RouteMode.OFF
        with pytest.raises(RouteStoreUnavailableError, match="cannot be reached"):
            await b.serving("ranker")  # never confirmed here: nothing to serve
        with pytest.raises(RouteStoreUnavailableError, match="nothing was confirmed"):
            await a.put("offers", _route(2, percent=0))
        with pytest.raises(RouteStoreUnavailableError):
            await a.get("offers")
    finally:
        running.process.kill()
        await a.aclose()
        await b.aclose()


async def test_the_local_store_is_the_routing_table() -> None:
    table = RoutingTable()
    store = LocalRouteStore(table)
    assert (await store.put("offers", _route(1))).changed
    assert await store.serving("offers") == await store.get("offers") == table.get("offers")
    await store.aclose()


def test_a_password_in_the_url_never_reaches_a_message() -> None:
    store = RedisRouteStore(f"redis://lockgate:s3cret@127.0.0.1:{free_port()}/0", timeout=0.2)
    with pytest.raises(RouteStoreUnavailableError) as refused:
        store.check_stored()
    assert "s3cret" not in str(refused.value)
    assert "redis://lockgate:***@127.0.0.1" in str(refused.value)
