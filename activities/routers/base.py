"""What lockgate needs from a traffic router: set a target's route, and read it back."""

from __future__ import annotations

from typing import Protocol

from activities.contracts import Route

__all__ = ["TrafficRouter"]


class TrafficRouter(Protocol):
    """A router that splits a target's decisions between incumbent and candidate.

    `put_route` is idempotent for the same generation; it raises RouteConflict when the router
    holds a newer one, RouterUnavailable on transport errors and 5xx, RouterError on other 4xx.
    `get_route` returns what is applied now, or None when the target has no route yet.
    """

    async def put_route(self, target: str, route: Route) -> Route:
        """Apply `route` to `target`; return the route as the router acknowledged it."""
        ...

    async def get_route(self, target: str) -> Route | None:
        """Read the route the router applies to `target` now."""
        ...
