"""The traffic driver against the real gateway: uvicorn on 127.0.0.1, real policy servers
serving the simulator's committed artifacts, every request over HTTP.

What the driver sent is recorded by a transport wrapped around httpx's real one (the bytes still
cross a socket); what the gateway saw is read from its own Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from simulator.artifacts import ARTIFACTS_DIR
from simulator.driver import DriveConfig, Driver
from simulator.scenarios import scenario
from tests.gateway.servers import GatewayServer, PolicyServer, UvicornThread
from tests.helpers.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
TARGET = "offers"


@dataclass(frozen=True)
class Exchange:
    at: float
    path: str
    body: dict[str, Any]
    status: int
    answer: Any


class Recording(httpx.AsyncBaseTransport):
    """httpx's real transport, remembering every request body and answer, in start order."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.exchanges: list[Exchange] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        at = time.monotonic()
        response = await self._inner.handle_async_request(request)
        content = await response.aread()
        answer = json.loads(content) if content else None
        path = request.url.path.rsplit("/", 1)[-1]
        self.exchanges.append(
            Exchange(at, path, json.loads(request.content), response.status_code, answer)
        )
        return httpx.Response(response.status_code, headers=response.headers, content=content)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def of(self, path: str) -> list[Exchange]:
        return sorted((e for e in self.exchanges if e.path == path), key=lambda e: e.at)


@pytest.fixture(scope="module")
def incumbent() -> Iterator[PolicyServer]:
    with PolicyServer(ARTIFACTS_DIR / "incumbent.json", seed=1) as server:
        yield server


@pytest.fixture(scope="module")
def candidate() -> Iterator[PolicyServer]:
    with PolicyServer(ARTIFACTS_DIR / "candidate.json", seed=2) as server:
        yield server


@pytest.fixture(scope="module")
def violating() -> Iterator[PolicyServer]:
    with PolicyServer(ARTIFACTS_DIR / "candidate-violating.json", seed=3) as server:
        yield server


@pytest.fixture
def policy_servers(
    incumbent: PolicyServer, candidate: PolicyServer, violating: PolicyServer
) -> list[UvicornThread]:
    return [incumbent, candidate, violating]


async def _route(
    http: httpx.AsyncClient,
    gateway: GatewayServer,
    incumbent: PolicyServer,
    candidate: PolicyServer,
    percent: float,
) -> None:
    route = {
        "rollout_id": "rollout-offers/sim",
        "generation": 1,
        "incumbent": incumbent.as_version(),
        "candidate": candidate.as_version(),
        "mode": "split",
        "percent": percent,
        "scope": None,
        "guardrails": {"blocked_actions": ["discount_90"]},
    }
    answer = await http.put(
        f"{gateway.control_url}/v1/targets/{TARGET}/route", json=route, headers=gateway.auth
    )
    assert answer.status_code == 200, answer.text


async def _metric(
    http: httpx.AsyncClient, gateway: GatewayServer, name: str, **labels: str
) -> float:
    text = (await http.get(f"{gateway.control_url}/metrics", headers=gateway.auth)).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def _driver(gateway: GatewayServer, name: str, **options: Any) -> tuple[Driver, Recording]:
    recording = Recording()
    config = DriveConfig(gateway.url, TARGET, scenario(name), **options)
    return Driver(config, transport=recording), recording


