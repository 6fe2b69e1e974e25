"""Segments trigger: the compare test per segment with alpha split, and the fairness ratio."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.review import rate_confidence_sequence
from analysis.segments import SegmentComparison, compare_segments, fairness_ratio, segment_count
from analysis.sequential import ArmStats, compare_means
from analysis.verdicts import Outcome

ALPHA = 0.05


def arm(n: int, mean: float, variance: float = 1.0) -> ArmStats:
    total = n * mean
    return ArmStats(n=n, total=total, total_squares=(n - 1) * variance + total * total / n)


def draw(rng: np.random.Generator, n: int, mean: float) -> ArmStats:
    x = mean + rng.standard_normal(n)
    return ArmStats(n=n, total=float(x.sum()), total_squares=float((x * x).sum()))


def compare(
    incumbent: dict[str, ArmStats],
    candidate: dict[str, ArmStats],
    *,
    max_drop: float = 0.0,
    planned: int | None = None,
    higher_is_better: bool = True,
    min_samples: int = 100,
    alpha: float = ALPHA,
) -> SegmentComparison:
    return compare_segments(
        incumbent,
        candidate,
        max_drop=max_drop,
        relative=False,
        alpha=alpha,
        expected_n=20_000,
        higher_is_better=higher_is_better,
        min_samples=min_samples,
        segments_planned=planned,
    )


def test_a_harmed_segment_fails_and_is_named_while_the_average_improves() -> None:
    regions = ["eu", "us", "asia", "latam", "africa"]
    incumbent = {r: arm(2_000, 1.0) for r in regions}
    candidate = {r: arm(2_000, 1.1) for r in regions}
    candidate["asia"] = arm(2_000, 0.8)  # the average still improves: +0.04
    result = compare_segments(
        incumbent, candidate, max_drop=0.0, relative=False, alpha=ALPHA, expected_n=20_000
    )
    assert result.verdict is Outcome.FAIL
    assert result.segment == "asia"
    assert "segment asia harmed" in result.detail
    worst = next(s for s in result.segments if s.segment == "asia")
    assert worst.verdict is Outcome.FAIL
    assert (result.estimate, result.lower, result.upper) == (
        worst.estimate,
        worst.lower,
        worst.upper,
    )
    assert (result.statistic, result.boundary) == (worst.statistic, worst.boundary)
    assert (result.n_incumbent, result.n_candidate) == (2_000, 2_000)
    assert result.estimate == pytest.approx(-0.2)
    assert all(s.verdict is not Outcome.FAIL for s in result.segments if s.segment != "asia")


def test_each_segment_is_the_compare_test_at_alpha_over_k() -> None:
    incumbent = {"a": arm(1_500, 1.0), "b": arm(800, 2.0, 2.0)}
    candidate = {"a": arm(1_400, 0.97), "b": arm(900, 2.1, 1.5)}
    result = compare_segments(
        incumbent,
        candidate,
        max_drop=0.05,
        relative=False,
        alpha=ALPHA,
        expected_n=20_000,
        segments_planned=8,
    )
    assert result.k == 8
    assert result.segment_alpha == pytest.approx(ALPHA / 8)
    for outcome in result.segments:
        direct = compare_means(
            incumbent[outcome.segment],
            candidate[outcome.segment],
            max_drop=0.05,
            relative=False,
            alpha=ALPHA / 8,
            expected_n=20_000 // 8,
        )
        assert outcome.verdict == direct.verdict
        assert outcome.statistic == direct.statistic
        assert outcome.boundary == direct.boundary
        assert (outcome.lower, outcome.upper) == (direct.lower, direct.upper)


def test_k_never_shrinks_below_the_planned_segments() -> None:
    assert segment_count(3, 10) == 10
    assert segment_count(12, 10) == 12
    assert segment_count(3, None) == 3
    assert segment_count(0, None) == 1
    with pytest.raises(ValueError, match="segments_planned"):
        segment_count(3, 0)
    # A segment disappearing from the window must not loosen the others' level.
    incumbent = {s: arm(1_000, 1.0) for s in "abc"}
    candidate = {s: arm(1_000, 0.9) for s in "abc"}
    before = compare(incumbent, candidate, planned=3)
    del candidate["c"]
    after = compare(incumbent, candidate, planned=3)
    assert before.k == after.k == 3
    assert after.segment_alpha == before.segment_alpha
    boundary_a = [s.boundary for s in before.segments if s.segment == "a"]
    assert [s.boundary for s in after.segments if s.segment == "a"] == boundary_a
    assert after.unmatched == ("c",)
    assert "in one arm only: c" in after.detail


def test_a_larger_k_makes_each_segment_test_stricter() -> None:
    incumbent, candidate = {"a": arm(3_000, 1.0)}, {"a": arm(3_000, 0.91)}
    alone = compare(incumbent, candidate, planned=1)
    among_many = compare(incumbent, candidate, planned=30)
    assert alone.verdict is Outcome.FAIL
    assert among_many.verdict is Outcome.INCONCLUSIVE
    assert among_many.boundary is not None
    assert alone.boundary is not None
    assert among_many.boundary > alone.boundary


def test_pass_needs_every_judged_segment_to_pass() -> None:
    incumbent = {s: arm(5_000, 1.0) for s in "abc"}
    candidate = {s: arm(5_000, 1.0) for s in "abc"}
    assert compare(incumbent, candidate, max_drop=0.1).verdict is Outcome.PASS
    # A segment below the sample minimum is not judged yet: listed, and it blocks nothing.
    incumbent["d"], candidate["d"] = arm(50, 1.0), arm(50, 0.5)
    small = compare(incumbent, candidate, max_drop=0.1)
    assert small.verdict is Outcome.PASS
    assert small.segment != "d"
    assert "below 100 per arm (not judged yet): d" in small.detail
    # One judged segment not yet shown within max_drop: awaiting evidence, never a pass.
    incumbent["e"], candidate["e"] = arm(300, 1.0), arm(300, 1.0)
    held = compare(incumbent, candidate, max_drop=0.1)
    assert held.verdict is Outcome.INCONCLUSIVE
    assert held.segment == "e"
    assert "not yet established in every segment" in held.detail
    assert "worst e: inconclusive" in held.detail


def test_nothing_is_judged_below_the_sample_minimum() -> None:
    result = compare({"a": arm(50, 1.0)}, {"a": arm(50, 1.0)})
    assert result.verdict is Outcome.INCONCLUSIVE
    assert result.segment == "a"  # the evidence is still shown


def test_no_segment_in_both_arms_is_inconclusive() -> None:
    result = compare({"a": arm(500, 1.0)}, {"b": arm(500, 1.0)})
    assert result.verdict is Outcome.INCONCLUSIVE
    assert result.segment is None
    assert result.segments == ()
    assert "no segment in both arms" in result.detail
    assert compare({}, {}).verdict is Outcome.INCONCLUSIVE


def test_higher_is_worse_metrics_fail_on_an_increase() -> None:
    incumbent = {"eu": arm(3_000, 0.1, 0.09), "us": arm(3_000, 0.1, 0.09)}
    candidate = {"eu": arm(3_000, 0.1, 0.09), "us": arm(3_000, 0.2, 0.16)}
    result = compare(incumbent, candidate, higher_is_better=False)
    assert result.verdict is Outcome.FAIL
    assert result.segment == "us"


def test_healthy_candidates_are_rarely_rolled_back_however_often_checked() -> None:
    # A/A, 5 segments, 20 looks: the split test stays under alpha; the same data judged per
    # segment at the full alpha (K = 1 each) rolls back more often.
    rng = np.random.default_rng(11)
    alpha, runs, looks, step = 0.2, 150, 20, 50
    split_fails = naive_fails = 0
    for _ in range(runs):
        sums = np.zeros((2, 5, 2))
        split = naive = False
        for look in range(1, looks + 1):
            x = 1.0 + rng.standard_normal((2, 5, step))
            sums += np.stack([x.sum(axis=2), (x * x).sum(axis=2)], axis=2)
            n = look * step
            inc = {
                str(s): ArmStats(n, float(sums[0, s, 0]), float(sums[0, s, 1])) for s in range(5)
            }
            cand = {
                str(s): ArmStats(n, float(sums[1, s, 0]), float(sums[1, s, 1])) for s in range(5)
            }
            result = compare(inc, cand, alpha=alpha, min_samples=50)
            split |= result.verdict is Outcome.FAIL
            naive |= any(
                compare({s: inc[s]}, {s: cand[s]}, alpha=alpha, min_samples=50).verdict
                is Outcome.FAIL
                for s in inc
            )
        split_fails += split
        naive_fails += naive
    assert split_fails / runs <= alpha
    assert naive_fails > split_fails


def counts(*pairs: tuple[str, int, int]) -> dict[str, tuple[int, int]]:
    return {name: (events, decisions) for name, events, decisions in pairs}


def test_fairness_fails_when_the_ratio_is_shown_below_the_floor_and_names_both_segments() -> None:
    candidate = counts(("eu", 2_000, 10_000), ("us", 5_000, 10_000), ("asia", 4_000, 10_000))
    result = fairness_ratio(candidate, {}, min_ratio=0.8, max_ratio_drop=None, alpha=ALPHA)
    assert result.verdict is Outcome.FAIL
    assert result.estimate == pytest.approx(0.4)
    assert result.upper is not None
    assert result.upper < 0.8
    assert result.statistic == result.upper
    assert result.boundary == 0.8
    assert (result.lowest, result.highest) == ("eu", "us")
    assert "lowest eu 0.200" in result.detail
    assert "highest us 0.500" in result.detail
    assert "min_ratio 0.8" in result.detail


def test_fairness_does_not_fail_without_evidence() -> None:
    # The same 0.4 ratio on 20 decisions per segment is not shown: awaiting evidence.
    candidate = counts(("eu", 4, 20), ("us", 10, 20))
    result = fairness_ratio(
        candidate, {}, min_ratio=0.8, max_ratio_drop=None, alpha=ALPHA, min_samples=10
    )
    assert result.verdict is Outcome.INCONCLUSIVE
    assert result.lower is not None
    assert result.upper is not None
    assert result.lower < 0.4 < 0.8 < result.upper


def test_fairness_never_fails_a_fair_candidate_under_repeated_looks() -> None:
    # True ratio 0.9 >= 0.8 in every stream; bounds re-checked at 10 looks.
    rng = np.random.default_rng(3)
    alpha, streams, fails = 0.2, 100, 0
    rates = {"a": 0.45, "b": 0.5, "c": 0.5}
    for _ in range(streams):
        events = {s: np.cumsum(rng.random(2_000) < p) for s, p in rates.items()}
        failed = False
        for n in range(200, 2_001, 200):
            candidate = {s: (int(e[n - 1]), n) for s, e in events.items()}
            result = fairness_ratio(candidate, {}, min_ratio=0.9, max_ratio_drop=None, alpha=alpha)
            failed |= result.verdict is Outcome.FAIL
        fails += failed
    assert fails / streams <= alpha


def test_fairness_against_the_incumbent_splits_alpha_between_the_arms() -> None:
    candidate = counts(("eu", 3_000, 10_000), ("us", 5_000, 10_000))
    incumbent = counts(("eu", 4_800, 10_000), ("us", 5_000, 10_000))
    result = fairness_ratio(candidate, incumbent, min_ratio=None, max_ratio_drop=0.1, alpha=ALPHA)
    assert result.verdict is Outcome.FAIL
    assert result.incumbent_estimate == pytest.approx(0.96)
    assert result.upper is not None
    assert result.incumbent_lower is not None
    assert result.upper < result.incumbent_lower - 0.1
    assert result.boundary == pytest.approx(result.incumbent_lower - 0.1)
    assert "the incumbent's ratio - 0.1" in result.detail
    eu = next(r for r in result.candidate_rates if r.segment == "eu")
    assert (eu.lower, eu.upper) == rate_confidence_sequence(3_000, 10_000, ALPHA / 2 / 2)
    # Without the incumbent comparison the candidate's bounds get all of alpha.
    alone = fairness_ratio(candidate, incumbent, min_ratio=0.5, max_ratio_drop=None, alpha=ALPHA)
    eu = next(r for r in alone.candidate_rates if r.segment == "eu")
    assert (eu.lower, eu.upper) == rate_confidence_sequence(3_000, 10_000, ALPHA / 2)


def test_fairness_passes_when_compliance_is_shown() -> None:
    candidate = counts(("eu", 4_900, 10_000), ("us", 5_000, 10_000))
    incumbent = counts(("eu", 4_900, 10_000), ("us", 5_000, 10_000))
    result = fairness_ratio(candidate, incumbent, min_ratio=0.8, max_ratio_drop=0.1, alpha=ALPHA)
    assert result.verdict is Outcome.PASS
    assert result.lower is not None
    assert result.lower >= 0.8


def test_fairness_needs_two_segments_with_min_samples() -> None:
    candidate = counts(("eu", 10, 50), ("us", 500, 1_000))
    result = fairness_ratio(candidate, {}, min_ratio=0.8, max_ratio_drop=None, alpha=ALPHA)
    assert result.verdict is Outcome.INCONCLUSIVE
    assert result.estimate is None
    assert "awaiting two segments with 100 decisions each" in result.detail
    assert [r.judged for r in result.candidate_rates] == [False, True]
    # The incumbent has no ratio yet: the comparison with it cannot pass.
    both = counts(("eu", 500, 1_000), ("us", 500, 1_000))
    held = fairness_ratio(both, {}, min_ratio=None, max_ratio_drop=0.1, alpha=ALPHA)
    assert held.verdict is Outcome.INCONCLUSIVE
    assert "the incumbent has no ratio yet" in held.detail


def test_fairness_refuses_meaningless_configuration() -> None:
    with pytest.raises(ValueError, match="min_ratio, max_ratio_drop"):
        fairness_ratio({}, {}, min_ratio=None, max_ratio_drop=None, alpha=ALPHA)
    with pytest.raises(ValueError, match="events"):
        fairness_ratio({"a": (5, 4)}, {}, min_ratio=0.8, max_ratio_drop=None, alpha=ALPHA)


def test_compare_segments_refuses_meaningless_configuration() -> None:
    one = {"a": arm(500, 1.0)}
    with pytest.raises(ValueError, match="alpha"):
        compare(one, one, alpha=1.0)
    with pytest.raises(ValueError, match="min_samples"):
        compare(one, one, min_samples=1)
    with pytest.raises(ValueError, match="segments_planned"):
        compare(one, one, planned=0)
