"""Reward budget: how much reward the candidate may have cost so far, bounded always-validly.

The compare trigger asks whether the candidate is worse per decision; the budget trigger asks
how much it has cost in total: ``n_candidate x (mean_incumbent - mean_candidate)``, the
cumulative shortfall of the Conservative Bandits constraint (Wu et al., ICML 2016). It reuses
the confidence sequence of ``analysis.sequential`` on the difference of means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from analysis.sequential import (
    ArmStats,
    mean_difference,
    one_sided_bound,
    tuned_rho,
)
from analysis.verdicts import Outcome

__all__ = ["BudgetResult", "reward_loss_upper_bound"]


@dataclass(frozen=True)
class BudgetResult:
    """Verdict of the budget trigger and the evidence behind it.

    All amounts are cumulative reward lost by the candidate relative to the incumbent, in the
    metric's units (positive = the candidate earned less).

    Attributes:
        verdict: FAIL when the loss may exceed ``max_reward_loss`` (its upper bound does),
            PASS when it may not, INCONCLUSIVE during burn-in with a loss estimate still
            within budget, or without an estimate. A budget never advances a stage.
        estimate: ``n_candidate x (mean_incumbent - mean_candidate)``; None without estimate.
        lower: Always-valid lower confidence bound of the loss (one-sided, level alpha): the
            loss that is *established*.
        upper: Always-valid upper confidence bound of the loss (one-sided, level alpha): the
            loss that is still *possible*. The verdict compares this with the budget.
        statistic: The value compared with ``boundary`` (equal to ``upper``, or to ``estimate``
            before burn-in); fail when ``statistic > boundary``.
        boundary: ``max_reward_loss``.
        n_incumbent: Observations in the incumbent arm.
        n_candidate: Observations in the candidate arm.
        alpha: Level of the bounds.
        rho: Mixing precision used.
        detail: One line for humans.
    """

    verdict: Outcome
    estimate: float | None
    lower: float | None
    upper: float | None
    statistic: float | None
    boundary: float
    n_incumbent: int
    n_candidate: int
    alpha: float
    rho: float
    detail: str


def reward_loss_upper_bound(
    incumbent: ArmStats,
    candidate: ArmStats,
    *,
    max_reward_loss: float,
    alpha: float,
    expected_n: int,
    burn_in: int = 100,
    higher_is_better: bool = True,
) -> BudgetResult:
    """Bound the reward the candidate has cost so far and judge it against the budget.

    Why: the issue asks to roll back "when an upper confidence bound of n_candidate x
    (mean_incumbent - mean_candidate) exceeds max_reward_loss". The bound is
    ``n_c x (d + se x b(t) / sqrt(t))`` with ``d = mean_i - mean_c`` and ``b`` the one-sided
    boundary of ``compare_means`` (same ``rho`` tuning, same plug-in variance, same
    ``t = n_i + n_c``); being a confidence sequence, it holds at every look at once, so the
    loss exceeds it at any time with probability at most alpha.

    This rule is deliberately conservative: it rolls back when the loss *could* exceed the
    budget, not only when it *has* (that would be ``lower > max_reward_loss``). The price is
    that the bound's width grows like ``sqrt(n_c)`` even for a candidate exactly as good as
    the incumbent, so a fixed budget is eventually spent by uncertainty alone: with unit-variance
    rewards and a 1% canary, the upper bound of a zero true loss is about ``3 sqrt(n_c)``, so a
    budget of 100 trips near ``n_c ~ 1,000`` (docs/statistics.md). Size the budget for the
    stage's traffic, or let it grow with ``n_c``.

    Before ``burn_in`` observations per arm the plug-in variance is not trusted: the verdict is
    FAIL if the point estimate alone already exceeds the budget, else INCONCLUSIVE.
    With a zero variance estimate the bounds equal the estimate.

    Args:
        incumbent: Incumbent arm's statistics over the stage window.
        candidate: Candidate arm's statistics over the same window.
        max_reward_loss: The budget, in reward units, >= 0.
        alpha: Level of the bound, after the rollout's Bonferroni split, in (0, 1).
        expected_n: Observations (both arms) the stage is expected to collect (see
            ``analysis.sequential.tuned_rho``).
        burn_in: Observations per arm before the bound is used, >= 2.
        higher_is_better: False when the metric is a cost (then the loss is
            ``n_c x (mean_c - mean_i)``).

    Returns:
        The verdict with its evidence.
    """
    if not (max_reward_loss >= 0.0 and math.isfinite(max_reward_loss)):
        raise ValueError(f"max_reward_loss must be finite and >= 0, got {max_reward_loss!r}")
    if burn_in < 2:
        raise ValueError(f"burn_in must be >= 2, got {burn_in!r}")
    rho = tuned_rho(expected_n, alpha)
    n_c = candidate.n

    def result(
        verdict: Outcome,
        estimate: float | None,
        bounds: tuple[float, float] | None,
        statistic: float | None,
        detail: str,
    ) -> BudgetResult:
        return BudgetResult(
            verdict=verdict,
            estimate=estimate,
            lower=None if bounds is None else bounds[0],
            upper=None if bounds is None else bounds[1],
            statistic=statistic,
            boundary=max_reward_loss,
            n_incumbent=incumbent.n,
            n_candidate=n_c,
            alpha=alpha,
            rho=rho,
            detail=f"{verdict}: {detail}",
        )

    diff = mean_difference(incumbent, candidate)
    if isinstance(diff, str):
        return result(Outcome.INCONCLUSIVE, None, None, None, diff)
    sign = 1.0 if higher_is_better else -1.0
    loss = -sign * diff.estimate * n_c
    budget = f"budget {max_reward_loss:.5g}, n={incumbent.n}/{n_c}"

    if min(incumbent.n, n_c) < burn_in:
        seen = min(incumbent.n, n_c)
        verdict = Outcome.FAIL if loss > max_reward_loss else Outcome.INCONCLUSIVE
        return result(
            verdict,
            loss,
            None,
            loss,
            f"burn-in ({seen} of {burn_in} per arm): estimated loss {loss:.5g} vs {budget}",
        )

    boundary = one_sided_bound(float(diff.t), rho, alpha)
    half_width = n_c * diff.std_error * boundary / math.sqrt(diff.t)
    bounds = (loss - half_width, loss + half_width)
    verdict = Outcome.FAIL if bounds[1] > max_reward_loss else Outcome.PASS
    what = "may exceed" if verdict is Outcome.FAIL else "is within"
    return result(
        verdict,
        loss,
        bounds,
        bounds[1],
        f"reward loss {loss:.5g}, always-valid bounds [{bounds[0]:.5g}, {bounds[1]:.5g}]; "
        f"the possible loss {what} the {budget}",
    )
