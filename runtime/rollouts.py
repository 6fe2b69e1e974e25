"""Client-side operations on rollouts: submit, read status, send commands.

The CLI is a thin shell over these, and the tests drive the same functions, so what a release
engineer types and what the tests check is one code path.

`pending_activities` reads why a rollout is stuck from the server's own description: an
activity that keeps failing (a rollback the router refuses is retried forever) shows there with
its attempt count and last error, with or without a worker answering queries.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, ConfigDict
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.failure.v1 import Failure
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.reviews import Verdict
from rollout_specs import RolloutSpec, workflow_id_for
from workflows.commands import PENDING_REVIEWS, Command
from workflows.messages import (
    AbandonInput,
    ControlInput,
    ControlResult,
    PendingReviewsInput,
    PendingReviewsResult,
    ReviewInput,
    RolloutInput,
    RolloutResult,
    StatusResult,
)
from workflows.rollout import RolloutWorkflow
from workflows.visibility import CANDIDATE, PHASE, starting_search_attributes

__all__ = [
    "Command",
    "CommandRefused",
    "PendingActivity",
    "RolloutAlreadyRunning",
    "RolloutNotFound",
    "describe_rollout",
    "failure_text",
    "list_reviews",
    "pending_activities",
    "pending_activity",
    "query_status",
    "send_command",
    "send_review",
    "submit_rollout",
]

WORKFLOW_TASK_TIMEOUT = timedelta(seconds=2)
"""A workflow task caught on a worker that dies is handed to another after this (default 10 s):
a rollout's checks and rollbacks stall at most about 2 s when a worker is killed mid-task. Workflow
code never runs long (Temporal's deadlock detector stops it at 2 s), and a check run inside the
task is bounded at 1 s (workflows/rollout.py, QUICK_CHECK), so this costs nothing."""
QUERY_TIMEOUT = timedelta(seconds=5)
"""Queries need a live worker; without one they hang, so status gives up after this long."""
R = TypeVar("R")


class RolloutAlreadyRunning(Exception):
    """A rollout of the same target is running: one target, one rollout at a time."""


class RolloutNotFound(Exception):
    """No rollout of that target exists on this namespace."""


class CommandRefused(Exception):
    """The rollout refused a command (an impossible transition, or a missing actor/reason)."""


async def submit_rollout(
    client: Client, spec: RolloutSpec, *, submitted_by: str, task_queue: str
) -> WorkflowHandle[RolloutWorkflow, RolloutResult]:
    """Start the rollout of a validated spec; refuse while another rollout of the target runs."""
    body = spec.spec
    try:
        return await client.start_workflow(
            RolloutWorkflow.run,
            RolloutInput(spec=spec, submitted_by=submitted_by),
            id=spec.workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            task_timeout=WORKFLOW_TASK_TIMEOUT,
            search_attributes=starting_search_attributes(spec),
            static_summary=(
                f"{spec.metadata.name}: {body.target} {body.incumbent.version} -> "
                f"{body.candidate.version}"
            ),
            static_details="\n".join(
                f"- {s.name}: {s.mode.value} {s.percent or 0:g}%" for s in body.stages
            ),
        )
    except WorkflowAlreadyStartedError as exc:
        running = await describe_rollout(client, body.target)
        candidate = running.typed_search_attributes.get(CANDIDATE) or "?"
        phase = running.typed_search_attributes.get(PHASE) or "?"
        raise RolloutAlreadyRunning(
            f"target {body.target!r} already has a running rollout: workflow "
            f"{running.id} (run {running.run_id}), candidate {candidate}, phase {phase}; "
            "wait for it to end, or roll it back with `lockgate rollback "
            f"{body.target} --reason ...`"
        ) from exc


async def describe_rollout(client: Client, target: str) -> WorkflowExecutionDescription:
    """The server's own view of the latest rollout of `target`; needs no worker."""
    try:
        return await client.get_workflow_handle(workflow_id_for(target)).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise RolloutNotFound(f"no rollout of target {target!r} was found") from exc
        raise


async def query_status(client: Client, target: str) -> StatusResult:
    """The full status from the workflow itself (needs a running worker within QUERY_TIMEOUT).

    QUERY_TIMEOUT bounds the whole call: the SDK applies `rpc_timeout` to each attempt and
    retries a busy server's refusals (a full query buffer) on its own, so one query could take
    18 s. Running out of time raises RPCError DEADLINE_EXCEEDED, like a query nobody answered.
    """
    handle = client.get_workflow_handle_for(RolloutWorkflow.run, workflow_id_for(target))
    try:
        async with asyncio.timeout(QUERY_TIMEOUT.total_seconds()):
            return await handle.query(RolloutWorkflow.status, rpc_timeout=QUERY_TIMEOUT)
    except TimeoutError:
        raise RPCError(
            f"no answer to the status query within {QUERY_TIMEOUT.total_seconds():g}s",
            RPCStatusCode.DEADLINE_EXCEEDED,
            b"",
        ) from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise RolloutNotFound(f"no rollout of target {target!r} was found") from exc
        raise


async def send_command(
    client: Client,
    target: str,
    command: Command | str,
    *,
    actor: str,
    reason: str,
    force: bool = False,
) -> ControlResult:
    """Send a Command, the workflow update of that name; CommandRefused carries its reason.

    `abandon` (the last resort for a stuck rollout) takes an AbandonInput: `force` is only for
    it, and ends a rollout that is not stuck too.
    """
    try:
        command = Command(command)
    except ValueError:
        known = ", ".join(Command)
        raise ValueError(f"unknown command {command!r}; use one of {known}") from None
    await _ensure_running(client, target)
    if force and command is not Command.ABANDON:
        raise ValueError(f"only abandon takes force, not {command!r}")
    if command is Command.REVIEW:
        raise ValueError("a review names a proposal and a verdict: use send_review")
    payload = (
        AbandonInput(actor=actor, reason=reason, force=force)
        if command is Command.ABANDON
        else ControlInput(actor=actor, reason=reason)
    )
    return await _update(client, target, command.value, payload, ControlResult)


async def send_review(
    client: Client,
    target: str,
    *,
    proposal_id: str,
    verdict: Verdict,
    actor: str,
    reason: str = "",
) -> ControlResult:
    """Judge one proposal (the `review` command); CommandRefused carries the refusal.

    The worker records the verdict at the router, then audits and counts it; a proposal the
    router does not know, or one already judged, is refused with the router's words.
    """
    payload = ReviewInput(proposal_id=proposal_id, verdict=verdict, actor=actor, reason=reason)
    await _ensure_running(client, target)
    return await _update(client, target, Command.REVIEW.value, payload, ControlResult)


async def list_reviews(
    client: Client, target: str, *, actor: str, limit: int = 50
) -> PendingReviewsResult:
    """The proposals waiting at the target's router; CommandRefused says why there are none.

    The worker reads them, since it holds the router's credentials and the CLI does not.
    """
    payload = PendingReviewsInput(actor=actor, limit=limit)
    await _ensure_running(client, target)
    return await _update(client, target, PENDING_REVIEWS, payload, PendingReviewsResult)


async def _ensure_running(client: Client, target: str) -> None:
    """Refuse a command to a rollout that has ended: no update can reach it any more."""
    description = await describe_rollout(client, target)
    if description.status is not WorkflowExecutionStatus.RUNNING:
        status = description.status.name.lower() if description.status else "unknown"
        raise CommandRefused(f"the rollout of {target!r} is not running ({status})")


async def _update(
    client: Client, target: str, name: str, payload: object, result_type: type[R]
) -> R:
    """Run the workflow update `name` on `target`'s rollout; a refusal is CommandRefused.

    A rollout that ends between the caller's check and the update (a rollback landing, a
    holdback completing) is refused with how it ended: the server's NOT_FOUND is no crash.
    """
    handle = client.get_workflow_handle(workflow_id_for(target))
    try:
        result: R = await handle.execute_update(name, payload, result_type=result_type)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause)
        raise CommandRefused(message) from exc
    except RPCError as exc:
        if exc.status is not RPCStatusCode.NOT_FOUND:
            raise
        description = await describe_rollout(client, target)  # RolloutNotFound if none at all
        status = description.status.name.lower() if description.status else "unknown"
        raise CommandRefused(
            f"the rollout of {target!r} ended before the command arrived ({status})"
        ) from exc
    return result


