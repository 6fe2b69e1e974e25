"""The review trigger: do human reviewers reject too many of the candidate's proposals?

Actions routed through a human are not executed; the reviewers' verdicts are the evidence. The
reject share is judged with an always-valid confidence sequence on a Bernoulli rate, so the
trigger can be re-checked after every verdict without inflating its error. The same confidence
sequence bounds per-segment rates in ``analysis.segments.fairness_ratio``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import optimize, special  # type: ignore[import-untyped]

from analysis.verdicts import Outcome

__all__ = ["ReviewResult", "rate_confidence_sequence", "review_rejections"]

# Parameters of the Beta mixing distribution (uniform: no rate is favoured a priori).
PRIOR_A = 1.0
PRIOR_B = 1.0


def _check_counts(events: int, n: int) -> None:
    if not (0 <= events <= n):
        raise ValueError(f"need 0 <= events <= n, got events={events!r}, n={n!r}")


def _log_mixture(rate: float, events: int, n: int) -> float:
    """Log of the beta-binomial mixture martingale of "the rate is ``rate``"."""
    failures = n - events
    return float(
        special.betaln(PRIOR_A + events, PRIOR_B + failures)
        - special.betaln(PRIOR_A, PRIOR_B)
        - special.xlogy(events, rate)
        - special.xlog1py(failures, -rate)
    )


def rate_confidence_sequence(events: int, n: int, alpha: float) -> tuple[float, float]:
    """Always-valid two-sided bounds ``(lower, upper)`` of a Bernoulli rate after ``n`` trials.

    Why: a verdict re-checked after every new observation needs bounds that hold at every look
    at once. For a rate ``p`` the beta-binomial mixture (Robbins 1970; the "conjugate mixture"
    of Howard et al. 2021) ``M_n(p) = B(a + s, b + n - s) / (B(a, b) p^s (1 - p)^(n - s))`` is
    a nonnegative martingale with ``M_0 = 1`` whenever each observation is 1 with probability
    ``p`` given the past, so by Ville's inequality ``P(exists n: M_n(p) >= 1/alpha) <= alpha``.
    The set ``{p: M_n(p) < 1/alpha}`` is therefore a confidence sequence at level ``alpha``
    covering both sides together; ``M_n`` is log-convex in ``p`` with its minimum (<= 1) at
    ``s / n``, so the set is an interval whose ends are found by root finding. The mixing
    distribution is uniform (``a = b = 1``): it favours no rate and is exact for small counts,
    where a normal approximation is not. The price of validity at every look is width: at
    200/1000 the 95% sequence is [0.157, 0.248] where the fixed-sample Wilson interval is
    [0.176, 0.226].

    Args:
        events: Observations equal to 1, ``0 <= events <= n``.
        n: Observations so far, >= 0.
        alpha: Probability that the sequence ever misses the rate, in (0, 1).

    Returns:
        ``(lower, upper)`` in [0, 1]; ``(0, 1)`` without observations.
    """
    _check_counts(events, n)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if n == 0:
        return 0.0, 1.0
    target = math.log(1.0 / alpha)
    point = events / n

    def excess(rate: float) -> float:
        return _log_mixture(rate, events, n) - target

    tiny = 1e-300
    lower = 0.0 if events == 0 else optimize.brentq(excess, tiny, point, xtol=1e-300, rtol=1e-12)
    upper = (
        1.0 if events == n else optimize.brentq(excess, point, 1.0 - 1e-16, xtol=1e-15, rtol=1e-12)
    )
    return float(lower), float(upper)


@dataclass(frozen=True)
class ReviewResult:
    """Verdict of the review trigger and the evidence behind it.

    Attributes:
        verdict: FAIL (the reject share is shown above ``max_reject_share``, from
            ``min_reviews`` verdicts on), else PASS.
        estimate: ``rejected / reviewed``; None without reviews.
        lower: Always-valid lower bound of the reject share.
        upper: Always-valid upper bound of the reject share.
        rejected: Rejected proposals.
        n: Reviewed proposals.
        max_reject_share: The limit.
        alpha: Level of the confidence sequence.
        detail: One line for humans.
    """

    verdict: Outcome
    estimate: float | None
    lower: float
    upper: float
    rejected: int
    n: int
    max_reject_share: float
    alpha: float
    detail: str


def review_rejections(
    rejected: int,
    reviewed: int,
    *,
    max_reject_share: float,
    alpha: float,
    min_reviews: int = 10,
) -> ReviewResult:
    """Judge the share of the candidate's proposals that reviewers rejected.

    Why: the issue asks to roll back when reviewers reject more than a stated share "with a
    confidence bound, not a point estimate". The bounds are ``rate_confidence_sequence`` at
    ``alpha``, valid however many verdicts lockgate looks at and whenever it stops, so a run of
    early rejections by chance rolls back a good candidate with probability at most ``alpha``
    (FAIL when the lower bound exceeds the limit). Anything short of that is a PASS: a
    proposal is never executed, so an unreviewed or undecided one harms nobody, and a trigger
    that held the stage until the share were shown low would block for ever a candidate that
    seldom proposes; the evidence a stage needs from reviewers is its `min_reviews`. The detail
    still tells "shown within the limit" (upper bound at or below it) from "not shown above".
    Below ``min_reviews`` verdicts nothing can fail: a handful of early rejections is not a
    track record.

    Args:
        rejected: Proposals rejected, ``0 <= rejected <= reviewed``.
        reviewed: Proposals with a verdict (approve or reject).
        max_reject_share: Tolerated reject share, in [0, 1].
        alpha: Level, after the rollout's Bonferroni split, in (0, 1).
        min_reviews: Verdicts needed before any verdict, >= 1.

    Returns:
        The verdict with its evidence.
    """
    _check_counts(rejected, reviewed)
    if not 0.0 <= max_reject_share <= 1.0:
        raise ValueError(f"max_reject_share must be in [0, 1], got {max_reject_share!r}")
    if min_reviews < 1:
        raise ValueError(f"min_reviews must be >= 1, got {min_reviews!r}")
    lower, upper = rate_confidence_sequence(rejected, reviewed, alpha)
    estimate = rejected / reviewed if reviewed else None
    bounds = f"always-valid bounds [{lower:.3f}, {upper:.3f}]"
    shown = "no reviews yet" if estimate is None else f"{estimate:.3f} ({rejected}/{reviewed})"
    limit = f"max_reject_share {max_reject_share:g}"
    if reviewed < min_reviews:
        verdict = Outcome.PASS
        what = f"too few reviews to judge ({reviewed} of {min_reviews})"
    elif lower > max_reject_share:
        verdict = Outcome.FAIL
        what = "reviewers reject more than tolerated"
    elif upper <= max_reject_share:
        verdict = Outcome.PASS
        what = "reject share shown within the limit"
    else:
        verdict = Outcome.PASS
        what = "not shown above the limit"
    return ReviewResult(
        verdict=verdict,
        estimate=estimate,
        lower=lower,
        upper=upper,
        rejected=rejected,
        n=reviewed,
        max_reject_share=max_reject_share,
        alpha=alpha,
        detail=f"{verdict}: {what}; reject share {shown}, {bounds} vs {limit}",
    )
