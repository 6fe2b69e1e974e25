"""Benchmark lockgate's always-valid compare trigger against naive peeking and the oracle SPRT.

Part 1, error rates: the trigger checked at 10, 100 and 1,000 equally spaced looks, lockgate's
``compare_means`` against a naive repeated z-test on the same data. False rollbacks: A/A data
(candidate identical to the incumbent), verdict "fail" with max_drop 0. False advances: the
candidate exactly max_drop worse, verdict "pass". Goal: lockgate <= alpha at every look count.

Part 2, detection cost: samples per arm until a 5% or 10% drop in mean reward is detected
(normal sd 1, and Bernoulli p = 0.5), checked after every observation pair, against the oracle
SPRT that knows the effect (power-one, reject at LLR >= ln(1/alpha)) and a fixed-horizon
one-sided z-test with 80% power. Goal: <= 1.2x the oracle when ``expected_n`` is right,
<= 1.6x when it is 10x off either way.

Part 3, segments (no segment harmed): the A/A false rollback rate of ``compare_segments`` with
2, 5 and 10 segments at 1,000 looks (goal <= alpha), side by side with a naive per-segment test
that runs every segment at the full alpha; and the samples needed to catch a 10% drop confined
to one segment of five, for both.

Part 4, shadow: the shadow trigger re-reads its growing table of (incumbent action, candidate
action) pairs at every check. The A/A false refusal rate at 10, 100 and 1,000 looks of the
always-valid tests (the agreement's confidence sequence, the sequential Stuart-Maxwell test)
side by side with the fixed-sample ones they replaced (Wilson interval, chi-square p-value)
re-read at the same looks (goal: new <= alpha at every look count); and the pairs needed to
refuse a candidate whose agreement is 5 points below the floor, or whose action shares are 3
points apart, new against old.

The simulation is vectorised (cumulative sums over replications); its test statistic is written
out here independently and cross-checked, on sampled looks, against ``compare_means``,
``compare_segments`` and ``analysis.shadow`` themselves.

Run:  .venv/bin/python benchmarks/sequential.py            (two to three minutes on 2 cores)
      .venv/bin/python benchmarks/sequential.py --quick    (fewer replications, a few seconds)
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt
import scipy  # type: ignore[import-untyped]
from scipy import special
from scipy.stats import chi2  # type: ignore[import-untyped]

from analysis.drift import agreement
from analysis.segments import compare_segments
from analysis.sequential import (
    ArmStats,
    compare_means,
    fixed_horizon_n,
    one_sided_bound,
    one_sided_log_supermartingale,
    tuned_rho,
    two_sided_bound,
)
from analysis.shadow import (
    homogeneity_rho,
    judge_shadow,
    paired_actions,
    sequential_stuart_maxwell,
    stuart_maxwell,
)
from analysis.verdicts import Outcome

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

ALPHA = 0.05
BURN_IN = 100
SEED = 20240601
LOG_INV_ALPHA = math.log(1.0 / ALPHA)
Z_ONE_SIDED = NormalDist().inv_cdf(1.0 - ALPHA)
Z_TWO_SIDED = NormalDist().inv_cdf(1.0 - ALPHA / 2.0)
TUNING_FACTORS = (0.1, 0.3, 1.0, 2.0, 3.0, 10.0, 20.0)


def emit(line: str = "") -> None:
    """Print one line of the report (the benchmark's only output)."""
    sys.stdout.write(line + "\n")


def variance(n: FloatArray, total: FloatArray, squares: FloatArray, binary: bool) -> FloatArray:
    """Plug-in per-observation variance, as ``ArmStats.variance`` defines it."""
    with np.errstate(divide="ignore", invalid="ignore"):  # n = 1 is before any burn-in
        var = np.maximum((squares - total * total / n) / (n - 1.0), 0.0)
    if binary:
        p_adj = (total + 1.0) / (n + 2.0)
        var = np.maximum(var, p_adj * (1.0 - p_adj))
    return np.asarray(var, dtype=np.float64)


def null_variance(
    n_i: FloatArray, x_i: FloatArray, n_c: FloatArray, x_c: FloatArray, null: float
) -> tuple[FloatArray, BoolArray]:
    """Var of the difference of two 0/1 arms at rates differing by ``null`` (score form).

    Returns the variance and whether the expected-events rule allows a judgement.
    """
    low, high = max(0.0, -null), min(1.0, 1.0 - null)
    p_i = np.clip((x_i + x_c + 2.0 - (n_c + 2.0) * null) / (n_i + n_c + 4.0), low, high)
    p_c = p_i + null
    v_i, v_c = p_i * (1.0 - p_i) / n_i, p_c * (1.0 - p_c) / n_c
    total = v_i + v_c
    ok_i = (v_i < 0.1 * total) | (n_i * np.minimum(p_i, 1.0 - p_i) >= 5.0)
    ok_c = (v_c < 0.1 * total) | (n_c * np.minimum(p_c, 1.0 - p_c) >= 5.0)
    return np.asarray(total, dtype=np.float64), np.asarray(ok_i & ok_c, dtype=np.bool_)


@dataclass(frozen=True)
class Rule:
    """What is being judged: the margin, the metric's direction and its 0/1 nature."""

    max_drop: float
    higher_is_better: bool
    binary: bool
    expected_n: int


@dataclass(frozen=True)
class Look:
    """Both arms' cumulative statistics at a look, for many replications at once."""

    n_i: FloatArray
    s_i: FloatArray
    q_i: FloatArray
    n_c: FloatArray
    s_c: FloatArray
    q_c: FloatArray

    def naive_z(self, rule: Rule) -> FloatArray:
        """Plug-in z-score of the improvement over the margin (what a fixed threshold uses)."""
        sign = 1.0 if rule.higher_is_better else -1.0
        diff = self.s_c / self.n_c - self.s_i / self.n_i
        var = (
            variance(self.n_i, self.s_i, self.q_i, rule.binary) / self.n_i
            + variance(self.n_c, self.s_c, self.q_c, rule.binary) / self.n_c
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(var > 0.0, (sign * diff + rule.max_drop) / np.sqrt(var), 0.0)
        return np.asarray(z, dtype=np.float64)

    def lockgate(
        self, rule: Rule, rho: float, plug_in: bool = False
    ) -> tuple[BoolArray, BoolArray]:
        """The compare trigger's fail and pass decisions, written out independently.

        ``plug_in`` forces the per-arm sample variances on 0/1 data (the GrowthBook form)
        instead of lockgate's variance at the margin, to show what that choice buys.
        """
        sign = 1.0 if rule.higher_is_better else -1.0
        diff = self.s_c / self.n_c - self.s_i / self.n_i
        if rule.binary and not plug_in:
            var, ok = null_variance(self.n_i, self.s_i, self.n_c, self.s_c, -sign * rule.max_drop)
        else:
            var = (
                variance(self.n_i, self.s_i, self.q_i, rule.binary) / self.n_i
                + variance(self.n_c, self.s_c, self.q_c, rule.binary) / self.n_c
            )
            ok = np.ones(np.shape(var), dtype=np.bool_)
        t = self.n_i + self.n_c
        ok = ok & (var > 0.0) & (np.minimum(self.n_i, self.n_c) >= BURN_IN)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.where(ok, -(sign * diff + rule.max_drop) * np.sqrt(t / var), 0.0)
        fails = ok & (one_sided_log_supermartingale(s, t, rho) >= LOG_INV_ALPHA)
        passes = ok & (one_sided_log_supermartingale(-s, t, rho) >= LOG_INV_ALPHA)
        return np.asarray(fails, dtype=np.bool_), np.asarray(passes, dtype=np.bool_)


class CrossCheck:
    """Counts agreements between the vectorised decisions and ``compare_means``."""

    def __init__(self) -> None:
        self.checked = 0
        self.mismatches = 0

    def sample(
        self,
        look: Look,
        rule: Rule,
        decisions: tuple[BoolArray, BoolArray],
        picks: list[tuple[int, ...]],
    ) -> None:
        """Re-decide the picked cells with the library function and compare."""
        fails, passes = decisions
        for idx in picks:

            def cell(a: FloatArray, idx: tuple[int, ...] = idx) -> float:
                return float(np.broadcast_to(a, fails.shape)[idx])

            inc = ArmStats(int(cell(look.n_i)), cell(look.s_i), cell(look.q_i))
            cand = ArmStats(int(cell(look.n_c)), cell(look.s_c), cell(look.q_c))
            if inc.is_binary != rule.binary or cand.is_binary != rule.binary:
                raise AssertionError("simulated arms do not have the intended 0/1 nature")
            verdict = compare_means(
                inc,
                cand,
                max_drop=rule.max_drop,
                relative=False,
                alpha=ALPHA,
                expected_n=rule.expected_n,
                burn_in=BURN_IN,
                higher_is_better=rule.higher_is_better,
            ).verdict
            mine = "fail" if fails[idx] else "pass" if passes[idx] else "inconclusive"
            self.checked += 1
            self.mismatches += int(verdict != mine)


# --- Part 1: error rates under the null -------------------------------------------------------


@dataclass(frozen=True)
class NullScenario:
    """A healthy candidate (question "fail") or one exactly at the margin (question "pass")."""

    label: str
    question: str
    binary: bool
    mean_incumbent: float
    mean_candidate: float
    n_incumbent: int
    n_candidate: int
    max_drop: float = 0.0
    higher_is_better: bool = True

    @property
    def rule(self) -> Rule:
        """The compare trigger's configuration for this scenario."""
        return Rule(
            self.max_drop,
            self.higher_is_better,
            self.binary,
            self.n_incumbent + self.n_candidate,
        )


def draw_batch(
    rng: np.random.Generator, binary: bool, mean: float, m: int, reps: int
) -> tuple[FloatArray, FloatArray]:
    """Sum and sum of squares of ``m`` fresh observations per replication, drawn exactly."""
    if binary:
        s = rng.binomial(m, mean, reps).astype(np.float64)
        return s, s
    s = mean * m + math.sqrt(m) * rng.standard_normal(reps)
    within = rng.chisquare(m - 1, reps) if m > 1 else np.zeros(reps)
    return s, within + s * s / m


def null_rates(
    rng: np.random.Generator, scenario: NullScenario, looks: int, reps: int, check: CrossCheck
) -> tuple[float, float, float, float]:
    """Wrong-decision rates over ``looks``.

    Returns lockgate's, lockgate's with the plug-in variance, the naive one-sided z-test's and
    the naive two-sided z-test's.
    """
    m_i, m_c = scenario.n_incumbent // looks, scenario.n_candidate // looks
    rule = scenario.rule
    rho = tuned_rho(rule.expected_n, ALPHA)
    zeros = np.zeros(reps)
    s_i, q_i, s_c, q_c = zeros.copy(), zeros.copy(), zeros.copy(), zeros.copy()
    lock = np.zeros(reps, dtype=np.bool_)
    plug = np.zeros(reps, dtype=np.bool_)
    naive1 = np.zeros(reps, dtype=np.bool_)
    naive2 = np.zeros(reps, dtype=np.bool_)
    check_at = set(rng.choice(looks, size=min(looks, 10), replace=False).tolist())
    for k in range(1, looks + 1):
        ds, dq = draw_batch(rng, scenario.binary, scenario.mean_incumbent, m_i, reps)
        s_i, q_i = s_i + ds, q_i + dq
        ds, dq = draw_batch(rng, scenario.binary, scenario.mean_candidate, m_c, reps)
        s_c, q_c = s_c + ds, q_c + dq
        if min(k * m_i, k * m_c) < BURN_IN:
            continue
        n_i, n_c = np.full(reps, float(k * m_i)), np.full(reps, float(k * m_c))
        look = Look(n_i, s_i, q_i, n_c, s_c, q_c)
        z = look.naive_z(rule)
        decisions = look.lockgate(rule, rho)
        plugged = look.lockgate(rule, rho, plug_in=True) if rule.binary else decisions
        if scenario.question == "fail":
            lock |= decisions[0]
            plug |= plugged[0]
            naive1 |= z < -Z_ONE_SIDED
        else:
            lock |= decisions[1]
            plug |= plugged[1]
            naive1 |= z > Z_ONE_SIDED
        naive2 |= np.abs(z) > Z_TWO_SIDED
        if k - 1 in check_at:
            rows = rng.choice(reps, size=min(reps, 40), replace=False).tolist()
            check.sample(look, rule, decisions, [(r,) for r in rows])
    return float(lock.mean()), float(plug.mean()), float(naive1.mean()), float(naive2.mean())


def part_one(rng: np.random.Generator, reps: int, check: CrossCheck) -> bool:
    """Error-rate tables; returns whether every goal was met."""
    healthy = [
        NullScenario("reward normal(1, 1), 50/50", "fail", False, 1.0, 1.0, 10_000, 10_000),
        NullScenario("rate p 0.1, 50/50", "fail", True, 0.1, 0.1, 10_000, 10_000),
        NullScenario("rate p 0.1, 1% canary", "fail", True, 0.1, 0.1, 198_000, 2_000),
        NullScenario(
            "errors p 0.001 (higher worse), 5% canary",
            "fail",
            True,
            0.001,
            0.001,
            950_000,
            50_000,
            higher_is_better=False,
        ),
    ]
    at_margin = [
        NullScenario(
            "reward normal(1, 1) vs 0.95, max_drop 0.05, 50/50",
            "pass",
            False,
            1.0,
            0.95,
            10_000,
            10_000,
            0.05,
        ),
        NullScenario(
            "rate p 0.1 vs 0.09, max_drop 0.01, 1% canary",
            "pass",
            True,
            0.1,
            0.09,
            198_000,
            2_000,
            0.01,
        ),
        NullScenario(
            "errors 0.001 vs 0.003, max_drop 0.002, 1% canary",
            "pass",
            True,
            0.001,
            0.003,
            990_000,
            10_000,
            0.002,
            higher_is_better=False,
        ),
    ]
    se = math.sqrt(ALPHA * (1 - ALPHA) / reps)
    emit("## Part 1: error rates however often lockgate looks (alpha = 0.05)")
    emit()
    emit(
        f"{reps} replications per row (Monte-Carlo SE at 5%: {se:.4f}); looks equally spaced up "
        f"to the sizes shown (incumbent / candidate); burn-in {BURN_IN} per arm for every rule; "
        "expected_n = the last look's size. Naive = plug-in z-test re-run at every look: "
        "one-sided at alpha (the same question lockgate asks) and two-sided (|z| > 1.96, the "
        "issue's 53% figure). The last column is lockgate with per-arm plug-in variances on "
        "0/1 data instead of the variance at the margin (information only, no goal)."
    )
    emit()
    ok = True
    for title, scenarios in (
        ("A/A, healthy candidate: false rollback (verdict fail, max_drop 0)", healthy),
        ("Candidate exactly max_drop worse: false advance (verdict pass)", at_margin),
    ):
        emit(f"### {title}")
        emit()
        emit(
            "| scenario (n incumbent / candidate) | looks | lockgate | naive z one-sided "
            "| naive z two-sided | lockgate / naive one-sided | goal lockgate <= 0.05 "
            "| (lockgate with plug-in variance) |"
        )
        emit("|---|---|---|---|---|---|---|---|")
        for scenario in scenarios:
            for looks in (10, 100, 1_000):
                lock, plug, naive1, naive2 = null_rates(rng, scenario, looks, reps, check)
                passed = lock <= ALPHA
                ok &= passed
                two = f"{naive2:.4f}" if scenario.question == "fail" else "-"
                plugged = f"{plug:.4f}" if scenario.binary else "same"
                emit(
                    f"| {scenario.label} ({scenario.n_incumbent} / {scenario.n_candidate}) "
                    f"| {looks} | {lock:.4f} | {naive1:.4f} | {two} "
                    f"| {lock / naive1:.3f} | {'PASS' if passed else 'FAIL'} | {plugged} |"
                )
        emit()
    return ok


# --- Part 2: detection cost ---------------------------------------------------------------------


@dataclass(frozen=True)
class DropScenario:
    """A regression: the incumbent's mean and the candidate's, with the metric's law."""

    label: str
    binary: bool
    mean_incumbent: float
    mean_candidate: float

    @property
    def delta(self) -> float:
        """The drop per observation."""
        return self.mean_incumbent - self.mean_candidate

    def sd(self, mean: float) -> float:
        """Per-observation standard deviation of an arm with this mean."""
        return math.sqrt(mean * (1.0 - mean)) if self.binary else 1.0

    def draw(self, rng: np.random.Generator, mean: float, shape: tuple[int, int]) -> FloatArray:
        """Observations of one arm."""
        if self.binary:
            return (rng.random(shape) < mean).astype(np.float64)
        return mean + rng.standard_normal(shape)


@dataclass(frozen=True)
class Detection:
    """Per-replication detection times (observations per arm) of each rule."""

    oracle: npt.NDArray[np.int64]
    lockgate: dict[float, npt.NDArray[np.int64]]
    n_max: int


def first_hits(mask: BoolArray) -> tuple[BoolArray, npt.NDArray[np.int64]]:
    """Rows with a hit and the column of their first hit."""
    hit = np.asarray(mask.any(axis=1), dtype=np.bool_)
    return hit, np.asarray(mask.argmax(axis=1), dtype=np.int64)


def detect(
    rng: np.random.Generator, scenario: DropScenario, reps: int, check: CrossCheck
) -> tuple[Detection, int]:
    """Run every rule on the same streams, one observation per arm per step."""
    sd_i, sd_c = scenario.sd(scenario.mean_incumbent), scenario.sd(scenario.mean_candidate)
    var_d = sd_i**2 + sd_c**2
    delta = scenario.delta
    right = fixed_horizon_n(delta, sd_i, sd_c, alpha=ALPHA)
    rhos = {f: tuned_rho(max(2, round(f * right)), ALPHA) for f in TUNING_FACTORS}
    n_max = int(60 * LOG_INV_ALPHA / (delta**2 / (2 * var_d)))
    never = n_max + 1
    oracle = np.full(reps, never, dtype=np.int64)
    found = {f: np.full(reps, never, dtype=np.int64) for f in TUNING_FACTORS}
    sums = np.zeros((4, reps))  # incumbent sum, squares, candidate sum, squares
    active = np.arange(reps)
    n0, chunk = 0, 500
    while n0 < n_max and active.size:
        m = min(chunk, n_max - n0)
        x = scenario.draw(rng, scenario.mean_incumbent, (active.size, m))
        y = scenario.draw(rng, scenario.mean_candidate, (active.size, m))
        s_i = sums[0, active, None] + np.cumsum(x, axis=1)
        q_i = sums[1, active, None] + np.cumsum(x * x, axis=1)
        s_c = sums[2, active, None] + np.cumsum(y, axis=1)
        q_c = sums[3, active, None] + np.cumsum(y * y, axis=1)
        n = np.asarray(n0 + np.arange(1, m + 1, dtype=np.float64)[None, :], dtype=np.float64)
        llr = (delta / var_d) * (s_i - s_c) - n * delta**2 / (2 * var_d)
        hit, col = first_hits(llr >= LOG_INV_ALPHA)
        rows = active[hit]
        oracle[rows] = np.minimum(oracle[rows], n0 + col[hit] + 1)
        look = Look(n, s_i, q_i, n, s_c, q_c)
        for factor, rho in rhos.items():
            rule = Rule(0.0, True, scenario.binary, max(2, round(factor * right)))
            decisions = look.lockgate(rule, rho)
            hit, col = first_hits(decisions[0])
            rows = active[hit]
            found[factor][rows] = np.minimum(found[factor][rows], n0 + col[hit] + 1)
            picks: list[tuple[int, ...]] = [
                (int(rng.integers(active.size)), int(rng.integers(m))) for _ in range(2)
            ]
            check.sample(look, rule, decisions, picks)
        sums[:, active] = np.stack([s_i[:, -1], q_i[:, -1], s_c[:, -1], q_c[:, -1]])
        n0 += m
        pending = oracle[active] == never
        for times in found.values():
            pending |= times[active] == never
        active = active[pending]
    return Detection(oracle, found, n_max), right


def ratio_and_se(times: npt.NDArray[np.int64], base: npt.NDArray[np.int64]) -> tuple[float, float]:
    """Ratio of mean detection times and its delta-method standard error (paired data)."""
    t, b = times.astype(np.float64), base.astype(np.float64)
    r = float(t.mean() / b.mean())
    se = float(np.std(t - r * b, ddof=1) / math.sqrt(t.size) / b.mean())
    return r, se


def part_two(rng: np.random.Generator, reps: int, check: CrossCheck) -> bool:
    """Detection tables; returns whether every goal was met."""
    scenarios = [
        DropScenario("normal mean 1 sd 1, 5% drop", False, 1.0, 0.95),
        DropScenario("normal mean 1 sd 1, 10% drop", False, 1.0, 0.90),
        DropScenario("Bernoulli p 0.5, 5% drop", True, 0.5, 0.475),
        DropScenario("Bernoulli p 0.5, 10% drop", True, 0.5, 0.45),
    ]
    emit("## Part 2: samples per arm to detect a drop (checked after every observation pair)")
    emit()
    emit(
        f"{reps} replications per scenario, 50/50 split, alpha 0.05, max_drop 0, burn-in "
        f"{BURN_IN}. Oracle = power-one SPRT knowing the drop and Var(D) (LLR >= ln 20). "
        "Fixed = one-sided z-test with 80% power, read once at its planned size. "
        "'right' = expected_n set to that fixed-horizon size (both arms); 'n/10' and 'n*10' "
        "are 10x off. Ratios are mean detection time over the oracle's on the same streams "
        "(+- Monte-Carlo SE)."
    )
    emit()
    emit(
        "| scenario | oracle mean [median] | fixed (ratio) | lockgate right: mean (ratio) "
        "| lockgate n/10 (ratio) | lockgate n*10 (ratio) | detected by n_max |"
    )
    emit("|---|---|---|---|---|---|---|")
    goals: list[tuple[str, str, float, float, float]] = []
    sweep: list[str] = []
    for scenario in scenarios:
        det, right = detect(rng, scenario, reps, check)
        base = det.oracle
        o_mean = float(base.mean())
        cells = []
        for factor in (1.0, 0.1, 10.0):
            r, se = ratio_and_se(det.lockgate[factor], base)
            cells.append(f"{det.lockgate[factor].mean():.0f} ({r:.3f} +- {se:.3f})")
            goal = 1.2 if factor == 1.0 else 1.6
            name = {1.0: "right", 0.1: "n/10", 10.0: "n*10"}[factor]
            goals.append((scenario.label, name, r, se, goal))
        power = min(float((t <= det.n_max).mean()) for t in [base, *det.lockgate.values()])
        emit(
            f"| {scenario.label} | {o_mean:.0f} [{np.median(base):.0f}] "
            f"| {right / 2:.0f} ({right / 2 / o_mean:.3f}) | {' | '.join(cells)} | {power:.3f} |"
        )
        ratios = [ratio_and_se(det.lockgate[f], base)[0] for f in TUNING_FACTORS]
        sweep.append(f"| {scenario.label} | " + " | ".join(f"{r:.3f}" for r in ratios) + " |")
    emit()
    emit("### Goals")
    emit()
    emit("| scenario | expected_n | ratio to oracle | goal | result |")
    emit("|---|---|---|---|---|")
    ok = True
    for label, name, r, se, goal in goals:
        passed = r <= goal
        ok &= passed
        emit(
            f"| {label} | {name} | {r:.3f} +- {se:.3f} | <= {goal} "
            f"| {'PASS' if passed else 'FAIL'} |"
        )
    emit()
    emit("### Sensitivity of the mean detection time to expected_n (ratio to the oracle)")
    emit()
    emit("| scenario | " + " | ".join(f"expected_n x{f:g}" for f in TUNING_FACTORS) + " |")
    emit("|---|" + "---|" * len(TUNING_FACTORS))
    for line in sweep:
        emit(line)
    emit()
    return ok


# --- Part 3: segments (no segment harmed) -------------------------------------------------------

SEGMENT_COUNTS = (2, 5, 10)
SEGMENT_N = 2_000  # observations per arm and segment at the last look of the A/A rows
SEGMENT_LOOKS = 1_000
HARMED_OF = 5  # segments in the detection rows; the first one is harmed
HARMED_DROP = 0.1  # 10% of the mean reward 1


def boundary_curve(t: FloatArray, rho: float, alpha: float) -> FloatArray:
    """``one_sided_bound`` at every intrinsic time in ``t`` at once (vectorised bisection).

    The root is bracketed by 0 and the two-sided bound, as in ``one_sided_bound``; 80 halvings
    bring the bracket far below the spacing of the statistic. The value returned is the upper
    end of the bracket, so ``S >= curve`` implies that the library's test rejects too.
    """
    target = math.log(1.0 / alpha)
    low = np.zeros_like(t)
    high = np.asarray(two_sided_bound(t, rho, alpha), dtype=np.float64)
    for _ in range(80):
        mid = 0.5 * (low + high)
        above = one_sided_log_supermartingale(mid, t, rho) >= target
        high = np.where(above, mid, high)
        low = np.where(above, low, mid)
    return np.asarray(high, dtype=np.float64)


def segment_statistic(
    n: FloatArray | float, s_i: FloatArray, q_i: FloatArray, s_c: FloatArray, q_c: FloatArray
) -> FloatArray:
    """``S_t`` of the compare test with max_drop 0 in every segment (equal arms of ``n`` each)."""
    var = (
        variance(np.asarray(n), s_i, q_i, False) / n + variance(np.asarray(n), s_c, q_c, False) / n
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(var > 0.0, -(s_c / n - s_i / n) * np.sqrt(2.0 * n / var), 0.0)
    return np.asarray(out, dtype=np.float64)


class SegmentCheck:
    """Counts agreements between the vectorised segment verdicts and ``compare_segments``."""

    def __init__(self) -> None:
        self.checked = 0
        self.mismatches = 0

    def sample(
        self, sums: tuple[FloatArray, ...], n: int, failed: bool, expected_n: int, k: int
    ) -> None:
        """Re-decide one replication's look (``sums`` per segment) with the library."""
        s_i, q_i, s_c, q_c = sums
        incumbent = {str(j): ArmStats(n, float(s_i[j]), float(q_i[j])) for j in range(k)}
        candidate = {str(j): ArmStats(n, float(s_c[j]), float(q_c[j])) for j in range(k)}
        verdict = compare_segments(
            incumbent,
            candidate,
            max_drop=0.0,
            relative=False,
            alpha=ALPHA,
            expected_n=expected_n,
            min_samples=BURN_IN,
        ).verdict
        self.checked += 1
        self.mismatches += int((verdict == "fail") != failed)


def segments_null_rates(
    rng: np.random.Generator, k: int, reps: int, check: SegmentCheck
) -> tuple[float, float]:
    """A/A false rollback rates over ``SEGMENT_LOOKS`` looks: (split, naive per segment)."""
    m = SEGMENT_N // SEGMENT_LOOKS
    expected_n = 2 * SEGMENT_N * k
    per_segment = expected_n // k
    ns = np.arange(1, SEGMENT_LOOKS + 1, dtype=np.float64) * m
    split_curve = boundary_curve(2.0 * ns, tuned_rho(per_segment, ALPHA / k), ALPHA / k)
    naive_curve = boundary_curve(2.0 * ns, tuned_rho(per_segment, ALPHA), ALPHA)
    sums = [np.zeros((reps, k)) for _ in range(4)]  # incumbent sum, squares, candidate ...
    split = np.zeros(reps, dtype=np.bool_)
    naive = np.zeros(reps, dtype=np.bool_)
    check_at = set(rng.choice(range(BURN_IN // m, SEGMENT_LOOKS), size=5, replace=False).tolist())
    for look in range(SEGMENT_LOOKS):
        for arm in (0, 2):
            ds, dq = draw_batch(rng, False, 1.0, m, reps * k)
            sums[arm] += ds.reshape(reps, k)
            sums[arm + 1] += dq.reshape(reps, k)
        n = ns[look]
        if n < BURN_IN:
            continue
        stat = segment_statistic(n, *sums)
        fails = (stat >= split_curve[look]).any(axis=1)
        split |= fails
        naive |= (stat >= naive_curve[look]).any(axis=1)
        if look in check_at:
            for row in rng.choice(reps, size=20, replace=False).tolist():
                cells = tuple(a[row] for a in sums)
                check.sample(cells, int(n), bool(fails[row]), expected_n, k)
    return float(split.mean()), float(naive.mean())


@dataclass(frozen=True)
class SegmentDetection:
    """Per-replication detection (steps = observations per arm in each segment) of one test."""

    steps: npt.NDArray[np.int64]
    named: BoolArray  # whether the first failing segment was the harmed one
    n_max: int


def segments_detect(
    rng: np.random.Generator, reps: int, check: SegmentCheck
) -> tuple[dict[str, SegmentDetection], int]:
    """Steps until a rollback, a 10% drop in one segment of five, split and naive tests.

    Every step adds one observation per arm to every segment; the verdict is checked after
    every step. Returns the detections and ``expected_n`` used to tune both tests.
    """
    k = HARMED_OF
    per_segment = fixed_horizon_n(HARMED_DROP, 1.0, 1.0, alpha=ALPHA)
    expected_n = k * per_segment
    n_max = 40 * per_segment
    never = n_max + 1
    ns = np.arange(1, n_max + 1, dtype=np.float64)
    curves = {
        "lockgate (alpha/K)": boundary_curve(
            2.0 * ns, tuned_rho(per_segment, ALPHA / k), ALPHA / k
        ),
        "naive (alpha each)": boundary_curve(2.0 * ns, tuned_rho(per_segment, ALPHA), ALPHA),
    }
    steps = {name: np.full(reps, never, dtype=np.int64) for name in curves}
    named = {name: np.zeros(reps, dtype=np.bool_) for name in curves}
    means_c = np.ones(k)
    means_c[0] -= HARMED_DROP
    sums = np.zeros((4, reps, k))
    active = np.arange(reps)
    n0, chunk = 0, 250
    while n0 < n_max and active.size:
        m = min(chunk, n_max - n0)
        x = 1.0 + rng.standard_normal((active.size, m, k))
        y = means_c + rng.standard_normal((active.size, m, k))
        s_i = sums[0, active, None] + np.cumsum(x, axis=1)
        q_i = sums[1, active, None] + np.cumsum(x * x, axis=1)
        s_c = sums[2, active, None] + np.cumsum(y, axis=1)
        q_c = sums[3, active, None] + np.cumsum(y * y, axis=1)
        n = ns[n0 : n0 + m][None, :, None]
        stat = np.where(n >= BURN_IN, segment_statistic(n, s_i, q_i, s_c, q_c), -np.inf)
        for name, curve in curves.items():
            over = stat >= curve[n0 : n0 + m][None, :, None]
            hit, col = first_hits(np.asarray(over.any(axis=2), dtype=np.bool_))
            rows = active[hit]
            fresh = steps[name][rows] == never
            worst = np.argmax(np.where(over, stat, -np.inf)[hit, col[hit]], axis=1)
            steps[name][rows[fresh]] = n0 + col[hit][fresh] + 1
            named[name][rows[fresh]] = worst[fresh] == 0
            if name.startswith("lockgate"):
                for _ in range(4):
                    r, c = int(rng.integers(active.size)), int(rng.integers(m))
                    if n0 + c + 1 >= BURN_IN:
                        cells = (s_i[r, c], q_i[r, c], s_c[r, c], q_c[r, c])
                        check.sample(cells, n0 + c + 1, bool(over[r, c].any()), expected_n, k)
        sums[:, active] = np.stack([s_i[:, -1], q_i[:, -1], s_c[:, -1], q_c[:, -1]])
        n0 += m
        pending = np.zeros(active.size, dtype=np.bool_)
        for times in steps.values():
            pending |= times[active] == never
        active = active[pending]
    return (
        {name: SegmentDetection(steps[name], named[name], n_max) for name in curves},
        expected_n,
    )


def part_three(rng: np.random.Generator, reps: int, detect_reps: int, check: SegmentCheck) -> bool:
    """Segment tables; returns whether every goal was met."""
    for k in SEGMENT_COUNTS:  # the vectorised boundary is the library's
        t = float(2 * SEGMENT_N)
        rho = tuned_rho(2 * SEGMENT_N, ALPHA / k)
        mine = float(boundary_curve(np.array([t]), rho, ALPHA / k)[0])
        if not math.isclose(mine, one_sided_bound(t, rho, ALPHA / k), rel_tol=1e-9):
            raise AssertionError("vectorised boundary disagrees with one_sided_bound")
    se = math.sqrt(ALPHA * (1 - ALPHA) / reps)
    emit("## Part 3: segments, no segment harmed (alpha = 0.05)")
    emit()
    emit(
        f"{reps} replications per row (Monte-Carlo SE at 5%: {se:.4f}); reward normal(1, 1), "
        f"50/50, {SEGMENT_N} observations per arm and segment at the last of "
        f"{SEGMENT_LOOKS} equally spaced looks; burn-in {BURN_IN} per arm and segment; "
        "expected_n = the last look's size (all segments). lockgate = compare_segments "
        "(each segment at alpha / K); naive = the same always-valid test in every segment at "
        "the full alpha. A false rollback = any segment fails."
    )
    emit()
    emit("### A/A, healthy candidate in every segment: false rollback (max_drop 0)")
    emit()
    emit("| segments K | looks | lockgate (alpha/K) | naive (alpha each) | goal lockgate <= 0.05 |")
    emit("|---|---|---|---|---|")
    ok = True
    for k in SEGMENT_COUNTS:
        split, naive = segments_null_rates(rng, k, reps, check)
        passed = split <= ALPHA
        ok &= passed
        emit(
            f"| {k} | {SEGMENT_LOOKS} | {split:.4f} | {naive:.4f} "
            f"| {'PASS' if passed else 'FAIL'} |"
        )
    emit()
    found, expected_n = segments_detect(rng, detect_reps, check)
    emit(f"### A 10% drop confined to one segment of {HARMED_OF}")
    emit()
    emit(
        f"{detect_reps} replications; the harmed segment's candidate mean is 0.9, the other "
        f"segments' 1.0 (the average drops 2%); one observation per arm and segment per step, "
        f"checked after every step; expected_n {expected_n} (the fixed-horizon size of a 10% "
        "drop in each segment). Samples are observations per arm over all segments "
        f"({HARMED_OF} x the harmed segment's); 'named' = the verdict's segment is the harmed one."
    )
    emit()
    emit("| test | median samples per arm [harmed segment] | mean | detected by n_max | named |")
    emit("|---|---|---|---|---|")
    for name, det in found.items():
        done = det.steps <= det.n_max
        median = float(np.median(det.steps))
        emit(
            f"| {name} | {HARMED_OF * median:.0f} [{median:.0f}] "
            f"| {HARMED_OF * float(det.steps.mean()):.0f} | {float(done.mean()):.3f} "
            f"| {float(det.named[done].mean()):.3f} |"
        )
    emit()
    return ok


# --- Part 4: shadow (paired agreement and action shares) ----------------------------------------

SHADOW_PAIRS = 10_000  # pairs at the last look of the A/A rows
SHADOW_LOOKS = (10, 100, 1_000)
SHADOW_MIN_SAMPLES = 500  # the shadow rule's default min_samples
SHADOW_FLOOR = 0.9  # min_agreement of the agreement rows; the A/A candidate agrees exactly this
SHADOW_LOWER = 0.85  # the detection rows' candidate: 5 points below the floor
SHADOW_SHARES = (0.5, 0.3, 0.2)  # the incumbent's action shares (3 actions)
SHADOW_DISAGREE = 0.1  # share of pairs where the policies differ in the homogeneity rows
SHADOW_SHIFT = 0.03  # detection rows: this share of pairs moved from action 0 to action 1
SHADOW_STEP = 10  # pairs between checks in the detection rows
SHADOW_DETECT_MAX = 20_000
SHADOW_ALPHAS = (0.05, 0.01)


def shadow_table(kind: str) -> FloatArray:
    """Cell probabilities of the 3 x 3 (incumbent, candidate) table of a homogeneity row.

    ``symmetric``: each disagreement as likely one way as the other (two identical stochastic
    policies). ``cyclic``: disagreements only go 0 -> 1 -> 2 -> 0, equally often; the action
    shares are still equal but the table is not symmetric. ``shifted``: the symmetric table
    with ``SHADOW_SHIFT`` of the pairs moved from (0, 0) to (0, 1): the candidate takes action 1
    instead of 0 that much more often.
    """
    shares = np.array(SHADOW_SHARES)
    table = np.diag((1.0 - SHADOW_DISAGREE) * shares)
    if kind == "cyclic":
        for i in range(3):
            table[i, (i + 1) % 3] = SHADOW_DISAGREE / 3.0
    else:
        off = np.outer(shares, shares)
        np.fill_diagonal(off, 0.0)
        table += SHADOW_DISAGREE * off / off.sum()
        if kind == "shifted":
            table[0, 0] -= SHADOW_SHIFT
            table[0, 1] += SHADOW_SHIFT
    return np.asarray(table / table.sum(), dtype=np.float64)


def wilson_high(agreed: FloatArray, n: FloatArray, alpha: float) -> FloatArray:
    """Upper end of the two-sided Wilson score interval at ``1 - alpha`` (the old trigger)."""
    z = NormalDist().inv_cdf(1.0 - alpha / 2.0)
    rate = agreed / n
    scale = 1.0 + z * z / n
    centre = (rate + z * z / (2.0 * n)) / scale
    half = z / scale * np.sqrt(rate * (1.0 - rate) / n + z * z / (4.0 * n * n))
    return np.asarray(centre + half, dtype=np.float64)


def sequence_excludes_from_above(
    agreed: FloatArray, n: FloatArray, floor: float, alpha: float
) -> BoolArray:
    """Whether the beta-binomial mixture sequence's upper bound is below ``floor``.

    The sequence is ``{p: M_n(p) < 1/alpha}``, an interval around ``agreed / n``, so its upper
    end is below the floor exactly when the floor is left out and the rate is below it.
    """
    failures = n - agreed
    log_m = (
        special.betaln(1.0 + agreed, 1.0 + failures)
        - special.xlogy(agreed, floor)
        - special.xlog1py(failures, -floor)
    )
    return np.asarray((log_m >= math.log(1.0 / alpha)) & (agreed < floor * n), dtype=np.bool_)


def stuart_maxwell_3(tables: FloatArray) -> FloatArray:
    """Stuart-Maxwell statistic of many 3 x 3 tables (last axes), on the first two actions.

    With three actions the covariance has rank 2 as soon as two kinds of disagreement were
    seen, and the statistic is ``d' S^-1 d`` on any two of the margin differences (closed-form
    2 x 2 inverse). Singular tables get NaN (the caller re-decides them with the library).
    """
    rows, columns = tables.sum(axis=-1), tables.sum(axis=-2)
    d = (rows - columns)[..., :2]
    diag = rows + columns - 2.0 * np.diagonal(tables, axis1=-2, axis2=-1)
    s00, s11 = diag[..., 0], diag[..., 1]
    s01 = -(tables[..., 0, 1] + tables[..., 1, 0])
    det = s00 * s11 - s01 * s01
    with np.errstate(divide="ignore", invalid="ignore"):
        q = (d[..., 0] ** 2 * s11 - 2.0 * d[..., 0] * d[..., 1] * s01 + d[..., 1] ** 2 * s00) / det
    return np.asarray(np.where(det > 1e-9, q, np.nan), dtype=np.float64)


def sequential_boundary(n: FloatArray, rho: float, alpha: float, df: int = 2) -> FloatArray:
    """The Stuart-Maxwell statistic that ``sequential_stuart_maxwell`` needs at ``n`` pairs."""
    return np.asarray(
        (n + rho) / n * (2.0 * math.log(1.0 / alpha) + df * np.log((n + rho) / rho)),
        dtype=np.float64,
    )


class ShadowCheck:
    """Counts agreements between the vectorised shadow decisions and ``analysis.shadow``."""

    def __init__(self) -> None:
        self.checked = 0
        self.mismatches = 0

    def agreement(self, agreed: int, n: int, alpha: float, new: bool, old: bool) -> None:
        """Re-decide one look of an agreement row with the library (trigger and Wilson)."""
        result = paired_actions({("a", "a"): agreed, ("a", "b"): n - agreed}, alpha=alpha)
        outcome, _ = judge_shadow(
            result, min_samples=SHADOW_MIN_SAMPLES, alpha=alpha, min_agreement=SHADOW_FLOOR
        )
        wilson = agreement(agreed, n, alpha).wilson_high < SHADOW_FLOOR
        self.checked += 1
        self.mismatches += int((outcome is Outcome.FAIL) != new) + int(wilson != old)

    def homogeneity(
        self, table: FloatArray, rho: float, alpha: float, new: bool, old: bool
    ) -> None:
        """Re-decide one look of a homogeneity row with the library (sequential and fixed)."""
        sequential = sequential_stuart_maxwell(table, alpha=alpha, rho=rho).p_value <= alpha
        fixed = stuart_maxwell(table).p_value < alpha
        self.checked += 1
        self.mismatches += int(sequential != new) + int(fixed != old)


def homogeneity_decisions(
    tables: FloatArray, n: float, rhos: dict[float, float]
) -> tuple[dict[float, BoolArray], dict[float, BoolArray], FloatArray]:
    """Sequential and fixed-sample decisions per alpha for many tables at ``n`` pairs."""
    q = stuart_maxwell_3(tables)
    singular = np.flatnonzero(np.isnan(q))
    for row in singular.tolist():  # rare: re-decided by the library itself
        q[row] = stuart_maxwell(tables[row]).statistic
    nn = np.array([n])
    new = {a: np.asarray(q >= sequential_boundary(nn, rhos[a], a)[0]) for a in SHADOW_ALPHAS}
    old = {a: np.asarray(q > chi2.isf(a, 2)) for a in SHADOW_ALPHAS}
    for row in singular.tolist():
        fixed = stuart_maxwell(tables[row])
        for a in SHADOW_ALPHAS:
            seq = sequential_stuart_maxwell(tables[row], alpha=a, rho=rhos[a])
            new[a][row] = seq.p_value <= a
            old[a][row] = fixed.p_value < a
    return new, old, q


def shadow_null_rates(
    rng: np.random.Generator, kind: str, reps: int, check: ShadowCheck
) -> dict[tuple[float, int], tuple[float, float]]:
    """A/A false refusal rates ``{(alpha, looks): (new, old)}`` of one kind of row.

    One path of ``SHADOW_PAIRS`` pairs per replication, read every ``SHADOW_PAIRS / 1000``
    pairs; the 100- and 10-look rates read the same paths at every 10th and 100th look.
    """
    finest = max(SHADOW_LOOKS)
    step = SHADOW_PAIRS // finest
    new = {(a, k): np.zeros(reps, dtype=np.bool_) for a in SHADOW_ALPHAS for k in SHADOW_LOOKS}
    old = {(a, k): np.zeros(reps, dtype=np.bool_) for a in SHADOW_ALPHAS for k in SHADOW_LOOKS}
    rhos = {a: homogeneity_rho(SHADOW_PAIRS, a) for a in SHADOW_ALPHAS}
    agreed = np.zeros(reps)
    tables = np.zeros((reps, 3, 3))
    probabilities = shadow_table(kind).ravel() if kind != "agreement" else None
    check_at = set(rng.choice(range(SHADOW_MIN_SAMPLES // step, finest), 4, replace=False).tolist())
    for look in range(finest):
        n = float((look + 1) * step)
        if probabilities is None:
            agreed += rng.binomial(step, SHADOW_FLOOR, size=reps)
        else:
            tables += rng.multinomial(step, probabilities, size=reps).reshape(reps, 3, 3)
        if n < SHADOW_MIN_SAMPLES:
            continue
        if probabilities is None:
            nn = np.full(reps, n)
            fresh_new = {
                a: sequence_excludes_from_above(agreed, nn, SHADOW_FLOOR, a) for a in SHADOW_ALPHAS
            }
            fresh_old = {a: wilson_high(agreed, nn, a) < SHADOW_FLOOR for a in SHADOW_ALPHAS}
        else:
            fresh_new, fresh_old, _ = homogeneity_decisions(tables, n, rhos)
        for a in SHADOW_ALPHAS:
            for k in SHADOW_LOOKS:
                if (look + 1) % (finest // k) == 0:
                    new[a, k] |= fresh_new[a]
                    old[a, k] |= fresh_old[a]
        if look in check_at:
            for row in rng.choice(reps, size=10, replace=False).tolist():
                for a in SHADOW_ALPHAS:
                    if probabilities is None:
                        check.agreement(
                            int(agreed[row]),
                            int(n),
                            a,
                            bool(fresh_new[a][row]),
                            bool(fresh_old[a][row]),
                        )
                    else:
                        check.homogeneity(
                            tables[row],
                            rhos[a],
                            a,
                            bool(fresh_new[a][row]),
                            bool(fresh_old[a][row]),
                        )
    return {key: (float(new[key].mean()), float(old[key].mean())) for key in new}


def shadow_detect(
    rng: np.random.Generator, kind: str, reps: int, alpha: float, min_samples: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Pairs until refusal (new, old), checked every ``SHADOW_STEP`` pairs from min_samples.

    ``kind`` is ``agreement`` (the candidate agrees ``SHADOW_LOWER`` against the floor) or
    ``shifted`` (action shares differ by ``SHADOW_SHIFT``). Never refused by
    ``SHADOW_DETECT_MAX`` counts as ``SHADOW_DETECT_MAX + 1``.
    """
    never = SHADOW_DETECT_MAX + 1
    new = np.full(reps, never, dtype=np.int64)
    old = np.full(reps, never, dtype=np.int64)
    rho = homogeneity_rho(SHADOW_PAIRS, alpha)
    rhos = dict.fromkeys(SHADOW_ALPHAS, rho)
    agreed = np.zeros(reps)
    tables = np.zeros((reps, 3, 3))
    probabilities = shadow_table("shifted").ravel()
    for n in range(SHADOW_STEP, SHADOW_DETECT_MAX + 1, SHADOW_STEP):
        if kind == "agreement":
            agreed += rng.binomial(SHADOW_STEP, SHADOW_LOWER, size=reps)
        else:
            tables += rng.multinomial(SHADOW_STEP, probabilities, size=reps).reshape(reps, 3, 3)
        if n < min_samples:
            continue
        if kind == "agreement":
            nn = np.full(reps, float(n))
            fresh_new = sequence_excludes_from_above(agreed, nn, SHADOW_FLOOR, alpha)
            fresh_old = wilson_high(agreed, nn, alpha) < SHADOW_FLOOR
        else:
            by_alpha_new, by_alpha_old, _ = homogeneity_decisions(tables, float(n), rhos)
            fresh_new, fresh_old = by_alpha_new[alpha], by_alpha_old[alpha]
        new = np.where(fresh_new & (new == never), n, new)
        old = np.where(fresh_old & (old == never), n, old)
        if (new < never).all() and (old < never).all():
            break
    return new, old


def part_four(rng: np.random.Generator, reps: int, detect_reps: int, check: ShadowCheck) -> bool:
    """Shadow tables; returns whether every goal was met."""
    emit("## Part 4: shadow, agreement and action shares re-judged at every check")
    emit()
    emit(
        f"{reps} replications per row (Monte-Carlo SE at 5%: "
        f"{math.sqrt(0.05 * 0.95 / reps):.4f}, at 1%: {math.sqrt(0.01 * 0.99 / reps):.4f}); "
        f"{SHADOW_PAIRS} pairs at the last of the equally spaced looks, judged from "
        f"min_samples {SHADOW_MIN_SAMPLES} on. Agreement rows: the candidate agrees with the "
        f"incumbent exactly at min_agreement {SHADOW_FLOOR} (the hardest healthy case); a false "
        "refusal is an upper bound below it. new = the always-valid confidence sequence "
        "(beta-binomial mixture), old = the Wilson interval re-read at every look. Action-share "
        f"rows: 3 actions (incumbent shares {SHADOW_SHARES}), the policies disagree on "
        f"{SHADOW_DISAGREE:.0%} of pairs with equal shares, symmetric (identical stochastic "
        "policies) or cyclic (0 -> 1 -> 2 -> 0: equal shares, asymmetric table); a false refusal "
        "is the test showing the shares differ (max_js/max_psi left out, so the test alone "
        "decides). new = sequential Stuart-Maxwell (normal mixture, tuned to "
        f"{SHADOW_PAIRS} pairs), old = the chi-square p-value re-read at every look."
    )
    emit()
    emit("### A/A, healthy candidate: false refusal (verdict fail)")
    emit()
    header = "| test | looks |"
    rule = "|---|---|"
    for a in SHADOW_ALPHAS:
        header += f" new (alpha {a:g}) | old (alpha {a:g}) | goal new <= {a:g} |"
        rule += "---|---|---|"
    emit(header)
    emit(rule)
    ok = True
    labels = {
        "agreement": f"agreement at the floor {SHADOW_FLOOR}",
        "symmetric": "action shares equal, symmetric table",
        "cyclic": "action shares equal, cyclic table",
    }
    for kind, label in labels.items():
        rates = shadow_null_rates(rng, kind, reps if kind == "agreement" else reps // 2, check)
        for k in SHADOW_LOOKS:
            line = f"| {label} | {k} |"
            for a in SHADOW_ALPHAS:
                new, old = rates[a, k]
                passed = new <= a
                ok &= passed
                line += f" {new:.4f} | {old:.4f} | {'PASS' if passed else 'FAIL'} |"
            emit(line)
    emit()
    emit("### Pairs needed to refuse a candidate")
    emit()
    emit(
        f"{detect_reps} replications, checked every {SHADOW_STEP} pairs up to "
        f"{SHADOW_DETECT_MAX}, alpha 0.05. Agreement: the candidate agrees {SHADOW_LOWER} "
        f"against min_agreement {SHADOW_FLOOR} (5 points lower). Action shares: "
        f"{SHADOW_SHIFT:.0%} of the pairs moved from the incumbent's action 0 to action 1 "
        "(the candidate's share of action 1 is 3 points higher). The old tests refuse sooner "
        "because they also refuse healthy candidates far more often (table above)."
    )
    emit()
    emit(
        "| candidate | min_samples | new: median [mean] | old: median [mean] "
        "| new / old (median) | new refused by the end |"
    )
    emit("|---|---|---|---|---|---|")
    for kind, label in (
        ("agreement", f"agreement {SHADOW_LOWER} vs floor {SHADOW_FLOOR}"),
        ("shifted", f"action shares {SHADOW_SHIFT:.0%} apart"),
    ):
        for min_samples in (SHADOW_MIN_SAMPLES, 100):
            found_new, found_old = shadow_detect(rng, kind, detect_reps, 0.05, min_samples)
            median_new, median_old = float(np.median(found_new)), float(np.median(found_old))
            emit(
                f"| {label} | {min_samples} | {median_new:.0f} [{found_new.mean():.0f}] "
                f"| {median_old:.0f} [{found_old.mean():.0f}] | {median_new / median_old:.2f} "
                f"| {float((found_new <= SHADOW_DETECT_MAX).mean()):.3f} |"
            )
    emit()
    return ok


def main() -> int:
    """Run both parts with fixed seeds and print the markdown report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer replications")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    started = time.perf_counter()
    emit(
        f"# lockgate sequential benchmark (seed {args.seed}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, Python {platform.python_version()})"
    )
    emit()
    check = CrossCheck()
    ok_one = part_one(np.random.default_rng(args.seed), 4_000 if args.quick else 20_000, check)
    ok_two = part_two(np.random.default_rng(args.seed + 1), 400 if args.quick else 3_000, check)
    segment_check = SegmentCheck()
    ok_three = part_three(
        np.random.default_rng(args.seed + 2),
        2_000 if args.quick else 10_000,
        200 if args.quick else 2_000,
        segment_check,
    )
    shadow_check = ShadowCheck()
    ok_four = part_four(
        np.random.default_rng(args.seed + 3),
        4_000 if args.quick else 20_000,
        200 if args.quick else 1_000,
        shadow_check,
    )
    emit(
        f"Cross-check: {check.checked} sampled looks re-decided by analysis.sequential."
        f"compare_means, {check.mismatches} disagreements; {segment_check.checked} by "
        f"analysis.segments.compare_segments, {segment_check.mismatches} disagreements."
    )
    emit(
        f"Shadow cross-check: {shadow_check.checked} sampled looks re-decided by "
        f"analysis.shadow (judge_shadow, sequential_stuart_maxwell, stuart_maxwell) and "
        f"analysis.drift.agreement, {shadow_check.mismatches} disagreements."
    )
    ok = ok_one and ok_two and ok_three and ok_four
    ok = ok and not (check.mismatches or segment_check.mismatches or shadow_check.mismatches)
    emit(f"Overall: {'PASS' if ok else 'FAIL'} ({time.perf_counter() - started:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
