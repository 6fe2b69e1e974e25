"""`lockgate history` and `report` read recorded histories: every committed one reads whole.

The histories under tests/histories were recorded by earlier versions of the workflow; a reader
that only knows today's payloads would break `history` for every rollout already running.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter

from runtime.history import RunHistory, read_run
from tests.helpers.history import check_kind
from workflows.commands import Command
from workflows.state import Phase

HISTORIES = sorted((Path(__file__).resolve().parents[1] / "histories").glob("*.json"))


async def _read(path: Path) -> RunHistory:
    history = WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))

    async def events() -> AsyncIterator[HistoryEvent]:
        for event in history.events:
            yield event

    return await read_run(path.stem, events(), pydantic_data_converter)


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_every_recorded_history_reads_with_its_spec_and_ending(path: Path) -> None:
    run = await _read(path)
    assert run.start.spec.spec.rollback_triggers, "the recorded spec loads with its triggers"
    assert all(entry.actor and entry.action for entry in run.commands)
    if run.result is not None:
        assert run.result.phase in {Phase.COMPLETED, Phase.ROLLED_BACK, Phase.ABANDONED}


async def test_a_recorded_manual_rollback_reads_as_the_command_that_caused_it() -> None:
    run = await _read(next(p for p in HISTORIES if p.stem == "manual_rollback"))
    assert Command.ROLLBACK in [entry.action for entry in run.commands]
    assert run.result is not None
    assert run.result.phase is Phase.ROLLED_BACK


async def test_a_recorded_trigger_rollback_reads_with_its_failing_check() -> None:
    run = await _read(next(p for p in HISTORIES if p.stem == "trigger_rollback"))
    assert run.checks, "the checks the rollout ran are read back"
    assert any(
        verdict.outcome.value == "fail" for check in run.checks for verdict in check.result.verdicts
    )
    assert run.result is not None
    assert run.result.phase is Phase.ROLLED_BACK


async def test_reviews_read_back_as_the_verdicts_the_router_took_and_listings_as_nothing() -> None:
    """The recorded rollout listed proposals once, had one approval and one rejection taken,
    and two reviews the router refused (already judged; unknown id): only the two taken are
    commands in the rebuilt audit trail."""
    run = await _read(next(p for p in HISTORIES if p.stem == "reviews_gate_a_stage"))
    reviews = [entry for entry in run.commands if entry.action == Command.REVIEW]
    assert [(entry.actor, entry.reason.split(" ")[0]) for entry in reviews] == [
        ("bob", "approve"),
        ("carol", "reject"),
    ]
    assert reviews[1].reason.endswith(": refund larger than the basket")
    assert "pending_reviews" not in [entry.action for entry in run.commands]


async def test_checks_run_in_the_workflow_task_read_back_beside_those_run_as_activities() -> None:
    # Recorded with monitoring made slow for one check: checks in the workflow task (markers),
    # one that gave up and ran again as an activity, then activities, then markers again.
    path = next(p for p in HISTORIES if p.stem == "quick_check_fell_back")
    history = WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))
    kinds = [kind for event in history.events if (kind := check_kind(event)) is not None]
    assert {"quick", "quick-failed", "activity"} <= set(kinds)

    run = await _read(path)

    assert len(run.checks) == kinds.count("quick") + kinds.count("activity"), (
        "every check is read once; a quick check that gave up is no check"
    )
    assert {check.stage for check in run.checks} == {"canary"}
    assert all(not check.failed for check in run.checks)
    times = [check.result.checked_at for check in run.checks]
    assert times == sorted(times), "checks read back in the order they ran"
