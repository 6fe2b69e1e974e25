"""The progression rules: given a check's verdicts, what should the stage do next?

Pure functions over plain values, no Temporal: they are the small, stable rules of the rollout
(failure limits, hold on missing data, the bake), unit-tested as tables. The statistics that
produce the verdicts live in activities, so they can change without touching these rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from activities.contracts import CheckResult, Outcome, TriggerVerdict
from rollout_specs import MissingDataPolicy, RolloutSpecBody, Stage, format_duration

__all__ = ["Action", "Assessment", "assess"]


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
) -> Assessment:
    """Apply the rules in order: a tripped trigger, missing evidence, the bake, max_duration."""
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
