"""Text from users, specs and servers is printed literally by every CLI view, never as markup.

Rich parses `[...]` in plain strings: `[/]` in a reason crashed `lockgate status`, and `[bold]`
or `[link=...]` restyled what an operator reads. Each view is rendered here with such text in
every field a human or a server fills in.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console, RenderableType

from activities.contracts import CheckResult, Outcome, TriggerVerdict
from cli import line, literal, render_audit, render_pending, render_status
from runtime.history import AuditTrail
from runtime.rollouts import PendingActivity
from tests.conftest import build_spec, spec_document
from workflows.messages import StatusResult
from workflows.state import AuditEntry, Phase, RollbackRequest, RolloutState

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
HOSTILE = [
    "[/]",
    "[bold]bold[/bold]",
    "[link=http://example.invalid]click[/link]",
    "[red]never closed",
    "\\[not an escape]",
    "$5 to $10 <b>",
]
ACTOR, REASON, DETAIL, ESCALATION, OUTCOME, PHASE = HOSTILE


def _print(renderable: RenderableType) -> str:
    console = Console(width=400, record=True, force_terminal=False)
    with console.capture() as captured:
        console.print(renderable)
    return captured.get()


def _status() -> StatusResult:
    document = spec_document("http://127.0.0.1:1", "http://127.0.0.1:2", target="ranker")
    verdict = TriggerVerdict(trigger="error-rate", outcome=Outcome.FAIL, detail=DETAIL)
    state = RolloutState(
        rollout_id="rollout-ranker/run-1",
        submitted_by=ACTOR,
        started_at=T0,
        phase=Phase.ROLLED_BACK,
        stage_index=1,
        last_check=CheckResult(checked_at=T0 + timedelta(seconds=5), verdicts=[verdict]),
        rollback=RollbackRequest(actor=ACTOR, reason=REASON, at=T0 + timedelta(seconds=6)),
        escalation=ESCALATION,
        audit=[
            AuditEntry(at=T0, actor=ACTOR, action="submitted", reason=REASON),
            AuditEntry(at=T0, actor=ACTOR, action="rollback", reason=REASON, stage="canary"),
        ],
        outcome=OUTCOME,
    )
    return StatusResult(spec=build_spec(document), state=state)


def test_status_prints_actors_reasons_details_escalations_and_outcomes_as_written() -> None:
    printed = _print(render_status(_status()))

    assert f"{ACTOR}: {REASON}" in printed  # the rollback row
    for text in (DETAIL, ESCALATION, OUTCOME, ACTOR, REASON):
        assert text in printed, text


def test_the_audit_trail_prints_its_title_caption_and_cells_as_written() -> None:
    state = _status().state
    trail = AuditTrail(
        workflow_id="rollout-ranker",
        run_id="run-1",
        phase=PHASE,
        outcome=OUTCOME,
        complete=True,
        notes=[],
        entries=state.audit,
    )
    printed = _print(render_audit(trail))

    assert f"audit trail of rollout-ranker ({PHASE})" in printed
    assert OUTCOME in printed  # the caption
    assert ACTOR in printed
    assert REASON in printed


def test_the_in_flight_table_prints_server_errors_as_written() -> None:
    stuck = PendingActivity(
        activity_id="2",
        activity="apply_route",
        attempt=3,
        maximum_attempts=None,
        state="scheduled",
        last_error=f"RouterRefused: {DETAIL} {ACTOR}",
    )
    table = render_pending([stuck])
    assert table is not None

    assert f"RouterRefused: {DETAIL} {ACTOR}" in _print(table)


@pytest.mark.parametrize("text", HOSTILE)
def test_literal_and_line_never_read_markup(text: str) -> None:
    assert _print(literal(text)) == f"{text}\n"
    assert _print(line(("error:", "red"), " ", text)) == f"error: {text}\n"
    assert _print(literal(None)) == "\n"
