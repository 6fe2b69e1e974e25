"""Monitoring misbehaves during a breach: the breach still rolls back, within the check's deadline.

One trigger's metric breaches while another trigger's query is slow, drips its answer, answers
503, warns that its answer is partial, answers NaN, or never answers. The breached trigger's
`fail` must not wait on (or be lost with) the other one: the rollback reaches the router within
one check interval plus the breached query's own time, never after the slow query's.
"""

from __future__ import annotations

import time

import pytest
from temporalio.client import Client

from runtime.rollouts import query_status, submit_rollout
from tests.conftest import build_spec, spec_document
from tests.helpers.servers import MetricsServer, MetricValue, RouterServer
from tests.helpers.waiting import wait_until
from workflows.messages import StatusResult
from workflows.state import Phase

pytestmark = [pytest.mark.usefixtures("worker"), pytest.mark.chaos]

ROLLBACK_WITHIN = 8.0
"""Seconds from the breach to the rollback at the router: a 1 s check interval, a quick query
and the workflow's own tasks. Waiting out the faulty query would take 10 s or more (its
monitoring.timeout), so a check that waits for it fails this bound."""


@pytest.mark.parametrize("fault", ["slow", "drip", "down", "partial", "nan", "hang"])
async def test_a_breach_rolls_back_whatever_the_other_queries_do(
    client: Client,
    router: RouterServer,
    metrics: MetricsServer,
    task_queue: str,
    fault: MetricValue,
) -> None:
    document = spec_document(router.url, metrics.url)
    document["spec"]["monitoring"]["timeout"] = "10s"
    document["spec"]["stages"][0]["min_duration"] = "1h"
    document["spec"]["rollback_triggers"].append(
        {"name": "latency", "query": "latency_p99{}", "threshold": {"above": 0.5}}
    )
    spec = build_spec(document)
    target = spec.spec.target
    metrics.set("error_rate", 0.0)
    metrics.set("latency_p99", 0.1)
    await submit_rollout(client, spec, submitted_by="alice", task_queue=task_queue)
    await wait_until(lambda: router.current(target), what="the shadow route")
    await wait_until(lambda: _checks(client, target, at_least=1), what="a passing check")

    metrics.set("latency_p99", fault)
    metrics.set("error_rate", 0.5)  # the breach
    breached = time.monotonic()
    await wait_until(
        lambda: (router.current(target) or {}).get("mode") == "off",
        timeout=ROLLBACK_WITHIN,
        what=f"the rollback with latency {fault}",
    )
    print(f"\n{fault}: rollback at the router {time.monotonic() - breached:.2f}s after the breach")

    status = await wait_until(
        lambda: _ended(client, target), timeout=30, what="the rollout to record its end"
    )
    assert status.state.phase is Phase.ROLLED_BACK
    assert status.state.rollback is not None
    assert status.state.rollback.actor == "trigger:error-rate"
    modes = [route["mode"] for route in router.history]
    assert modes == ["shadow", "off"], "no stage advanced on the way"


async def _checks(client: Client, target: str, at_least: int) -> bool:
    status = await query_status(client, target)
    return bool(status.state.stages) and status.state.stages[-1].checks >= at_least


async def _ended(client: Client, target: str) -> StatusResult | None:
    status = await query_status(client, target)
    return status if status.state.phase is Phase.ROLLED_BACK else None
