"""A rollout's past, read from Temporal: its audit trail and every check it ran.

The workflow's state carries the audit trail across continue-as-new but keeps only its last
check, so the checks come from the workflow history, where every `run_checks` result (and every
offline evaluation's verdict) is recorded: an activity's in its completion event, a check run
inside its workflow task (a local activity) in its marker. A long rollout's history is split
over several runs, and `read_runs` follows the chain back to the first. The state itself comes
from the `status` query, which needs a running worker (workers answer queries). Without one, the
state is rebuilt from the history: the state carried into the latest run, plus the human
commands since, and the record's `notes` say what that cannot show.

Errors: `RolloutNotFound` (from runtime.rollouts) when the target has no rollout;
`HistoryUnreadable` when a recorded payload does not decode into lockgate's models.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from temporalio.api.common.v1 import Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowQueryFailedError
from temporalio.converter import DataConverter
from temporalio.service import RPCError

from activities.contracts import (
    OFFLINE_EVAL,
    RUN_CHECKS,
    CheckInput,
    CheckResult,
    OfflineEvalInput,
    Outcome,
    TriggerVerdict,
)
from rollout_specs import RolloutSpec, workflow_id_for
from runtime.rollouts import describe_rollout, query_status
from workflows.commands import PENDING_REVIEWS, Command
from workflows.messages import RolloutInput, RolloutResult, StatusResult
from workflows.state import AuditAction, AuditEntry, Phase, RolloutState
from workflows.visibility import PHASE

__all__ = [
    "AuditTrail",
    "HistoryUnreadable",
    "RecordedCheck",
    "RolloutRecord",
    "RunHistory",
    "fetch_audit_trail",
    "fetch_record",
    "read_run",
    "read_runs",
]

M = TypeVar("M", bound=BaseModel)
LOCAL_ACTIVITY_MARKER = "core_local_activity"
"""The marker the Temporal SDK records a local activity under: details `data` (JSON with its
`activity_type`) and, when it succeeded, `result` (the payloads it returned)."""
LOCAL_ACTIVITY_DATA = "data"
LOCAL_ACTIVITY_RESULT = "result"


class HistoryUnreadable(Exception):
    """A payload in the workflow history does not decode into lockgate's models.

    Raised with the run and event that failed, so a report never silently drops checks.
    """


class HistoryModel(BaseModel):
    """Base of what this module returns: strict and immutable once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RecordedCheck(HistoryModel):
    """One check as the workflow saw it, with the run and stage it belongs to.

    A check is a `run_checks` result (of an activity or of a local activity), or an offline
    stage's verdict (which the workflow also counts as a check).
    A check's stage is recorded only in its input (the `stage` template variable), and the
    report needs it to draw the stage boundaries next to the checks.
    """

    run_id: str
    stage: str
    result: CheckResult
    failed: bool = False
    """The activity itself failed: the workflow judged every trigger `error`, and so does this."""


class AuditTrail(HistoryModel):
    """The audit trail of a rollout's latest run chain, and how complete it is."""

    workflow_id: str
    run_id: str
    """The latest run of the workflow id."""
    phase: str | None
    outcome: str | None
    complete: bool
    """True when it came from the workflow's own state (the `status` query)."""
    notes: list[str]
    """What a rebuilt trail cannot show, and why; empty when complete."""
    entries: list[AuditEntry]


class RolloutRecord(HistoryModel):
    """Everything a report shows: the spec, the state, and every check of every run."""

    workflow_id: str
    run_ids: list[str]
    """Every run of the rollout, oldest first (more than one after continue-as-new)."""
    status: str
    """Temporal's status of the latest run: running, completed, terminated..."""
    closed_at: datetime | None
    spec: RolloutSpec
    state: RolloutState
    complete: bool
    """True when the state came from the `status` query, False when rebuilt from history."""
    notes: list[str]
    checks: list[RecordedCheck]


class RunHistory(HistoryModel):
    """What one run's history says: how it started, its checks, its human commands, its end."""

    run_id: str
    started_at: datetime
    start: RolloutInput
    """The run's input; after continue-as-new it carries the state so far."""
    previous_run_id: str | None
    """The run this one continued, if it is a continue-as-new run."""
    checks: list[RecordedCheck]
    commands: list[AuditEntry]
    """Accepted human commands (workflow updates), as audit entries."""
    result: RolloutResult | None
    """How the rollout ended, when this run completed it."""


