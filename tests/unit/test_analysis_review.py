"""Review trigger: an always-valid confidence sequence on the reviewers' reject share."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats  # type: ignore[import-untyped]

from analysis.review import rate_confidence_sequence, review_rejections
from analysis.verdicts import Outcome

ALPHA = 0.05


def test_no_event_upper_bound_has_the_closed_form_of_the_uniform_mixture() -> None:
    # With s = 0, M_n(p) = 1 / ((n + 1) (1 - p)^n), so the bound solves (n + 1)(1 - p)^n = alpha.
    for n in (1, 10, 50, 1_000):
        lower, upper = rate_confidence_sequence(0, n, ALPHA)
        assert lower == 0.0
        assert upper == pytest.approx(1.0 - (ALPHA / (n + 1)) ** (1.0 / n), rel=1e-9)
    lower, upper = rate_confidence_sequence(50, 50, ALPHA)
    assert upper == 1.0
    assert lower == pytest.approx((ALPHA / 51) ** (1.0 / 50), rel=1e-9)


def test_bounds_contain_the_share_and_are_wider_than_a_fixed_sample_interval() -> None:
    lower, upper = rate_confidence_sequence(200, 1_000, ALPHA)
    wilson = stats.binomtest(200, 1_000).proportion_ci(confidence_level=0.95, method="wilson")
    assert lower < wilson.low < 0.2 < wilson.high < upper
    assert (lower, upper) == pytest.approx((0.15726, 0.24788), abs=1e-4)
    assert rate_confidence_sequence(0, 0, ALPHA) == (0.0, 1.0)


def test_bounds_tighten_as_reviews_accumulate_at_the_same_share() -> None:
    widths = []
    for n in (20, 200, 2_000, 20_000):
        lower, upper = rate_confidence_sequence(n // 5, n, ALPHA)
        widths.append(upper - lower)
    assert widths == sorted(widths, reverse=True)
    assert widths[-1] < 0.025


@pytest.mark.parametrize("rate", [0.05, 0.3])
def test_the_sequence_covers_the_rate_at_every_look_at_once(rate: float) -> None:
    # Checked after every 4 verdicts up to 400: the sequence ever misses in at most ~alpha of the
    # streams, while a Wilson interval re-read at the same looks misses far more often.
    alpha = 0.2
    rng = np.random.default_rng(7)
    streams, looks = 150, range(4, 401, 4)
    missed_cs = missed_wilson = 0
    z = stats.norm.ppf(1 - alpha / 2)
    for _ in range(streams):
        events = np.cumsum(rng.random(400) < rate)
        cs_miss = wilson_miss = False
        for n in looks:
            s = int(events[n - 1])
            lower, upper = rate_confidence_sequence(s, n, alpha)
            cs_miss |= not lower <= rate <= upper
            centre = (s + z * z / 2) / (n + z * z)
            half = z * math.sqrt(s * (n - s) / n + z * z / 4) / (n + z * z)
            wilson_miss |= not centre - half <= rate <= centre + half
        missed_cs += cs_miss
        missed_wilson += wilson_miss
    assert missed_cs / streams <= alpha
    assert missed_wilson > 2 * missed_cs


def test_fail_only_when_the_lower_bound_exceeds_the_limit() -> None:
    result = review_rejections(30, 60, max_reject_share=0.2, alpha=ALPHA)
    assert result.verdict is Outcome.FAIL
    assert result.lower > 0.2
    assert result.estimate == 0.5
    assert result.n == 60
    assert "reject more than tolerated" in result.detail
    assert "30/60" in result.detail
    # Same share, fewer reviews: the bound does not clear the limit yet, so nothing fails.
    few = review_rejections(6, 12, max_reject_share=0.2, alpha=ALPHA)
    assert few.verdict is Outcome.PASS
    assert few.lower <= 0.2 < few.estimate  # type: ignore[operator]
    assert "not shown above the limit" in few.detail


def test_pass_when_the_upper_bound_is_within_the_limit() -> None:
    result = review_rejections(10, 400, max_reject_share=0.1, alpha=ALPHA)
    assert result.verdict is Outcome.PASS
    assert result.upper <= 0.1
    assert "shown within the limit" in result.detail
    # Never a hold: a proposal is never executed, so an undecided share harms nobody.
    unclear = review_rejections(10, 40, max_reject_share=0.1, alpha=ALPHA)
    assert unclear.verdict is Outcome.PASS
    assert "not shown above the limit" in unclear.detail


def test_nothing_fails_below_min_reviews() -> None:
    all_rejected = review_rejections(9, 9, max_reject_share=0.1, alpha=ALPHA)
    assert all_rejected.verdict is Outcome.PASS
    assert "too few reviews to judge (9 of 10)" in all_rejected.detail
    assert review_rejections(9, 9, max_reject_share=0.1, alpha=ALPHA, min_reviews=5).verdict == (
        Outcome.FAIL
    )
    none = review_rejections(0, 0, max_reject_share=0.1, alpha=ALPHA)
    assert none.verdict is Outcome.PASS
    assert none.estimate is None
    assert "no reviews yet" in none.detail


def test_invalid_counts_and_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="events"):
        review_rejections(5, 4, max_reject_share=0.1, alpha=ALPHA)
    with pytest.raises(ValueError, match="events"):
        review_rejections(-1, 4, max_reject_share=0.1, alpha=ALPHA)
    with pytest.raises(ValueError, match="max_reject_share"):
        review_rejections(1, 4, max_reject_share=1.5, alpha=ALPHA)
    with pytest.raises(ValueError, match="alpha"):
        rate_confidence_sequence(1, 4, 0.0)