async def test_the_driver_paces_and_rewards_every_decision_through_the_real_gateway(
    http: httpx.AsyncClient,
    gateway: GatewayServer,
    incumbent: PolicyServer,
    candidate: PolicyServer,
) -> None:
    await _route(http, gateway, incumbent, candidate, percent=50)
    rate, duration = 40.0, 2.5
    driver, recording = _driver(gateway, "healthy", rate=rate, duration=duration, units=30)
    started = time.monotonic()
    report = await driver.run()
    elapsed = time.monotonic() - started

    # paced: exactly rate x duration visits, spread over the run rather than bursting
    decides = recording.of("decide")
    assert report.sent == len(decides) == 100
    assert report.skipped == 0
    first_half = sum(e.at - started < duration / 2 for e in decides)
    assert 40 <= first_half <= 60, first_half
    # stopped at the duration: nothing started after it, and the run ended soon after
    assert all(e.at - started < duration + 0.2 for e in decides)
    assert duration - 0.1 < elapsed < duration + 3.0
    assert driver.in_flight == 0

    # one feedback per decision, each accepted once, and the gateway counted exactly that
    ids = [e.answer["decision_id"] for e in decides]
    feedback = recording.of("feedback")
    assert Counter(e.body["decision_id"] for e in feedback) == Counter(ids)
    assert all(e.status == 200 for e in decides + feedback)
    assert all(e.body["reward"] in (0.0, 1.0) for e in feedback)
    assert await _metric(http, gateway, "lockgate_decisions_total", target=TARGET) == 100
    assert await _metric(http, gateway, "lockgate_rewarded_decisions_total", target=TARGET) == 100
    for arm in ("incumbent", "candidate"):
        counts = report.arms[arm]
        assert counts.decisions == counts.rewarded > 10
        assert await _metric(
            http, gateway, "lockgate_rewards_total", target=TARGET, arm=arm
        ) == pytest.approx(counts.reward_total)

    # sticky: a unit keeps its region and base features, and so the gateway keeps its arm
    units: dict[str, set[tuple[Any, ...]]] = {}
    for e in decides:
        context, region = e.body["context"], e.body["attributes"]["region"]
        stable = (region, context["recency"], context["loyalty"], e.answer["arm"])
        units.setdefault(e.body["unit_id"], set()).add(stable)
    assert all(len(seen) == 1 for seen in units.values()), units
    assert len(units) <= 30
    assert max(Counter(e.body["unit_id"] for e in decides).values()) >= 3


async def test_without_a_route_decisions_are_counted_as_no_route_and_the_driver_goes_on(
    gateway: GatewayServer,
) -> None:
    driver, recording = _driver(gateway, "healthy", rate=50, duration=0.4)
    report = await driver.run()
    assert report.no_route == report.sent == 20
    assert report.errors == 0
    assert recording.of("feedback") == []


async def test_the_violations_scenario_trips_the_gateways_guardrail(
    http: httpx.AsyncClient,
    gateway: GatewayServer,
    incumbent: PolicyServer,
    violating: PolicyServer,
) -> None:
    await _route(http, gateway, incumbent, violating, percent=100)
    driver, recording = _driver(gateway, "violations", rate=100, duration=2.0)
    report = await driver.run()
    assert report.arms["candidate"].decisions == report.sent == 200
    # about 5 % of the candidate's picks are the blocked action: ~11 expected, P(0) ~ 1e-5
    assert report.violations >= 1
    overruled = [e.answer for e in recording.of("decide") if e.answer["guardrail"] is not None]
    assert len(overruled) == report.violations
    assert all(answer["action"] != "discount_90" for answer in overruled)
    assert (
        await _metric(http, gateway, "lockgate_guardrail_violations_total", target=TARGET)
        == report.violations
    )


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "simulator", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def test_the_command_runs_for_its_duration_and_prints_one_summary_line(
    http: httpx.AsyncClient,
    gateway: GatewayServer,
    incumbent: PolicyServer,
    candidate: PolicyServer,
) -> None:
    await _route(http, gateway, incumbent, candidate, percent=50)
    process = _spawn("run", "--gateway", gateway.url, "--target", TARGET,
                     "--scenario", "regression", "--rate", "20", "--duration", "1")  # fmt: skip
    stdout, stderr = await asyncio.to_thread(process.communicate, timeout=30)
    assert process.returncode == 0, stderr
    (line,) = stdout.splitlines()
    assert line.startswith(f"simulator regression -> {TARGET}: sent 20 in ")
    assert await _metric(http, gateway, "lockgate_rewarded_decisions_total", target=TARGET) == 20


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
async def test_the_command_without_a_duration_stops_on_a_signal(
    http: httpx.AsyncClient,
    gateway: GatewayServer,
    incumbent: PolicyServer,
    candidate: PolicyServer,
    stop: signal.Signals,
) -> None:
    await _route(http, gateway, incumbent, candidate, percent=50)
    process = _spawn("run", "--gateway", gateway.url, "--target", TARGET, "--rate", "50")
    try:

        async def deciding() -> bool:
            assert process.poll() is None, "the driver exited on its own"
            return await _metric(http, gateway, "lockgate_decisions_total", target=TARGET) >= 10

        await wait_until(deciding, timeout=30, interval=0.05, what="10 decisions")
        process.send_signal(stop)
        stdout, stderr = await asyncio.to_thread(process.communicate, timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=15)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    (line,) = stdout.splitlines()
    assert line.startswith(f"simulator healthy -> {TARGET}: sent ")
