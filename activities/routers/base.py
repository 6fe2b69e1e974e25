"""What lockgate needs from a traffic router: set a target's route, and read it back.

A router whose declaration says `reviews` also holds the candidate's proposals for review
(guardrails.review) and takes verdicts on them: `ReviewingRouter`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from activities.contracts import Route

if TYPE_CHECKING:
    from activities.reviews import PendingProposals, RecordedVerdict, Verdict

__all__ = ["ReviewingRouter", "TrafficRouter"]


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


@runtime_checkable
class ReviewingRouter(Protocol):
    """A router that queues the candidate's reviewed actions as proposals for a human.

    Only routers whose declaration sets `reviews` are asked; the check is made on the
    declaration (rollout_specs.backends.RouterBackend.reviews), and this protocol is then
    confirmed on the instance, so a declaration that promises reviews without these methods
    is reported rather than called. Errors follow the route calls' ladder: RouterUnavailable
    for no usable answer (retryable), RouterError for a refusal, including a verdict on a
    proposal the router does not know (404) or has already judged (409, naming by whom).
    """

    async def pending_reviews(self, target: str, limit: int) -> PendingProposals:
        """The target's oldest `limit` proposals still waiting for a verdict."""
        ...

    async def record_review(
        self, target: str, proposal_id: str, verdict: Verdict, actor: str, reason: str
    ) -> RecordedVerdict:
        """Record a verdict on one proposal; it then leaves the pending list."""
        ...
