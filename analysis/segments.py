"""The segments trigger: no segment harmed, and no segment treated unfairly.

An average can improve while one region, device or customer tier gets worse. ``compare_segments``
runs the always-valid compare test of ``analysis.sequential`` in every segment with the level
split across segments, so a candidate that harms one segment is rolled back and the evidence
names the segment. ``fairness_ratio`` bounds the ratio of a rate between the candidate's lowest
and highest segment (the four-fifths rule), against a floor and against the incumbent's ratio.
Both are pure functions of per-segment counts, valid however often they are re-checked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from analysis.review import rate_confidence_sequence
from analysis.sequential import ArmStats, Comparison, compare_means
from analysis.verdicts import Outcome

__all__ = [
    "FairnessResult",
    "SegmentComparison",
    "SegmentOutcome",
    "SegmentRate",
    "compare_segments",
    "fairness_ratio",
    "segment_count",
]


def segment_count(present: int, segments_planned: int | None) -> int:
    """The number of segments ``K`` the level is split across: ``max(planned, present)``.

    Why: each segment's test runs at ``alpha / K`` and a union bound over the segments keeps
    the false-rollback rate at or below ``alpha``. The bound only holds over a family fixed in
    advance, or at least one that never shrinks: the checks are stateless, and if a segment that
    was judged at one look (and so spent its share) vanished from the window at the next, a
    smaller ``K`` would hand every remaining segment a larger share than the union bound allows.
    Pass the largest number of segments the stage can have (e.g. the gateway's cap of values
    per label, plus ``other``) as ``segments_planned`` to make ``K`` constant.
    """
    if present < 0:
        raise ValueError(f"present must be >= 0, got {present!r}")
    if segments_planned is not None and segments_planned < 1:
        raise ValueError(f"segments_planned must be >= 1, got {segments_planned!r}")
    return max(segments_planned or 0, present, 1)


@dataclass(frozen=True)
class SegmentOutcome:
    """The compare test in one segment.

    Attributes:
        segment: The segment (a label's value).
        verdict: The segment's compare verdict at ``alpha / K``.
        estimate: Candidate minus incumbent (relative when asked); None without an estimate.
        lower: Always-valid lower bound of the difference.
        upper: Always-valid upper bound of the difference.
        statistic: ``S_t`` of the compare test (larger = worse); None without an estimate.
        boundary: The one-sided boundary it is compared with.
        n_incumbent: Incumbent observations in the segment.
        n_candidate: Candidate observations in the segment.
        detail: The compare test's line for humans.
    """

    segment: str
    verdict: Outcome
    estimate: float | None
    lower: float | None
    upper: float | None
    statistic: float | None
    boundary: float | None
    n_incumbent: int
    n_candidate: int
    detail: str

    @classmethod
    def of(cls, segment: str, result: Comparison) -> SegmentOutcome:
        """Keep the evidence of one segment's ``compare_means`` result."""
        return cls(
            segment=segment,
            verdict=result.verdict,
            estimate=result.estimate,
            lower=result.lower,
            upper=result.upper,
            statistic=result.statistic,
            boundary=result.boundary,
            n_incumbent=result.n_incumbent,
            n_candidate=result.n_candidate,
            detail=result.detail,
        )


@dataclass(frozen=True)
class SegmentComparison:
    """Verdict of the no-segment-harmed test and the evidence behind it.

    The summary fields (``estimate`` to ``n_candidate``) are those of the worst segment, so the
    result reads like a ``compare_means`` result about the segment that matters.

    Attributes:
        verdict: FAIL if any segment fails, PASS if every judged segment (``min_samples``
            per arm) passes, else INCONCLUSIVE (also when no segment is judged yet).
        segment: The worst segment (failed first, then the largest statistic; judged
            segments before the others); None when none has an estimate.
        estimate: The worst segment's difference.
        lower: Its lower bound.
        upper: Its upper bound.
        statistic: Its ``S_t``.
        boundary: Its boundary.
        n_incumbent: Its incumbent observations.
        n_candidate: Its candidate observations.
        segments: Every judged segment (present in both arms), sorted by name.
        unmatched: Segments present in one arm only (not judged).
        k: Segments the level is split across.
        alpha: The trigger's level before the split.
        segment_alpha: ``alpha / k``, the level of each segment's test.
        detail: One line for humans.
    """

    verdict: Outcome
    segment: str | None
    estimate: float | None
    lower: float | None
    upper: float | None
    statistic: float | None
    boundary: float | None
    n_incumbent: int
    n_candidate: int
    segments: tuple[SegmentOutcome, ...]
    unmatched: tuple[str, ...]
    k: int
    alpha: float
    segment_alpha: float
    detail: str


def _badness(outcome: SegmentOutcome, higher_is_better: bool) -> tuple[int, float, float]:
    """Sort key, largest = worst: failed first, then by statistic, then by the estimate."""
    sign = 1.0 if higher_is_better else -1.0
    statistic = -math.inf if outcome.statistic is None else outcome.statistic
    estimate = -math.inf if outcome.estimate is None else -sign * outcome.estimate
    return (int(outcome.verdict is Outcome.FAIL), statistic, estimate)


def _overall(
    outcomes: tuple[SegmentOutcome, ...], min_samples: int, higher_is_better: bool
) -> tuple[Outcome, SegmentOutcome | None]:
    """The family's verdict and its worst segment.

    Only segments with ``min_samples`` observations per arm are judged (before that the compare
    test can neither fail nor pass); PASS needs at least one of them and all of them passing.
    """
    judged = [o for o in outcomes if min(o.n_incumbent, o.n_candidate) >= min_samples]
    if any(o.verdict is Outcome.FAIL for o in outcomes):
        verdict = Outcome.FAIL
    elif judged and all(o.verdict is Outcome.PASS for o in judged):
        verdict = Outcome.PASS
    else:
        verdict = Outcome.INCONCLUSIVE
    ranked = [o for o in judged if o.statistic is not None] or [
        o for o in outcomes if o.statistic is not None
    ]
    worst = max(ranked, key=lambda o: _badness(o, higher_is_better)) if ranked else None
    return verdict, worst


def _segments_detail(
    verdict: Outcome,
    worst: SegmentOutcome | None,
    outcomes: tuple[SegmentOutcome, ...],
    min_samples: int,
    unmatched: tuple[str, ...],
) -> str:
    waiting = [o.segment for o in outcomes if min(o.n_incumbent, o.n_candidate) < min_samples]
    tally = ", ".join(
        f"{n} {v}"
        for v in (Outcome.FAIL, Outcome.PASS, Outcome.INCONCLUSIVE)
        if (n := sum(o.verdict is v for o in outcomes))
    )
    if not outcomes:
        lead = "no segment in both arms"
    elif verdict is Outcome.FAIL and worst is not None:
        lead = f"segment {worst.segment} harmed"
    elif verdict is Outcome.PASS:
        lead = "no segment harmed (non-inferiority shown in every judged segment)"
    elif worst is None:
        lead = "no segment has an estimate yet"
    else:
        lead = "not yet established in every segment"
    text = f"{verdict}: {lead}"
    if outcomes:
        text += f"; {tally} of {len(outcomes)}"
    if waiting:
        text += f"; below {min_samples} per arm (not judged yet): {', '.join(waiting)}"
    if unmatched:
        text += f"; in one arm only: {', '.join(unmatched)}"
    return text


def compare_segments(
    incumbent: Mapping[str, ArmStats],
    candidate: Mapping[str, ArmStats],
    *,
    max_drop: float,
    relative: bool,
    alpha: float,
    expected_n: int,
    higher_is_better: bool = True,
    min_samples: int = 100,
    segments_planned: int | None = None,
) -> SegmentComparison:
    """Judge the candidate in every segment: roll back if any one of them is harmed.

    Why: "no segment harmed" is a family of compare tests, one per segment, and the rollout
    rolls back if any fires. Each runs ``compare_means`` at ``alpha / K`` (Bonferroni,
    ``K = segment_count(...)``, see there why ``K`` never shrinks); each is always-valid, so by
    the union bound a candidate that harms no segment is rolled back with probability at most
    ``alpha`` however often lockgate looks, whatever the dependence between segments. The
    naive alternative, every segment at the full ``alpha``, rolls back about ``K`` times as
    often (benchmarks/sequential.py). PASS keeps the compare test's meaning, non-inferiority
    within ``max_drop`` established, and needs it in every judged segment (one with
    ``min_samples`` observations per arm; at least one): the pass tests are split the same
    way, so a harmed judged segment is advanced with probability at most ``alpha``. A segment
    still below ``min_samples`` can neither fail nor block a pass; it is listed in ``detail``.

    Segments in one arm only cannot be compared; they are listed in the result, do not count
    towards ``K`` (pass ``segments_planned`` to cover them) and block nothing. The boundary of
    every segment is tuned for an even split of the stage, ``expected_n / K`` observations
    (see ``analysis.sequential.tuned_rho``); a wrong guess changes detection time, never the
    error rate.

    Args:
        incumbent: Incumbent statistics per segment over the stage window.
        candidate: Candidate statistics per segment over the same window.
        max_drop: Tolerated drop in each segment (see ``compare_means``).
        relative: Judge relative differences.
        alpha: The trigger's level, after the rollout's Bonferroni split, in (0, 1).
        expected_n: Observations (both arms, all segments) the stage is expected to have.
        higher_is_better: False for metrics such as error rates.
        min_samples: Observations per arm in a segment before it is judged (the compare
            test's burn-in), >= 2.
        segments_planned: The most segments the stage can have; None = those present.

    Returns:
        The verdict with the worst segment's evidence and every segment's.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if expected_n < 2:
        raise ValueError(f"expected_n must be >= 2, got {expected_n!r}")
    if min_samples < 2:
        raise ValueError(f"min_samples must be >= 2, got {min_samples!r}")
    shared = sorted(set(incumbent) & set(candidate))
    unmatched = tuple(sorted(set(incumbent) ^ set(candidate)))
    k = segment_count(len(shared), segments_planned)
    segment_alpha = alpha / k
    per_segment_n = max(2, expected_n // k)
    outcomes = tuple(
        SegmentOutcome.of(
            name,
            compare_means(
                incumbent[name],
                candidate[name],
                max_drop=max_drop,
                relative=relative,
                alpha=segment_alpha,
                expected_n=per_segment_n,
                burn_in=min_samples,
                higher_is_better=higher_is_better,
            ),
        )
        for name in shared
    )
    verdict, worst = _overall(outcomes, min_samples, higher_is_better)
    detail = _segments_detail(verdict, worst, outcomes, min_samples, unmatched)
    detail += f"; alpha {alpha:g} / {k} segments = {segment_alpha:.3g} each"
    if worst is not None:
        detail += f"; worst {worst.segment}: {worst.detail}"
    return SegmentComparison(
        verdict=verdict,
        segment=None if worst is None else worst.segment,
        estimate=None if worst is None else worst.estimate,
        lower=None if worst is None else worst.lower,
        upper=None if worst is None else worst.upper,
        statistic=None if worst is None else worst.statistic,
        boundary=None if worst is None else worst.boundary,
        n_incumbent=0 if worst is None else worst.n_incumbent,
        n_candidate=0 if worst is None else worst.n_candidate,
        segments=outcomes,
        unmatched=unmatched,
        k=k,
        alpha=alpha,
        segment_alpha=segment_alpha,
        detail=detail,
    )


@dataclass(frozen=True)
class SegmentRate:
    """One segment's rate of the action with its always-valid bounds.

    Attributes:
        segment: The segment.
        events: Decisions of the action.
        decisions: All decisions in the segment.
        rate: ``events / decisions`` (NaN without decisions).
        lower: Always-valid lower bound at the segment's share of alpha.
        upper: Always-valid upper bound at the segment's share of alpha.
        judged: Whether the segment has ``min_samples`` decisions and enters the ratio.
    """

    segment: str
    events: int
    decisions: int
    rate: float
    lower: float
    upper: float
    judged: bool


@dataclass(frozen=True)
class _ArmRatio:
    rates: tuple[SegmentRate, ...]
    estimate: float | None
    lower: float | None
    upper: float | None
    lowest: str | None
    highest: str | None
    n: int
    bound_segments: tuple[str, str] | None = None


def _arm_ratio(
    counts: Mapping[str, tuple[int, int]], alpha: float, min_samples: int, planned: int | None
) -> _ArmRatio:
    """Ratio of the lowest to the highest segment rate, with simultaneous bounds.

    Each segment's rate gets a confidence sequence at ``alpha / K``; when all hold (probability
    >= 1 - alpha) every true rate ``p_s`` is in ``[L_s, U_s]``, so the true ratio
    ``min p / max p`` is at most ``min U / max L`` and at least ``min L / max U``.
    """
    k = segment_count(len(counts), planned)
    rates = []
    for name in sorted(counts):
        events, decisions = counts[name]
        low, high = rate_confidence_sequence(events, decisions, alpha / k)
        rate = events / decisions if decisions else math.nan
        rates.append(
            SegmentRate(name, events, decisions, rate, low, high, decisions >= min_samples)
        )
    judged = [r for r in rates if r.judged]
    n = sum(r.decisions for r in rates)
    if len(judged) < 2:
        return _ArmRatio(tuple(rates), None, None, None, None, None, n)
    lowest = min(judged, key=lambda r: (r.rate, r.segment))
    highest = max(judged, key=lambda r: (r.rate, r.segment))
    estimate = None if highest.rate == 0.0 else lowest.rate / highest.rate
    low_bound = min(judged, key=lambda r: (r.upper, r.segment))
    high_bound = max(judged, key=lambda r: (r.lower, r.segment))
    max_lower = high_bound.lower
    upper = 1.0 if max_lower <= 0.0 else min(1.0, low_bound.upper / max_lower)
    lower = min(r.lower for r in judged) / max(r.upper for r in judged)
    return _ArmRatio(
        tuple(rates),
        estimate,
        lower,
        upper,
        lowest.segment,
        highest.segment,
        n,
        (low_bound.segment, high_bound.segment),
    )


@dataclass(frozen=True)
class FairnessResult:
    """Verdict of the fairness check and the evidence behind it.

    Ratios are the lowest segment rate over the highest (1 = equal rates; the four-fifths rule
    asks for at least 0.8).

    Attributes:
        verdict: FAIL when a violation is shown (see ``fairness_ratio``), PASS when compliance
            is shown, else INCONCLUSIVE (also below two segments with ``min_samples``).
        estimate: The candidate's ratio; None without two judged segments or any event.
        lower: Always-valid lower bound of the candidate's ratio.
        upper: Always-valid upper bound of the candidate's ratio.
        statistic: Equal to ``upper``: the number compared with ``boundary`` to fail.
        boundary: The binding floor: the larger of ``min_ratio`` and the incumbent's lower
            bound minus ``max_ratio_drop``; None when neither can be formed.
        lowest: The candidate's segment with the lowest rate.
        highest: The candidate's segment with the highest rate.
        incumbent_estimate: The incumbent's ratio.
        incumbent_lower: Its lower bound.
        incumbent_upper: Its upper bound.
        candidate_rates: The candidate's segments.
        incumbent_rates: The incumbent's segments.
        n_incumbent: Incumbent decisions, all segments.
        n_candidate: Candidate decisions, all segments.
        alpha: The check's level before the split.
        detail: One line for humans.
    """

    verdict: Outcome
    estimate: float | None
    lower: float | None
    upper: float | None
    statistic: float | None
    boundary: float | None
    lowest: str | None
    highest: str | None
    incumbent_estimate: float | None
    incumbent_lower: float | None
    incumbent_upper: float | None
    candidate_rates: tuple[SegmentRate, ...]
    incumbent_rates: tuple[SegmentRate, ...]
    n_incumbent: int
    n_candidate: int
    alpha: float
    detail: str


def _show(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _rate_of(arm: _ArmRatio, segment: str | None) -> str:
    for r in arm.rates:
        if r.segment == segment:
            return (
                f"{segment} {r.rate:.3f} [{r.lower:.3f}, {r.upper:.3f}] ({r.events}/{r.decisions})"
            )
    return "n/a"


_Floor = tuple[float, float, str]
"""A floor of the ratio: (failed below this upper bound, passed from this lower bound, name)."""


def _floors(min_ratio: float | None, max_ratio_drop: float | None, inc: _ArmRatio) -> list[_Floor]:
    floors: list[_Floor] = []
    if min_ratio is not None:
        floors.append((min_ratio, min_ratio, f"min_ratio {min_ratio:g}"))
    if max_ratio_drop is not None and inc.lower is not None and inc.upper is not None:
        floors.append(
            (
                inc.lower - max_ratio_drop,
                inc.upper - max_ratio_drop,
                f"the incumbent's ratio - {max_ratio_drop:g}",
            )
        )
    return floors


def _fairness_verdict(
    cand: _ArmRatio, floors: list[_Floor], missing_incumbent: bool, min_samples: int
) -> tuple[Outcome, str]:
    if cand.lower is None or cand.upper is None:
        return Outcome.INCONCLUSIVE, f"awaiting two segments with {min_samples} decisions each"
    broken = [f for f in floors if cand.upper < f[0]]
    if broken:
        return Outcome.FAIL, "ratio shown below " + " and ".join(
            f"{f[2]} ({f[0]:.3f})" for f in broken
        )
    if floors and not missing_incumbent and all(cand.lower >= f[1] for f in floors):
        return Outcome.PASS, "ratio shown at or above " + " and ".join(
            f"{f[2]} ({f[1]:.3f})" for f in floors
        )
    why = "not yet established either way"
    return Outcome.INCONCLUSIVE, why + (
        " (the incumbent has no ratio yet)" if missing_incumbent else ""
    )


def _ratio_evidence(arm: _ArmRatio) -> str:
    text = (
        f"candidate ratio {_show(arm.estimate)}, always-valid bounds "
        f"[{_show(arm.lower)}, {_show(arm.upper)}]"
    )
    if arm.lowest is not None:
        text += f"; lowest {_rate_of(arm, arm.lowest)}, highest {_rate_of(arm, arm.highest)}"
    if arm.bound_segments is not None and arm.bound_segments != (arm.lowest, arm.highest):
        low, high = arm.bound_segments
        text += f"; upper bound from {low}'s upper and {high}'s lower bound"
    return text


def fairness_ratio(
    candidate: Mapping[str, tuple[int, int]],
    incumbent: Mapping[str, tuple[int, int]],
    *,
    min_ratio: float | None,
    max_ratio_drop: float | None,
    alpha: float,
    min_samples: int = 100,
    segments_planned: int | None = None,
) -> FairnessResult:
    """Judge the ratio of the candidate's lowest to highest segment rate of an action.

    Why: the four-fifths rule compares the rate of a favourable action (say ``approve``)
    between the least and the most favoured segment. Rolling back on a noisy point estimate
    would punish fair candidates in small segments, so the check fails only when the violation
    is shown by bounds that hold under continuous monitoring:

    * every segment rate gets the beta-binomial confidence sequence of
      ``analysis.review.rate_confidence_sequence`` at ``alpha_arm / K`` (two-sided; ``K`` from
      ``segment_count``), so all rates of one arm are covered at once with probability at
      least ``1 - alpha_arm`` at every look; the ratio's bounds are ``min L / max U`` and
      ``min U / max L`` (see ``_arm_ratio``);
    * with ``min_ratio``: FAIL when the candidate's ratio upper bound is below it;
    * with ``max_ratio_drop``: FAIL when the candidate's upper bound is below the incumbent's
      lower bound minus the drop. A false fail then needs the candidate's or the incumbent's
      coverage to fail, so ``alpha`` is split in half between the arms
      (``alpha_arm = alpha / 2``); without ``max_ratio_drop`` the candidate gets all of it.

    PASS needs compliance shown the same way (the lower bound at or above every floor; against
    the incumbent, the candidate's lower bound at or above the incumbent's upper bound minus the
    drop). Segments with fewer than ``min_samples`` decisions are bounded but left out of the
    ratio; fewer than two segments left is INCONCLUSIVE.

    Args:
        candidate: The candidate's ``segment -> (decisions of the action, decisions)``.
        incumbent: The same for the incumbent.
        min_ratio: Floor of the candidate's ratio, in (0, 1]; None = no floor.
        max_ratio_drop: Tolerated fall of the ratio below the incumbent's, >= 0; None = none.
        alpha: The check's level, in (0, 1).
        min_samples: Decisions a segment needs to enter the ratio, >= 1.
        segments_planned: The most segments the stage can have; None = those present.

    Returns:
        The verdict with its evidence, naming the two segments.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if min_ratio is None and max_ratio_drop is None:
        raise ValueError("need min_ratio, max_ratio_drop or both")
    if min_ratio is not None and not 0.0 < min_ratio <= 1.0:
        raise ValueError(f"min_ratio must be in (0, 1], got {min_ratio!r}")
    if max_ratio_drop is not None and not (0.0 <= max_ratio_drop < 1.0):
        raise ValueError(f"max_ratio_drop must be in [0, 1), got {max_ratio_drop!r}")
    if min_samples < 1:
        raise ValueError(f"min_samples must be >= 1, got {min_samples!r}")
    for arm in (candidate, incumbent):
        for name, (events, decisions) in arm.items():
            if not 0 <= events <= decisions:
                raise ValueError(f"segment {name}: need 0 <= events <= decisions")
    arm_alpha = alpha if max_ratio_drop is None else alpha / 2.0
    cand = _arm_ratio(candidate, arm_alpha, min_samples, segments_planned)
    inc = _arm_ratio(incumbent, arm_alpha, min_samples, segments_planned)
    floors = _floors(min_ratio, max_ratio_drop, inc)
    boundary = max((f[0] for f in floors), default=None)
    missing_incumbent = max_ratio_drop is not None and inc.lower is None
    verdict, what = _fairness_verdict(cand, floors, missing_incumbent, min_samples)
    detail = f"{verdict}: {what}; {_ratio_evidence(cand)}"
    if max_ratio_drop is not None:
        detail += (
            f"; incumbent ratio {_show(inc.estimate)} [{_show(inc.lower)}, {_show(inc.upper)}]"
        )
    return FairnessResult(
        verdict=verdict,
        estimate=cand.estimate,
        lower=cand.lower,
        upper=cand.upper,
        statistic=cand.upper,
        boundary=boundary,
        lowest=cand.lowest,
        highest=cand.highest,
        incumbent_estimate=inc.estimate,
        incumbent_lower=inc.lower,
        incumbent_upper=inc.upper,
        candidate_rates=cand.rates,
        incumbent_rates=inc.rates,
        n_incumbent=inc.n,
        n_candidate=cand.n,
        alpha=alpha,
        detail=detail,
    )
