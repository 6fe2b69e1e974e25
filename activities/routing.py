"""The routing activity: move a target's traffic, and prove it moved by reading it back.

Every failure is raised as a retryable ApplicationError whose `type` is the error's class name;
the workflow's retry policy decides what is final. A stage change gives up on a conflict, while a
rollback never gives up on anything. A conflict (409) names who holds the route, read back from
the router, so the human the rollout escalates to knows whom to ask.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import APPLY_ROUTE, ApplyRouteInput, LandedRoute, Route
from activities.errors import BackendError, RouteConflict, RouteMismatch
from activities.heartbeat import heartbeating
from activities.registry import BackendRegistry
from activities.routers.base import TrafficRouter
from activities.server_clock import AttemptClock

__all__ = ["RoutingActivities"]


class RoutingActivities:
    """Applies routes through whichever router the spec names."""

    def __init__(self, backends: BackendRegistry) -> None:
        self._backends = backends

    @activity.defn(name=APPLY_ROUTE)
    async def apply_route(self, request: ApplyRouteInput) -> LandedRoute:
        """Set the route, read it back, and fail unless the router holds exactly that route."""
        clock = AttemptClock()
        route = request.route
        try:
            router = self._backends.router(request.router)
            async with heartbeating():
                try:
                    await router.put_route(request.target, route)
                except RouteConflict as exc:
                    raise await _explain_conflict(router, request, exc) from exc
                applied = await router.get_route(request.target)
            if applied != route:
                raise RouteMismatch(
                    f"router {request.router.url} reports {_describe(applied)} for target "
                    f"{request.target!r} after lockgate set {_describe(route)}"
                )
        except BackendError as exc:  # the SDK logs the failed attempt once, with this message
            activity.logger.debug("route %s: %s", request.target, exc)
            raise ApplicationError(str(exc), type=type(exc).__name__) from exc
        activity.logger.info("route %s: applied %s", request.target, _describe(route))
        return LandedRoute(**dict(route), landed_at=clock.now())


async def _explain_conflict(
    router: TrafficRouter, request: ApplyRouteInput, conflict: RouteConflict
) -> RouteConflict:
    """The 409 with who holds the route and what it serves, read from the router itself."""
    try:
        holder = await router.get_route(request.target)
    except BackendError as exc:
        return RouteConflict(f"{conflict}; the route it holds could not be read ({exc})")
    if holder is None:
        return RouteConflict(f"{conflict}; reading the route back found none")
    owner = "this rollout" if holder.rollout_id == request.route.rollout_id else "another writer"
    return RouteConflict(
        f"target {request.target!r} is held by rollout {holder.rollout_id!r} ({owner}) at "
        f"{_describe(holder)}; lockgate's generation {request.route.generation} is older, so "
        "the router refuses it. Find who wrote that route and remove or supersede it; "
        "lockgate keeps retrying meanwhile"
    )


def _describe(route: Route | None) -> str:
    if route is None:
        return "no route"
    candidate = route.candidate.version if route.candidate else "-"
    return (
        f"generation {route.generation} mode={route.mode.value} percent={route.percent:g} "
        f"incumbent={route.incumbent.version} candidate={candidate}"
    )
