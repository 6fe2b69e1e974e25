"""`lockgate backtest`: would this spec's triggers have caught what monitoring recorded?

A backtest replays a rollout that never ran. It models the spec's stages as if the rollout had
started at the window's start, and at every check time (every `check_interval`) it asks
monitoring what a check run at that instant would have been answered, judges the answers with
the worker's own judges (activities.checks) and decides with the workflow's own rules
(workflows.progression.assess). No router is asked or changed: the recorded traffic is whatever
really ran, and the stages only set what each check asks (its triggers, windows and gate).

Monitoring must be able to answer for a past instant: Prometheus can (an instant query with
`time=T` is what a rule evaluated at T reads; sampling `query_range` at the check times gives the
same values), so a provider with an `at(time)` view is backtestable and any other is refused.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum

import httpx
from pydantic import BaseModel, ConfigDict, Field

from activities.checks import _Judge
from activities.contracts import CheckInput, CheckResult, Outcome, ReviewCounts, TriggerVerdict
from activities.errors import ProviderUnavailable
from activities.providers.base import MetricProvider
from activities.registry import build_provider
from rollout_specs import RolloutSpec, Stage, format_duration, parse_duration
from rollout_specs.models import ReviewTrigger, RollbackTrigger, StageMode
from runtime.outcomes import ExitCode
from workflows.checking import check_input
from workflows.progression import Action, assess

__all__ = [
    "MAX_CHECKS",
    "Backtest",
    "BacktestError",
    "BacktestRefused",
    "Ending",
    "MonitoringUnreachable",
    "ReplayedCheck",
    "StageSpan",
    "TimelineRow",
    "backtest",
    "backtest_spec",
    "parse_instant",
    "replay_check",
    "timeline",
]

MAX_CHECKS = 50_000
"""The most checks one backtest replays; a longer window is refused with the arithmetic."""

ProviderAt = Callable[[datetime], MetricProvider]
"""Monitoring as it would have answered at an instant."""


class BacktestError(Exception):
    """The backtest cannot run as asked (a bad window, too many checks); the message says why."""


class BacktestRefused(BacktestError):
    """The spec's monitoring cannot answer for past instants, so nothing can be replayed."""


class MonitoringUnreachable(BacktestError):
    """Monitoring did not answer at all: a replay would only be a timeline of holds."""


class Ending(StrEnum):
    """How the replayed rollout ends: what lockgate would have done by the window's end."""

    ROLLED_BACK = "rolled_back"
    COMPLETED = "completed"
    """Every stage earned its gate: the candidate would have been promoted."""
    RUNNING = "running"
    """The window ended while a stage was still baking on passing evidence."""
    HELD = "held"
    """The window ended while checks found no evidence."""
    ESCALATED = "escalated"
    """The window ended with a human needed (missing data, max_duration)."""

    @property
    def exit_code(self) -> ExitCode:
        """The code `lockgate backtest` exits with: docs/ci.md's for the same outcome.

        Held at the window's end is 4, as `watch` is when its timeout expires while held.
        """
        return _EXIT_CODES[self]


_EXIT_CODES = {
    Ending.ROLLED_BACK: ExitCode.ROLLED_BACK,
    Ending.COMPLETED: ExitCode.COMPLETED,
    Ending.RUNNING: ExitCode.COMPLETED,
    Ending.HELD: ExitCode.NEEDS_HUMAN,
    Ending.ESCALATED: ExitCode.NEEDS_HUMAN,
}


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReplayedCheck(_Record):
    """One check as the rollout would have run it: its verdicts and the decision they led to."""

    at: datetime
    stage: str
    number: int = Field(ge=1)
    """The check's number within its stage (1 is the first, one check_interval in)."""
    stage_elapsed: float
    """Seconds the stage had run at this check."""
    result: CheckResult
    action: Action
    reason: str


class StageSpan(_Record):
    """When a modelled stage ran, and how it ended (or that it never ran)."""

    name: str
    mode: StageMode
    percent: float | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    checks: int = 0
    outcome: str
    """advanced, rolled_back, running (at the window's end), skipped (offline) or not_reached."""


class Backtest(_Record):
    """The replay of one spec over one window: every check, every stage, and the decision."""

    rollout: str
    target: str
    start: datetime
    end: datetime
    check_interval: float
    """Seconds between checks (the spec's check_interval)."""
    ending: Ending
    decided_at: datetime | None = None
    """When the deciding check ran (the rollback, the last advance); None if still running."""
    decision: str
    """One sentence: what lockgate would have done, when, and why."""
    tripped: str | None = None
    """The trigger whose failures rolled back, when one did."""
    stages: list[StageSpan]
    checks: list[ReplayedCheck]
    notes: list[str] = Field(default_factory=list)
    """What the replay could not model as it happened (offline stages, reviews, approvals)."""

    @property
    def exit_code(self) -> ExitCode:
        """The ending's exit code (0 completed or still passing, 3 rolled back, 4 a human)."""
        return self.ending.exit_code


