"""The visibility query behind `lockgate list`, built so that no value can change its meaning.

Temporal's list filter is SQL-like text. A value pasted into it unescaped (`--phase "x' OR
WorkflowType = 'Rollout'"`) would rewrite the filter and list, count or match what the caller
never asked for. Every value goes through `quote`, which escapes backslashes and single quotes
the way Temporal's query parser reads a string literal; the CLI also accepts only the real phases
and slug targets, so a bad value is a usage error before any query is sent.
"""

from __future__ import annotations

from workflows import WORKFLOW_NAME
from workflows.state import Phase
from workflows.visibility import PHASE, TARGET

__all__ = ["quote", "rollouts_query"]


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
