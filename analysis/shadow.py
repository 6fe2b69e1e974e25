"""Paired analysis of shadow mode: both policies acted on the very same requests.

In shadow the gateway asks the incumbent and the candidate for every decision, so the data is a
k x k table of (incumbent action, candidate action) pairs. That pairing is worth keeping: the
agreement rate is its diagonal, the Stuart-Maxwell statistic asks whether the two policies'
action shares differ (marginal homogeneity) using the pairing, which is far more sensitive than
comparing two independent samples, and JS/PSI on the two margins say by how much.

A shadow stage re-reads its table at every check, so both tests are sequential: the agreement
rate gets an always-valid confidence sequence and the action shares a normal-mixture test on
the Stuart-Maxwell statistic, whose boundary grows with the pairs so that looking as often as
lockgate does never inflates the chance of refusing a healthy candidate. Pure functions;
`judge_shadow` turns a window and the spec's limits into the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats  # type: ignore[import-untyped]

from analysis.drift import action_drift
from analysis.review import rate_confidence_sequence
from analysis.sequential import best_rho
from analysis.verdicts import Outcome

__all__ = [
    "DEFAULT_EXPECTED_PAIRS",
    "MarginalHomogeneity",
    "PairedActions",
    "SequentialHomogeneity",
    "homogeneity_rho",
    "judge_shadow",
    "paired_actions",
    "sequential_stuart_maxwell",
    "stuart_maxwell",
]

FloatArray = npt.NDArray[np.float64]

DEFAULT_EXPECTED_PAIRS = 5_000
"""Pairs a shadow stage is expected to see when nobody says (a stage's default 10,000
``expected_samples`` counts both policies' decisions: 5,000 requests)."""


@dataclass(frozen=True)
class MarginalHomogeneity:
    """The fixed-sample Stuart-Maxwell test: statistic, degrees of freedom and p-value."""

    statistic: float
    df: int
    p_value: float


def _square_counts(table: npt.ArrayLike) -> FloatArray:
    counts = np.asarray(table, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"need a square table, got shape {counts.shape}")
    if (counts < 0).any() or not np.isfinite(counts).all():
        raise ValueError("counts must be finite and non-negative")
    return counts


def stuart_maxwell(table: npt.ArrayLike) -> MarginalHomogeneity:
    """Test once that the row and column margins of a square table of paired actions are equal.

    Why: the two policies acted on the same requests, so their action counts are not independent
    samples; the Stuart-Maxwell statistic ``d' S^+ d`` (d = row minus column margins, S their
    covariance under homogeneity: ``S_ii = n_i. + n_.i - 2 n_ii``, ``S_ij = -(n_ij + n_ji)``)
    accounts for that pairing. A Moore-Penrose inverse with df = rank(S) handles the tables a
    live shadow produces (an action only one policy takes, or perfect agreement), where the
    textbook inverse does not exist; on non-singular tables it equals the classic test
    (checked against statsmodels' SquareTable.homogeneity in the unit tests). Its chi-square
    p-value holds for one look only: the trigger judges with `sequential_stuart_maxwell`, which
    thresholds this statistic against an always-valid boundary instead.
    """
    counts = _square_counts(table)
    rows, columns = counts.sum(axis=1), counts.sum(axis=0)
    d = rows - columns
    covariance = -(counts + counts.T)
    np.fill_diagonal(covariance, rows + columns - 2.0 * np.diag(counts))
    rank = int(np.linalg.matrix_rank(covariance))
    if rank == 0:
        return MarginalHomogeneity(statistic=0.0, df=0, p_value=1.0)
    statistic = float(d @ np.linalg.pinv(covariance) @ d)
    statistic = max(statistic, 0.0)
    return MarginalHomogeneity(
        statistic=statistic, df=rank, p_value=float(stats.chi2.sf(statistic, rank))
    )


def homogeneity_rho(expected_pairs: int, alpha: float) -> float:
    """Mixing precision of the sequential Stuart-Maxwell test for a stage of ``expected_pairs``.

    Why: ``rho`` only decides at which number of pairs the boundary is tightest, never the error
    rate. As for the compare trigger (`analysis.sequential.tuned_rho`), lockgate tunes to half
    the expected size, because detection times are right-skewed and a boundary tuned too late
    costs more than one tuned too early: ``best_rho(expected_pairs / 2, alpha)`` (two-sided,
    as the quadratic statistic is).
    """
    if expected_pairs < 1:
        raise ValueError(f"expected_pairs must be >= 1, got {expected_pairs!r}")
    return best_rho(max(expected_pairs / 2.0, 0.5), alpha)


@dataclass(frozen=True)
class SequentialHomogeneity:
    """The sequential Stuart-Maxwell test of equal action shares at one look.

    Attributes:
        statistic: The Stuart-Maxwell statistic ``d' S^+ d`` of the table (as `stuart_maxwell`).
        df: Its degrees of freedom, rank(S); 0 when the margins cannot differ yet.
        boundary: The statistic this many pairs need for the shares to count as shown to
            differ at ``alpha``; it grows slowly (logarithmically) with the pairs. Infinite at
            df 0.
        log_e_value: Log of the mixture e-value ``M_n`` (evidence against equal shares).
        p_value: Always-valid p-value ``min(1, 1 / M_n)``: the chance that it ever drops to
            ``alpha`` for a candidate with the incumbent's shares is at most ``alpha``.
        rho: Mixing precision (where the boundary is tightest, in pairs).
        alpha: Level the boundary is drawn at.
    """

    statistic: float
    df: int
    boundary: float
    log_e_value: float
    p_value: float
    rho: float
    alpha: float


def sequential_stuart_maxwell(
    table: npt.ArrayLike, *, alpha: float, rho: float
) -> SequentialHomogeneity:
    """Test that two policies' action shares are equal, valid however often the table is read.

    Why: the trigger re-reads the growing table at every check, and a fixed-sample chi-square
    re-run at every look refuses healthy candidates far more often than its level (see
    benchmarks/sequential.py). Each pair adds ``d_t = e_i - e_j`` (incumbent's action minus
    candidate's) to the margin difference ``D_n``; equal shares mean ``E d_t = 0``, and the
    Stuart-Maxwell matrix ``S_n`` is exactly ``sum d_t d_t'``, the null covariance of ``D_n``.
    Mixing the exponential martingales ``exp(l' D_n - n l' C l / 2)`` (C the per-pair null
    covariance) over ``l ~ N(0, C^+ / rho)`` gives, in closed form and with the plug-in
    ``C = S_n / n``,

        ln M_n = (r / 2) ln(rho / (n + rho)) + n Q_n / (2 (n + rho)),   Q_n = D_n' S_n^+ D_n,

    the r-dimensional version of the two-sided normal mixture of the compare trigger (Howard
    et al. 2021; r = rank S_n). By Ville's inequality a nonnegative (super)martingale
    started at 1 exceeds ``1/alpha`` at *any* look with probability at most ``alpha``, so the
    shares are shown to differ when ``ln M_n >= ln(1/alpha)``, i.e. when ``Q_n`` reaches

        boundary_n = (n + rho) / n * (2 ln(1/alpha) + r ln((n + rho) / rho)).

    Mixing along ``C^+`` makes the test invariant to relabelling actions and uses only the
    discordant pairs' information, as the fixed-sample test does; it needs no per-action
    alpha split and no list of actions in advance (a new action adds a dimension). Like the
    compare trigger's plug-in sequence it is asymptotically valid (the null covariance is
    estimated); the variance is the one under equal shares (score form), which keeps it
    conservative with few discordant pairs (the benchmark checks 10 to 1,000 looks at 90%
    agreement with both symmetric and cyclic disagreements).

    Args:
        table: Square table of pair counts, rows the incumbent's actions, columns the
            candidate's.
        alpha: Level, in (0, 1).
        rho: Mixing precision, > 0 (`homogeneity_rho`).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not (rho > 0.0 and math.isfinite(rho)):
        raise ValueError(f"rho must be positive and finite, got {rho!r}")
    fixed = stuart_maxwell(table)
    n = float(_square_counts(table).sum())
    r = fixed.df
    if r == 0 or n <= 0.0:
        return SequentialHomogeneity(
            statistic=fixed.statistic, df=r, boundary=math.inf, log_e_value=0.0,
            p_value=1.0, rho=rho, alpha=alpha,
        )  # fmt: skip
    spread = math.log((n + rho) / rho)
    log_e = -0.5 * r * spread + n * fixed.statistic / (2.0 * (n + rho))
    boundary = (n + rho) / n * (2.0 * math.log(1.0 / alpha) + r * spread)
    return SequentialHomogeneity(
        statistic=fixed.statistic,
        df=r,
        boundary=boundary,
        log_e_value=log_e,
        p_value=math.exp(-log_e) if log_e > 0.0 else 1.0,
        rho=rho,
        alpha=alpha,
    )


@dataclass(frozen=True)
class PairedActions:
    """What a shadow window says about the candidate's actions against the incumbent's.

    Attributes:
        n: Paired decisions.
        agreement: Share of pairs where the candidate chose the incumbent's action.
        agreement_low: Lower bound of its always-valid confidence sequence at 1 - alpha.
        agreement_high: Upper bound of its always-valid confidence sequence at 1 - alpha.
        homogeneity: The sequential Stuart-Maxwell test of equal action shares.
        js: Jensen-Shannon divergence (nats) of the two action shares, smoothed.
        psi: Population stability index of the two action shares, smoothed.
        out_of_support: Share of the candidate's actions that the incumbent never took in the
            window (actions it has no track record on).
        actions: Actions in the table, sorted.
        detail: One line for humans.
    """

    n: int
    agreement: float
    agreement_low: float
    agreement_high: float
    homogeneity: SequentialHomogeneity
    js: float
    psi: float
    out_of_support: float
    actions: tuple[str, ...]
    detail: str


def paired_actions(
    pairs: Mapping[tuple[str, str], int],
    *,
    alpha: float,
    smoothing: float = 0.5,
    expected_pairs: int = DEFAULT_EXPECTED_PAIRS,
) -> PairedActions:
    """Summarise a window of shadow pairs ``{(incumbent_action, candidate_action): count}``.

    Why: the window is the stage so far and lockgate reads it at every check, so both tests are
    always-valid: the agreement rate's bounds are the beta-binomial mixture confidence
    sequence of `analysis.review.rate_confidence_sequence` (exact, every look at once), the
    action shares are judged by `sequential_stuart_maxwell`.

    Args:
        pairs: Paired decision counts; at least one pair.
        alpha: Level of the agreement's confidence sequence and of the homogeneity test.
        smoothing: Pseudo-count of the JS/PSI effect sizes (as in `analysis.drift`).
        expected_pairs: Pairs the stage is expected to see; tunes where the homogeneity test
            is most sensitive (`homogeneity_rho`), never its error rate.
    """
    actions = tuple(sorted({a for pair in pairs for a in pair}))
    index = {action: i for i, action in enumerate(actions)}
    table = np.zeros((len(actions), len(actions)), dtype=np.float64)
    for (incumbent, candidate), count in pairs.items():
        if count < 0:
            raise ValueError(f"pair ({incumbent}, {candidate}) has a negative count {count}")
        table[index[incumbent], index[candidate]] += count
    n = int(table.sum())
    if n < 1:
        raise ValueError("no shadow pairs: an empty window is no data")
    agreed = int(np.trace(table))
    low, high = rate_confidence_sequence(agreed, n, alpha)
    incumbent_counts = dict(zip(actions, (int(v) for v in table.sum(axis=1)), strict=True))
    candidate_counts = dict(zip(actions, (int(v) for v in table.sum(axis=0)), strict=True))
    drift = action_drift(incumbent_counts, candidate_counts, smoothing=smoothing, min_per_side=1)
    homogeneity = sequential_stuart_maxwell(
        table, alpha=alpha, rho=homogeneity_rho(expected_pairs, alpha)
    )
    js, psi = drift.js or 0.0, drift.psi or 0.0
    new = (
        f", {drift.new_action_share:.2%} on actions the incumbent never took"
        if drift.new_actions
        else ""
    )
    if homogeneity.df:
        shares = (
            f"sequential Stuart-Maxwell {homogeneity.statistic:.2f} vs boundary "
            f"{homogeneity.boundary:.2f} (df {homogeneity.df}, always-valid p "
            f"{homogeneity.p_value:.3g})"
        )
    else:
        shares = "sequential Stuart-Maxwell 0 (no pair where the shares could differ)"
    detail = (
        f"agreement {agreed / n:.3f} [{low:.3f}, {high:.3f}] of {n} pairs (always-valid); "
        f"{shares}; JS {js:.4f} nats, PSI {psi:.4f}{new}"
    )
    return PairedActions(
        n=n,
        agreement=agreed / n,
        agreement_low=low,
        agreement_high=high,
        homogeneity=homogeneity,
        js=js,
        psi=psi,
        out_of_support=drift.new_action_share,
        actions=actions,
        detail=detail,
    )


def judge_shadow(
    result: PairedActions,
    *,
    min_samples: int,
    alpha: float,
    min_agreement: float | None = None,
    max_js: float | None = None,
    max_psi: float | None = None,
    max_out_of_support: float | None = None,
) -> tuple[Outcome, list[str]]:
    """The verdict of a shadow window against the rule's limits, and the findings behind it.

    Fail needs evidence: an agreement rate whose always-valid upper bound is below
    `min_agreement`, action shares shown to differ by the sequential Stuart-Maxwell test (its
    always-valid p-value at or below `alpha`) *and* by more than an effect size limit, or too
    many actions out of the incumbent's support. Pass needs evidence too: the agreement's
    always-valid lower bound at or above the floor. Anything between, and any window of fewer
    than `min_samples` pairs, is inconclusive. Because every bound holds at every look at
    once, re-judging the growing window at each check does not add false refusals.
    """
    if result.n < min_samples:
        return Outcome.INCONCLUSIVE, [f"not enough pairs (need {min_samples})"]
    significant = result.homogeneity.p_value <= alpha
    broken: list[str] = []
    unsure: list[str] = []
    if min_agreement is not None:
        if result.agreement_high < min_agreement:
            broken.append(f"agreement <= {result.agreement_high:.3f} < {min_agreement:g}")
        elif result.agreement_low < min_agreement:
            unsure.append(f"agreement not yet shown >= {min_agreement:g}")
    for key, value, limit in (("js", result.js, max_js), ("psi", result.psi, max_psi)):
        if limit is not None and value > limit:
            (broken if significant else unsure).append(f"{key} {value:.4g} > {limit:g}")
    share = result.out_of_support
    if max_out_of_support is not None and share > max_out_of_support:
        broken.append(f"out of support {share:.2%} > {max_out_of_support:.2%}")
    if broken:
        return Outcome.FAIL, broken
    if unsure:
        return Outcome.INCONCLUSIVE, unsure
    return Outcome.PASS, []
