"""The demo stack with a real Prometheus, for the whole-rollout end-to-end tests.

Prometheus is required (Debian package `prometheus`, installed by .ci/run): without it these
tests fail rather than skip, so CI can never pass without having judged a rollout by it.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from runtime.stack import DemoStack, StackPorts

__all__ = ["prometheus_value", "running_stack"]


@asynccontextmanager
async def running_stack(data_dir: Path, scenario: str) -> AsyncIterator[DemoStack]:
    """A demo stack on free ports serving `scenario`'s policies, stopped on the way out."""
    assert shutil.which("prometheus"), (
        "these tests need a real Prometheus: apt-get install prometheus (.ci/run does)"
    )
    demo = DemoStack(data_dir, StackPorts.free(), prometheus=True)
    try:
        await demo.start(scenario)
        yield demo
    finally:
        demo.stop()


async def prometheus_value(stack: DemoStack, query: str) -> float | None:
    """The first value `query` answers in the stack's Prometheus now, or None without a series."""
    async with httpx.AsyncClient(timeout=5) as http:
        answer = (
            await http.get(f"{stack.prometheus_url}/api/v1/query", params={"query": query})
        ).json()
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else None