class TimelineRow(_Record):
    """Consecutive checks of one stage that decided alike on alike verdicts, shown as one row."""

    first: ReplayedCheck
    last: ReplayedCheck

    @property
    def count(self) -> int:
        """How many checks the row stands for."""
        return self.last.number - self.first.number + 1

    @property
    def verdicts(self) -> str:
        """Each trigger's (and the gate's) outcome, in the spec's order: `name outcome, ...`."""
        result = self.last.result
        shown = [*result.verdicts, *([result.gate] if result.gate is not None else [])]
        return ", ".join(f"{v.trigger} {v.outcome.value}" for v in shown) or "none judged"


def timeline(result: Backtest) -> list[TimelineRow]:
    """The checks folded for reading: a row per run of checks with the same verdicts and action.

    A long bake is one row instead of hundreds; every change of verdict or decision starts a
    new row, and the deciding check is always a row of its own.
    """
    rows: list[TimelineRow] = []
    for check in result.checks:
        previous = rows[-1] if rows else None
        if previous is not None and _alike(previous.last, check) and not _decisive(check):
            rows[-1] = previous.model_copy(update={"last": check})
        else:
            rows.append(TimelineRow(first=check, last=check))
    return rows


def _alike(one: ReplayedCheck, other: ReplayedCheck) -> bool:
    def outcomes(check: ReplayedCheck) -> list[tuple[str, Outcome]]:
        gate = [check.result.gate] if check.result.gate is not None else []
        return [(v.trigger, v.outcome) for v in [*check.result.verdicts, *gate]]

    return (
        one.stage == other.stage and one.action is other.action and outcomes(one) == outcomes(other)
    )


def _decisive(check: ReplayedCheck) -> bool:
    return check.action in (Action.ADVANCE, Action.ROLLBACK)


def parse_instant(text: str, now: datetime) -> datetime:
    """`--from`/`--to`: `now`, a duration ago (`-2h`, `-30m`), or an RFC 3339 time with a zone.

    Raises ValueError saying how to write it.
    """
    stripped = text.strip()
    if stripped.lower() == "now":
        return now
    if stripped.startswith("-"):
        try:
            return now - parse_duration(stripped[1:])
        except ValueError as exc:
            raise ValueError(
                f"{text!r}: a relative time is a duration ago, e.g. -2h ({exc})"
            ) from exc
    try:
        moment = datetime.fromisoformat(re.sub(r"[zZ]$", "+00:00", stripped))
    except ValueError as exc:
        raise ValueError(
            f"{text!r} is not a time: use RFC 3339 (2026-11-30T22:00:00Z), now, or a duration "
            "ago such as -2h"
        ) from exc
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{text!r} has no timezone: add Z (UTC) or an offset such as +01:00")
    return moment.astimezone(UTC)


def replayable(triggers: Sequence[RollbackTrigger]) -> list[RollbackTrigger]:
    """The triggers monitoring's records can judge: review triggers read the audit, not data."""
    return [trigger for trigger in triggers if not isinstance(trigger, ReviewTrigger)]


def replay_check(
    spec: RolloutSpec, stage: Stage, at: datetime, stage_start: datetime, rollout_start: datetime
) -> CheckInput:
    """The check the workflow would have sent to the worker for `stage` at `at`.

    The same rule as the workflow's own (workflows.checking), with the triggers monitoring's
    records can judge and no reviewers' verdicts.
    """
    percent = (stage.percent or 0.0) if stage.mode is StageMode.SPLIT else 0.0
    return check_input(
        spec,
        stage,
        replayable(spec.spec.triggers_for(stage)),
        at=at,
        stage_start=stage_start,
        rollout_start=rollout_start,
        percent=percent,
        reviews=ReviewCounts(),
    )


async def _judged(judging: asyncio.Task[TriggerVerdict], name: str) -> TriggerVerdict:
    """The job's verdict; a judge that crashed is an `error`, as in the worker's check."""
    try:
        return await judging
    except Exception as exc:  # a crashed judge is a verdict, never a lost check
        return TriggerVerdict(
            trigger=name,
            outcome=Outcome.ERROR,
            detail=f"the judge failed ({type(exc).__name__}: {exc}); this check cannot tell",
        )