async def fetch_audit_trail(client: Client, target: str) -> AuditTrail:
    """The audit trail of the latest rollout of `target`, from its state or rebuilt from history.

    Raises RolloutNotFound when the target has no rollout.
    """
    description = await describe_rollout(client, target)
    status, problem = await _ask_workflow(client, target)
    notes: list[str] = []
    if status is not None:
        state = status.state
    else:
        handle = client.get_workflow_handle(description.id, run_id=description.run_id)
        latest = await read_run(
            description.run_id, handle.fetch_history_events(), client.data_converter
        )
        state, notes = _rebuilt_state(description, latest, problem)
    return AuditTrail(
        workflow_id=description.id,
        run_id=description.run_id,
        phase=state.phase.value,
        outcome=state.outcome,
        complete=status is not None,
        notes=notes,
        entries=state.audit,
    )


async def fetch_record(client: Client, target: str) -> RolloutRecord:
    """Everything about the latest rollout of `target`: spec, state and every check it ran.

    Raises RolloutNotFound when the target has no rollout.
    """
    description = await describe_rollout(client, target)
    runs = await read_runs(client, description.id, description.run_id)
    status, problem = await _ask_workflow(client, target)
    notes: list[str] = []
    if status is not None:
        spec, state = status.spec, status.state
    else:
        spec = runs[-1].start.spec
        state, notes = _rebuilt_state(description, runs[-1], problem)
        state.checks_total = sum(len(run.checks) for run in runs)
    return RolloutRecord(
        workflow_id=description.id,
        run_ids=[run.run_id for run in runs],
        status=description.status.name.lower() if description.status else "unknown",
        closed_at=description.close_time,
        spec=spec,
        state=state,
        complete=status is not None,
        notes=notes,
        checks=[check for run in runs for check in run.checks],
    )


async def read_runs(client: Client, workflow_id: str, latest_run_id: str) -> list[RunHistory]:
    """Every run of a rollout, oldest first, following continue-as-new back from the latest.

    Following the chain (each run names the one it continued) needs no visibility query, so it
    is exact at once and never mixes in an earlier rollout of the same target.
    """
    runs: list[RunHistory] = []
    seen: set[str] = set()
    run_id: str | None = latest_run_id
    while run_id is not None and run_id not in seen:
        seen.add(run_id)
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        run = await read_run(run_id, handle.fetch_history_events(), client.data_converter)
        runs.append(run)
        run_id = run.previous_run_id
    runs.reverse()
    return runs


async def read_run(
    run_id: str, events: AsyncIterable[HistoryEvent], converter: DataConverter
) -> RunHistory:
    """Read one run's history events into its start, checks, commands and result.

    Takes the events rather than a client so recorded histories (tests/histories) read the same.
    """
    return await _RunReader(run_id, converter).read(events)


@dataclass(frozen=True)
class _Pending:
    """A judging activity scheduled and not yet finished: which, for what stage and triggers."""

    activity: str
    stage: str
    triggers: tuple[str, ...]


