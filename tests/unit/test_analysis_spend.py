"""Spend trigger: measured spend against the rollout's and the stage's budget, with projection."""

from __future__ import annotations

import math

import pytest

from analysis.spend import SpendResult, judge_spend
from analysis.verdicts import Outcome


def spend(
    rollout: float,
    stage: float,
    *,
    budget: float = 5_000.0,
    stage_budget: float | None = 1_000.0,
    elapsed: float = 600.0,
    left: float = 600.0,
) -> SpendResult:
    return judge_spend(
        rollout,
        stage,
        budget=budget,
        stage_budget=stage_budget,
        stage_elapsed_s=elapsed,
        stage_left_s=left,
    )


def test_within_budget_passes_and_shows_percent_rate_and_projection() -> None:
    result = spend(1_250.0, 300.0)
    assert result.verdict is Outcome.PASS
    assert result.rate_per_s == pytest.approx(0.5)
    assert result.projected == pytest.approx(1_250.0 + 0.5 * 600.0)
    assert result.projected_stage == pytest.approx(600.0)
    assert result.exceeded == ()
    assert result.projected_over == ()
    assert "rollout spend 1250 of 5000 (25.0%)" in result.detail
    assert "stage spend 300 of 1000 (30.0%)" in result.detail
    assert "rate 0.5/s" in result.detail
    assert "rollout 1550, stage 600" in result.detail
    assert "WARNING" not in result.detail


def test_exceeding_the_rollout_budget_fails_and_says_which() -> None:
    result = spend(5_000.5, 300.0)
    assert result.verdict is Outcome.FAIL
    assert result.exceeded == ("budget",)
    assert result.detail.startswith("fail: exceeded budget;")
    # Spending exactly the budget is not exceeding it.
    assert spend(5_000.0, 300.0).verdict is Outcome.PASS


def test_exceeding_the_stage_budget_fails_and_says_which() -> None:
    result = spend(2_000.0, 1_200.0)
    assert result.verdict is Outcome.FAIL
    assert result.exceeded == ("stage_budget",)
    assert "stage spend 1200 of 1000 (120.0%)" in result.detail
    both = spend(6_000.0, 1_200.0)
    assert both.exceeded == ("budget", "stage_budget")
    assert "exceeded budget and stage_budget" in both.detail


def test_a_projection_beyond_a_budget_is_flagged_but_does_not_fail() -> None:
    result = spend(4_500.0, 900.0, elapsed=300.0, left=300.0)  # 3/s: 5,400 and 1,800 at the end
    assert result.verdict is Outcome.PASS
    assert result.projected == pytest.approx(5_400.0)
    assert result.projected_over == ("budget", "stage_budget")
    assert "WARNING: the projection exceeds budget and stage_budget" in result.detail


def test_without_a_stage_budget_only_the_rollout_budget_counts() -> None:
    result = spend(100.0, 99_999.0, stage_budget=None, budget=200_000.0)
    assert result.verdict is Outcome.PASS
    assert "stage spend 99999;" in result.detail
    assert result.projected_stage is not None


@pytest.mark.parametrize(
    ("rollout", "stage"),
    [(math.nan, 10.0), (10.0, math.nan), (-1.0, 0.0), (10.0, -0.5), (math.inf, 0.0)],
)
def test_a_spend_that_is_not_a_spend_is_an_error(rollout: float, stage: float) -> None:
    result = spend(rollout, stage)
    assert result.verdict is Outcome.ERROR
    assert result.detail.startswith("error: cannot judge the spend")
    assert result.projected is None


def test_durations_that_are_negative_or_nan_count_as_zero() -> None:
    fresh = spend(10.0, 0.0, elapsed=0.0)
    assert fresh.rate_per_s is None
    assert fresh.projected is None
    assert "no spend rate yet" in fresh.detail
    assert spend(10.0, 5.0, elapsed=math.nan).rate_per_s is None
    overran = spend(1_000.0, 500.0, elapsed=100.0, left=-30.0)
    assert overran.projected == pytest.approx(1_000.0)
    assert "(0s left)" in overran.detail


def test_invalid_budgets_are_refused() -> None:
    with pytest.raises(ValueError, match="budget"):
        spend(1.0, 1.0, budget=-1.0)
    with pytest.raises(ValueError, match="stage_budget"):
        spend(1.0, 1.0, stage_budget=math.nan)


def test_a_zero_budget_shows_no_percent() -> None:
    result = spend(0.0, 0.0, budget=0.0, stage_budget=None)
    assert result.verdict is Outcome.PASS
    assert "rollout spend 0 of 0;" in result.detail
    assert spend(0.01, 0.01, budget=0.0, stage_budget=None).verdict is Outcome.FAIL