async def run_check(provider: MetricProvider, check: CheckInput, at: datetime) -> CheckResult:
    """Judge every trigger and the gate of `check` with the worker's judges, all at once."""
    judge = _Judge(provider, check)
    jobs = [asyncio.ensure_future(judge.trigger(trigger)) for trigger in check.triggers]
    gate_job = asyncio.ensure_future(judge.gate(check.gate)) if check.gate is not None else None
    verdicts = [
        await _judged(job, trigger.name) for job, trigger in zip(jobs, check.triggers, strict=True)
    ]
    gate = None
    if gate_job is not None and check.gate is not None:
        gate = await _judged(gate_job, f"advance_when:{check.gate.non_inferior}")
    return CheckResult(checked_at=at, verdicts=verdicts, gate=gate)


def _notes(spec: RolloutSpec, first: int) -> list[str]:
    body = spec.spec
    notes = [
        f"stage {stage.name} is an offline evaluation (once, on logged decisions, not on "
        "monitoring): skipped, as if its gate had passed"
        for stage in body.stages[first:]
        if stage.mode is StageMode.OFFLINE
    ]
    if first:
        skipped = ", ".join(stage.name for stage in body.stages[:first])
        notes.append(f"started at stage {body.stages[first].name}: {skipped} not modelled")
    reviews = [t.name for t in body.rollback_triggers if isinstance(t, ReviewTrigger)]
    if reviews:
        notes.append(
            f"review trigger(s) {', '.join(reviews)} not replayable: reviewers' verdicts are in "
            "a rollout's audit, not in monitoring"
        )
    if any(s.approval is not None for s in body.stages[first:]):
        notes.append("approvals are taken as given at once: a stage starts when the last ends")
    if getattr(body, "holdback", None) is not None:
        notes.append("the holdback after promotion is not modelled: the replay ends at promotion")
    if any(s.min_reviews for s in body.stages[first:]):
        notes.append("min_reviews taken as met: reviews are not recorded in monitoring")
    return notes


def _first_stage(spec: RolloutSpec, name: str | None) -> int:
    if name is None:
        return 0
    names = [stage.name for stage in spec.spec.stages]
    if name not in names:
        raise BacktestError(f"the spec has no stage {name!r}; its stages are {', '.join(names)}")
    return names.index(name)


def _validated(spec: RolloutSpec, start: datetime, end: datetime, first_stage: str | None) -> int:
    """The index of the first modelled stage, once the window is known to be replayable."""
    first = _first_stage(spec, first_stage)
    interval = spec.spec.check_interval
    if end <= start:
        raise BacktestError(
            f"the window is empty: it ends ({end:%Y-%m-%dT%H:%M:%SZ}) before it starts "
            f"({start:%Y-%m-%dT%H:%M:%SZ})"
        )
    most = math.floor((end - start) / interval)
    if most > MAX_CHECKS:
        raise BacktestError(
            f"{format_duration(end - start)} at a check every {format_duration(interval)} is "
            f"{most} checks, more than {MAX_CHECKS}; backtest a shorter window"
        )
    return first


async def backtest(
    spec: RolloutSpec,
    provider_at: ProviderAt,
    start: datetime,
    end: datetime,
    *,
    first_stage: str | None = None,
) -> Backtest:
    """Replay the rollout of `spec` from `start` to `end` against monitoring's records.

    The first live stage starts at `start` (offline stages are skipped; `first_stage` starts
    the model at a later stage). Each stage's checks come every check_interval after it
    started, each judged as of its instant and assessed by the workflow's rules; an advance
    starts the next stage at that instant. The replay stops at the first rollback, when the
    last stage advances, or at `end`.

    Raises:
        BacktestError: An empty window, one needing more than MAX_CHECKS checks, or an
            unknown `first_stage`.
    """
    body = spec.spec
    interval = body.check_interval
    first = _validated(spec, start, end, first_stage)
    spans: dict[str, StageSpan] = {}
    checks: list[ReplayedCheck] = []
    stage_start, last = start, None
    ending, decided_at, tripped = Ending.RUNNING, None, None
    decision = ""
    for stage in body.stages[first:]:
        if stage.mode is StageMode.OFFLINE:
            spans[stage.name] = _span(stage, "skipped")
            continue
        failures: dict[str, int] = {}
        streak, number, at = 0, 0, stage_start + interval
        outcome = "running"
        while at <= end:
            number += 1
            check = replay_check(spec, stage, at, stage_start, start)
            result = await run_check(provider_at(at), check, at)
            reviews = stage.min_reviews or 0  # not in monitoring: taken as met (a note says so)
            assessment = assess(body, stage, result, failures, streak, at - stage_start, reviews)
            failures, streak = assessment.trigger_failures, assessment.no_evidence_streak
            last = ReplayedCheck(
                at=at, stage=stage.name, number=number,
                stage_elapsed=(at - stage_start).total_seconds(), result=result,
                action=assessment.action, reason=assessment.reason,
            )  # fmt: skip
            checks.append(last)
            if assessment.action is Action.ROLLBACK:
                outcome, ending, decided_at = "rolled_back", Ending.ROLLED_BACK, at
                tripped = assessment.tripped
                by = f"trigger {tripped}" if tripped else "lockgate"
                decision = (
                    f"rollback by {by} at {at:%Y-%m-%dT%H:%M:%SZ}, check {number} of stage "
                    f"{stage.name} ({format_duration(at - start)} in): {assessment.reason}"
                )
                break
            if assessment.action is Action.ADVANCE:
                outcome, decided_at = "advanced", at
                break
            at += interval
        spans[stage.name] = _span(stage, outcome, stage_start, at if outcome != "running" else end)
        spans[stage.name] = spans[stage.name].model_copy(update={"checks": number})
        if outcome != "advanced":
            break
        stage_start = at
    else:
        ending = Ending.COMPLETED
        decision = (
            f"promotion at {decided_at:%Y-%m-%dT%H:%M:%SZ}: every stage earned its gate "
            f"({format_duration(decided_at - start)} in)"
            if decided_at is not None
            else "promotion: no stage to judge"
        )
    if ending is Ending.RUNNING:
        ending, decision = _unfinished(last, end)
    stages = [spans.get(stage.name) or _span(stage, "not_reached") for stage in body.stages]
    return Backtest(
        rollout=spec.metadata.name,
        target=body.target,
        start=start,
        end=end,
        check_interval=interval.total_seconds(),
        ending=ending,
        decided_at=decided_at if ending in (Ending.ROLLED_BACK, Ending.COMPLETED) else None,
        decision=decision,
        tripped=tripped,
        stages=stages,
        checks=checks,
        notes=_notes(spec, first),
    )