class _RunReader:
    """Walks one run's events in order; remembers the checks scheduled and the current stage."""

    def __init__(self, run_id: str, converter: DataConverter) -> None:
        self._run_id = run_id
        self._converter = converter
        self._event: HistoryEvent | None = None
        self._start: RolloutInput | None = None
        self._started_at: datetime | None = None
        self._previous: str | None = None
        self._stage = "?"
        self._scheduled: dict[int, _Pending] = {}
        self._checks: list[RecordedCheck] = []
        self._commands: list[AuditEntry] = []
        self._awaiting_outcome: dict[int, AuditEntry] = {}
        """Accepted commands that count only once they succeed, by their accepted event's id."""
        self._result: RolloutResult | None = None
        self._handlers: dict[EventType.ValueType, Callable[[HistoryEvent], Awaitable[None]]] = {
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: self._started,
            EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: self._scheduled_activity,
            EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: self._completed_activity,
            EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: self._failed_activity,
            EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: self._failed_activity,
            EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED: self._cancelled_activity,
            EventType.EVENT_TYPE_MARKER_RECORDED: self._marker,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: self._update,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED: self._update_completed,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: self._completed,
        }

    async def read(self, events: AsyncIterable[HistoryEvent]) -> RunHistory:
        async for event in events:
            handler = self._handlers.get(event.event_type)
            if handler is not None:
                self._event = event
                await handler(event)
        if self._start is None or self._started_at is None:
            raise HistoryUnreadable(f"run {self._run_id} has no start event in its history")
        return RunHistory(
            run_id=self._run_id,
            started_at=self._started_at,
            start=self._start,
            previous_run_id=self._previous,
            checks=self._checks,
            commands=self._commands,
            result=self._result,
        )

    async def _decode(self, payloads: Payloads, model: type[M]) -> M:
        """Decode the single payload of an event with the client's converter, or explain."""
        event = self._event
        where = f"run {self._run_id}, event {event.event_id if event else '?'}"
        try:
            values = await self._converter.decode_wrapper(payloads, [model])
        except (ValidationError, ValueError, TypeError) as exc:
            raise HistoryUnreadable(f"{where}: not a {model.__name__}: {exc}") from exc
        if not values or not isinstance(values[0], model):
            raise HistoryUnreadable(f"{where}: expected one {model.__name__}")
        return values[0]

    async def _started(self, event: HistoryEvent) -> None:
        attributes = event.workflow_execution_started_event_attributes
        start = await self._decode(attributes.input, RolloutInput)
        self._start = start
        self._started_at = _time(event)
        self._previous = attributes.continued_execution_run_id or None
        stages = start.spec.spec.course
        index = start.state.stage_index if start.state else 0
        self._stage = stages[min(index, len(stages) - 1)].name

    async def _scheduled_activity(self, event: HistoryEvent) -> None:
        attributes = event.activity_task_scheduled_event_attributes
        name = attributes.activity_type.name
        if name == RUN_CHECKS:
            check = await self._decode(attributes.input, CheckInput)
            self._stage = check.variables.get("stage", self._stage)
            triggers = tuple(t.name for t in check.triggers)
        elif name == OFFLINE_EVAL:
            offline = await self._decode(attributes.input, OfflineEvalInput)
            self._stage, triggers = offline.stage, (OFFLINE_EVAL,)
        else:
            return
        self._scheduled[event.event_id] = _Pending(name, self._stage, triggers)

    async def _completed_activity(self, event: HistoryEvent) -> None:
        attributes = event.activity_task_completed_event_attributes
        pending = self._scheduled.pop(attributes.scheduled_event_id, None)
        if pending is None:
            return
        if pending.activity == RUN_CHECKS:
            result = await self._decode(attributes.result, CheckResult)
        else:  # an offline evaluation answers one verdict; the workflow keeps it as a check
            verdict = await self._decode(attributes.result, TriggerVerdict)
            result = CheckResult(checked_at=_time(event), verdicts=[verdict])
        self._checks.append(RecordedCheck(run_id=self._run_id, stage=pending.stage, result=result))

    async def _marker(self, event: HistoryEvent) -> None:
        """A check run inside its workflow task: its result is in the marker, its input is not.

        A failed one is no check: the workflow ran the check again as an activity, read above.
        """
        attributes = event.marker_recorded_event_attributes
        if attributes.marker_name != LOCAL_ACTIVITY_MARKER or attributes.HasField("failure"):
            return
        data = attributes.details.get(LOCAL_ACTIVITY_DATA)
        if data is None or not data.payloads:
            return
        try:
            activity_type = json.loads(data.payloads[0].data).get("activity_type")
        except (ValueError, AttributeError):
            activity_type = None
        if activity_type != RUN_CHECKS or LOCAL_ACTIVITY_RESULT not in attributes.details:
            return
        result = await self._decode(attributes.details[LOCAL_ACTIVITY_RESULT], CheckResult)
        self._stage = result.stage or self._stage
        self._checks.append(RecordedCheck(run_id=self._run_id, stage=self._stage, result=result))

    async def _cancelled_activity(self, event: HistoryEvent) -> None:
        """A check the workflow cancelled (a rollback, a promotion) is no check.

        The activity may still answer, but the workflow never read that answer.
        """
        scheduled = event.activity_task_cancel_requested_event_attributes.scheduled_event_id
        self._scheduled.pop(scheduled, None)

    async def _failed_activity(self, event: HistoryEvent) -> None:
        """A check that could not run: every trigger judged `error`, as the workflow does."""
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            attributes = event.activity_task_failed_event_attributes
            failure, scheduled = attributes.failure, attributes.scheduled_event_id
        else:
            timed_out = event.activity_task_timed_out_event_attributes
            failure, scheduled = timed_out.failure, timed_out.scheduled_event_id
        pending = self._scheduled.pop(scheduled, None)
        if pending is None:
            return
        error: BaseException = await self._converter.decode_failure(failure)
        while error.__cause__ is not None:
            error = error.__cause__
        what = "check" if pending.activity == RUN_CHECKS else "offline evaluation"
        detail = f"the {what} could not run: {error}"
        verdicts = [
            TriggerVerdict(trigger=name, outcome=Outcome.ERROR, detail=detail)
            for name in pending.triggers
        ]
        result = CheckResult(checked_at=_time(event), verdicts=verdicts)
        self._checks.append(
            RecordedCheck(run_id=self._run_id, stage=pending.stage, result=result, failed=True)
        )

    async def _update(self, event: HistoryEvent) -> None:
        """A human command the workflow accepted (its validator passed) becomes an audit entry.

        Listing the proposals awaiting review changes nothing and is no command; a review
        counts only once the router took it (its update completed without failure).
        """
        request = event.workflow_execution_update_accepted_event_attributes.accepted_request
        name = request.input.name
        if name == PENDING_REVIEWS:
            return
        # Untyped on purpose: every command carries actor and reason, whatever else its input has.
        args = await self._converter.decode_wrapper(request.input.args)
        command = args[0] if args and isinstance(args[0], dict) else {}
        reason = str(command.get("reason") or "")
        if name == Command.REVIEW:
            said = f": {reason}" if reason else ""
            reason = f"{command.get('verdict')} proposal {command.get('proposal_id')}{said}"
        entry = AuditEntry(
            at=_time(event),
            actor=str(command.get("actor") or "?"),
            action=name,
            reason=reason,
            stage=self._stage,
        )
        if name == Command.REVIEW:
            self._awaiting_outcome[event.event_id] = entry
        else:
            self._commands.append(entry)

    async def _update_completed(self, event: HistoryEvent) -> None:
        attributes = event.workflow_execution_update_completed_event_attributes
        entry = self._awaiting_outcome.pop(attributes.accepted_event_id, None)
        if entry is not None and attributes.outcome.HasField("success"):
            self._commands.append(entry)

    async def _completed(self, event: HistoryEvent) -> None:
        attributes = event.workflow_execution_completed_event_attributes
        result = await self._decode(attributes.result, RolloutResult)
        self._result = result