class PendingActivity(BaseModel):
    """An activity the server has scheduled or started for a rollout and not yet seen finish.

    Read from `describe()`, so it needs no worker. An activity failing again and again (the
    router refusing a rollback, which is retried forever) is what keeps a rollout stuck; this is
    where a human reads why.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    activity_id: str
    activity: str
    """The activity type, e.g. `apply_route` or `run_checks`."""
    attempt: int
    """The attempt running or scheduled now; 1 until the first failure."""
    maximum_attempts: int | None
    """The retry policy's limit, or None when it retries forever (a rollback, a promotion)."""
    state: str
    """`scheduled` (waiting for a worker, or for its next retry), `started`, `cancel_requested`,
    `paused` or `pause_requested`."""
    last_error: str | None
    """The last attempt's error, e.g. `RouterUnavailable: router at http://... could not be
    reached (...)`; None before the first failure."""
    last_failed_at: datetime | None = None
    """When the last attempt ended (in failure, when `last_error` is set)."""
    next_attempt_at: datetime | None = None
    """When the server schedules the next attempt, while it waits out the retry backoff."""

    @property
    def retrying(self) -> bool:
        """True when it has failed at least once: the activities a stuck rollout waits on."""
        return self.attempt > 1 or self.last_error is not None


_STATE_PREFIX = "PENDING_ACTIVITY_STATE_"
_WRAPPER_INFOS = frozenset(
    {
        "activity_failure_info",
        "child_workflow_execution_failure_info",
        "nexus_operation_execution_failure_info",
    }
)
"""Failure kinds that only wrap the real error (their cause); their own message says little."""
_MAX_CAUSES = 20
"""How deep `failure_text` walks a cause chain; a deeper one is cut there (it is only text)."""


