"""Fault: the Temporal dev server SIGKILLed twice in one rollout and restarted on its SQLite file.

First while a stage bakes (kept down until the checks have visibly stopped), then while the
rollback's route PUT is in flight (requested by a human while the router is slow; kept down until
the router has answered it, so the worker finishes that PUT with no server to report to); each
time the server comes back on the same port and file, and the one worker reconnects by itself.
Guarantee: the rollout ends exactly as an uninterrupted run with the same rollback would (the
same distinct routes at the router, the rollback landed and PUT), and every invariant of
tests/chaos/invariants.py holds.
"""

from __future__ import annotations

import time

import pytest

from runtime.rollouts import send_command
from tests.chaos.cluster import CHECK_INTERVAL, Cluster
from tests.chaos.invariants import Rollback, assert_nothing_lost
from tests.helpers.waiting import wait_until
from workflows.state import Phase

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

SLOW_PUT = 4.0
"""Seconds the router sits on the rollback's PUT: time to see it arrive and kill the server."""
ROLLBACK = Rollback(actor="dave", reason="chaos: server killed while the rollback is in flight")


async def test_the_server_killed_mid_stage_and_mid_rollback_loses_nothing(
    cluster: Cluster,
) -> None:
    router, metrics = cluster.router, cluster.metrics
    worker = cluster.workers[0]
    spec = cluster.spec(["1s", "3s", "60s", "1s"])  # the rollback happens in `half`
    target = spec.spec.target
    await cluster.submit(spec)

    # 1. Killed while `canary` bakes, and kept down until the checks have visibly stopped; the
    #    rollout goes on from there after the restart.
    await wait_until(lambda: cluster.baking(target, "canary", 1), what="canary's checks")
    await cluster.kill_server()
    down = time.monotonic()
    await wait_until(
        lambda: time.time() - metrics.answered(target)[-1].at > 2 * CHECK_INTERVAL,
        what="the checks to stop while the server is down",
    )
    await cluster.start_server()
    print(f"\nserver down for {time.monotonic() - down:.1f}s (mid-stage)")
    await wait_until(lambda: cluster.baking(target, "half", 1), what="half's checks", timeout=60)

    # 2. Killed while the rollback's PUT is in flight.
    router.slow_puts(SLOW_PUT)
    await send_command(
        cluster.client, target, "rollback", actor=ROLLBACK.actor, reason=ROLLBACK.reason
    )
    rollback_put = await wait_until(
        lambda: router.pending(target, "off"), what="the rollback PUT to arrive"
    )
    await cluster.kill_server()
    down = time.monotonic()
    assert router.pending(target, "off") == rollback_put, "killed before the PUT answered"
    router.slow_puts(0)
    await wait_until(
        lambda: router.pending(target, "off") is None,
        what="the router to answer the rollback while the server is down",
    )
    await cluster.start_server()
    print(f"server down for {time.monotonic() - down:.1f}s (mid-rollback)")

    result = await cluster.result(target)
    assert result.phase is Phase.ROLLED_BACK, result.outcome
    assert worker.alive, "the one worker rode out both restarts"
    assert cluster.workers == [worker]
    await assert_nothing_lost(cluster, spec, through="half", rollback=ROLLBACK)
