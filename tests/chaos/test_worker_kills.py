"""Fault: the only worker SIGKILLed three times in one rollout, and restarted each time.

Once while a stage's route PUT is in flight (the router made slow), once while a stage bakes with
one of its checks in flight (monitoring made slow), and once while the rollback's PUT is in
flight (requested by a human while the router is slow). Guarantee: the rollout ends exactly as
an uninterrupted run with the same rollback would: the same distinct routes at the router, in
order, each stage entered once, the rollback landed at the router, and every invariant of
tests/chaos/invariants.py holds.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from runtime.rollouts import send_command
from tests.chaos.cluster import Cluster
from tests.chaos.invariants import Rollback, assert_nothing_lost, stored_routes
from tests.chaos.router_process import PutRecord
from tests.helpers.waiting import wait_until
from workflows.state import Phase

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

SLOW_PUT = 4.0
"""Seconds the router sits on a PUT: ample time to see it arrive and kill the worker."""
SLOW_QUERY = 2.0
"""Seconds monitoring sits on a query (under the specs' 3 s monitoring timeout)."""
ROLLBACK = Rollback(actor="carol", reason="chaos: worker killed while the rollback is in flight")


async def test_a_worker_killed_mid_put_mid_bake_and_mid_rollback_loses_nothing(
    cluster: Cluster,
) -> None:
    router, metrics = cluster.router, cluster.metrics
    spec = cluster.spec(["2s", "2s", "60s", "1s"])  # the rollback happens in `half`
    target = spec.spec.target
    await cluster.submit(spec)

    # 1. Killed while the canary's route PUT is in flight.
    await wait_until(lambda: _stored(router.puts(target), "shadow"), what="the shadow route")
    router.slow_puts(SLOW_PUT)
    in_flight = await wait_until(
        lambda: router.pending(target, "split", 10.0), what="the canary PUT to arrive"
    )
    killed_mid_put = _kill_worker(cluster)
    assert router.pending(target, "split", 10.0) == in_flight, "killed before the PUT answered"
    router.slow_puts(0)
    await cluster.start_worker()

    # 2. Killed while one of `half`'s checks is in flight (monitoring made slow); the checks go
    #    on in the same stage.
    baking = await wait_until(lambda: cluster.baking(target, "half", 2), what="half's checks")
    checks_before = baking.state.stages[-1].checks
    metrics.slow_queries(SLOW_QUERY)
    asked = len(metrics.arrived(target))
    await wait_until(lambda: len(metrics.arrived(target)) > asked, what="a check's query")
    _kill_worker(cluster)
    assert len(metrics.answered(target)) < len(metrics.arrived(target)), "killed mid-check"
    metrics.slow_queries(0)
    await cluster.start_worker()
    resumed = await wait_until(
        lambda: cluster.baking(target, "half", checks_before + 2), what="half's checks to resume"
    )
    assert [s.name for s in resumed.state.stages] == ["shadow", "canary", "half"]

    # 3. Killed while the rollback's PUT is in flight.
    router.slow_puts(SLOW_PUT)
    await send_command(
        cluster.client, target, "rollback", actor=ROLLBACK.actor, reason=ROLLBACK.reason
    )
    rollback_put = await wait_until(
        lambda: router.pending(target, "off"), what="the rollback PUT to arrive"
    )
    killed_mid_rollback = _kill_worker(cluster)
    assert router.pending(target, "off") == rollback_put, "killed before the PUT answered"
    router.slow_puts(0)
    await cluster.start_worker()

    result = await cluster.result(target)
    assert result.phase is Phase.ROLLED_BACK, result.outcome
    await assert_nothing_lost(cluster, spec, through="half", rollback=ROLLBACK)
    puts = router.puts(target)
    for killed_at, put in ((killed_mid_put, in_flight), (killed_mid_rollback, rollback_put)):
        answers = [r for r in puts if r.event == "answered" and r.generation == put.generation]
        assert answers[0].at > killed_at, "the PUT in flight was answered after the kill"
        assert all(r.status == 200 for r in answers), "its retry was idempotent"
    print(
        f"\nPUTs answered per stored route: {_answers_per_route(puts)}; "
        f"rollback landed {_landed_at(puts) - killed_mid_rollback:.1f}s after the last kill"
    )


def _kill_worker(cluster: Cluster) -> float:
    """SIGKILL the newest worker; the wall-clock time of the kill."""
    worker = cluster.workers[-1]
    assert worker.alive
    worker.kill()
    return time.time()


def _stored(puts: list[PutRecord], mode: str) -> bool:
    return any(r.mode == mode for r in stored_routes(puts))


def _answers_per_route(puts: list[PutRecord]) -> list[str]:
    answered = Counter(p.generation for p in puts if p.event == "answered")
    return [f"{r.mode} {r.percent:g}%: {answered[r.generation]}" for r in stored_routes(puts)]


def _landed_at(puts: list[PutRecord]) -> float:
    last = stored_routes(puts)[-1]
    answers = [r.at for r in puts if r.event == "answered" and r.generation == last.generation]
    return answers[-1]
