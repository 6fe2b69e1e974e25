"""Inputs and outputs of every activity.

These models cross the workflow/activity boundary through Temporal's pydantic converter and are
recorded in workflow history, so they import only pydantic, rollout_specs and analysis.verdicts
(the verdict vocabulary): the workflow sandbox and the tests can use them without touching httpx.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from analysis.verdicts import Outcome
from rollout_specs import (
    AdvanceWhen,
    ArmMetric,
    Guardrails,
    MonitoringConfig,
    NotifyEvent,
    OfflineEval,
    PolicyVersion,
    RollbackTrigger,
    RouterConfig,
    Threshold,
    Webhook,
)

__all__ = [
    "APPLY_ROUTE",
    "CHECK_INCOMPLETE",
    "NOTIFY",
    "OFFLINE_EVAL",
    "RUN_CHECKS",
    "ApplyRouteInput",
    "CheckInput",
    "CheckResult",
    "Evidence",
    "LandedRoute",
    "Notification",
    "OfflineEvalInput",
    "Outcome",
    "ReviewCounts",
    "Route",
    "RouteMode",
    "TriggerVerdict",
]

APPLY_ROUTE = "apply_route"
"""Activity name: set a target's route and verify it by reading it back."""
RUN_CHECKS = "run_checks"
"""Activity name: query monitoring for every rollback trigger and judge the answers."""
CHECK_INCOMPLETE = "CheckIncomplete"
"""Error type of a check asked to fail rather than answer with triggers still unjudged."""
OFFLINE_EVAL = "offline_eval"
"""Activity name: evaluate the candidate on logged decisions (off-policy), once."""
NOTIFY = "notify"
"""Activity name: deliver one event to one webhook."""


class Contract(BaseModel):
    """Base of activity messages: strict on unknown fields, immutable once built."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RouteMode(StrEnum):
    """How the router uses the candidate: not at all, mirrored, or serving a share."""

    OFF = "off"
    SHADOW = "shadow"
    SPLIT = "split"


class Route(Contract):
    """The routing of one target, as lockgate asks for it and as the router reports it.

    Extra fields a router adds to its answer (timestamps, its own ids) are ignored, not refused.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    rollout_id: str
    """Which rollout owns the route; units hash with it, so assignment is sticky per rollout."""
    generation: int = Field(ge=1)
    """Increases with every change; the router refuses (409) a generation older than its own."""
    incumbent: PolicyVersion
    candidate: PolicyVersion | None = None
    mode: RouteMode = RouteMode.OFF
    percent: float = Field(default=0.0, ge=0, le=100)
    scope: dict[str, list[str]] | None = None
    guardrails: Guardrails = Field(default_factory=Guardrails)


class LandedRoute(Route):
    """A route the router confirmed, and when it did (activities/server_clock.py).

    A stage's bake counts from `landed_at`, a time recorded in the workflow's history, not from
    the clock of the workflow task that reads the answer: that clock can read seconds stale on a
    worker that takes a rollout over. None in answers recorded before this field existed.
    """

    landed_at: datetime | None = None


class ApplyRouteInput(Contract):
    """Set a target's route on a router, then read it back to verify it landed."""

    router: RouterConfig
    target: str
    route: Route


class ReviewCounts(Contract):
    """How reviewers judged the candidate's proposals over the whole rollout, from its audit."""

    approved: int = Field(default=0, ge=0)
    rejected: int = Field(default=0, ge=0)


