"""Fault: the router down (SIGKILL: connection refused) or hung (SIGSTOP) for 15 s mid-rollback.

A human asks for a rollback while the router cannot take it. Guarantee: meanwhile the rollout
stays `rolling_back` with an escalation saying the rollback has not landed (it never gives up or
pretends), and once the router is back (restarted on the same port and state, or SIGCONT) the
rollback lands on the router, with every invariant of tests/chaos/invariants.py holding.
"""

from __future__ import annotations

import time
from typing import Final

import pytest

from runtime.rollouts import send_command
from tests.chaos.cluster import Cluster
from tests.chaos.invariants import Rollback, assert_nothing_lost, stored_routes
from tests.helpers.waiting import wait_until
from workflows.messages import StatusResult
from workflows.state import Phase

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

OUTAGE: Final = 15.0
"""Seconds the router stays down or hung while the rollback waits."""
NOT_LANDED: Final = "has not landed after"


@pytest.mark.parametrize("fault", ["down", "hung"])
async def test_a_rollback_waits_out_a_router_outage_then_lands(
    cluster: Cluster, fault: str
) -> None:
    router = cluster.router
    spec = cluster.spec(["1s", "60s", "60s", "1s"])  # the rollback happens in `canary`
    target = spec.spec.target
    rollback = Rollback(actor="erin", reason=f"chaos: rollback while the router is {fault}")
    await cluster.submit(spec)
    await wait_until(lambda: cluster.baking(target, "canary", 1), what="canary's checks")

    if fault == "down":
        router.kill()
    else:
        router.freeze()
    outage_started = time.monotonic()
    await send_command(
        cluster.client, target, "rollback", actor=rollback.actor, reason=rollback.reason
    )

    async def escalated_for_the_whole_outage() -> StatusResult | None:
        status = await cluster.status(target)
        assert status.state.phase is Phase.ROLLING_BACK, status.state.phase
        assert NOT_LANDED in (status.state.escalation or ""), status.state.escalation
        return status if time.monotonic() - outage_started >= OUTAGE else None

    during = await wait_until(
        escalated_for_the_whole_outage,
        what=f"a rolling_back rollout escalating through {OUTAGE:g}s with the router {fault}",
        timeout=OUTAGE + 30,
    )
    outage = time.monotonic() - outage_started
    restored_at = time.time()
    if fault == "down":
        await router.start()
    else:
        router.thaw()

    result = await cluster.result(target, timeout=60)
    landed = stored_routes(router.puts(target))[-1]
    print(
        f"\nrouter {fault} for {outage:.1f}s; "
        f"escalation meanwhile: {during.state.escalation!r}; "
        f"rollback landed {landed.at - restored_at:.1f}s after the router came back"
    )
    assert result.phase is Phase.ROLLED_BACK, result.outcome
    assert landed.mode == "off"
    assert landed.at > restored_at, "nothing landed while the router was out"
    await assert_nothing_lost(cluster, spec, through="canary", rollback=rollback)
