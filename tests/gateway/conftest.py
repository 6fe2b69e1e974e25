"""Fixtures shared by the gateway's service tests: a real gateway and an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.gateway.servers import GatewayServer, UvicornThread


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
