"""The current details the Temporal UI shows: tables a human can scan, never broken by a detail."""

from __future__ import annotations

from datetime import UTC, datetime

from activities.contracts import CheckResult, Outcome, ReviewCounts, TriggerVerdict
from tests.conftest import build_spec, spec_document
from workflows.state import Phase, RolloutState, StageRecord
from workflows.visibility import current_details

NOW = datetime(2026, 11, 29, 4, 44, 24, tzinfo=UTC)


def _table(markdown: str, header: str) -> list[list[str]]:
    """The rows of the table under `header`, split on unescaped pipes."""
    lines = markdown.splitlines()
    start = lines.index(header)
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = line.replace("\\|", "\x00").strip("|").split("|")
        rows.append([cell.strip().replace("\x00", "|") for cell in cells])
    return rows


def test_stage_and_every_verdict_are_table_rows_even_when_a_detail_holds_pipes() -> None:
    spec = build_spec(spec_document("http://127.0.0.1:1", "http://127.0.0.1:2"))
    drift = "js 0.05 > 0.035 | agreement 0.492 [0.455, 0.530]\nof 1186 pairs"
    state = RolloutState(
        rollout_id="r1",
        submitted_by="alice",
        started_at=NOW,
        phase=Phase.RUNNING,
        stage_index=1,
        live_percent=10,
        last_check=CheckResult(
            checked_at=NOW,
            verdicts=[
                TriggerVerdict(trigger="error-rate", outcome=Outcome.PASS, detail="0.001"),
                TriggerVerdict(trigger="drift", outcome=Outcome.FAIL, detail=drift),
            ],
        ),
    )

    markdown = current_details(spec, state)

    stage_rows = _table(markdown, "| stage | candidate traffic | phase | last check |")
    assert len(stage_rows) == 1
    stage, traffic, phase, checked = stage_rows[0]
    assert stage.startswith(f"`{spec.spec.stages[1].name}` (2 of ")
    assert (traffic, phase) == ("10%", "`running`")
    assert checked.startswith("04:44:24 UTC")
    verdicts = _table(markdown, "| trigger | verdict | evidence |")
    assert verdicts == [
        ["`error-rate`", "**pass**", "0.001"],
        ["`drift`", "**fail**", "js 0.05 > 0.035 | agreement 0.492 [0.455, 0.530] of 1186 pairs"],
    ]


def test_a_rollout_with_reviewed_actions_shows_where_the_reviews_stand() -> None:
    document = spec_document("http://127.0.0.1:1", "http://127.0.0.1:2")
    body = document["spec"]
    body["guardrails"] = {"review": {"actions": ["refund_full"]}}
    body["stages"][1]["min_reviews"] = 20
    spec = build_spec(document)
    state = RolloutState(
        rollout_id="r1",
        submitted_by="alice",
        started_at=NOW,
        phase=Phase.RUNNING,
        stage_index=1,
        stages=[
            StageRecord(name=spec.spec.stages[0].name, started_at=NOW, outcome="advanced"),
            StageRecord(name=spec.spec.stages[1].name, started_at=NOW, reviews=4),
        ],
        reviews=ReviewCounts(approved=3, rejected=2),
    )

    markdown = current_details(spec, state)

    assert (
        f"**Reviews:** 3 approved, 2 rejected; stage {spec.spec.stages[1].name}: 4 of 20 "
        "proposals reviewed"
    ) in markdown.splitlines()
    assert "Reviews" not in current_details(
        build_spec(spec_document("http://a", "http://b")), state
    )
