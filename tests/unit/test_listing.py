"""The visibility query of `lockgate list`: values are quoted, so none can rewrite the filter."""

from __future__ import annotations

import pytest

from runtime.listing import quote, rollouts_query
from workflows.state import Phase


def test_every_rollout_by_default() -> None:
    assert rollouts_query() == "WorkflowType = 'Rollout'"


def test_a_phase_and_a_target_are_quoted_values() -> None:
    assert rollouts_query(phase=Phase.ESCALATED, target="ranker") == (
        "WorkflowType = 'Rollout' AND LockgatePhase = 'escalated' AND LockgateTarget = 'ranker'"
    )


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("plain", "'plain'"),
        ("x' OR WorkflowType = 'Rollout", "'x\\' OR WorkflowType = \\'Rollout'"),
        ("back\\slash", "'back\\\\slash'"),
        ("\\' OR 'a' = 'a", "'\\\\\\' OR \\'a\\' = \\'a'"),
        ("", "''"),
    ],
)
def test_quote_escapes_backslashes_then_quotes(value: str, literal: str) -> None:
    assert quote(value) == literal


def test_an_injected_target_stays_inside_its_literal() -> None:
    query = rollouts_query(target="x' OR LockgatePhase = 'running")

    assert query == (
        "WorkflowType = 'Rollout' AND LockgateTarget = 'x\\' OR LockgatePhase = \\'running'"
    )
    # Outside the literals only the query's own two clauses remain: one AND, no OR.
    assert _outside_literals(query) == "WorkflowType =  AND LockgateTarget = "


def _outside_literals(query: str) -> str:
    """The query with every single-quoted literal removed, reading `\\` escapes as the parser."""
    kept, inside, index = [], False, 0
    while index < len(query):
        char = query[index]
        if inside and char == "\\":
            index += 2
            continue
        if char == "'":
            inside = not inside
        elif not inside:
            kept.append(char)
        index += 1
    return "".join(kept)
