"""The gateway's HTTP API.

    PUT  /v1/targets/{target}/route     the router contract lockgate drives (409 if older)
    GET  /v1/targets/{target}/route     the route applied, or 404
    POST /v1/targets/{target}/decide    {"unit_id", "context", "attributes"} -> one decision
    POST /v1/targets/{target}/feedback  {"decision_id", "reward"} -> reward to the arm that served
    GET  /metrics                       Prometheus text (names: gateway.metrics)
    GET  /v1/stats?query=...            {"value": number | null} for the `http` provider
    GET  /healthz                       readiness

Errors answer `{"detail": "..."}` saying what was wrong and what to send instead.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Annotated

import httpx
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as Endpoint

from activities.contracts import Route, RouteMode
from gateway.decider import Decider, IncumbentUnavailableError
from gateway.decisions import (
    DEFAULT_CAPACITY,
    DEFAULT_TTL,
    AlreadyRewardedError,
    PendingDecisions,
    UnknownDecisionError,
)
from gateway.metrics import GatewayMetrics
from gateway.policy_client import (
    DEFAULT_PER_SERVER,
    DEFAULT_TIMEOUT,
    PolicyClient,
    policy_http_client,
)
from gateway.routing_table import RouteConflictError, RoutingTable, StateFileError
from gateway.stats import DEFAULT_RETENTION, StatsQueryError, parse_stats_query
from gateway.validation import describe

__all__ = ["DecideRequest", "FeedbackRequest", "create_app"]


class DecideRequest(BaseModel):
    """A unit asks for one decision: its id (for stickiness), features, and scope labels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit_id: Annotated[str, Field(min_length=1)]
    context: dict[str, Annotated[float, Field(allow_inf_nan=False)]] = Field(default_factory=dict)
    attributes: dict[str, str] = Field(default_factory=dict)


