"""`lockgate backtest` over an incident recorded on the real stack: Prometheus, the gateway.

No rollout runs: the routes are put on the gateway's control plane by hand, as an operator would
have, while the simulated world sends the `regression` scenario's traffic. First the candidate
shadows the incumbent (it serves no one, so it harms no one), then it serves half the units and
the harm starts. Backtesting the demo spec over that stretch must replay its stages on the
recorded data and find the rollback by `reward-regression` at a check after the harm started.

Prometheus is required (Debian package `prometheus`): without it this test fails, not skips.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import yaml

from activities.contracts import Outcome, Route, RouteMode
from rollout_specs import RolloutSpec
from runtime.backtest import Backtest, Ending, backtest_spec
from runtime.stack import DemoStack, demo_spec
from tests.e2e.demo_stack import prometheus_value, running_stack
from tests.e2e.processes import ROOT
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.e2e
RATE = 300.0
SETTLED = timedelta(seconds=2)
"""How far behind now a backtest ends: Prometheus scrapes every second, so older data is whole."""


@pytest_asyncio.fixture
async def stack(tmp_path: Path) -> AsyncIterator[DemoStack]:
    async with running_stack(tmp_path / "stack", "regression") as demo:
        yield demo


async def _put_route(
    stack: DemoStack, spec: RolloutSpec, generation: int, mode: RouteMode, percent: float = 0.0
) -> datetime:
    """Route the target on the gateway's control plane, as an operator would; when it landed."""
    body = spec.spec
    route = Route(
        rollout_id="recorded-incident", generation=generation, incumbent=body.incumbent,
        candidate=None if mode is RouteMode.OFF else body.candidate, mode=mode, percent=percent,
        guardrails=body.guardrails,
    )  # fmt: skip
    async with httpx.AsyncClient(timeout=5.0) as http:
        response = await http.put(
            f"{stack.control_url}/v1/targets/{body.target}/route",
            json=route.model_dump(mode="json"),
            headers=stack.control_headers,
        )
    response.raise_for_status()
    return datetime.now(UTC)


def _lockgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "cli.py", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "220"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.timeout(240)
async def test_a_recorded_regression_is_found_by_the_backtest_after_the_harm_started(
    stack: DemoStack, tmp_path: Path
) -> None:
    spec = demo_spec(stack, fast=True)
    target = spec.spec.target
    await _put_route(stack, spec, 1, RouteMode.OFF)  # the incumbent serves everyone
    traffic = await stack.start_traffic(target, "regression", rate=RATE)
    try:
        start = await _put_route(stack, spec, 2, RouteMode.SHADOW)

        # Enough paired shadow decisions for the shadow stage's trigger (min_samples 1000), as
        # its own query counts them: `increase` over the stage's window, which misses what a
        # new series held at its first scrape, so the raw counters overstate it.
        async def shadow_pairs_recorded() -> bool:
            since = math.ceil((datetime.now(UTC) - start).total_seconds())
            pairs = f'sum(increase(lockgate_shadow_pairs_total{{target="{target}"}}[{since}s]))'
            return await _enough(stack, pairs, 1500)

        await wait_until(shadow_pairs_recorded, timeout=60, interval=0.5, what="shadow pairs")
        harm_from = await _put_route(stack, spec, 3, RouteMode.SPLIT, 50.0)

        async def caught() -> Backtest | None:
            end = datetime.now(UTC) - SETTLED
            result = await backtest_spec(spec, start, end)
            return result if result.ending is Ending.ROLLED_BACK else None

        result = await wait_until(
            caught, timeout=120, interval=2.0, what="a backtest finding the rollback"
        )
    finally:
        traffic.stop()

    assert result.tripped == "reward-regression", result.decision
    assert result.decided_at is not None
    assert result.decided_at > harm_from, "rolled back at a check after the harm started"
    deciding = result.checks[-1]
    assert deciding.at == result.decided_at
    assert next(s for s in spec.spec.stages if s.name == deciding.stage).percent is not None
    before = [c for c in result.checks if c.at <= harm_from]
    assert before, "the backtest judged checks before the harm, too"
    assert all(v.outcome is not Outcome.FAIL for c in before for v in c.result.verdicts), (
        "nothing failed while the candidate served no one"
    )
    assert [s.outcome for s in result.stages][:2] == ["skipped", "advanced"]  # offline, shadow
    assert result.checks[0].at == start + spec.spec.check_interval

    # The command over the same window: the same decision, exit 3, the timeline printed.
    path = tmp_path / "demo.yaml"
    document = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    window = ["--from", start.isoformat(), "--to", result.end.isoformat()]
    table, as_json = await asyncio.gather(
        asyncio.to_thread(_lockgate, "backtest", str(path), *window),
        asyncio.to_thread(_lockgate, "backtest", str(path), *window, "-o", "json"),
    )
    assert table.returncode == 3, table.stderr
    assert as_json.returncode == 3, as_json.stderr
    replayed = json.loads(as_json.stdout)
    assert replayed["tripped"] == "reward-regression"
    assert replayed["decided_at"] == result.decided_at.isoformat().replace("+00:00", "Z")
    assert "rollback by trigger reward-regression" in table.stdout
    print(f"\nharm from {harm_from:%H:%M:%S} UTC (shadow from {start:%H:%M:%S})\n{table.stdout}")


async def _enough(stack: DemoStack, query: str, at_least: float) -> bool:
    return (await prometheus_value(stack, query) or 0.0) >= at_least
