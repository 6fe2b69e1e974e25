"""Client-side operations on rollouts: submit, read status, send commands.

The CLI is a thin shell over these, and the tests drive the same functions, so what a release
engineer types and what the tests check is one code path.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError

from rollout_specs import RolloutSpec, workflow_id_for
from workflows.messages import (
    ControlInput,
    ControlResult,
    RolloutInput,
    RolloutResult,
    StatusResult,
)
from workflows.rollout import RolloutWorkflow
from workflows.visibility import CANDIDATE, PHASE, starting_search_attributes

__all__ = [
    "COMMANDS",
    "CommandRefused",
    "RolloutAlreadyRunning",
    "RolloutNotFound",
    "describe_rollout",
    "query_status",
    "send_command",
    "submit_rollout",
]

COMMANDS = ("approve", "pause", "resume", "promote", "rollback")
"""The human commands, each a workflow update of the same name."""
QUERY_TIMEOUT = timedelta(seconds=5)
"""Queries need a live worker; without one they hang, so status gives up after this long."""


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
        if "not found" in str(exc).lower():
            raise RolloutNotFound(f"no rollout of target {target!r} was found") from exc
        raise


async def query_status(client: Client, target: str) -> StatusResult:
    """The full status from the workflow itself (needs a running worker within QUERY_TIMEOUT)."""
    handle = client.get_workflow_handle_for(RolloutWorkflow.run, workflow_id_for(target))
    try:
        return await handle.query(RolloutWorkflow.status, rpc_timeout=QUERY_TIMEOUT)
    except RPCError as exc:
        if "not found" in str(exc).lower():
            raise RolloutNotFound(f"no rollout of target {target!r} was found") from exc
        raise


async def send_command(
    client: Client, target: str, command: str, *, actor: str, reason: str
) -> ControlResult:
    """Send approve/pause/resume/promote/rollback; raise CommandRefused with the reason."""
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}; use one of {', '.join(COMMANDS)}")
    description = await describe_rollout(client, target)
    if description.status is not WorkflowExecutionStatus.RUNNING:
        status = description.status.name.lower() if description.status else "unknown"
        raise CommandRefused(f"the rollout of {target!r} is not running ({status})")
    handle = client.get_workflow_handle(workflow_id_for(target))
    try:
        result: ControlResult = await handle.execute_update(
            command,
            ControlInput(actor=actor, reason=reason),
            result_type=ControlResult,
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause)
        raise CommandRefused(message) from exc
    return result