def pending_activities(description: WorkflowExecutionDescription) -> list[PendingActivity]:
    """The rollout's pending activities, in the server's order, from its description.

    Pure: reads `description.raw_description.pending_activities`, which the server fills
    whether or not a worker is running, so `lockgate status` can say why a rollout is stuck
    even when the status query cannot be answered.
    """
    return [pending_activity(info) for info in description.raw_description.pending_activities]


def pending_activity(info: PendingActivityInfo) -> PendingActivity:
    """One `PendingActivityInfo` as lockgate shows it (see `PendingActivity`)."""
    try:
        state = PendingActivityState.Name(info.state).removeprefix(_STATE_PREFIX).lower()
    except ValueError:  # a state newer than this SDK's protos: show it, never crash status
        state = f"state {info.state}"
    return PendingActivity(
        activity_id=info.activity_id,
        activity=info.activity_type.name,
        attempt=info.attempt,
        maximum_attempts=info.maximum_attempts or None,
        state=state,
        last_error=failure_text(info.last_failure) if info.HasField("last_failure") else None,
        last_failed_at=(
            _utc(info.last_attempt_complete_time)
            if info.HasField("last_attempt_complete_time")
            else None
        ),
        next_attempt_at=(
            _utc(info.next_attempt_schedule_time)
            if info.HasField("next_attempt_schedule_time")
            else None
        ),
    )


def failure_text(failure: Failure) -> str:
    """A failure as one line a human can act on: `Type: message`, then its root cause.

    Walks the cause chain past wrappers to the first failure that says something, prefixed with
    its ApplicationError type when it has one. Wrappers are an activity or child-workflow
    failure around the real error, and the server's own "Failure exceeds size limit." around a
    failure it trimmed (a Python exception chain with its stack traces easily exceeds the limit
    a pending activity's last failure may have). The innermost cause is appended when its
    message is not already in that line (an activity's message usually quotes the exception it
    was raised from).
    """
    chain = [failure]
    while chain[-1].HasField("cause") and len(chain) < _MAX_CAUSES:
        chain.append(chain[-1].cause)
    head = next((f for f in chain if not _is_wrapper(f)), chain[-1])
    text = _typed_message(head)
    root = chain[-1]
    if root is not head and root.message and root.message not in text:
        text = f"{text} (caused by {_typed_message(root)})"
    return text


def _is_wrapper(failure: Failure) -> bool:
    if not failure.message:
        return True
    kind = failure.WhichOneof("failure_info")
    if kind == "server_failure_info":  # a server failure wrapping a cause is its truncation note
        return failure.HasField("cause")
    return kind in _WRAPPER_INFOS


def _typed_message(failure: Failure) -> str:
    message = failure.message or "(no message)"
    if failure.HasField("application_failure_info") and failure.application_failure_info.type:
        return f"{failure.application_failure_info.type}: {message}"
    return message


def _utc(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)
