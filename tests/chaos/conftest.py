"""Fixtures of the chaos suite: a whole lockgate cluster as real processes, killed at teardown.

`cluster` is a Temporal dev server on a SQLite file in tmp_path, one `python worker.py` on a
unique task queue, the router as its own process (tests/chaos/router_process.py) and an
in-thread monitoring server answering `error_rate` 0.0 (every check passes). A test adds workers,
kills and restarts any of them through the `Cluster` it gets. When a test fails, the tail of every
process's log is printed with its report.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.chaos.cluster import Cluster, TimedMetricsServer

FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        item.stash[FAILED] = True
    return report


@pytest_asyncio.fixture
async def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    with TimedMetricsServer() as metrics:
        metrics.set("error_rate", 0.0)
        world = Cluster(tmp_path, metrics)
        failed = True
        try:
            await world.start()
            yield world
            failed = request.node.stash.get(FAILED, False)
        finally:
            world.kill_all()
            if failed:
                print(f"\nlogs of {request.node.name} (in {tmp_path}):\n{world.log_tails()}")
