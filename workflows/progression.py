"""The progression rules: given a check's verdicts, what should the stage do next?

Pure functions over plain values, no Temporal: they are the small, stable rules of the rollout
(failure limits, hold on missing data, the bake), unit-tested as tables. The statistics that
produce the verdicts live in activities, so they can change without touching these rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from activities.contracts import CheckResult, Outcome, TriggerVerdict
from rollout_specs import Approval, MissingDataPolicy, RolloutSpecBody, Stage, format_duration

__all__ = [
    "Action",
    "Assessment",
    "Ruling",
    "approval_time_left",
    "approval_timed_out",
    "assess",
    "judge_offline",
    "reviews_missing",
]


class Action(StrEnum):
    """What the stage does after a check."""

    BAKE = "bake"
    """Keep going: the evidence is fine so far but the stage has not earned its gate."""
    ADVANCE = "advance"
    HOLD = "hold"
    """No evidence this time: wait, never advance."""
    ESCALATE = "escalate"
    """A human must decide; the stage keeps checking and never advances by itself."""
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class Assessment:
    """The decision, its reason, and the counters to keep for the next check."""

    action: Action
    reason: str
    trigger_failures: dict[str, int]
    no_evidence_streak: int
    tripped: str | None = None
    """The trigger that caused a rollback, if one did."""


def assess(
    spec: RolloutSpecBody,
    stage: Stage,
    check: CheckResult,
    trigger_failures: dict[str, int],
    no_evidence_streak: int,
    elapsed: timedelta,
    reviews: int = 0,
) -> Assessment:
    """Apply the rules in order: a tripped trigger, missing evidence, the bake, max_duration.

    `reviews` is how many proposals reviewers judged during this stage: a stage with
    `min_reviews` keeps baking, once everything else would advance it, until it has that many.
    """
    if not check.verdicts:  # the spec forbids this; judged here too, as silence is no evidence
        return Assessment(
            Action.HOLD,
            "no trigger judged this check",
            dict(trigger_failures),
            no_evidence_streak + 1,
        )
    failures = _count_failures(trigger_failures, check.verdicts)
    limits = {t.name: t.failure_limit for t in spec.rollback_triggers}
    for verdict in check.verdicts:
        if failures[verdict.trigger] >= limits.get(verdict.trigger, 1):
            reason = (
                f"trigger {verdict.trigger} failed {failures[verdict.trigger]} consecutive "
                f"check(s): {verdict.detail}"
            )
            return Assessment(
                Action.ROLLBACK, reason, failures, no_evidence_streak, verdict.trigger
            )

    unclear = [v for v in check.verdicts if _no_evidence(v)]
    if unclear:
        streak = no_evidence_streak + 1
        reason = "; ".join(f"{v.trigger}: {v.detail}" for v in unclear)
        if streak >= spec.missing_data_limit:
            action = (
                Action.ROLLBACK
                if spec.on_missing_data is MissingDataPolicy.ROLLBACK
                else Action.ESCALATE
            )
            reason = f"no evidence for {streak} consecutive checks ({reason})"
            return Assessment(action, reason, failures, streak)
        return _limit_duration(
            stage, elapsed, Assessment(Action.HOLD, f"holding: {reason}", failures, streak)
        )

    failing = [v for v in check.verdicts if v.outcome is Outcome.FAIL]
    if failing:
        reason = "; ".join(
            f"{v.trigger} failing ({failures[v.trigger]}/{limits.get(v.trigger, 1)}): {v.detail}"
            for v in failing
        )
        return _limit_duration(stage, elapsed, Assessment(Action.BAKE, reason, failures, 0))
    waiting = [
        v for v in [*check.verdicts, check.gate] if v is not None and v.outcome is not Outcome.PASS
    ]
    if waiting:
        reason = "awaiting evidence: " + "; ".join(f"{v.trigger}: {v.detail}" for v in waiting)
        return _limit_duration(stage, elapsed, Assessment(Action.BAKE, reason, failures, 0))
    if elapsed >= stage.min_duration and (missing := reviews_missing(stage, reviews)):
        return _limit_duration(stage, elapsed, Assessment(Action.BAKE, missing, failures, 0))
    if elapsed >= stage.min_duration:
        gate = f", {check.gate.trigger} shown" if check.gate is not None else ""
        return Assessment(
            Action.ADVANCE,
            f"every trigger passed after {format_duration(elapsed)} "
            f"(min_duration {format_duration(stage.min_duration)}){gate}",
            failures,
            0,
        )
    remaining = format_duration(stage.min_duration - elapsed)
    return _limit_duration(
        stage,
        elapsed,
        Assessment(Action.BAKE, f"every trigger passing; baking {remaining} more", failures, 0),
    )


def reviews_missing(stage: Stage, reviews: int) -> str | None:
    """Why the stage waits for reviewers, or None when it has the verdicts it needs.

    A stage with `min_reviews` may not advance before reviewers judged that many of the
    candidate's proposals during it: its actions that only humans may let through have then
    been looked at, not merely held back.
    """
    needed = stage.min_reviews
    if needed is None or reviews >= needed:
        return None
    return (
        f"waiting for reviews: {reviews} of {needed} proposals reviewed during stage "
        f"{stage.name} (`lockgate review` lists the pending ones)"
    )


@dataclass(frozen=True)
class Ruling:
    """A one-off decision (an offline gate, an approval deadline): no counters to carry."""

    action: Action
    """ADVANCE, ROLLBACK or ESCALATE."""
    reason: str
    """What the audit trail, the rollback or the escalation says."""


def judge_offline(stage: Stage, verdict: TriggerVerdict) -> Ruling:
    """The offline gate judges once, so its verdict decides the stage.

    A pass advances, a failure rolls back, and no verdict follows the stage's on_inconclusive
    (roll back, or escalate: a human then promotes to override it, or rolls back).
    """
    if verdict.outcome is Outcome.PASS:
        return Ruling(Action.ADVANCE, verdict.detail)
    if verdict.outcome is Outcome.FAIL:
        return Ruling(Action.ROLLBACK, f"offline gate failed: {verdict.detail}")
    reason = f"the offline gate could not judge the candidate: {verdict.detail}"
    if stage.on_inconclusive is MissingDataPolicy.ROLLBACK:
        return Ruling(Action.ROLLBACK, reason)
    return Ruling(Action.ESCALATE, f"{reason}; promote to override it, or roll back")


def approval_time_left(approval: Approval, asked_at: datetime, now: datetime) -> timedelta:
    """How long the approvers still have; zero or less means the deadline has passed.

    The deadline counts from when they were first asked, across continue-as-new and restarts.
    """
    return asked_at + approval.timeout - now


def approval_timed_out(stage: Stage, approvals: int) -> Ruling:
    """Approvals missing at the deadline never advance the stage.

    The stage's on_timeout decides: roll back, or escalate (a human may still approve, or roll
    back).
    """
    approval = stage.approval
    assert approval is not None, f"stage {stage.name} needs no approval"
    reason = (
        f"stage {stage.name} got {approvals} of {approval.required} "
        f"approval(s) within {format_duration(approval.timeout)}"
    )
    if approval.on_timeout is MissingDataPolicy.ROLLBACK:
        return Ruling(Action.ROLLBACK, reason)
    return Ruling(Action.ESCALATE, f"{reason}; still waiting for approvals (or a rollback)")


def _no_evidence(verdict: TriggerVerdict) -> bool:
    """No data or a broken answer; a statistical test still deciding on real data is not that."""
    if verdict.awaiting_evidence:
        return False
    return verdict.outcome in (Outcome.INCONCLUSIVE, Outcome.ERROR)


def _count_failures(previous: dict[str, int], verdicts: list[TriggerVerdict]) -> dict[str, int]:
    counts = dict(previous)
    for verdict in verdicts:
        if verdict.outcome is Outcome.FAIL:
            counts[verdict.trigger] = counts.get(verdict.trigger, 0) + 1
        elif verdict.outcome is Outcome.PASS:
            counts[verdict.trigger] = 0
        else:
            counts.setdefault(verdict.trigger, 0)
    return counts


def _limit_duration(stage: Stage, elapsed: timedelta, assessment: Assessment) -> Assessment:
    if stage.max_duration is None or elapsed < stage.max_duration:
        return assessment
    rollback = stage.on_inconclusive is MissingDataPolicy.ROLLBACK
    return Assessment(
        Action.ROLLBACK if rollback else Action.ESCALATE,
        f"stage {stage.name} ran {format_duration(elapsed)}, past its max_duration "
        f"{format_duration(stage.max_duration)}, without earning its gate ({assessment.reason})",
        assessment.trigger_failures,
        assessment.no_evidence_streak,
    )
