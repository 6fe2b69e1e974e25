"""Following a rollout until its outcome is known: the engine of `watch` and `submit --wait`.

A CI job cannot read a live table; it reads lines and an exit code. So watching is split in two:
`EventTracker` turns successive status snapshots into events (phase, stage, trigger verdict,
approval asked, escalation, the outcome), each one line of plain text or one JSON object with
the same keys every time; `watch_rollout` polls the status, hands every snapshot to a live view
when there is one, and returns the exit code of runtime.outcomes as soon as the outcome is known
(or when the timeout expires).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.service import RPCError

from rollout_specs import parse_duration
from runtime.outcomes import ExitCode, outcome_of, outcome_on_timeout
from runtime.rollouts import describe_rollout, query_status
from workflows.messages import StatusResult
from workflows.state import AuditAction
from workflows.visibility import PHASE

__all__ = [
    "EVENT_KEYS",
    "EventTracker",
    "WatchEvent",
    "WatchResult",
    "json_line",
    "parse_timeout",
    "plain_line",
    "watch_rollout",
]

EVENT_KEYS = (
    "at",
    "event",
    "target",
    "phase",
    "stage",
    "trigger",
    "verdict",
    "message",
    "outcome",
    "exit_code",
)
"""The keys of every JSON line `watch -o json` prints, in this order, null where not relevant."""


@dataclass(frozen=True)
class WatchEvent:
    """One thing a watcher saw change; `event` says which kind.

    Kinds: `phase`, `stage`, `verdict` (a trigger's outcome changed), `approval_asked`,
    `escalation` (a human is needed, with why), `unavailable` (no worker answers the status
    query; the watch goes on), and the last one, `outcome` (with `outcome` and `exit_code`).
    """

    at: datetime
    event: str
    target: str
    message: str
    phase: str | None = None
    stage: str | None = None
    trigger: str | None = None
    verdict: str | None = None
    outcome: str | None = None
    exit_code: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The event as a JSON object with exactly EVENT_KEYS; `at` in UTC, ISO 8601."""
        values = {
            "at": _stamp(self.at),
            "event": self.event,
            "target": self.target,
            "phase": self.phase,
            "stage": self.stage,
            "trigger": self.trigger,
            "verdict": self.verdict,
            "message": self.message,
            "outcome": self.outcome,
            "exit_code": self.exit_code,
        }
        return {key: values[key] for key in EVENT_KEYS}


def json_line(event: WatchEvent) -> str:
    """One event as one line of JSON (non-ASCII kept; newlines inside values are escaped)."""
    return json.dumps(event.as_json(), ensure_ascii=False)


def plain_line(event: WatchEvent) -> str:
    """One event as one line of text: `<UTC time> <target> <event>: <message>`.

    Messages carry text from specs, routers and people; any control character (a newline in a
    reason) is escaped so that one event stays one line for `grep` and CI logs.
    """
    head = f"{_stamp(event.at)} {_one_line(event.target)} {event.event}"
    if event.exit_code is not None:
        head = f"{head} {event.outcome} (exit {event.exit_code})"
    return f"{head}: {_one_line(event.message)}"


def parse_timeout(text: str) -> float:
    """`--timeout` text (`90s`, `10m`, `1h30m`: the spec's duration notation) in seconds."""
    seconds = parse_duration(text).total_seconds()
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a timeout: use a positive duration, e.g. 30m")
    return seconds


@dataclass
class EventTracker:
    """Turns successive status snapshots of one rollout into the events that changed.

    Polling can miss a phase that lasted less than the interval; the approval request and each
    trigger's verdict are state, not moments, so they are never missed while they last.
    """

    target: str
    phase: str | None = None
    escalation: str | None = None
    stage: str | None = None
    approval_asked_at: datetime | None = None
    verdicts: dict[str, str] = field(default_factory=dict)
    unavailable: bool = False
    last: StatusResult | None = None

    def observe(self, status: StatusResult, at: datetime) -> list[WatchEvent]:
        """The events between the previous snapshot (none at first) and `status`."""
        state = status.state
        stages = status.spec.spec.course  # a holdback is its last stage, named `holdback`
        index = min(state.stage_index, len(stages) - 1)
        stage = stages[index].name
        phase = state.phase.value
        events: list[WatchEvent] = []

        def add(
            kind: str, message: str, trigger: str | None = None, verdict: str | None = None
        ) -> None:
            events.append(
                WatchEvent(
                    at=at,
                    event=kind,
                    target=self.target,
                    message=message,
                    phase=phase,
                    stage=stage,
                    trigger=trigger,
                    verdict=verdict,
                )
            )

        if phase != self.phase:
            was = f" (was {self.phase})" if self.phase else ""
            add("phase", f"{phase}{was}")
        if stage != self.stage:
            add("stage", f"{stage} ({index + 1}/{len(stages)})")
        check = state.last_check
        verdicts = [] if check is None else [*check.verdicts, *([check.gate] if check.gate else [])]
        for verdict in verdicts:
            outcome = verdict.outcome.value
            if self.verdicts.get(verdict.trigger) != outcome:
                self.verdicts[verdict.trigger] = outcome
                add(
                    "verdict",
                    f"{verdict.trigger} {outcome}: {verdict.detail}",
                    trigger=verdict.trigger,
                    verdict=outcome,
                )
        asked = state.approval_asked_at
        if asked is not None and asked != self.approval_asked_at:
            request = next(
                (
                    e.reason
                    for e in reversed(state.audit)
                    if e.action == AuditAction.APPROVAL_NEEDED
                ),
                "",
            )
            add("approval_asked", request or f"approval asked for stage {stage}")
        if state.escalation and state.escalation != self.escalation:
            add("escalation", state.escalation)
        self.phase, self.stage, self.escalation = phase, stage, state.escalation
        self.approval_asked_at, self.unavailable, self.last = asked, False, status
        return events

    def lost(self, at: datetime, why: str) -> list[WatchEvent]:
        """An `unavailable` event the first time the status query fails in a row."""
        if self.unavailable:
            return []
        self.unavailable = True
        return [
            WatchEvent(
                at=at,
                event="unavailable",
                target=self.target,
                message=f"{why}; still watching",
                phase=self.phase,
                stage=self.stage,
            )
        ]

    def ended(self, at: datetime, code: ExitCode, message: str) -> WatchEvent:
        """The last event: the outcome, its exit code and one sentence why."""
        return WatchEvent(
            at=at,
            event="outcome",
            target=self.target,
            message=message,
            phase=self.phase,
            stage=self.stage,
            outcome=code.label,
            exit_code=int(code),
        )


@dataclass(frozen=True)
class WatchResult:
    """How a watch ended: the exit code, the last event, the last status seen (if any)."""

    code: ExitCode
    final: WatchEvent
    status: StatusResult | None


async def watch_rollout(
    client: Client,
    target: str,
    *,
    emit: Callable[[WatchEvent], None],
    show: Callable[[StatusResult], None] | None = None,
    give_up_after: float | None = None,
    interval: float = 2.0,
    until_terminal: bool = False,
) -> WatchResult:
    """Poll the rollout of `target` until its outcome is known; emit each event as it is seen.

    The outcome is known at a terminal phase, or at an escalation unless `until_terminal` (see
    runtime.outcomes). A status query that fails (no worker, a worker restarting) is not an
    outcome: the server's description says whether the workflow has closed meanwhile, and the
    watch goes on otherwise. `give_up_after` (seconds, `--timeout`) bounds the whole watch,
    queries included.
    """
    tracker = EventTracker(target)
    limit = asyncio.timeout(give_up_after)
    try:
        async with limit:
            return await _follow(client, tracker, emit, show, interval, until_terminal)
    except TimeoutError:
        if not limit.expired():
            raise
    last = tracker.last
    code = outcome_on_timeout(tracker.phase, escalation=tracker.escalation)
    seen = f"in phase {tracker.phase}" if tracker.phase else "before any status was read"
    why = f"; {tracker.escalation}" if code is ExitCode.NEEDS_HUMAN and tracker.escalation else ""
    final = tracker.ended(_now(), code, f"timed out after {give_up_after:g}s {seen}{why}")
    emit(final)
    return WatchResult(code, final, last)


async def _follow(
    client: Client,
    tracker: EventTracker,
    emit: Callable[[WatchEvent], None],
    show: Callable[[StatusResult], None] | None,
    interval: float,
    until_terminal: bool,
) -> WatchResult:
    while True:
        try:
            status = await query_status(client, tracker.target)
        except (RPCError, WorkflowQueryFailedError) as exc:
            closed = await _closed_outcome(client, tracker, exc, emit)
            if closed is not None:
                emit(closed.final)
                return closed
            await asyncio.sleep(interval)
            continue
        for event in tracker.observe(status, _now()):
            emit(event)
        if show is not None:
            show(status)
        state = status.state
        code = outcome_of(
            state.phase.value, escalation=state.escalation, until_terminal=until_terminal
        )
        if code is not None:
            if code is ExitCode.NEEDS_HUMAN:
                message = f"a human is needed: {state.escalation or state.phase.value}"
            else:
                message = f"rollout ended: {state.phase.value}: {state.outcome}"
            final = tracker.ended(_now(), code, message)
            emit(final)
            return WatchResult(code, final, status)
        await asyncio.sleep(interval)


async def _closed_outcome(
    client: Client,
    tracker: EventTracker,
    exc: RPCError | WorkflowQueryFailedError,
    emit: Callable[[WatchEvent], None],
) -> WatchResult | None:
    """When the status query failed: the outcome if the workflow has closed, else None.

    A closed workflow's phase is still in its search attributes, which need no worker; a running
    one is reported `unavailable` once, and watched on.
    """
    description = await describe_rollout(client, tracker.target)
    if description.status in (None, WorkflowExecutionStatus.RUNNING):
        for event in tracker.lost(_now(), f"no worker answered the status query ({exc})"):
            emit(event)
        return None
    phase = description.typed_search_attributes.get(PHASE)
    code = outcome_of(phase, until_terminal=True) if phase else None
    tracker.phase = phase or tracker.phase
    if code is None:
        status = description.status.name.lower()
        final = tracker.ended(
            _now(),
            ExitCode.ERROR,
            f"the rollout's workflow is {status} in phase {phase or '?'}, without an outcome",
        )
        return WatchResult(ExitCode.ERROR, final, tracker.last)
    final = tracker.ended(_now(), code, f"rollout ended: {phase} (no worker answered)")
    return WatchResult(code, final, tracker.last)


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _one_line(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
