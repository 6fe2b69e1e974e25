"""Fixtures shared by the gateway's service tests: a real gateway and an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.gateway.servers import GatewayServer


@pytest.fixture
def gateway() -> Iterator[GatewayServer]:
    with GatewayServer() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        yield client
