"""A real review stack for tests: the reference gateway and two real policy servers.

The candidate (all but) always proposes `refund_full`, an action a spec routes to humans with
`guardrails.review`, so every decision the candidate's arm takes is queued at the gateway as a
proposal while the incumbent's decision (`none`) is served.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from tests.conftest import spec_document
from tests.gateway.servers import GatewayServer, PolicyServer

__all__ = ["ReviewStack", "decide", "review_spec_document", "review_stack", "route_percent"]


def _artifact(version: str, favourite: int) -> dict[str, Any]:
    """A policy that (all but) always picks action `favourite` of `none`, `refund_full`."""
    bias = [0.0, 0.0]
    bias[favourite] = 100.0
    return {
        "name": "offers",
        "version": version,
        "actions": ["none", "refund_full"],
        "features": ["basket"],
        "weights": [[0.0], [0.0]],
        "bias": bias,
        "temperature": 1.0,
    }


@dataclass(frozen=True)
class ReviewStack:
    """The gateway, and its two policy servers as a spec's versions name them."""

    gateway: GatewayServer
    incumbent: dict[str, str]
    candidate: dict[str, str]


@contextlib.contextmanager
def review_stack() -> Iterator[ReviewStack]:
    """Policy servers 41 (serves `none`) and 42 (proposes `refund_full`) behind a gateway
    whose control plane has no token (a test's loopback only)."""
    with (
        PolicyServer(_artifact("41", favourite=0)) as incumbent,
        PolicyServer(_artifact("42", favourite=1)) as candidate,
        GatewayServer([incumbent, candidate], insecure=True) as gateway,
    ):
        yield ReviewStack(gateway, incumbent.as_version(), candidate.as_version())


def review_spec_document(stack: ReviewStack, metrics_url: str) -> dict[str, Any]:
    """A fast spec through the gateway: canary 50% needing 2 reviews, then full 100%."""
    document = spec_document(stack.gateway.control_url, metrics_url)
    body = document["spec"]
    body["incumbent"] = stack.incumbent
    body["candidate"] = stack.candidate
    body["guardrails"] = {"review": {"actions": ["refund_full"]}}
    body["stages"] = [
        {"name": "canary", "percent": 50, "min_duration": "1s", "min_reviews": 2},
        {"name": "full", "percent": 100, "min_duration": "1s"},
    ]
    return document


async def route_percent(gateway: GatewayServer, target: str) -> float | None:
    """The candidate's share in the route the gateway holds for `target`, if any."""
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{gateway.control_url}/v1/targets/{target}/route")
    return float(response.json()["percent"]) if response.status_code == 200 else None


async def decide(gateway: GatewayServer, target: str, units: int) -> list[str]:
    """Ask for one decision for each of `units` new units; the ids of the proposals made."""
    proposals = []
    async with httpx.AsyncClient() as http:
        for _ in range(units):
            response = await http.post(
                f"{gateway.url}/v1/targets/{target}/decide",
                json={"unit_id": uuid.uuid4().hex, "context": {"basket": 1.0}, "attributes": {}},
            )
            assert response.status_code == 200, response.text
            answer = response.json()
            if answer.get("proposal"):
                assert answer["action"] == "none", "the incumbent's decision is served"
                proposals.append(answer["proposal"])
    return proposals
