"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runtime.processes import ManagedProcess


@pytest.fixture
def processes() -> Iterator[list[ManagedProcess]]:
    """What a test starts (workers, servers), each killed when the test ends, pass or fail."""
    started: list[ManagedProcess] = []
    yield started
    for process in started:
        process.kill()
