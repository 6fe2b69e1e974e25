"""Fixtures shared by the gateway's service tests: a real gateway and an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.servers import GatewayServer, PolicyServer, UvicornThread

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(scope="module")
def incumbent() -> Iterator[PolicyServer]:
    """The offers policy version 41 behind its own policy server (a module may override it)."""
    with PolicyServer(ARTIFACTS / "offers-41.json") as server:
        yield server


@pytest.fixture(scope="module")
def candidate() -> Iterator[PolicyServer]:
    """The offers policy version 42, the candidate of most gateway tests."""
    with PolicyServer(ARTIFACTS / "offers-42.json") as server:
        yield server


@pytest.fixture
def policy_servers() -> list[UvicornThread]:
    """The policy servers the `gateway` fixture allows; a module overrides it with its own."""
    return []


@pytest.fixture
def gateway(policy_servers: list[UvicornThread]) -> Iterator[GatewayServer]:
    with GatewayServer(policy_servers) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        yield client
