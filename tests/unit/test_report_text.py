"""The report draws and prints user text as written: no mathtext, no TeX, no HTML from it.

An actor or reason such as `cost $5 to $10` reached matplotlib, which parses `$...$` as math
(`$x^{$` crashed `lockgate report`); `<script>` in a reason must stay text in the page.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest

from activities.contracts import CheckResult, Outcome, TriggerVerdict
from rollout_specs import Threshold
from runtime.history import RecordedCheck, RolloutRecord
from runtime.report import render_report
from tests.conftest import build_spec, spec_document
from workflows.state import AuditEntry, Phase, RollbackRequest, RolloutState, StageRecord

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
REASON = "cost $5 to $10 <script>alert('reason')</script> $x^{$"


def _page(actor: str, reason: str = REASON) -> str:
    """A rollout rolled back in its canary by `actor` for `reason`, rendered."""
    spec = build_spec(spec_document("http://127.0.0.1:1", "http://127.0.0.1:2", target="ranker"))
    checks = [
        RecordedCheck(
            run_id="run-1",
            stage=stage,
            result=CheckResult(
                checked_at=T0 + timedelta(seconds=second),
                verdicts=[
                    TriggerVerdict(
                        trigger="error-rate",
                        outcome=Outcome.PASS,
                        value=0.001,
                        threshold=Threshold(above=0.05),
                        detail="0.001 (healthy: <= 0.05)",
                    )
                ],
            ),
        )
        for second, stage in ((2, "shadow"), (5, "canary"))
    ]
    rolled_back_at = T0 + timedelta(seconds=6)
    state = RolloutState(
        rollout_id="rollout-ranker/run-1",
        submitted_by=actor,
        started_at=T0,
        phase=Phase.ROLLED_BACK,
        stage_index=1,
        checks_total=len(checks),
        stages=[
            StageRecord(name="shadow", started_at=T0, ended_at=T0 + timedelta(seconds=4)),
            StageRecord(name="canary", started_at=T0 + timedelta(seconds=4)),
        ],
        rollback=RollbackRequest(actor=actor, reason=reason, at=rolled_back_at),
        escalation=f"router refused: {reason}",
        audit=[
            AuditEntry(at=T0, actor=actor, action="submitted", reason="rollout ranker-v42"),
            AuditEntry(at=rolled_back_at, actor=actor, action="rollback", reason=reason),
        ],
        outcome=f"rolled back to 41 by {actor}: {reason}",
    )
    record = RolloutRecord(
        workflow_id="rollout-ranker",
        run_ids=["run-1"],
        status="completed",
        closed_at=T0 + timedelta(seconds=7),
        spec=spec,
        state=state,
        complete=True,
        notes=[],
        checks=checks,
    )
    return render_report(record, generated_at=T0 + timedelta(seconds=60))


@pytest.mark.parametrize(
    "actor",
    ["cost $5 to $10", "ops $x^{$", "<script>alert('actor')</script> $1", "a\\$b $$"],
)
def test_a_plot_draws_the_rollback_actor_as_one_literal_text(actor: str) -> None:
    page = _page(actor)

    # One SVG text element holding the label exactly (mathtext would split it into glyphs).
    label = f"rollback ({actor})".replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert re.search(rf">{re.escape(label)}</text>", page), label
    assert "<script" not in page


def test_reasons_with_dollars_and_script_are_html_escaped_everywhere() -> None:
    page = _page("bob")

    escaped = html.escape(REASON)
    assert f"<td>{escaped}</td>" in page, "the audit row"
    assert f"<dd>router refused: {escaped}</dd>" in page, "the escalation in the header"
    assert f"<dd>rolled back to 41 by bob: {escaped}</dd>" in page, "the outcome in the header"
    assert "<script" not in page