def _time(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime(tzinfo=UTC)


async def _ask_workflow(client: Client, target: str) -> tuple[StatusResult | None, str]:
    """The status query's answer, or None and why there is none (no worker answered)."""
    try:
        return await query_status(client, target), ""
    except (RPCError, WorkflowQueryFailedError) as exc:
        return None, str(exc) or type(exc).__name__


def _rebuilt_state(
    description: WorkflowExecutionDescription, latest: RunHistory, problem: str
) -> tuple[RolloutState, list[str]]:
    """The state as far as the history tells it without a worker, and what it leaves out."""
    start = latest.start
    if start.state is not None:
        state = start.state.model_copy(deep=True)
        since = (
            f"the state carried into run {latest.run_id} by continue-as-new "
            f"({latest.started_at:%Y-%m-%d %H:%M:%S} UTC), then the human commands since"
        )
    else:  # the first run: nothing carried, so start from what the start event records
        state = RolloutState(
            rollout_id=f"{description.id}/{latest.run_id}",
            submitted_by=start.submitted_by,
            started_at=latest.started_at,
        )
        state.audit.append(
            AuditEntry(
                at=latest.started_at,
                actor=start.submitted_by,
                action=AuditAction.SUBMITTED,
                reason=f"rollout {start.spec.metadata.name}",
                stage=start.spec.spec.stages[0].name,
            )
        )
        since = "the submission and the human commands"
    state.audit.extend(latest.commands)
    with contextlib.suppress(ValueError):  # an unknown phase string from a newer worker
        state.phase = Phase(description.typed_search_attributes.get(PHASE) or state.phase)
    if latest.result is not None:
        state.phase, state.outcome = latest.result.phase, latest.result.outcome
    if latest.checks:
        state.last_check = latest.checks[-1].result
    target = start.spec.spec.target
    notes = [
        f"no worker answered the status query ({problem}); this is rebuilt from the workflow "
        f"history of {workflow_id_for(target)}: {since}. Automatic decisions since then (stage "
        "changes, trigger rollbacks, escalations) and the stage table's latest rows are not "
        "shown; start a worker (`python worker.py`) for the full record."
    ]
    return state, notes
