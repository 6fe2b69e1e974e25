"""`lockgate list` and `status -o json`: the visibility query, and the JSON rows scripts read.

The visibility query is built so that no value can change its meaning.

Temporal's list filter is SQL-like text. A value pasted into it unescaped (`--phase "x' OR
WorkflowType = 'Rollout'"`) would rewrite the filter and list, count or match what the caller
never asked for. Every value goes through `quote`, which escapes backslashes and single quotes
the way Temporal's query parser reads a string literal; the CLI also accepts only the real phases
and slug targets, so a bad value is a usage error before any query is sent.

`rollout_row` and `status_document` are the JSON shapes scripts gate on: the same keys every
time, null where a value is unknown, so a script needs one code path (docs/ci.md lists them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from temporalio.client import WorkflowExecution, WorkflowExecutionStatus

from workflows import WORKFLOW_NAME
from workflows.messages import StatusResult
from workflows.state import Phase
from workflows.visibility import CANDIDATE, PERCENT, PHASE, STAGE, TARGET

__all__ = [
    "ROW_KEYS",
    "STATUS_KEYS",
    "quote",
    "rollout_row",
    "rollouts_query",
    "status_document",
]

ROW_KEYS = (
    "workflow_id",
    "run_id",
    "target",
    "candidate",
    "stage",
    "phase",
    "percent",
    "status",
    "started_at",
    "closed_at",
)
"""The keys of each object of `lockgate list -o json`, in this order."""
STATUS_KEYS = (
    "source",
    "workflow_id",
    "run_id",
    "status",
    "target",
    "candidate",
    "stage",
    "phase",
    "percent",
    "escalation",
    "outcome",
    "spec",
    "state",
    "pending_activities",
)
"""The top-level keys of `lockgate status -o json`, with a worker answering or without one."""


def quote(value: str) -> str:
    r"""`value` as a single-quoted string literal of a visibility query, meaning exactly `value`.

    Backslash first (`\` -> `\\`), then the quote (`'` -> `\'`): the parser unescapes both, so a
    quote inside the value can never end the literal.
    """
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def rollouts_query(*, phase: Phase | None = None, target: str | None = None) -> str:
    """The filter for rollout workflows, optionally only one phase and/or one target.

    The same attributes a release engineer filters by in the Temporal UI (`LockgatePhase`,
    `LockgateTarget`), so the CLI and the UI list the same rollouts.
    """
    clauses = [f"WorkflowType = {quote(WORKFLOW_NAME)}"]
    if phase is not None:
        clauses.append(f"{PHASE.name} = {quote(Phase(phase).value)}")
    if target is not None:
        clauses.append(f"{TARGET.name} = {quote(target)}")
    return " AND ".join(clauses)


def _status_name(status: WorkflowExecutionStatus | None) -> str | None:
    return status.name.lower() if status else None


def _when(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def rollout_row(execution: WorkflowExecution) -> dict[str, Any]:
    """One rollout as `list -o json` prints it: ROW_KEYS, from the search attributes only.

    Needs no worker (the server answers list queries itself); `percent` is the candidate's share
    of the last route that landed, a number; times are ISO 8601 in UTC.
    """
    attributes = execution.typed_search_attributes
    return {
        "workflow_id": execution.id,
        "run_id": execution.run_id,
        "target": attributes.get(TARGET),
        "candidate": attributes.get(CANDIDATE),
        "stage": attributes.get(STAGE),
        "phase": attributes.get(PHASE),
        "percent": attributes.get(PERCENT),
        "status": _status_name(execution.status),
        "started_at": _when(execution.start_time),
        "closed_at": _when(execution.close_time),
    }


def status_document(
    description: WorkflowExecution,
    full: StatusResult | None,
    pending_activities: list[dict[str, Any]],
) -> dict[str, Any]:
    """`status -o json`: the same STATUS_KEYS whether or not a worker answered the query.

    `source` is `query` when a worker answered (`spec` and `state` are the workflow's own,
    `escalation` and `outcome` set from it) or `description` when none did (the summary comes
    from the server's search attributes; `spec`, `state`, `escalation` and `outcome` are null).
    The summary keys are filled either way, so a script reads `phase` the same in both cases.
    """
    row = rollout_row(description)
    document: dict[str, Any] = {
        "source": "description",
        "workflow_id": row["workflow_id"],
        "run_id": row["run_id"],
        "status": row["status"],
        "target": row["target"],
        "candidate": row["candidate"],
        "stage": row["stage"],
        "phase": row["phase"],
        "percent": row["percent"],
        "escalation": None,
        "outcome": None,
        "spec": None,
        "state": None,
        "pending_activities": pending_activities,
    }
    if full is not None:
        body, state = full.spec.spec, full.state
        stages = body.course
        document.update(
            source="query",
            target=body.target,
            candidate=body.candidate.version,
            stage=stages[min(state.stage_index, len(stages) - 1)].name,
            phase=state.phase.value,
            percent=state.live_percent,
            escalation=state.escalation,
            outcome=state.outcome,
            spec=full.spec.model_dump(mode="json"),
            state=state.model_dump(mode="json"),
        )
    return {key: document[key] for key in STATUS_KEYS}