def _unfinished(last: ReplayedCheck | None, end: datetime) -> tuple[Ending, str]:
    """The ending when the window closes first, from the last check's decision."""
    when = f"{end:%Y-%m-%dT%H:%M:%SZ}"
    if last is None:
        return Ending.RUNNING, f"no check fell in the window before {when}"
    where = f"stage {last.stage} after {last.number} check(s)"
    if last.action is Action.ESCALATE:
        return Ending.ESCALATED, f"escalated at {when}, {where}: {last.reason}"
    if last.action is Action.HOLD:
        return Ending.HELD, f"held at {when}, {where}: {last.reason}"
    return Ending.RUNNING, f"no rollback by {when}; {where} was baking: {last.reason}"


def _span(
    stage: Stage,
    outcome: str,
    started_at: datetime | None = None,
    ended_at: datetime | None = None,
) -> StageSpan:
    return StageSpan(
        name=stage.name, mode=stage.mode, percent=stage.percent,
        started_at=started_at, ended_at=ended_at, outcome=outcome,
    )  # fmt: skip


def prometheus_at(spec: RolloutSpec, client: httpx.AsyncClient) -> ProviderAt:
    """The spec's monitoring as of any instant, or BacktestRefused if it cannot look back.

    The provider is built as the worker builds it (so auth and timeouts are the spec's); one
    with an `at(time)` view (Prometheus) can replay, any other answers only for now.
    """
    monitoring = spec.spec.monitoring
    provider = build_provider(monitoring, client)
    view = getattr(provider, "at", None)
    if not callable(view):
        raise BacktestRefused(
            f"the {monitoring.type} monitoring backend answers only for now: it cannot say what "
            "a check would have read in the past, so this spec cannot be backtested (use "
            "monitoring that keeps history and evaluates at a past instant, e.g. prometheus)"
        )

    def at(moment: datetime) -> MetricProvider:
        answered: MetricProvider = view(moment)
        return answered

    return at


async def backtest_spec(
    spec: RolloutSpec,
    start: datetime,
    end: datetime,
    *,
    first_stage: str | None = None,
    now: datetime | None = None,
) -> Backtest:
    """Backtest `spec` against its own monitoring; the window is cut at `now` (no future data).

    Raises:
        BacktestRefused: The monitoring backend cannot answer for past instants.
        BacktestError: The window is empty or too long, or `first_stage` is unknown.
    """
    end = min(end, now or datetime.now(UTC))
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(10.0, connect=5.0), follow_redirects=False
    ) as client:
        provider_at = prometheus_at(spec, client)
        _validated(spec, start, end, first_stage)
        try:  # one trivial query first: an unreachable monitoring is no timeline of holds
            await provider_at(start).query("vector(1)")
        except ProviderUnavailable as exc:
            raise MonitoringUnreachable(f"cannot backtest: {exc}") from exc
        return await backtest(spec, provider_at, start, end, first_stage=first_stage)
