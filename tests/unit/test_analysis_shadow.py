"""Paired shadow analysis: Stuart-Maxwell pinned by hand and to statsmodels, its sequential
version and the agreement's confidence sequence valid at every look, and the verdicts."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats  # type: ignore[import-untyped]
from statsmodels.stats.contingency_tables import SquareTable  # type: ignore[import-untyped]

from analysis.drift import agreement
from analysis.review import rate_confidence_sequence
from analysis.sequential import best_rho
from analysis.shadow import (
    DEFAULT_EXPECTED_PAIRS,
    homogeneity_rho,
    judge_shadow,
    paired_actions,
    sequential_stuart_maxwell,
    stuart_maxwell,
)
from analysis.verdicts import Outcome
from rollout_specs import ShadowRule

TABLE = [[20, 5, 0], [3, 30, 2], [1, 4, 10]]


def test_stuart_maxwell_by_hand() -> None:
    # d = rows - columns = (1, -4, 3); S over the first two: [[9, -8], [-8, 14]], det 62;
    # d' S^-1 d = (14 - 64 + 144) / 62 = 94 / 62.
    result = stuart_maxwell(TABLE)
    assert result.statistic == pytest.approx(94 / 62, rel=1e-12)
    assert result.df == 2
    assert result.p_value == pytest.approx(math.exp(-(94 / 62) / 2), rel=1e-12)


def test_stuart_maxwell_matches_statsmodels_on_random_tables() -> None:
    rng = np.random.default_rng(7)
    for _ in range(50):
        k = int(rng.integers(2, 6))
        table = rng.integers(1, 60, size=(k, k))
        ours = stuart_maxwell(table)
        theirs = SquareTable(table, shift_zeros=False).homogeneity()
        assert ours.statistic == pytest.approx(float(theirs.statistic), rel=1e-9)
        assert ours.df == int(theirs.df)
        assert ours.p_value == pytest.approx(float(theirs.pvalue), rel=1e-7, abs=1e-12)


def test_perfect_agreement_is_no_evidence_of_a_difference() -> None:
    result = stuart_maxwell([[40, 0], [0, 60]])
    assert (result.statistic, result.df, result.p_value) == (0.0, 0, 1.0)


def test_an_action_only_on_the_diagonal_drops_a_degree_of_freedom() -> None:
    # Action 3 is always agreed on; only actions 1 and 2 can differ: one degree of freedom.
    result = stuart_maxwell([[20, 5, 0], [3, 30, 0], [0, 0, 10]])
    assert result.df == 1
    # With one free contrast this is McNemar's statistic on the 5 vs 3 disagreements.
    assert result.statistic == pytest.approx((5 - 3) ** 2 / (5 + 3))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=9, max_size=9))
def test_swapping_the_policies_changes_nothing(cells: list[int]) -> None:
    table = np.array(cells).reshape(3, 3)
    forward, backward = stuart_maxwell(table), stuart_maxwell(table.T)
    assert forward.statistic == pytest.approx(backward.statistic, rel=1e-9, abs=1e-9)
    assert forward.df == backward.df


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 200), st.integers(0, 200))
def test_more_disagreement_one_way_is_more_evidence(base: int, extra: int) -> None:
    balanced = stuart_maxwell([[100, base], [base, 100]])
    tilted = stuart_maxwell([[100, base + extra], [base, 100]])
    assert tilted.statistic >= balanced.statistic
    assert tilted.p_value <= balanced.p_value + 1e-12


def test_paired_actions_summarises_agreement_and_support() -> None:
    pairs = {("a", "a"): 80, ("a", "b"): 10, ("b", "b"): 5, ("b", "c"): 5}
    result = paired_actions(pairs, alpha=0.05)
    assert result.n == 100
    assert result.agreement == pytest.approx(0.85)
    # The bounds are the always-valid confidence sequence, wider than the one-look Wilson one.
    expected = rate_confidence_sequence(85, 100, 0.05)
    assert (result.agreement_low, result.agreement_high) == pytest.approx(expected)
    wilson = agreement(85, 100, 0.05)
    assert result.agreement_low < wilson.wilson_low < 0.85 < wilson.wilson_high
    assert wilson.wilson_high < result.agreement_high
    assert result.out_of_support == pytest.approx(0.05)  # c: the incumbent never chose it
    assert result.actions == ("a", "b", "c")
    assert "agreement 0.850" in result.detail
    assert "sequential Stuart-Maxwell" in result.detail
    assert result.homogeneity.rho == pytest.approx(homogeneity_rho(DEFAULT_EXPECTED_PAIRS, 0.05))


def test_an_empty_window_is_refused_as_no_data() -> None:
    with pytest.raises(ValueError, match="no data"):
        paired_actions({("a", "a"): 0}, alpha=0.05)


def _findings(rule: ShadowRule, pairs: dict[tuple[str, str], int]) -> tuple[Outcome, list[str]]:
    return judge_shadow(
        paired_actions(pairs, alpha=rule.alpha),
        min_samples=rule.min_samples,
        alpha=rule.alpha,
        min_agreement=rule.min_agreement,
        max_js=rule.max_js,
        max_psi=rule.max_psi,
        max_out_of_support=rule.max_out_of_support,
    )


def test_too_few_pairs_awaits_evidence_even_when_everything_looks_wrong() -> None:
    rule = ShadowRule(min_agreement=0.9, min_samples=500)
    outcome, notes = _findings(rule, {("a", "b"): 499})
    assert outcome is Outcome.INCONCLUSIVE
    assert notes == ["not enough pairs (need 500)"]


def test_agreement_shown_below_the_floor_fails_and_shown_above_passes() -> None:
    rule = ShadowRule(min_agreement=0.8, min_samples=100)
    low, notes = _findings(rule, {("a", "a"): 600, ("a", "b"): 200, ("b", "a"): 200})
    assert low is Outcome.FAIL
    assert notes[0].startswith("agreement <= 0.6")
    high, _ = _findings(rule, {("a", "a"): 950, ("a", "b"): 25, ("b", "a"): 25})
    assert high is Outcome.PASS
    # 0.80 observed: neither shown above nor below the floor yet.
    unsure, notes = _findings(rule, {("a", "a"): 800, ("a", "b"): 100, ("b", "a"): 100})
    assert unsure is Outcome.INCONCLUSIVE
    assert notes == ["agreement not yet shown >= 0.8"]


def test_a_large_shift_fails_only_when_it_is_significant() -> None:
    rule = ShadowRule(max_js=0.01, min_samples=10)
    # The candidate moves half of the incumbent's a-decisions to b: large and significant.
    shifted, notes = _findings(rule, {("a", "a"): 250, ("a", "b"): 250, ("b", "b"): 500})
    assert shifted is Outcome.FAIL
    assert notes[0].startswith("js ")
    # The same shares from 12 pairs: a large JS, but noise cannot be excluded (not even by a
    # single fixed-sample look, let alone by the sequential test).
    noisy, notes = _findings(rule, {("a", "a"): 3, ("a", "b"): 3, ("b", "b"): 6})
    assert stats.chi2.sf(3.0, 1) > rule.alpha
    assert noisy is Outcome.INCONCLUSIVE
    assert notes[0].startswith("js ")


def test_actions_the_incumbent_never_takes_fail_past_their_share() -> None:
    rule = ShadowRule(max_out_of_support=0.01, min_samples=10)
    outcome, notes = _findings(rule, {("a", "a"): 970, ("a", "blocked"): 30})
    assert outcome is Outcome.FAIL
    assert notes == ["out of support 3.00% > 1.00%"]


def test_the_sequential_test_is_the_closed_form_of_its_normal_mixture() -> None:
    # TABLE: n = 75 pairs, Stuart-Maxwell 94/62 on 2 df; rho 10:
    # ln M = (2/2) ln(10/85) + 75 (94/62) / (2 * 85); boundary = 85/75 (2 ln 20 + 2 ln 8.5).
    result = sequential_stuart_maxwell(TABLE, alpha=0.05, rho=10.0)
    assert result.statistic == pytest.approx(94 / 62, rel=1e-12)
    assert result.df == 2
    log_e = math.log(10 / 85) + 75 * (94 / 62) / 170
    assert result.log_e_value == pytest.approx(log_e, rel=1e-12)
    boundary = 85 / 75 * (2 * math.log(20) + 2 * math.log(8.5))
    assert result.boundary == pytest.approx(boundary, rel=1e-12)
    assert result.p_value == 1.0  # ln M < 0: no evidence at all


def test_shares_count_as_shown_exactly_when_the_statistic_reaches_the_boundary() -> None:
    # Only a and b differ (McNemar's case): b decisions moved from a to b in 500 pairs.
    shown = []
    for moved in range(5, 25):
        table = [[400, moved], [0, 100 - moved]]
        result = sequential_stuart_maxwell(table, alpha=0.01, rho=homogeneity_rho(5_000, 0.01))
        assert result.statistic == pytest.approx(moved)  # (b - c)^2 / (b + c) with c = 0
        assert (result.p_value <= 0.01) is (result.statistic >= result.boundary)
        shown.append(result.p_value <= 0.01)
        fixed = stuart_maxwell(table)
        if result.p_value <= 0.01:
            assert fixed.p_value < result.p_value, "validity at every look costs evidence"
    # 15 of 15 discordant pairs one way is shown; 14 is not yet (a fixed look would say 7).
    assert shown.index(True) == 15 - 5
    assert all(shown[10:])


def test_the_boundary_grows_slowly_with_the_pairs_and_sits_above_a_single_look() -> None:
    rho = homogeneity_rho(5_000, 0.01)
    boundaries = []
    for n in (500, 1_000, 2_500, 10_000, 100_000):
        agreed = int(0.9 * n)
        half = (n - agreed) // 2
        table = [
            [agreed // 2, half, 0],
            [half, agreed - agreed // 2, 0],
            [0, 0, n - agreed - 2 * half],
        ]
        result = sequential_stuart_maxwell(table, alpha=0.01, rho=rho)
        assert result.df == 1
        assert result.boundary > stats.chi2.isf(0.01, 1)
        boundaries.append(result.boundary)
    assert boundaries[-1] > min(boundaries)
    assert boundaries[-1] < 2.5 * min(boundaries), "the price of 200x more looks is logarithmic"


def test_rho_is_tuned_at_half_the_expected_pairs_and_never_moves_the_statistic() -> None:
    assert homogeneity_rho(5_000, 0.01) == pytest.approx(best_rho(2_500, 0.01))
    early = sequential_stuart_maxwell(TABLE, alpha=0.05, rho=homogeneity_rho(100, 0.05))
    late = sequential_stuart_maxwell(TABLE, alpha=0.05, rho=homogeneity_rho(100_000, 0.05))
    assert early.statistic == late.statistic
    assert early.boundary < late.boundary, "75 pairs: the test tuned for 100 is tighter here"
    with pytest.raises(ValueError, match="expected_pairs"):
        homogeneity_rho(0, 0.05)
    with pytest.raises(ValueError, match="rho"):
        sequential_stuart_maxwell(TABLE, alpha=0.05, rho=0.0)


def test_a_table_where_the_shares_cannot_differ_is_no_evidence() -> None:
    result = sequential_stuart_maxwell([[40, 0], [0, 60]], alpha=0.01, rho=5.0)
    assert (result.df, result.p_value, result.log_e_value) == (0, 1.0, 0.0)
    assert math.isinf(result.boundary)
    summary = paired_actions({("a", "a"): 40, ("b", "b"): 60}, alpha=0.01)
    assert "no pair where the shares could differ" in summary.detail


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=9, max_size=9), st.permutations(range(3)))
def test_swapping_the_policies_or_renaming_actions_changes_no_sequential_verdict(
    cells: list[int], order: list[int]
) -> None:
    table = np.array(cells).reshape(3, 3)
    renamed = table[np.ix_(order, order)]
    results = [
        sequential_stuart_maxwell(t, alpha=0.05, rho=20.0) for t in (table, table.T, renamed)
    ]
    for other in results[1:]:
        assert other.df == results[0].df
        assert other.log_e_value == pytest.approx(results[0].log_e_value, rel=1e-9, abs=1e-9)


def _null_table(cyclic: bool) -> npt.NDArray[np.float64]:
    """Cell probabilities of 3 actions, 90% agreement, and equal shares for both policies.

    Symmetric: every disagreement as likely one way as the other (two identical stochastic
    policies). Cyclic: a -> b, b -> c, c -> a only; the shares are still equal but the table is
    not symmetric, the harder null for a test of equal shares.
    """
    share = np.array([0.5, 0.3, 0.2])
    probabilities = np.diag(0.9 * share)
    if cyclic:
        for i in range(3):
            probabilities[i, (i + 1) % 3] = 0.1 / 3
        # row i total = 0.9 s_i + 0.1/3, column i total = 0.9 s_i + 0.1/3: equal margins.
    else:
        for i in range(3):
            for j in range(3):
                if i != j:
                    probabilities[i, j] = 0.1 * share[i] * share[j] / (1 - (share**2).sum())
    return np.asarray(probabilities / probabilities.sum(), dtype=np.float64)


@pytest.mark.parametrize("cyclic", [False, True])
def test_re_judging_at_every_look_keeps_false_refusals_below_alpha(cyclic: bool) -> None:
    # 200 healthy candidates (equal shares), judged at 40 looks from 500 to 4,400 pairs: the
    # fixed-sample re-check refuses far more than alpha of them, the sequential test does not.
    alpha, looks, step, reps = 0.05, 40, 100, 200
    probabilities = _null_table(cyclic).ravel()
    rng = np.random.default_rng(11 if cyclic else 7)
    rho = homogeneity_rho(4_400, alpha)
    sequential_refused = fixed_refused = 0
    for _ in range(reps):
        table = rng.multinomial(400, probabilities).astype(np.float64)
        ever_sequential = ever_fixed = False
        for _ in range(looks):
            table += rng.multinomial(step, probabilities)
            counts = table.reshape(3, 3)
            ever_sequential |= (
                sequential_stuart_maxwell(counts, alpha=alpha, rho=rho).p_value <= alpha
            )
            ever_fixed |= stuart_maxwell(counts).p_value < alpha
        sequential_refused += ever_sequential
        fixed_refused += ever_fixed
    assert sequential_refused / reps <= alpha
    assert fixed_refused / reps > 2 * alpha


def test_re_reading_the_agreement_at_every_look_keeps_its_bounds_valid() -> None:
    # 200 candidates agreeing exactly at the floor (0.9), bounds read at 40 looks each: the
    # confidence sequence puts its upper bound below the floor (a false refusal) for at most
    # alpha of them; the Wilson interval re-read at the same looks does so for more than alpha.
    alpha, floor, looks, step, reps = 0.05, 0.9, 40, 100, 200
    rng = np.random.default_rng(3)
    sequence_refused = wilson_refused = 0
    for _ in range(reps):
        agreed = np.cumsum(rng.binomial(step, floor, size=looks)) + rng.binomial(400, floor)
        n = 400 + step * np.arange(1, looks + 1)
        sequence_refused += any(
            rate_confidence_sequence(int(a), int(m), alpha)[1] < floor
            for a, m in zip(agreed, n, strict=True)
        )
        wilson_refused += any(
            agreement(int(a), int(m), alpha).wilson_high < floor
            for a, m in zip(agreed, n, strict=True)
        )
    assert sequence_refused / reps <= alpha / 2
    assert wilson_refused / reps > alpha


def test_a_candidate_shown_to_agree_less_than_the_floor_is_refused_by_the_sequence() -> None:
    # 85% agreement against a 90% floor: refused once the always-valid upper bound is below it.
    rule = ShadowRule(min_agreement=0.9, min_samples=100)
    outcome, notes = _findings(rule, {("a", "a"): 1_700, ("a", "b"): 150, ("b", "a"): 150})
    assert outcome is Outcome.FAIL
    high = rate_confidence_sequence(1_700, 2_000, rule.alpha)[1]
    assert notes == [f"agreement <= {high:.3f} < 0.9"]
    # With 400 pairs at the same rate the sequence cannot exclude the floor yet.
    outcome, notes = _findings(rule, {("a", "a"): 340, ("a", "b"): 30, ("b", "a"): 30})
    assert outcome is Outcome.INCONCLUSIVE
    assert notes == ["agreement not yet shown >= 0.9"]
