"""Inputs and results of the workflow, its updates and its query."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from activities.contracts import ReviewCounts
from activities.reviews import MAX_LIST, Proposal, Verdict
from rollout_specs import RolloutSpec
from workflows.state import Phase, RolloutState

__all__ = [
    "AbandonInput",
    "ControlInput",
    "ControlResult",
    "PendingReviewsInput",
    "PendingReviewsResult",
    "ReviewInput",
    "RolloutInput",
    "RolloutResult",
    "StatusResult",
]


class Message(BaseModel):
    """Base of messages: strict on unknown fields."""

    model_config = ConfigDict(extra="forbid")


class RolloutInput(Message):
    """Start (or continue) a rollout. `state` is set only by continue-as-new."""

    spec: RolloutSpec
    submitted_by: str
    state: RolloutState | None = None


class ControlInput(Message):
    """A human command. Both fields are required and go to the audit trail."""

    actor: str
    reason: str


class AbandonInput(ControlInput):
    """`lockgate abandon`: end a stuck rollout. `force` ends one that is not stuck too.

    A separate message from ControlInput because ending a rollout without landing its route is
    a last resort: the flag that overrides the stuck-only rule must be asked for explicitly.
    """

    force: bool = False


class ReviewInput(ControlInput):
    """`lockgate review --approve/--reject ID`: one reviewer's verdict on one proposal.

    The reason may be left out of an approval; a rejection must say why (the rule is in
    workflows.commands, so the refusal reads like every other command's).
    """

    proposal_id: str
    verdict: Verdict
    reason: str = ""


class PendingReviewsInput(Message):
    """`lockgate review TARGET`: list the proposals waiting at the router.

    `actor` names who looked (the update is kept in the workflow's history like any other).
    """

    actor: str = ""
    limit: int = Field(default=50, ge=1, le=MAX_LIST)


class PendingReviewsResult(Message):
    """The proposals waiting (oldest first), and where the rollout's reviews stand."""

    pending: list[Proposal]
    dropped: int
    """Proposals the router pushed out of its full queue before anyone judged them."""
    reviews: ReviewCounts
    """Verdicts over the whole rollout."""
    stage: str
    stage_reviews: int
    """Verdicts given while the current stage ran."""
    min_reviews: int | None
    """What the current stage needs before it advances, if anything."""


class ControlResult(Message):
    """What a command did."""

    message: str
    phase: Phase


class StatusResult(Message):
    """The `status` query: the spec being rolled out and the whole state."""

    spec: RolloutSpec
    state: RolloutState


class RolloutResult(Message):
    """How the rollout ended."""

    phase: Phase
    outcome: str
