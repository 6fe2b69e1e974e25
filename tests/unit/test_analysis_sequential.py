"""Always-valid sequential tests: pinned to published/independent values, plus invariants.

Reference values were computed independently and checked against confseq 0.0.11 (table A),
PyPI msprt 0.1.2 (table B) and gbstats 0.8.0 (table C).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import integrate, optimize  # type: ignore[import-untyped]

from analysis.sequential import (
    ArmStats,
    Comparison,
    MeanDifference,
    always_valid_p_value,
    best_rho,
    bonferroni_alpha,
    compare_means,
    fixed_horizon_n,
    mean_difference,
    msprt_lambda,
    msprt_log_lambda,
    one_sided_bound,
    one_sided_log_supermartingale,
    tuned_rho,
    two_sided_bound,
    two_sided_log_supermartingale,
)

ALPHA = 0.05
REL = 1e-6

# ---------------------------------------------------------------------------------------------
# Table A: normal-mixture boundary on S_t, unit-variance increments, V_t = t, alpha = 0.05.
# (v_opt, t, two-sided u(t) with rho = best_rho(v_opt, alpha), one-sided with rho at 2 alpha)
TABLE_A = [
    (1_000, 100, 38.550546, 36.343051),
    (1_000, 1_000, 95.981736, 87.470842),
    (1_000, 10_000, 324.172315, 298.499772),
    (1_000, 100_000, 1126.289790, 1052.397014),
    (10_000, 100, 90.843794, 88.832593),
    (10_000, 1_000, 121.907531, 114.926818),
    (10_000, 10_000, 303.520899, 276.607088),
    (10_000, 100_000, 1025.122868, 943.939162),
]

# Table B: mSPRT, sigma^2 = 1 per arm, theta0 = 0: (n pairs, mean diff, tau^2, Lambda, p, reject)
TABLE_B = [
    (1_000, 0.10, 0.01, 3.278722, 0.304997, False),
    (1_000, 0.15, 0.01, 44.328166, 0.022559, True),
    (10_000, 0.04, 0.0016, 11.669088, 0.085697, False),
    (10_000, 0.05, 0.0016, 86.223544, 0.011598, True),
    (2_500, 0.08, 0.005, 11.678799, 0.085625, False),
]

# Table C: asymptotic CS (GrowthBook form), arm means 0.50 / 0.52, sample variance 0.25 each,
# t = 2n: (n per arm, N*, CS half-width, always-valid p)
TABLE_C = [
    (500, 5_000, 0.106375, 1.0),
    (500, 10_000, 0.121908, 1.0),
    (2_500, 5_000, 0.042924, 1.0),
    (2_500, 10_000, 0.043608, 1.0),
    (10_000, 5_000, 0.022112, 0.118425),
    (10_000, 10_000, 0.021648, 0.0953607),
    (50_000, 5_000, 0.010552, 2.9524e-08),
    (50_000, 10_000, 0.010251, 2.36984e-08),
]


def arm(n: int, mean: float, variance: float) -> ArmStats:
    """Sufficient statistics of n observations with this mean and sample variance (ddof 1)."""
    total = n * mean
    return ArmStats(n=n, total=total, total_squares=(n - 1) * variance + total * total / n)


@pytest.mark.parametrize(("v_opt", "rho"), [(1_000, 126.0056), (10_000, 1260.0561)])
def test_best_rho_reference(v_opt: float, rho: float) -> None:
    assert best_rho(v_opt, ALPHA) == pytest.approx(rho, abs=5e-5)


@pytest.mark.parametrize(("v_opt", "t", "two_sided", "one_sided"), TABLE_A)
def test_normal_mixture_boundaries_table_a(
    v_opt: float, t: float, two_sided: float, one_sided: float
) -> None:
    assert two_sided_bound(t, best_rho(v_opt, ALPHA), ALPHA) == pytest.approx(two_sided, rel=REL)
    assert one_sided_bound(t, best_rho(v_opt, 2 * ALPHA), ALPHA) == pytest.approx(
        one_sided, rel=REL
    )


def test_issue_reference_values() -> None:
    rho2, rho1 = best_rho(1_000, ALPHA), best_rho(1_000, 2 * ALPHA)
    assert two_sided_bound(100.0, rho2, ALPHA) == pytest.approx(38.550546, rel=REL)
    assert two_sided_bound(1_000.0, rho2, ALPHA) == pytest.approx(95.981736, rel=REL)
    assert one_sided_bound(100.0, rho1, ALPHA) == pytest.approx(36.343051, rel=REL)
    assert one_sided_bound(1_000.0, rho1, ALPHA) == pytest.approx(87.470842, rel=REL)
    assert msprt_lambda(1_000, 0.10, 1.0, 0.01) == pytest.approx(3.278722, rel=REL)
    assert msprt_lambda(1_000, 0.15, 1.0, 0.01) == pytest.approx(44.328166, rel=REL)


def test_two_sided_bound_vectorised_matches_scalar() -> None:
    rho = best_rho(1_000, ALPHA)
    ts = np.array([100.0, 1_000.0, 10_000.0])
    out = two_sided_bound(ts, rho, ALPHA)
    assert isinstance(out, np.ndarray)
    assert out.tolist() == pytest.approx([two_sided_bound(float(t), rho, ALPHA) for t in ts])


@pytest.mark.parametrize(("n", "diff", "tau2", "lam", "p", "reject"), TABLE_B)
def test_msprt_table_b(
    n: int, diff: float, tau2: float, lam: float, p: float, reject: bool
) -> None:
    assert msprt_lambda(n, diff, 1.0, tau2) == pytest.approx(lam, rel=REL)
    log_lam = msprt_log_lambda(n, diff, 1.0, tau2)
    assert always_valid_p_value(log_lam) == pytest.approx(p, abs=5e-7)
    assert (log_lam >= math.log(1 / ALPHA)) is reject
    # The mSPRT is the two-sided normal mixture on S = n d / sqrt(2 sigma^2), rho = 2 sigma^2/tau^2.
    s, rho = n * diff / math.sqrt(2.0), 2.0 / tau2
    assert two_sided_log_supermartingale(s, float(n), rho) == pytest.approx(log_lam, rel=1e-12)
    assert (s >= two_sided_bound(float(n), rho, ALPHA)) is reject


@pytest.mark.parametrize(("n", "n_tune", "half_width", "p"), TABLE_C)
def test_unequal_split_convention_reproduces_growthbook_table_c(
    n: int, n_tune: float, half_width: float, p: float
) -> None:
    diff = mean_difference(arm(n, 0.50, 0.25), arm(n, 0.52, 0.25))
    assert isinstance(diff, MeanDifference)
    assert diff.t == 2 * n
    assert diff.estimate == pytest.approx(0.02, rel=1e-9)
    assert diff.std_error == pytest.approx(math.sqrt(0.5 / n), rel=1e-9)
    rho = best_rho(n_tune, ALPHA)  # Waudby-Smith's rho^2 is 1 / rho here
    root_t = math.sqrt(diff.t)
    assert diff.std_error * two_sided_bound(float(diff.t), rho, ALPHA) / root_t == pytest.approx(
        half_width, abs=6e-7
    )
    log_e = two_sided_log_supermartingale(diff.estimate / diff.std_error * root_t, diff.t, rho)
    assert always_valid_p_value(log_e) == pytest.approx(p, rel=5e-6)


def _half_normal_mixture(s: float, v: float, rho: float) -> float:
    """Independent check: integrate exp(l s - l^2 v / 2) over the half-normal N+(0, 1/rho)."""
    scale = math.sqrt(1.0 / rho)

    def integrand(lam: float) -> float:
        density = 2.0 * math.exp(-0.5 * (lam / scale) ** 2) / (scale * math.sqrt(2.0 * math.pi))
        return math.exp(lam * s - 0.5 * lam * lam * v) * density

    peak = max(0.0, s / (v + rho))
    width = 12.0 / math.sqrt(v + rho)
    value, _ = integrate.quad(integrand, 0.0, peak + width, points=[peak], limit=200)
    return float(value)


@pytest.mark.parametrize(
    ("s", "v", "rho"),
    [(0.0, 100.0, 50.0), (30.0, 100.0, 126.0), (-20.0, 1_000.0, 126.0), (90.0, 1_000.0, 300.0)],
)
def test_one_sided_closed_form_matches_numerical_integration(
    s: float, v: float, rho: float
) -> None:
    expected = math.log(_half_normal_mixture(s, v, rho))
    assert one_sided_log_supermartingale(s, v, rho) == pytest.approx(expected, rel=1e-7, abs=1e-9)


def test_one_sided_bound_by_independent_root_finding() -> None:
    rho, v = best_rho(5_000, 2 * ALPHA), 3_000.0
    target = math.log(1 / ALPHA)
    root = optimize.brentq(
        lambda s: math.log(_half_normal_mixture(s, v, rho)) - target, 1.0, 500.0, xtol=1e-10
    )
    assert one_sided_bound(v, rho, ALPHA) == pytest.approx(root, rel=1e-7)


def test_one_sided_log_supermartingale_is_finite_far_below_zero() -> None:
    value = one_sided_log_supermartingale(-1e4, 100.0, 50.0)
    assert math.isfinite(value)
    assert value < -7  # about 0.5 ln(4/3) - ln(816 sqrt(2 pi)) = -7.48


def test_always_valid_p_value_is_a_running_minimum() -> None:
    assert always_valid_p_value(-3.0) == 1.0
    assert always_valid_p_value(math.log(20.0)) == pytest.approx(0.05)
    assert always_valid_p_value(math.log(2.0), previous=0.01) == 0.01
    with pytest.raises(ValueError, match="previous"):
        always_valid_p_value(1.0, previous=1.5)


def test_msprt_lambda_overflow_is_infinite() -> None:
    assert msprt_lambda(10**6, 1.0, 1.0, 0.01) == math.inf


def test_bonferroni_split() -> None:
    assert bonferroni_alpha(0.05, 4) == pytest.approx(0.0125)
    with pytest.raises(ValueError, match="triggers"):
        bonferroni_alpha(0.05, 0)


def test_tuned_rho_mapping() -> None:
    assert tuned_rho(20_000, ALPHA) == pytest.approx(best_rho(10_000, 2 * ALPHA))


def test_fixed_horizon_n_matches_the_note() -> None:
    # Fixed-horizon n per arm for one-sided 80% power, sigma 1 per arm: 4946 (5% of 1), 1237 (10%).
    assert fixed_horizon_n(0.05, 1.0, 1.0, alpha=ALPHA) / 2 == pytest.approx(4946, abs=1)
    assert fixed_horizon_n(0.10, 1.0, 1.0, alpha=ALPHA) / 2 == pytest.approx(1237, abs=1)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: best_rho(1_000, 0.0), "alpha"),
        (lambda: best_rho(0.0, 0.05), "v_opt"),
        (lambda: two_sided_bound(-1.0, 10.0, 0.05), "v must be"),
        (lambda: one_sided_bound(10.0, 0.0, 0.05), "rho"),
        (lambda: msprt_log_lambda(10, 0.1, 0.0, 0.01), "positive"),
        (lambda: tuned_rho(1, 0.05), "expected_n"),
        (lambda: ArmStats(n=-1, total=0.0, total_squares=0.0), "n must"),
        (lambda: ArmStats(n=3, total=math.nan, total_squares=1.0), "finite"),
        (lambda: ArmStats(n=0, total=1.0, total_squares=1.0), "zero sums"),
        (lambda: ArmStats.from_events(10, 11), "events"),
    ],
)
def test_invalid_inputs_are_refused(call: object, match: str) -> None:
    assert callable(call)
    with pytest.raises(ValueError, match=match):
        call()


# --- compare_means -----------------------------------------------------------------------------


def compare(
    incumbent: ArmStats,
    candidate: ArmStats,
    max_drop: float = 0.05,
    *,
    relative: bool = False,
    expected_n: int = 20_000,
    higher_is_better: bool = True,
) -> Comparison:
    return compare_means(
        incumbent,
        candidate,
        max_drop=max_drop,
        relative=relative,
        alpha=ALPHA,
        expected_n=expected_n,
        higher_is_better=higher_is_better,
    )


def test_compare_means_against_independent_computation_for_a_1pct_canary() -> None:
    inc, cand = arm(99_000, 1.0, 1.0), arm(1_000, 0.85, 1.2)
    result = compare(inc, cand, 0.05, expected_n=100_000)
    se = math.sqrt(1.0 / 99_000 + 1.2 / 1_000)
    t = 100_000
    rho = best_rho(50_000, 2 * ALPHA)
    target = math.log(1 / ALPHA)
    b = optimize.brentq(
        lambda s: math.log(_half_normal_mixture(s, t, rho)) - target, 1.0, 5_000.0, xtol=1e-9
    )
    assert result.rho == pytest.approx(rho)
    assert result.boundary == pytest.approx(b, rel=1e-7)
    assert result.estimate == pytest.approx(-0.15, rel=1e-9)
    assert result.statistic == pytest.approx((0.15 - 0.05) * math.sqrt(t) / se, rel=1e-9)
    assert result.lower == pytest.approx(-0.15 - se * b / math.sqrt(t), rel=1e-7)
    assert result.upper == pytest.approx(-0.15 + se * b / math.sqrt(t), rel=1e-7)
    assert result.verdict == "fail"
    assert result.upper is not None
    assert result.upper < -0.05
    assert result.p_value < ALPHA
    assert (result.n_incumbent, result.n_candidate) == (99_000, 1_000)
    assert result.detail.startswith("fail:")


def test_compare_means_pass_inconclusive_fail() -> None:
    inc = arm(10_000, 1.0, 1.0)
    assert compare(inc, arm(10_000, 1.0, 1.0)).verdict == "pass"
    assert compare(inc, arm(10_000, 0.96, 1.0)).verdict == "inconclusive"
    assert compare(inc, arm(10_000, 0.85, 1.0)).verdict == "fail"
    # max_drop 0 means "any established drop fails"; equal means can then never pass.
    assert compare(inc, arm(10_000, 1.0, 1.0), 0.0).verdict == "inconclusive"
    assert compare(inc, arm(10_000, 0.9, 1.0), 0.0).verdict == "fail"


def test_compare_means_for_a_rate_where_higher_is_worse() -> None:
    inc = ArmStats.from_events(100_000, 1_000)  # 1% errors
    worse = compare(inc, ArmStats.from_events(100_000, 2_000), 0.002, higher_is_better=False)
    assert worse.verdict == "fail"
    assert worse.estimate == pytest.approx(0.01)
    assert worse.lower is not None
    assert worse.lower > 0.002
    same = compare(inc, ArmStats.from_events(100_000, 950), 0.002, higher_is_better=False)
    assert same.verdict == "pass"
    assert same.upper is not None
    assert same.upper < 0.002
    # The same data read as higher-is-better: the increase is an improvement, never a failure.
    assert compare(inc, ArmStats.from_events(100_000, 2_000), 0.002).verdict == "pass"


def test_compare_means_relative() -> None:
    inc = arm(10_000, 2.0, 1.0)
    result = compare(inc, arm(10_000, 1.6, 1.0), 0.05, relative=True)
    assert result.verdict == "fail"
    assert result.estimate == pytest.approx(-0.2)
    assert "%" in result.detail
    assert compare(inc, arm(10_000, 2.0, 1.0), 0.05, relative=True).verdict == "pass"
    # A negative incumbent mean: -0.2 still means "20% lower".
    neg = compare(arm(10_000, -2.0, 1.0), arm(10_000, -2.4, 1.0), 0.05, relative=True)
    assert neg.estimate == pytest.approx(-0.2)
    assert neg.verdict == "fail"


def test_compare_means_relative_needs_a_resolved_incumbent_mean() -> None:
    zero = compare(arm(10_000, 0.0, 1.0), arm(10_000, 0.5, 1.0), relative=True)
    assert zero.verdict == "inconclusive"
    assert "incumbent mean is 0" in zero.detail
    fuzzy = compare(arm(200, 0.05, 1.0), arm(200, 0.05, 1.0), relative=True)
    assert fuzzy.verdict == "inconclusive"
    assert "unreliable" in fuzzy.detail


def test_compare_means_burn_in_is_always_inconclusive() -> None:
    huge_drop = compare(arm(99, 10.0, 1.0), arm(99, 0.0, 1.0))
    assert huge_drop.verdict == "inconclusive"
    assert huge_drop.statistic is not None
    assert huge_drop.boundary is not None
    assert huge_drop.statistic > huge_drop.boundary
    assert "burn-in: 99 of 100" in huge_drop.detail
    assert huge_drop.p_value == 1.0
    assert compare(arm(10_000, 10.0, 1.0), arm(100, 0.0, 1.0)).verdict == "fail"


def test_compare_means_without_enough_data_or_variance() -> None:
    empty = compare(ArmStats(0, 0.0, 0.0), arm(500, 1.0, 1.0))
    assert empty.verdict == "inconclusive"
    assert empty.estimate is None
    assert empty.p_value == 1.0
    constant = compare(arm(500, 2.0, 0.0), arm(500, 1.5, 0.0))
    assert constant.verdict == "inconclusive"
    assert "variance estimate is zero" in constant.detail


def test_rare_events_do_not_collapse_the_interval() -> None:
    # No errors yet on either side: the 0/1 variance floor keeps an honest interval.
    few = compare(
        ArmStats.from_events(200, 0), ArmStats.from_events(200, 0), 0.001, higher_is_better=False
    )
    assert few.verdict == "inconclusive"
    many = compare(
        ArmStats.from_events(10_000, 0),
        ArmStats.from_events(10_000, 0),
        0.001,
        higher_is_better=False,
    )
    assert many.verdict == "pass"
    assert ArmStats.from_events(200, 0).variance == pytest.approx((1 / 202) * (201 / 202))
    assert arm(200, 0.3, 0.5).variance == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_drop": -0.1}, "max_drop"),
        ({"burn_in": 1}, "burn_in"),
        ({"alpha": 1.0}, "alpha"),
        ({"expected_n": 0}, "expected_n"),
    ],
)
def test_compare_means_refuses_bad_configuration(kwargs: dict[str, float], match: str) -> None:
    args: dict[str, float] = {"max_drop": 0.1, "alpha": 0.05, "expected_n": 1000, "burn_in": 100}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        compare_means(
            arm(500, 1.0, 1.0),
            arm(500, 1.0, 1.0),
            max_drop=args["max_drop"],
            relative=False,
            alpha=args["alpha"],
            expected_n=int(args["expected_n"]),
            burn_in=int(args["burn_in"]),
        )


# --- properties ----------------------------------------------------------------------------------

RANK = {"pass": 0, "inconclusive": 1, "fail": 2}

alphas = st.floats(0.001, 0.2)
rhos = st.floats(0.5, 1e5)
times = st.floats(0.0, 1e6)
means = st.floats(-100.0, 100.0)
sds = st.floats(0.1, 50.0)
sizes = st.integers(100, 200_000)


@st.composite
def arms(draw: st.DrawFn) -> ArmStats:
    n = draw(sizes)
    sd = draw(sds)
    result = arm(n, draw(means), sd * sd)
    assume(not result.is_binary)
    return result


@given(v=times, dv=st.floats(1e-3, 1e6), rho=rhos, alpha=alphas)
def test_boundaries_grow_with_intrinsic_time(v: float, dv: float, rho: float, alpha: float) -> None:
    assert two_sided_bound(v + dv, rho, alpha) > two_sided_bound(v, rho, alpha)
    assert one_sided_bound(v + dv, rho, alpha) > one_sided_bound(v, rho, alpha)


@given(v=times, rho=rhos, alpha=alphas)
def test_one_sided_bound_is_sandwiched(v: float, rho: float, alpha: float) -> None:
    # M_one = 2 Phi(.) M_two with 1 <= 2 Phi(.) <= 2 for s >= 0.
    one = one_sided_bound(v, rho, alpha)
    assert two_sided_bound(v, rho, 2 * alpha) <= one * (1 + 1e-12)
    assert one <= two_sided_bound(v, rho, alpha)
    assert one_sided_log_supermartingale(one, v, rho) == pytest.approx(math.log(1 / alpha))


@given(s=st.floats(-1e3, 1e3), ds=st.floats(1e-3, 1e3), v=times, rho=rhos)
def test_one_sided_evidence_grows_with_the_sum(s: float, ds: float, v: float, rho: float) -> None:
    assert one_sided_log_supermartingale(s + ds, v, rho) > one_sided_log_supermartingale(s, v, rho)


@given(
    n=st.integers(1, 100_000),
    d=st.floats(0.0, 1.0),
    extra=st.floats(1e-4, 1.0),
    sigma2=st.floats(0.01, 10.0),
    tau2=st.floats(1e-5, 1.0),
    theta0=st.floats(-1.0, 1.0),
)
@settings(max_examples=200)
def test_msprt_is_symmetric_and_monotone_in_the_difference(
    n: int, d: float, extra: float, sigma2: float, tau2: float, theta0: float
) -> None:
    up = msprt_log_lambda(n, theta0 + d, sigma2, tau2, theta0)
    down = msprt_log_lambda(n, theta0 - d, sigma2, tau2, theta0)
    assert up == pytest.approx(down, rel=1e-9, abs=1e-12)
    assert msprt_log_lambda(n, theta0 + d + extra, sigma2, tau2, theta0) > up


@given(inc=arms(), cand=arms(), shift=st.floats(1e-3, 10.0), drop=st.floats(0.0, 5.0))
def test_verdict_only_moves_towards_fail_as_the_candidate_drops(
    inc: ArmStats, cand: ArmStats, shift: float, drop: float
) -> None:
    lower = ArmStats(
        n=cand.n,
        total=cand.total - cand.n * shift,
        total_squares=(cand.n - 1) * cand.variance + (cand.total - cand.n * shift) ** 2 / cand.n,
    )
    assume(not lower.is_binary)
    before = compare(inc, cand, drop, expected_n=inc.n + cand.n)
    after = compare(inc, lower, drop, expected_n=inc.n + cand.n)
    assert RANK[after.verdict] >= RANK[before.verdict]
    assert before.statistic is not None
    assert after.statistic is not None
    assert after.statistic > before.statistic


@given(inc=arms(), cand=arms(), drop=st.floats(0.0, 5.0), more=st.floats(1e-3, 5.0))
def test_a_wider_margin_only_moves_towards_pass(
    inc: ArmStats, cand: ArmStats, drop: float, more: float
) -> None:
    narrow = compare(inc, cand, drop)
    wide = compare(inc, cand, drop + more)
    assert RANK[wide.verdict] <= RANK[narrow.verdict]


@given(inc=arms(), cand=arms(), drop=st.floats(0.0, 5.0), relative=st.booleans())
def test_direction_flip_is_the_mirror_image(
    inc: ArmStats, cand: ArmStats, drop: float, relative: bool
) -> None:
    def negate(a: ArmStats) -> ArmStats:
        return ArmStats(n=a.n, total=-a.total, total_squares=a.total_squares)

    up = compare(inc, cand, drop, relative=relative)
    down = compare(negate(inc), negate(cand), drop, relative=relative, higher_is_better=False)
    assert down.verdict == up.verdict
    if up.estimate is None:
        assert down.estimate is None
        return
    assert down.estimate == pytest.approx(-up.estimate, rel=1e-9, abs=1e-12)
    assert up.statistic is not None
    assert down.statistic == pytest.approx(up.statistic, rel=1e-6, abs=1e-9)


@given(inc=arms(), cand=arms(), drop=st.floats(0.0, 5.0))
def test_verdict_agrees_with_the_reported_bounds(
    inc: ArmStats, cand: ArmStats, drop: float
) -> None:
    result = compare(inc, cand, drop)
    assert result.lower is not None
    assert result.upper is not None
    assert result.estimate is not None
    assert result.lower <= result.estimate <= result.upper
    tol = 1e-9 * max(1.0, abs(result.estimate), drop)
    if result.verdict == "fail":
        assert result.upper <= -drop + tol
        assert result.p_value <= ALPHA * (1 + 1e-9)
    elif result.verdict == "pass":
        assert result.lower >= -drop - tol
    else:
        assert result.upper >= -drop - tol
        assert result.lower <= -drop + tol


@given(inc=arms(), cand=arms(), drop=st.floats(0.0, 5.0), scale=st.floats(0.01, 100.0))
def test_absolute_comparison_is_unit_free(
    inc: ArmStats, cand: ArmStats, drop: float, scale: float
) -> None:
    def rescale(a: ArmStats) -> ArmStats:
        return ArmStats(n=a.n, total=a.total * scale, total_squares=a.total_squares * scale**2)

    base = compare(inc, cand, drop)
    scaled = compare(rescale(inc), rescale(cand), drop * scale)
    assume(not rescale(inc).is_binary and not rescale(cand).is_binary)
    assert base.statistic is not None
    assert scaled.statistic == pytest.approx(base.statistic, rel=1e-6, abs=1e-9)


# --- 0/1 metrics: standard error at the margin (score form) -----------------------------------


def test_rates_use_the_pooled_variance_when_testing_no_difference() -> None:
    inc, cand = ArmStats.from_events(50_000, 500), ArmStats.from_events(1_000, 14)
    diff = mean_difference(inc, cand, null=0.0)
    assert isinstance(diff, MeanDifference)
    assert diff.method == "null"
    pooled = (500 + 14 + 2) / (51_000 + 4)
    expected = math.sqrt(pooled * (1 - pooled) * (1 / 50_000 + 1 / 1_000))
    assert diff.std_error == pytest.approx(expected, rel=1e-12)
    assert diff.estimate == pytest.approx(0.014 - 0.01, rel=1e-12)
    plug_in = mean_difference(inc, cand)
    assert isinstance(plug_in, MeanDifference)
    assert plug_in.method == "plug-in"


def test_rates_constrained_to_the_margin() -> None:
    inc, cand = ArmStats.from_events(20_000, 200), ArmStats.from_events(2_000, 30)
    margin = 0.004  # errors: tested null is candidate = incumbent + 0.004
    diff = mean_difference(inc, cand, null=margin)
    assert isinstance(diff, MeanDifference)
    p_i = (200 + 30 + 2 - 2_002 * margin) / (22_000 + 4)
    p_c = p_i + margin
    assert diff.std_error == pytest.approx(
        math.sqrt(p_i * (1 - p_i) / 20_000 + p_c * (1 - p_c) / 2_000), rel=1e-12
    )
    result = compare(inc, cand, margin, higher_is_better=False)
    assert result.lower is not None
    assert result.upper is not None
    half = diff.std_error * one_sided_bound(22_000.0, result.rho, ALPHA) / math.sqrt(22_000)
    assert result.upper == pytest.approx(diff.estimate + half, rel=1e-9)
    assert "standard error at the margin" in result.detail


def test_rates_with_too_few_expected_events_are_inconclusive() -> None:
    result = compare(
        ArmStats.from_events(99_000, 99),
        ArmStats.from_events(1_000, 5),
        0.0,
        higher_is_better=False,
    )
    assert result.verdict == "inconclusive"
    assert "too few events" in result.detail
    # An arm carrying almost none of the variance is exempt: zero errors everywhere still
    # passes once the candidate alone expects enough events at the margin.
    clean = compare(
        ArmStats.from_events(990_000, 0),
        ArmStats.from_events(10_000, 0),
        0.001,
        expected_n=1_000_000,
        higher_is_better=False,
    )
    assert clean.verdict == "pass"


def test_relative_rates() -> None:
    inc, cand = ArmStats.from_events(100_000, 10_000), ArmStats.from_events(10_000, 800)
    result = compare(inc, cand, 0.05, relative=True)
    assert result.estimate == pytest.approx(-0.2)
    assert result.verdict == "fail"
    diff = mean_difference(inc, cand, relative=True, null=-0.05)
    assert isinstance(diff, MeanDifference)
    assert diff.method == "null"
    p_i = (10_800 + 2) / (100_002 + 10_002 * 0.95)
    p_c = 0.95 * p_i
    var = (p_c / p_i**2) ** 2 * p_i * (1 - p_i) / 100_000 + p_c * (1 - p_c) / 10_000 / p_i**2
    assert diff.std_error == pytest.approx(math.sqrt(var), rel=1e-12)


@st.composite
def rate_arms(draw: st.DrawFn) -> tuple[ArmStats, int, int]:
    n_i = draw(st.integers(100, 100_000))
    n_c = draw(st.integers(100, 100_000))
    x_i = draw(st.integers(0, n_i))
    x_c = draw(st.integers(0, n_c - 1))
    return ArmStats.from_events(n_i, x_i), n_c, x_c


@given(arms_=rate_arms(), extra=st.integers(1, 1_000), drop=st.floats(0.0, 0.2))
@settings(max_examples=500)
def test_rate_verdict_only_moves_towards_fail_with_more_errors(
    arms_: tuple[ArmStats, int, int], extra: int, drop: float
) -> None:
    inc, n_c, x_c = arms_
    more = min(n_c, x_c + extra)
    expected_n = inc.n + n_c
    before = compare(
        inc, ArmStats.from_events(n_c, x_c), drop, expected_n=expected_n, higher_is_better=False
    )
    after = compare(
        inc, ArmStats.from_events(n_c, more), drop, expected_n=expected_n, higher_is_better=False
    )
    # The expected-events gate may turn "too early to judge" into a judgement as events
    # accumulate; among judged looks, more errors only move the verdict towards fail.
    assume(before.statistic is not None and after.statistic is not None)
    assert RANK[after.verdict] >= RANK[before.verdict]


@given(arms_=rate_arms(), drop=st.floats(0.0, 0.2))
def test_rate_verdict_agrees_with_the_reported_bounds(
    arms_: tuple[ArmStats, int, int], drop: float
) -> None:
    inc, n_c, x_c = arms_
    result = compare(inc, ArmStats.from_events(n_c, x_c), drop, higher_is_better=False)
    if result.lower is None or result.upper is None:
        assert result.verdict == "inconclusive"
        return
    tol = 1e-12
    if result.verdict == "fail":
        assert result.lower >= drop - tol
    elif result.verdict == "pass":
        assert result.upper <= drop + tol
