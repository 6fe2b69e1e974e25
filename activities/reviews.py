"""The review activities: list the proposals waiting at the router, record one verdict there.

A candidate's action listed under `guardrails.review` is never executed: the router serves the
incumbent's decision and queues the candidate's as a proposal. Humans judge proposals with
`lockgate review`, which reaches the router only through these activities (the worker holds the
router's credentials, the CLI does not), and the workflow audits and counts each verdict.

The models here cross the workflow/activity boundary and the CLI's update calls, so this module
imports nothing heavier than pydantic, temporalio and lockgate's backend declarations; the
registry (and with it httpx) is only a type here.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import BackendError, RouterError, UnknownBackendError
from activities.heartbeat import heartbeating
from activities.routers.base import ReviewingRouter
from rollout_specs import RouterConfig
from rollout_specs.backends import UnknownBackendType, router_backend

if TYPE_CHECKING:
    from activities.registry import BackendRegistry

__all__ = [
    "LIST_REVIEWS",
    "MAX_LIST",
    "RECORD_REVIEW",
    "ListReviewsInput",
    "PendingProposals",
    "Proposal",
    "RecordReviewInput",
    "RecordedVerdict",
    "ReviewActivities",
    "Verdict",
]

LIST_REVIEWS = "pending_reviews"
"""Activity name: the proposals waiting at the router for a target."""
RECORD_REVIEW = "record_review"
"""Activity name: record one verdict on one proposal at the router."""
MAX_LIST = 500
"""Most proposals one listing asks for (the reference gateway answers up to this many)."""


class Verdict(StrEnum):
    """A reviewer's ruling on one proposal; the strings are the router contract's."""

    APPROVE = "approve"
    REJECT = "reject"


class _Message(BaseModel):
    """Base of lockgate's own review messages: strict on unknown fields, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _RouterAnswer(BaseModel):
    """Base of what a router answers: fields it adds (its own timestamps, ids) are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Proposal(_RouterAnswer):
    """One decision of the candidate held at the router for a human, with what judges it."""

    id: str = Field(min_length=1)
    created_at: datetime
    unit_id: str
    version: str
    """The candidate version that proposed it."""
    action: str
    params: dict[str, float] | None = None
    """The action's numeric parameters, when the policy answered any."""
    context: dict[str, Any] = Field(default_factory=dict)
    """The features the policy decided on."""
    attributes: dict[str, str] = Field(default_factory=dict)
    """The unit's attributes (segments) sent with the decision."""


class PendingProposals(_RouterAnswer):
    """The proposals still waiting (oldest first) and how many the router dropped unseen."""

    pending: list[Proposal] = Field(default_factory=list)
    dropped: int = Field(default=0, ge=0)
    """Proposals pushed out of a full queue (review.max_pending) before anyone judged them."""


class RecordedVerdict(_RouterAnswer):
    """The router's acknowledgement of a verdict."""

    verdict: Verdict
    actor: str
    reason: str = ""
    proposal: Proposal | None = None
    """The proposal judged; None when a retried request found this very verdict already
    recorded (the router's 409 answer names the verdict and its actor, not the proposal)."""


class ListReviewsInput(_Message):
    """Ask the spec's router for a target's pending proposals."""

    router: RouterConfig
    target: str
    limit: int = Field(default=50, ge=1, le=MAX_LIST)


class RecordReviewInput(_Message):
    """Record one reviewer's verdict on one proposal at the spec's router."""

    router: RouterConfig
    target: str
    proposal_id: str = Field(min_length=1)
    verdict: Verdict
    actor: str = Field(min_length=1)
    reason: str = ""


class ReviewActivities:
    """Lists and judges proposals through whichever router the spec names.

    Only a router type whose declaration says `reviews` is asked; any other is refused with a
    sentence naming it (non-retryable: asking again cannot help).
    """

    def __init__(self, backends: BackendRegistry) -> None:
        self._backends = backends

    @activity.defn(name=LIST_REVIEWS)
    async def pending_reviews(self, request: ListReviewsInput) -> PendingProposals:
        """The target's oldest pending proposals, as the router holds them now."""
        try:
            router = self._router(request.router)
            async with heartbeating():
                return await router.pending_reviews(request.target, request.limit)
        except BackendError as exc:
            raise _failure(exc) from exc

    @activity.defn(name=RECORD_REVIEW)
    async def record_review(self, request: RecordReviewInput) -> RecordedVerdict:
        """Record the verdict; the router refuses an unknown (404) or judged (409) proposal."""
        try:
            router = self._router(request.router)
            async with heartbeating():
                recorded = await router.record_review(
                    request.target,
                    request.proposal_id,
                    request.verdict,
                    request.actor,
                    request.reason,
                )
        except BackendError as exc:
            raise _failure(exc) from exc
        activity.logger.info(
            "review %s: %s %s by %s",
            request.target,
            request.verdict.value,
            request.proposal_id,
            request.actor,
        )
        return recorded

    def _router(self, config: RouterConfig) -> ReviewingRouter:
        try:
            declaration = router_backend(config.type)
        except UnknownBackendType as exc:
            raise UnknownBackendError(str(exc)) from exc
        if not declaration.reviews:
            raise RouterError(
                f"the {declaration.label} ({config.type}) does not hold proposals for review; "
                "guardrails.review needs a router type that does (the built-in `http` router)"
            )
        router = self._backends.router(config)
        if not isinstance(router, ReviewingRouter):
            raise RouterError(
                f"the {declaration.label} ({config.type}) declares reviews but its "
                "implementation has no pending_reviews/record_review; fix the router plugin"
            )
        return router


def _failure(error: BackendError) -> ApplicationError:
    """The error as Temporal carries it: its class name as the type, its sentence as message."""
    activity.logger.debug("review: %s", error)
    return ApplicationError(str(error), type=type(error).__name__)
