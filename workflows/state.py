"""The one serializable state of a rollout, carried across continue-as-new.

Everything a status page, an audit or a restarted worker needs is here, and nothing that can be
derived from the spec. Samples of monitoring data are not kept: only the last check's verdicts.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from activities.contracts import CheckResult, ReviewCounts, TriggerVerdict

__all__ = [
    "TERMINAL_PHASES",
    "AuditAction",
    "AuditEntry",
    "Phase",
    "RollbackRequest",
    "RolloutState",
    "StageRecord",
]


class Phase(StrEnum):
    """Where a rollout is; the same strings appear in the UI's LockgatePhase and the CLI."""

    STARTING = "starting"
    AWAITING_APPROVAL = "awaiting_approval"
    """The stage's approvers have been asked; no traffic moves until enough of them approve."""
    RUNNING = "running"
    HELD = "held"
    """Checks find no evidence; the stage waits and never advances."""
    ESCALATED = "escalated"
    """A human must decide: evidence missing too long, or the stage outlived max_duration."""
    PAUSED = "paused"
    HOLDBACK = "holdback"
    """Every stage passed; a share of units stays on the previous incumbent for the spec's
    holdback duration, compared with the candidate, before it becomes the incumbent."""
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    PROMOTING = "promoting"
    COMPLETED = "completed"
    ABANDONED = "abandoned"
    """A human ended a stuck rollout (`lockgate abandon`): lockgate stopped managing the
    target's route, whatever the router holds now; the target is free for a new rollout."""


TERMINAL_PHASES = frozenset({Phase.ROLLED_BACK, Phase.COMPLETED, Phase.ABANDONED})


class AuditAction(StrEnum):
    """What an audit entry records; the strings are persisted in every rollout's state.

    One list, so the workflow that writes them and the reports that read them back cannot drift
    apart. A human command is recorded under its own name (`pause`, ...; see
    workflows.commands.Command), a rollback request, human or automatic, as `rollback`.
    """

    SUBMITTED = "submitted"
    STAGE_STARTED = "stage_started"
    APPROVAL_NEEDED = "approval_needed"
    APPROVED = "approved"
    """Enough approvers approved; the stage's traffic moves next."""
    OFFLINE_PASSED = "offline_passed"
    ADVANCE = "advance"
    """A check earned the stage's gate."""
    ESCALATED = "escalated"
    ROLLBACK = "rollback"
    ROLLBACK_LANDED = "rollback_landed"
    COMPLETED = "completed"
    ENDED = "ended"
    """The rollout was abandoned: it ends without a route landing."""
    APPROVE = "approve"
    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"
    ABANDON = "abandon"
    REVIEW = "review"
    """A reviewer's verdict on one of the candidate's proposals (guardrails.review)."""


class StateModel(BaseModel):
    """Base of state models: mutable (the workflow owns them), strict on unknown fields."""

    model_config = ConfigDict(extra="forbid")


class AuditEntry(StateModel):
    """Who did what, when and why: a human command or an automatic decision."""

    at: datetime
    actor: str
    """A person (`alice`), or `lockgate` / `trigger:<name>` for automatic decisions."""
    action: str
    """An AuditAction's string; typed `str` so that a trail written by a newer worker (or an
    update name read back from a history) still loads."""
    reason: str
    stage: str | None = None
    evidence: TriggerVerdict | None = None
    """For an automatic decision: the verdict behind it, with its numbers."""


class StageRecord(StateModel):
    """How one stage went."""

    name: str
    started_at: datetime
    ended_at: datetime | None = None
    outcome: str | None = None
    """`advanced`, `promoted`, `rolled_back`, or None while running."""
    checks: int = 0
    approved_by: list[str] = Field(default_factory=list)
    """Who approved the stage, when it needed approval."""
    reviews: int = 0
    """Proposals reviewers judged while this stage ran (a stage's min_reviews counts them)."""


class RollbackRequest(StateModel):
    """A rollback asked for by a human or a trigger, kept until it has landed."""

    actor: str
    reason: str
    at: datetime


class RolloutState(StateModel):
    """The rollout's whole progress."""

    rollout_id: str
    submitted_by: str
    started_at: datetime
    phase: Phase = Phase.STARTING
    stage_index: int = 0
    stage_routed: bool = False
    """Whether the current stage's route has been applied and verified."""
    generation: int = 0
    """Generation of the last route sent; every change uses a larger one."""
    live_percent: float = 0.0
    """The candidate's share in the last route that landed (0 in shadow and after rollback)."""
    checks_total: int = 0
    no_evidence_streak: int = 0
    """Consecutive checks with an inconclusive or error verdict."""
    trigger_failures: dict[str, int] = Field(default_factory=dict)
    """Consecutive failing checks per trigger; only a pass resets one."""
    last_check: CheckResult | None = None
    paused_by: AuditEntry | None = None
    promote_requested: AuditEntry | None = None
    rollback: RollbackRequest | None = None
    escalation: str | None = None
    """Why a human is needed now, if one is."""
    landing_since: datetime | None = None
    """When lockgate began applying a route that must land (rollback, promotion); kept across
    continue-as-new so the escalation says how long the router has refused it in all."""
    approvals: list[AuditEntry] = Field(default_factory=list)
    """Approvals of the stage awaiting approval now (cleared when its traffic moves)."""
    approval_asked_at: datetime | None = None
    """When the current stage's approvers were asked; its timeout counts from here."""
    stages: list[StageRecord] = Field(default_factory=list)
    reviews: ReviewCounts = Field(default_factory=ReviewCounts)
    """Reviewers' verdicts on the candidate's proposals over the whole rollout."""
    audit: list[AuditEntry] = Field(default_factory=list)
    outcome: str | None = None
    """One sentence when the rollout ends."""
