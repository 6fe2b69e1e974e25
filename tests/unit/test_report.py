"""The report page rendered from a hand-built record: plots, stages, audit, escaping, no assets."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from activities.contracts import CheckResult, Evidence, Outcome, TriggerVerdict
from rollout_specs import Threshold
from runtime.history import RecordedCheck, RolloutRecord
from runtime.report import render_report
from tests.conftest import build_spec, spec_document
from workflows.state import AuditEntry, Phase, RollbackRequest, RolloutState, StageRecord

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
STAGES = ("shadow", "canary", "half")
HOSTILE = "<script>alert('x')</script> & \"quotes\""


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _error_rate(value: float | None, outcome: Outcome) -> TriggerVerdict:
    return TriggerVerdict(
        trigger="error-rate",
        outcome=outcome,
        value=value,
        threshold=Threshold(above=0.05),
        query='error_rate{target="x"}',
        detail=f"{value} (healthy: <= 0.05)",
    )


def _reward(lower: float, upper: float) -> TriggerVerdict:
    return TriggerVerdict(
        trigger="reward-regression",
        outcome=Outcome.INCONCLUSIVE,
        value=(lower + upper) / 2,
        threshold=Threshold(below=-0.02),
        query="compare reward",
        detail="not decided yet",
        evidence=Evidence(estimate=(lower + upper) / 2, lower=lower, upper=upper, alpha=0.025),
        awaiting_evidence=True,
    )


def _gate(lower: float, upper: float) -> TriggerVerdict:
    shown = lower > -0.03
    return TriggerVerdict(
        trigger="advance_when:reward",
        outcome=Outcome.PASS if shown else Outcome.INCONCLUSIVE,
        value=(lower + upper) / 2,
        threshold=Threshold(below=-0.03),
        query="compare reward",
        detail="non-inferiority shown" if shown else "not shown yet",
        evidence=Evidence(estimate=(lower + upper) / 2, lower=lower, upper=upper, alpha=0.025),
    )


def _record() -> RolloutRecord:
    document = spec_document("http://127.0.0.1:1", "http://127.0.0.1:2", target="ranker")
    document["spec"]["rollback_triggers"] += [
        {"name": "reward-regression", "compare": {"metric": "reward", "max_drop": 0.02}},
        {"name": "action-drift", "drift": {"max_js": 0.1}, "modes": ["split"]},
    ]
    document["spec"]["stages"][1]["advance_when"] = {"non_inferior": "reward", "margin": 0.03}
    spec = build_spec(document)
    checks: list[RecordedCheck] = []
    plan = [  # (second, stage, error rate, outcome, reward interval)
        (2, "shadow", 0.001, Outcome.PASS, None),
        (3, "shadow", None, Outcome.INCONCLUSIVE, None),
        (5, "canary", 0.002, Outcome.PASS, (-0.05, 0.04)),
        (6, "canary", 0.001, Outcome.PASS, (-0.025, 0.03)),
        (8, "half", 0.003, Outcome.PASS, (-0.02, 0.02)),
        (9, "half", 0.2, Outcome.FAIL, (-0.015, 0.018)),
    ]
    for second, stage, rate, outcome, interval in plan:
        verdicts = [_error_rate(rate, outcome)]
        if interval is not None:
            verdicts.append(_reward(*interval))
        gate = _gate(*interval) if stage == "canary" and interval is not None else None
        result = CheckResult(checked_at=_at(second), verdicts=verdicts, gate=gate)
        checks.append(RecordedCheck(run_id="run-1", stage=stage, result=result))
    state = RolloutState(
        rollout_id="rollout-ranker/run-1",
        submitted_by="alice",
        started_at=T0,
        phase=Phase.ROLLED_BACK,
        stage_index=2,
        checks_total=len(checks),
        stages=[
            StageRecord(name="shadow", started_at=_at(1), ended_at=_at(4), outcome="advanced"),
            StageRecord(name="canary", started_at=_at(4), ended_at=_at(7), outcome="promoted"),
            StageRecord(name="half", started_at=_at(7), ended_at=_at(10), outcome="rolled_back"),
        ],
        rollback=RollbackRequest(actor="trigger:error-rate", reason="0.2 is above 0.05", at=_at(9)),
        audit=[
            AuditEntry(at=T0, actor="alice", action="submitted", reason="rollout ranker-v42"),
            AuditEntry(at=_at(4.5), actor="eve", action="promote", reason=HOSTILE, stage="canary"),
            AuditEntry(
                at=_at(9),
                actor="trigger:error-rate",
                action="rollback",
                reason="0.2 is above 0.05",
                stage="half",
            ),
        ],
        outcome="rolled back to 41 by trigger:error-rate: 0.2 is above 0.05",
    )
    return RolloutRecord(
        workflow_id="rollout-ranker",
        run_ids=["run-1"],
        status="completed",
        closed_at=_at(10),
        spec=spec,
        state=state,
        complete=True,
        notes=[],
        checks=checks,
    )


@pytest.fixture(scope="module")
def page() -> str:
    return render_report(_record(), generated_at=_at(60))


def _figure(page: str, trigger: str) -> str:
    found = re.search(rf'<figure id="trigger-{trigger}".*?</figure>', page, re.S)
    assert found is not None, f"no figure for {trigger}"
    return found.group(0)


def test_every_rollback_trigger_has_its_own_plot(page: str) -> None:
    assert page.count("<svg") == 4  # three triggers and the canary's advance_when gate
    for trigger in ("error-rate", "reward-regression", "action-drift"):
        assert "<svg" in _figure(page, trigger)
    assert "no check judged this trigger" in _figure(page, "action-drift")


def test_a_plot_shows_threshold_stage_boundaries_and_the_rollback_moment(page: str) -> None:
    error_rate = _figure(page, "error-rate")
    assert "rolls back above 0.05" in error_rate
    assert "rollback (trigger:error-rate)" in error_rate
    for stage in STAGES:
        assert f" {stage}</text>" in error_rate, f"stage {stage} is not labelled on the plot"
    reward = _figure(page, "reward-regression")
    assert "rolls back below -0.02" in reward
    assert "interval" in reward, "a statistical trigger shows its interval"


def test_a_stage_gated_on_evidence_plots_the_evidence_it_advanced_on(page: str) -> None:
    found = re.search(r'<figure id="gate-canary".*?</figure>', page, re.S)
    assert found is not None, "no figure for the canary's advance_when"
    gate = found.group(0)
    assert (
        "non-inferiority of <code>reward</code> within 0.03 is shown: 1 pass, 1 inconclusive"
        in (gate)
    )
    assert "advances when the lower bound is below -0.03" not in gate
    assert "advances when the lower bound is above -0.03" in gate
    assert "interval" in gate
    assert page.index('id="gate-canary"') > page.index('id="trigger-action-drift"')


def test_stages_and_audit_are_tabled_and_every_text_is_escaped(page: str) -> None:
    stages = page[page.index('<section id="stages">') : page.index('<section id="audit">')]
    for stage, outcome in zip(STAGES, ("advanced", "promoted", "rolled_back"), strict=True):
        assert re.search(rf"<td>{stage}</td><td>[^<]*</td>.*?<td>{outcome}</td>", stages)
    assert "(not reached)" in stages  # the last stage, full
    audit = page[page.index('<section id="audit">') :]
    assert audit.count("<tr>") == 4  # header and three entries
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quotes&quot;" in audit
    assert "<script" not in page
    assert "<b>" not in page


def test_the_page_is_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", page, re.I)
    references += re.findall(r"""url\(\s*["']?([^"')]*)""", page, re.I)
    assert references, "the plots refer to their own definitions"
    assert all(ref.startswith("#") for ref in references), "only references inside the page"
    for asset in ("<link", "<img", "<iframe", "@import"):
        assert asset not in page


def test_an_incomplete_record_says_what_it_cannot_show() -> None:
    record = _record().model_copy(update={"complete": False, "notes": ["no worker <answered>"]})
    page = render_report(record, generated_at=_at(60))
    assert '<p class="note">no worker &lt;answered&gt;</p>' in page