class FeedbackRequest(BaseModel):
    """The reward of an earlier decision.

    Rewards are non-negative because `lockgate_rewards_total` is a Prometheus counter, and a
    counter that goes down reads as a restart to `increase()`; shift a signed reward by a
    constant (and the spec's thresholds with it) to send it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    decision_id: Annotated[str, Field(min_length=1)]
    reward: Annotated[float, Field(ge=0, allow_inf_nan=False)]


def create_app(
    *,
    state_file: Path | None = None,
    policy_timeout: float = DEFAULT_TIMEOUT,
    policy_concurrency: int = DEFAULT_PER_SERVER,
    decision_capacity: int = DEFAULT_CAPACITY,
    decision_ttl: float = DEFAULT_TTL,
    stats_retention: float = DEFAULT_RETENTION,
) -> Starlette:
    """The gateway as an ASGI app, with its own routes, metrics registry and policy client.

    Args:
        state_file: JSON file keeping the routes across restarts; None keeps them in memory.
        policy_timeout: Seconds a policy server may take to answer one `act` (and a call may
            wait for its turn when the server already has `policy_concurrency` in flight).
        policy_concurrency: Most calls in flight to one policy server (gateway.policy_client).
        decision_capacity: Most decisions remembered while waiting for their reward.
        decision_ttl: Seconds a decision waits for its reward before it is forgotten (404).
        stats_retention: Seconds of history `/v1/stats` can look back over.

    Raises:
        StateFileError: `state_file` exists but cannot be read as the gateway's routes.
    """
    table = RoutingTable(state_file)  # first: a bad state file fails before anything opens
    http = policy_http_client(policy_timeout)
    metrics = GatewayMetrics(stats_retention=stats_retention)
    api = _Api(
        table,
        metrics,
        PendingDecisions(capacity=decision_capacity, ttl=decision_ttl),
        Decider(
            PolicyClient(http, per_server=policy_concurrency, queue_timeout=policy_timeout),
            metrics,
        ),
    )
    return Starlette(
        routes=[
            Endpoint("/v1/targets/{target}/route", api.put_route, methods=["PUT"]),
            Endpoint("/v1/targets/{target}/route", api.get_route, methods=["GET"]),
            Endpoint("/v1/targets/{target}/decide", api.decide, methods=["POST"]),
            Endpoint("/v1/targets/{target}/feedback", api.feedback, methods=["POST"]),
            Endpoint("/metrics", api.scrape, methods=["GET"]),
            Endpoint("/v1/stats", api.stats, methods=["GET"]),
            Endpoint("/healthz", api.healthz, methods=["GET"]),
        ],
        lifespan=_closing(http),
    )


class _Api:
    """The endpoints, over the gateway's state (one instance per app)."""

    def __init__(
        self,
        table: RoutingTable,
        metrics: GatewayMetrics,
        pending: PendingDecisions,
        decider: Decider,
    ) -> None:
        self.table = table
        self.metrics = metrics
        self.pending = pending
        self.decider = decider

    async def put_route(self, request: Request) -> Response:
        target = request.path_params["target"]
        try:
            route = Route.model_validate_json(await request.body())
        except ValidationError as exc:
            return _detail(422, f"not a route: {describe(exc)}")
        if route.mode is not RouteMode.OFF and route.candidate is None:
            return _detail(422, f"mode {route.mode.value} needs a candidate; send one or mode off")
        try:
            result = self.table.put(target, route)
        except RouteConflictError as exc:
            return _detail(409, str(exc))
        except StateFileError as exc:
            return _detail(503, f"route not applied: {exc}")
        return JSONResponse(result.route.model_dump(mode="json"))

    async def get_route(self, request: Request) -> Response:
        target = request.path_params["target"]
        route = self.table.get(target)
        if route is None:
            return _detail(404, f"target {target} has no route")
        return JSONResponse(route.model_dump(mode="json"))

    async def decide(self, request: Request) -> Response:
        started = time.perf_counter()
        target = request.path_params["target"]
        route = self.table.get(target)
        if route is None:
            return _detail(404, f"target {target} has no route; lockgate (or a PUT) sets one")
        try:
            ask = DecideRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            return _detail(422, f"bad decide request: {describe(exc)}")
        try:
            decision = await self.decider.decide(
                target, route, ask.unit_id, ask.context, ask.attributes
            )
        except IncumbentUnavailableError as exc:
            return _detail(502, str(exc))
        decision_id = uuid.uuid4().hex
        self.pending.add(decision_id, target, decision.arm, decision.version)
        answer = JSONResponse(
            {
                "decision_id": decision_id,
                "action": decision.action,
                "arm": decision.arm,
                "version": decision.version,
                "mode": decision.mode,
                "shadow_action": decision.shadow_action,
                "guardrail": decision.guardrail,
            }
        )
        self.metrics.latency(target, decision.arm, time.perf_counter() - started)
        return answer

    async def feedback(self, request: Request) -> Response:
        target = request.path_params["target"]
        try:
            body = FeedbackRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            return _detail(422, f"bad feedback: {describe(exc)}")
        try:
            served = self.pending.reward(body.decision_id, target)
        except UnknownDecisionError:
            return _detail(
                404,
                f"no decision {body.decision_id} for target {target}: never taken here, older "
                f"than {self.pending.ttl:g}s, or evicted",
            )
        except AlreadyRewardedError:
            return _detail(409, f"decision {body.decision_id} already has its reward")
        self.metrics.reward(served.target, served.arm, served.version, body.reward)
        return JSONResponse(
            {
                "decision_id": body.decision_id,
                "arm": served.arm,
                "version": served.version,
                "reward": body.reward,
            }
        )

    async def scrape(self, request: Request) -> Response:
        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def stats(self, request: Request) -> Response:
        text = request.query_params.get("query")
        if text is None:
            return _detail(400, "send ?query=<stat> target=<target> version=<version>")
        try:
            value = self.metrics.stats.answer(parse_stats_query(text))
        except StatsQueryError as exc:
            return _detail(400, str(exc))
        return JSONResponse({"value": value})

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "targets": self.table.targets()})


def _closing(http: httpx.AsyncClient) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """A lifespan that closes the policy client's pooled connections when the server stops."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await http.aclose()

    return lifespan


def _detail(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)
