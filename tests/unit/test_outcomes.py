"""Exit codes of `watch`/`submit --wait`, the events a watcher prints, and the JSON shapes.

The e2e suite (tests/e2e/test_cli_gating.py) drives these through the real `lockgate` process;
here every case of the mapping and every event kind is checked without a server.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowExecution, WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from activities.contracts import CheckResult, Outcome, TriggerVerdict
from runtime.listing import ROW_KEYS, STATUS_KEYS, rollout_row, status_document
from runtime.outcomes import ExitCode, outcome_of, outcome_on_timeout
from runtime.watching import (
    EVENT_KEYS,
    EventTracker,
    WatchEvent,
    json_line,
    parse_timeout,
    plain_line,
)
from tests.conftest import build_spec, spec_document
from workflows.messages import StatusResult
from workflows.state import TERMINAL_PHASES, AuditEntry, Phase, RolloutState
from workflows.visibility import CANDIDATE, PERCENT, PHASE, STAGE, TARGET

AT = datetime(2026, 11, 30, 22, 0, 0, tzinfo=UTC)


def test_the_codes_are_distinct_and_documented_values() -> None:
    assert {code.name: int(code) for code in ExitCode} == {
        "COMPLETED": 0,
        "ERROR": 1,
        "USAGE": 2,
        "ROLLED_BACK": 3,
        "NEEDS_HUMAN": 4,
        "TIMED_OUT": 5,
        "ABANDONED": 6,
    }


@pytest.mark.parametrize(
    ("phase", "code"),
    [
        ("completed", ExitCode.COMPLETED),
        ("rolled_back", ExitCode.ROLLED_BACK),
        ("abandoned", ExitCode.ABANDONED),
        ("escalated", ExitCode.NEEDS_HUMAN),
        ("running", None),
        ("held", None),
        ("awaiting_approval", None),
        ("paused", None),
        ("rolling_back", None),
        ("promoting", None),
        ("starting", None),
        ("a-phase-from-a-newer-worker", None),
    ],
)
def test_the_outcome_of_each_phase(phase: str, code: ExitCode | None) -> None:
    assert outcome_of(phase) is code


def test_every_terminal_phase_has_an_outcome_even_with_until_terminal() -> None:
    for phase in TERMINAL_PHASES:
        assert outcome_of(phase, until_terminal=True) is not None, phase
    assert outcome_of(Phase.ESCALATED, until_terminal=True) is None


def test_a_refused_rollback_that_escalates_needs_a_human_in_its_own_phase() -> None:
    reason = "rollback has not landed after 2m; the router keeps refusing it"
    assert outcome_of("rolling_back", escalation=reason) is ExitCode.NEEDS_HUMAN
    assert outcome_of("rolling_back", escalation=reason, until_terminal=True) is None
    assert outcome_of("rolled_back", escalation=reason) is ExitCode.ROLLED_BACK


@pytest.mark.parametrize(
    ("phase", "code"),
    [
        ("awaiting_approval", ExitCode.TIMED_OUT),
        ("running", ExitCode.TIMED_OUT),
        ("paused", ExitCode.TIMED_OUT),
        (None, ExitCode.TIMED_OUT),
        ("held", ExitCode.NEEDS_HUMAN),
        ("escalated", ExitCode.NEEDS_HUMAN),
        ("completed", ExitCode.COMPLETED),
    ],
)
def test_the_outcome_when_the_timeout_expires(phase: str | None, code: ExitCode) -> None:
    assert outcome_on_timeout(phase) is code


def test_timeouts_are_durations() -> None:
    assert parse_timeout("90s") == 90
    assert parse_timeout("1h30m") == 5400
    for bad in ("5y", "", "0s", "-3s"):
        with pytest.raises(ValueError, match="duration"):
            parse_timeout(bad)


def _status(**state: Any) -> StatusResult:
    spec = build_spec(spec_document("http://127.0.0.1:1", "http://127.0.0.1:2", target="ranker"))
    base: dict[str, Any] = {"rollout_id": "r", "submitted_by": "alice", "started_at": AT}
    return StatusResult(spec=spec, state=RolloutState(**(base | state)))


def _verdict(outcome: Outcome, detail: str = "error_rate 0.001 <= 0.05") -> CheckResult:
    verdict = TriggerVerdict(trigger="error-rate", outcome=outcome, detail=detail)
    return CheckResult(checked_at=AT, verdicts=[verdict])


def test_the_tracker_reports_each_change_once() -> None:
    tracker = EventTracker("ranker")

    first = tracker.observe(_status(phase=Phase.RUNNING), AT)
    assert [(e.event, e.message) for e in first] == [
        ("phase", "running"),
        ("stage", "shadow (1/4)"),
    ]
    assert tracker.observe(_status(phase=Phase.RUNNING), AT) == []

    passing = _status(phase=Phase.RUNNING, stage_index=1, last_check=_verdict(Outcome.PASS))
    changed = tracker.observe(passing, AT)
    assert [(e.event, e.trigger, e.verdict) for e in changed] == [
        ("stage", None, None),
        ("verdict", "error-rate", "pass"),
    ]
    assert changed[0].message == "canary (2/4)"
    # The same outcome with a new value is not an event: one line per change, not per check.
    again = _status(
        phase=Phase.RUNNING, stage_index=1, last_check=_verdict(Outcome.PASS, "error_rate 0.002")
    )
    assert tracker.observe(again, AT) == []

    asked = "1 of bob must approve stage half"
    waiting = _status(
        phase=Phase.AWAITING_APPROVAL,
        stage_index=2,
        last_check=_verdict(Outcome.FAIL, "error_rate 0.2 > 0.05"),
        approval_asked_at=AT,
        audit=[AuditEntry(at=AT, actor="lockgate", action="approval_needed", reason=asked)],
    )
    kinds = [(e.event, e.message) for e in tracker.observe(waiting, AT)]
    assert kinds == [
        ("phase", "awaiting_approval (was running)"),
        ("stage", "half (3/4)"),
        ("verdict", "error-rate fail: error_rate 0.2 > 0.05"),
        ("approval_asked", asked),
    ]

    stuck = _status(phase=Phase.ROLLING_BACK, stage_index=2, escalation="router refuses")
    events = tracker.observe(stuck, AT)
    assert [e.event for e in events] == ["phase", "escalation"]
    assert events[-1].message == "router refuses"


def test_an_event_is_one_line_of_text_and_one_json_object_with_every_key() -> None:
    tracker = EventTracker("ranker")
    tracker.observe(_status(phase=Phase.ROLLED_BACK), AT)
    final = tracker.ended(AT, ExitCode.ROLLED_BACK, "rollout ended: rolled_back: by bob:\nline 2")

    text = plain_line(final)
    assert "\n" not in text
    assert text == (
        "2026-11-30T22:00:00Z ranker outcome rolled_back (exit 3): "
        "rollout ended: rolled_back: by bob:\\nline 2"
    )
    document = json.loads(json_line(final))
    assert tuple(document) == EVENT_KEYS
    assert document["exit_code"] == 3
    assert document["outcome"] == "rolled_back"
    assert document["message"].endswith("by bob:\nline 2")

    phase = json.loads(json_line(WatchEvent(at=AT, event="phase", target="t", message="x")))
    assert tuple(phase) == EVENT_KEYS
    assert phase["exit_code"] is None


def _execution(**attributes: Any) -> WorkflowExecution:
    keys = {"target": TARGET, "candidate": CANDIDATE, "stage": STAGE, "phase": PHASE}
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(keys[name], value) for name, value in attributes.items()
    ]
    pairs.append(SearchAttributePair(PERCENT, 10.0))
    return WorkflowExecution(
        close_time=None,
        execution_time=AT,
        history_length=12,
        id="rollout-ranker",
        namespace="default",
        parent_id=None,
        parent_run_id=None,
        root_id=None,
        root_run_id=None,
        raw_info=None,  # type: ignore[arg-type]
        run_id="run-1",
        search_attributes={},
        start_time=AT - timedelta(minutes=1),
        status=WorkflowExecutionStatus.RUNNING,
        task_queue="q",
        typed_search_attributes=TypedSearchAttributes(pairs),
        workflow_type="Rollout",
        _context_free_data_converter=None,  # type: ignore[arg-type]
    )


def test_a_list_row_has_every_key() -> None:
    row = rollout_row(_execution(target="ranker", phase="running"))
    assert tuple(row) == ROW_KEYS
    assert row["stage"] is None
    assert row["percent"] == 10.0
    assert row["status"] == "running"
    json.dumps(row)


def test_status_json_has_one_shape_with_or_without_a_worker() -> None:
    execution = _execution(target="ranker", candidate="42", stage="canary", phase="running")
    pending = [{"activity": "apply_route"}]
    full = _status(phase=Phase.RUNNING, stage_index=1, live_percent=10.0)

    answered = status_document(execution, full, pending)
    unanswered = status_document(execution, None, pending)

    assert tuple(answered) == tuple(unanswered) == STATUS_KEYS
    assert answered["source"] == "query"
    assert unanswered["source"] == "description"
    for key in ("workflow_id", "run_id", "status", "target", "candidate", "stage", "phase"):
        assert answered[key] == unanswered[key], key
    assert answered["state"]["phase"] == "running"
    assert unanswered["state"] is unanswered["spec"] is None
    assert answered["pending_activities"] == unanswered["pending_activities"] == pending
    json.dumps(answered)
