"""The progression rules as tables: what a stage does after each check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from activities.contracts import CheckResult, Outcome, TriggerVerdict
from rollout_specs import Approval, MissingDataPolicy, RolloutSpecBody, Stage, Threshold
from tests.conftest import build_spec, spec_document
from workflows.progression import (
    Action,
    approval_time_left,
    approval_timed_out,
    assess,
    judge_offline,
)


def _body(**changes: Any) -> RolloutSpecBody:
    document = spec_document("http://127.0.0.1:1", "http://127.0.0.1:2", target="ranker")
    document["spec"]["rollback_triggers"] = [
        {"name": "errors", "query": "errors", "threshold": {"above": 0.1}, "failure_limit": 2},
        {"name": "reward", "query": "reward", "threshold": {"below": 0.5}},
    ]
    document["spec"]["stages"][1]["max_duration"] = "10m"
    document["spec"].update(changes)
    return build_spec(document).spec


def _check(errors: Outcome, reward: Outcome = Outcome.PASS) -> CheckResult:
    def verdict(name: str, outcome: Outcome) -> TriggerVerdict:
        return TriggerVerdict(
            trigger=name, outcome=outcome, threshold=Threshold(above=1), query=name, detail=outcome
        )

    return CheckResult(
        checked_at=datetime(2026, 1, 1, tzinfo=UTC),
        verdicts=[verdict("errors", errors), verdict("reward", reward)],
    )


CANARY = 1  # min_duration 1s, max_duration 10m
P, F, N, E = Outcome.PASS, Outcome.FAIL, Outcome.INCONCLUSIVE, Outcome.ERROR  # N: no data


@pytest.mark.parametrize(
    ("errors", "reward", "failures", "streak", "elapsed", "action"),
    [
        (P, P, {}, 0, 0.5, Action.BAKE),  # passing, but the bake is not over
        (P, P, {}, 0, 1.0, Action.ADVANCE),  # passing and baked: the gate opens
        (F, P, {}, 0, 5.0, Action.BAKE),  # first of two allowed failures: never advance
        (F, P, {"errors": 1}, 0, 5.0, Action.ROLLBACK),  # second consecutive failure
        (P, F, {}, 0, 5.0, Action.ROLLBACK),  # failure_limit 1
        (N, P, {}, 0, 5.0, Action.HOLD),  # no data is never a pass
        (E, P, {}, 0, 5.0, Action.HOLD),  # monitoring down holds
        (N, P, {}, 2, 5.0, Action.ESCALATE),  # third check without evidence (limit 3)
        (P, P, {}, 2, 0.5, Action.BAKE),  # evidence is back: the streak resets
        (P, P, {}, 0, 601.0, Action.ADVANCE),  # max_duration never blocks an earned gate
        (F, P, {}, 0, 601.0, Action.ESCALATE),  # past max_duration without earning it
        (N, P, {}, 0, 601.0, Action.ESCALATE),
    ],
)
def test_assess(
    errors: Outcome,
    reward: Outcome,
    failures: dict[str, int],
    streak: int,
    elapsed: float,
    action: Action,
) -> None:
    body = _body()
    result = assess(
        body,
        body.stages[CANARY],
        _check(errors, reward),
        failures,
        streak,
        timedelta(seconds=elapsed),
    )
    assert result.action is action


def test_only_a_pass_resets_a_failure_count() -> None:
    body = _body()
    stage = body.stages[CANARY]
    after_gap = assess(body, stage, _check(N), {"errors": 1}, 0, timedelta(seconds=5))
    assert after_gap.trigger_failures["errors"] == 1
    assert after_gap.action is Action.HOLD
    again = assess(body, stage, _check(F), after_gap.trigger_failures, 0, timedelta(seconds=5))
    assert again.action is Action.ROLLBACK
    assert again.tripped == "errors"
    assert "failed 2 consecutive check(s)" in again.reason
    reset = assess(body, stage, _check(P), {"errors": 1}, 0, timedelta(seconds=5))
    assert reset.trigger_failures["errors"] == 0


def test_missing_data_rolls_back_when_the_spec_says_so() -> None:
    body = _body(on_missing_data="rollback")
    result = assess(body, body.stages[CANARY], _check(E), {}, 2, timedelta(seconds=5))
    assert result.action is Action.ROLLBACK
    assert result.tripped is None
    assert result.reason.startswith("no evidence for 3 consecutive checks")


def test_a_rollback_wins_over_missing_data() -> None:
    body = _body()
    result = assess(body, body.stages[CANARY], _check(N, F), {}, 2, timedelta(seconds=5))
    assert result.action is Action.ROLLBACK
    assert result.tripped == "reward"


def test_a_check_with_no_verdicts_never_advances() -> None:
    body = _body()
    empty = CheckResult(checked_at=datetime(2026, 1, 1, tzinfo=UTC), verdicts=[])
    result = assess(body, body.stages[CANARY], empty, {}, 0, timedelta(hours=1))
    assert result.action is Action.HOLD
    assert result.no_evidence_streak == 1


# ----------------------------------------------------------------------------- one-off rulings


def _verdict(outcome: Outcome, detail: str) -> TriggerVerdict:
    return TriggerVerdict(trigger="offline_eval", outcome=outcome, detail=detail)


@pytest.mark.parametrize(
    ("outcome", "on_inconclusive", "action", "reason"),
    [
        (P, "hold", Action.ADVANCE, "DR estimate above the incumbent"),
        (P, "rollback", Action.ADVANCE, "DR estimate above the incumbent"),
        (F, "hold", Action.ROLLBACK, "offline gate failed: DR estimate above the incumbent"),
        (F, "rollback", Action.ROLLBACK, "offline gate failed: DR estimate above the incumbent"),
        (
            N,
            "hold",
            Action.ESCALATE,
            "the offline gate could not judge the candidate: DR estimate above the incumbent; "
            "promote to override it, or roll back",
        ),
        (
            E,
            "hold",
            Action.ESCALATE,
            "the offline gate could not judge the candidate: DR estimate above the incumbent; "
            "promote to override it, or roll back",
        ),
        (
            N,
            "rollback",
            Action.ROLLBACK,
            "the offline gate could not judge the candidate: DR estimate above the incumbent",
        ),
        (
            E,
            "rollback",
            Action.ROLLBACK,
            "the offline gate could not judge the candidate: DR estimate above the incumbent",
        ),
    ],
)
def test_judge_offline(outcome: Outcome, on_inconclusive: str, action: Action, reason: str) -> None:
    stage = (
        _body()
        .stages[CANARY]
        .model_copy(update={"on_inconclusive": MissingDataPolicy(on_inconclusive)})
    )
    ruling = judge_offline(stage, _verdict(outcome, "DR estimate above the incumbent"))
    assert (ruling.action, ruling.reason) == (action, reason)


def _approval_stage(on_timeout: str) -> Stage:
    stage = _body().stages[CANARY]
    approval = Approval(
        approvers=["bob", "carol"],
        required=2,
        timeout=timedelta(hours=4),
        on_timeout=MissingDataPolicy(on_timeout),
    )
    return stage.model_copy(update={"approval": approval})


@pytest.mark.parametrize(
    ("on_timeout", "action", "reason"),
    [
        ("rollback", Action.ROLLBACK, "stage canary got 1 of 2 approval(s) within 4h"),
        (
            "hold",
            Action.ESCALATE,
            "stage canary got 1 of 2 approval(s) within 4h; still waiting for approvals (or a "
            "rollback)",
        ),
    ],
)
def test_approval_timed_out(on_timeout: str, action: Action, reason: str) -> None:
    ruling = approval_timed_out(_approval_stage(on_timeout), 1)
    assert (ruling.action, ruling.reason) == (action, reason)


def test_approval_time_counts_from_the_first_ask() -> None:
    approval = _approval_stage("hold").approval
    assert approval is not None
    asked = datetime(2026, 1, 1, 9, tzinfo=UTC)
    assert approval_time_left(approval, asked, asked) == timedelta(hours=4)
    assert approval_time_left(approval, asked, asked + timedelta(hours=3)) == timedelta(hours=1)
    assert approval_time_left(approval, asked, asked + timedelta(hours=5)) < timedelta()
