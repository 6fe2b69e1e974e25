"""The routing activity: move a target's traffic, and prove it moved by reading it back.

Every failure is raised as a retryable ApplicationError whose `type` is the error's class name;
the workflow's retry policy decides what is final. A stage change gives up on a conflict, while a
rollback never gives up on anything.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import APPLY_ROUTE, ApplyRouteInput, Route
from activities.errors import BackendError, RouteMismatch
from activities.registry import BackendRegistry

__all__ = ["RoutingActivities"]


class RoutingActivities:
    """Applies routes through whichever router the spec names."""

    def __init__(self, backends: BackendRegistry) -> None:
        self._backends = backends

    @activity.defn(name=APPLY_ROUTE)
    async def apply_route(self, request: ApplyRouteInput) -> Route:
        """Set the route, read it back, and fail unless the router holds exactly that route."""
        route = request.route
        try:
            router = self._backends.router(request.router)
            await router.put_route(request.target, route)
            applied = await router.get_route(request.target)
            if applied != route:
                raise RouteMismatch(
                    f"router {request.router.url} reports {_describe(applied)} for target "
                    f"{request.target!r} after lockgate set {_describe(route)}"
                )
        except BackendError as exc:
            activity.logger.warning("route %s: %s", request.target, exc)
            raise ApplicationError(str(exc), type=type(exc).__name__) from exc
        activity.logger.info("route %s: applied %s", request.target, _describe(route))
        return route


def _describe(route: Route | None) -> str:
    if route is None:
        return "no route"
    candidate = route.candidate.version if route.candidate else "-"
    return (
        f"generation {route.generation} mode={route.mode.value} percent={route.percent:g} "
        f"incumbent={route.incumbent.version} candidate={candidate}"
    )
