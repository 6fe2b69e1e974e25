"""Reward budget: an always-valid upper bound on the candidate's cumulative reward loss."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from analysis.budget import BudgetResult, reward_loss_upper_bound
from analysis.sequential import ArmStats, best_rho, one_sided_bound
from analysis.verdicts import Outcome

ALPHA = 0.05


def arm(n: int, mean: float, variance: float) -> ArmStats:
    total = n * mean
    return ArmStats(n=n, total=total, total_squares=(n - 1) * variance + total * total / n)


def budget(
    incumbent: ArmStats,
    candidate: ArmStats,
    max_loss: float = 100.0,
    *,
    expected_n: int = 100_000,
    higher_is_better: bool = True,
) -> BudgetResult:
    return reward_loss_upper_bound(
        incumbent,
        candidate,
        max_reward_loss=max_loss,
        alpha=ALPHA,
        expected_n=expected_n,
        higher_is_better=higher_is_better,
    )


def test_bound_matches_the_formula_for_a_1pct_canary() -> None:
    inc, cand = arm(99_000, 1.0, 1.0), arm(1_000, 0.95, 2.0)
    result = budget(inc, cand)
    t = 100_000
    se = math.sqrt(1.0 / 99_000 + 2.0 / 1_000)
    b = one_sided_bound(float(t), best_rho(50_000, 2 * ALPHA), ALPHA)
    loss = 1_000 * 0.05
    assert result.estimate == pytest.approx(loss, rel=1e-9)
    assert result.upper == pytest.approx(loss + 1_000 * se * b / math.sqrt(t), rel=1e-9)
    assert result.lower == pytest.approx(loss - 1_000 * se * b / math.sqrt(t), rel=1e-9)
    assert result.statistic == result.upper
    assert result.boundary == 100.0
    assert result.verdict == "fail"  # 50 lost so far, but up to ~175 is still possible
    assert result.lower is not None
    assert result.lower < 100.0
    assert (result.n_incumbent, result.n_candidate) == (99_000, 1_000)


def test_within_budget_passes() -> None:
    result = budget(arm(99_000, 1.0, 1.0), arm(500, 1.0, 1.0))
    assert result.verdict is Outcome.PASS
    assert result.upper is not None
    assert result.upper < 100.0
    assert "within" in result.detail


def test_upper_bound_is_conservative_for_a_healthy_candidate() -> None:
    # Zero true loss: the possible loss still grows like sqrt(n_c), so a fixed budget trips.
    uppers = []
    for n_c in (1_000, 4_000, 16_000):
        result = budget(arm(99 * n_c, 1.0, 1.0), arm(n_c, 1.0, 1.0))
        assert result.estimate == pytest.approx(0.0, abs=1e-6)
        assert result.upper is not None
        uppers.append(result.upper)
    assert uppers[1] / uppers[0] == pytest.approx(2.0, rel=0.15)
    assert uppers[2] / uppers[1] == pytest.approx(2.0, rel=0.15)
    assert budget(arm(99 * 16_000, 1.0, 1.0), arm(16_000, 1.0, 1.0)).verdict == "fail"


def test_cost_metric_where_higher_is_worse() -> None:
    inc, cand = arm(50_000, 10.0, 4.0), arm(1_000, 10.2, 4.0)
    result = budget(inc, cand, 500.0, higher_is_better=False)
    assert result.estimate == pytest.approx(200.0, rel=1e-9)
    mirrored = budget(
        ArmStats(inc.n, -inc.total, inc.total_squares),
        ArmStats(cand.n, -cand.total, cand.total_squares),
        500.0,
    )
    assert mirrored.upper == pytest.approx(result.upper, rel=1e-9)
    assert mirrored.verdict == result.verdict


def test_burn_in_uses_the_point_estimate_only() -> None:
    catastrophic = budget(arm(5_000, 10.0, 1.0), arm(50, 0.0, 1.0))
    assert catastrophic.verdict == "fail"
    assert catastrophic.estimate == pytest.approx(500.0)
    assert catastrophic.upper is None
    assert catastrophic.statistic == catastrophic.estimate
    assert "burn-in (50 of 100 per arm)" in catastrophic.detail
    mild = budget(arm(5_000, 1.0, 1.0), arm(50, 0.9, 1.0))
    assert mild.verdict == "inconclusive"


def test_no_estimate_is_inconclusive() -> None:
    result = budget(arm(5_000, 1.0, 1.0), ArmStats(1, 1.0, 1.0))
    assert result.verdict == "inconclusive"
    assert result.estimate is None
    assert "at least 2 observations" in result.detail


def test_zero_variance_bounds_are_the_estimate() -> None:
    result = budget(arm(5_000, 3.0, 0.0), arm(500, 2.5, 0.0), 200.0)
    assert result.estimate == pytest.approx(250.0)
    assert result.lower == result.upper == result.estimate
    assert result.verdict == "fail"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"max_reward_loss": -1.0}, "max_reward_loss"), ({"burn_in": 0}, "burn_in")],
)
def test_bad_configuration_is_refused(kwargs: dict[str, float], match: str) -> None:
    args: dict[str, float] = {"max_reward_loss": 10.0, "burn_in": 100}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        reward_loss_upper_bound(
            arm(500, 1.0, 1.0),
            arm(500, 1.0, 1.0),
            max_reward_loss=args["max_reward_loss"],
            alpha=ALPHA,
            expected_n=1_000,
            burn_in=int(args["burn_in"]),
        )


sizes = st.integers(100, 100_000)
means = st.floats(-10.0, 10.0)
variances = st.floats(0.01, 100.0)


@given(
    n_i=sizes,
    n_c=sizes,
    m_i=means,
    m_c=means,
    var=variances,
    gain=st.floats(1e-3, 5.0),
    max_loss=st.floats(0.0, 1e5),
)
def test_bounds_order_and_monotonicity(
    n_i: int, n_c: int, m_i: float, m_c: float, var: float, gain: float, max_loss: float
) -> None:
    inc, cand, better = arm(n_i, m_i, var), arm(n_c, m_c, var), arm(n_c, m_c + gain, var)
    assume(not (inc.is_binary or cand.is_binary or better.is_binary))
    now, after = budget(inc, cand, max_loss), budget(inc, better, max_loss)
    assert now.lower is not None
    assert now.upper is not None
    assert now.estimate is not None
    assert now.lower <= now.estimate <= now.upper
    assert after.upper is not None
    assert after.upper < now.upper
    assert (now.verdict == "fail") == (now.upper > max_loss)
    if now.verdict is Outcome.PASS:
        assert after.verdict is Outcome.PASS
