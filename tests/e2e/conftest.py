"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.processes import ManagedProcess
from tests.e2e.processes import REDIS_MISSING, RunningRedis, start_redis


@pytest.fixture
def processes() -> Iterator[list[ManagedProcess]]:
    """What a test starts (workers, servers), each killed when the test ends, pass or fail."""
    started: list[ManagedProcess] = []
    yield started
    for process in started:
        process.kill()


@pytest.fixture
def redis_store(tmp_path: Path) -> Iterator[RunningRedis]:
    """A real redis-server of the test's own (free loopback port, temp dir, nothing on disk),
    killed by its pid when the test ends; skipped only where the binary is not installed."""
    if shutil.which("redis-server") is None:
        pytest.skip(REDIS_MISSING)
    running = start_redis(tmp_path / "redis")
    yield running
    running.process.kill()