class CheckInput(Contract):
    """Evaluate the rollback triggers (and the stage's evidence gate) once, now."""

    monitoring: MonitoringConfig
    triggers: list[RollbackTrigger]
    variables: dict[str, str]
    metrics: dict[str, ArmMetric] = Field(default_factory=dict)
    """The per-arm metrics the statistical triggers and the gate use."""
    alphas: dict[str, float] = Field(default_factory=dict)
    """Each statistical trigger's share of the rollout's alpha."""
    expected_samples: int = 10_000
    """Observations (both arms) the stage should see; tunes the sequential tests."""
    gate: AdvanceWhen | None = None
    gate_alpha: float = 0.05
    deadline: float | None = None
    """Seconds the whole check may take; triggers without an answer by then are `error`.

    The workflow sets it below the activity's timeout, so the verdicts already obtained (a
    `fail` above all) always come back instead of being lost with a timed-out attempt.
    """
    failures: dict[str, int] = Field(default_factory=dict)
    """Each trigger's consecutive failures before this check; a `fail` that reaches the
    trigger's failure_limit ends the check at once, so a slow trigger never delays a rollback."""
    reviews: ReviewCounts = Field(default_factory=ReviewCounts)
    """Reviewers' verdicts on the candidate's proposals so far (review triggers judge them)."""
    stage_elapsed: float = 0.0
    """Seconds the current stage has run (spend triggers project its spend rate)."""
    stage_left: float = 0.0
    """Seconds of the stage's min_duration still to run (0 once it has baked)."""
    fail_if_incomplete: bool = False
    """Raise CheckIncomplete instead of answering `error` for triggers still waiting at the
    deadline: the workflow then runs the check again where it may take longer."""
    scheduled_at: datetime | None = None
    """When the workflow scheduled the check, for a check run inside its workflow task (a local
    activity), which has no server-stamped start: its end is reported as this plus its runtime."""


class Evidence(Contract):
    """The numbers behind a statistical verdict: what was estimated, how sure, from how much."""

    estimate: float | None = None
    """Candidate minus incumbent (relative when the rule is relative)."""
    lower: float | None = None
    upper: float | None = None
    statistic: float | None = None
    boundary: float | None = None
    n_incumbent: int = 0
    n_candidate: int = 0
    alpha: float | None = None


class TriggerVerdict(Contract):
    """One trigger's verdict with its evidence, so a human can see why."""

    trigger: str
    outcome: Outcome
    value: float | None = None
    threshold: Threshold | None = None
    query: str = ""
    """The query as rendered and sent."""
    detail: str
    """One sentence: the value against the threshold, or what went wrong."""
    evidence: Evidence | None = None
    awaiting_evidence: bool = False
    """INCONCLUSIVE with data: a statistical test has not decided yet (not missing data)."""


class CheckResult(Contract):
    """All verdicts of one check, in the spec's trigger order."""

    checked_at: datetime
    """When the check ended, by the server's clock (activities/server_clock.py). A stage's bake
    is measured up to this time, recorded in the history, so a replay decides it as the live run
    did; the workflow task's own clock (`workflow.now()`) can read the previous task's time on a
    worker that has just met the rollout through a query."""
    verdicts: list[TriggerVerdict]
    gate: TriggerVerdict | None = None
    """The stage's advance_when verdict, when it has one."""
    stage: str | None = None
    """The stage checked (its `stage` variable). A check run in its workflow task is recorded in
    the history without its input, so the report learns the stage from the result."""


class OfflineEvalInput(Contract):
    """Judge a candidate on a log of the incumbent's decisions; the answer is a TriggerVerdict.

    The verdict's evidence holds the paired difference candidate minus incumbent (estimate,
    lower, upper at 1 - alpha), the Kish effective sample size as `statistic`, and the row
    count as both `n_incumbent` and `n_candidate`; its detail names every estimator's value.
    PASS and FAIL judge the gate; ERROR means lockgate refuses to judge (and never passes).
    """

    stage: str
    offline: OfflineEval
    incumbent: PolicyVersion
    candidate: PolicyVersion


class Notification(Contract):
    """One event of a rollout, for one webhook."""

    webhook: Webhook
    event: NotifyEvent
    target: str
    rollout: str
    """The rollout's name (metadata.name)."""
    stage: str | None = None
    phase: str
    at: datetime
    text: str
    """One line for humans; sent as the JSON body's `text` (Slack-compatible)."""
