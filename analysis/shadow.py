"""Paired analysis of shadow mode: both policies acted on the very same requests.

In shadow the gateway asks the incumbent and the candidate for every decision, so the data is a
k x k table of (incumbent action, candidate action) pairs. That pairing is worth keeping: the
agreement rate is its diagonal, the Stuart-Maxwell test asks whether the two policies' action
shares differ (marginal homogeneity) using the pairing, which is far more sensitive than
comparing two independent samples, and JS/PSI on the two margins say by how much. Pure
functions; `judge_shadow` turns a window and the spec's limits into the verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats  # type: ignore[import-untyped]

from analysis.drift import action_drift, agreement
from analysis.verdicts import Outcome

__all__ = [
    "MarginalHomogeneity",
    "PairedActions",
    "judge_shadow",
    "paired_actions",
    "stuart_maxwell",
]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class MarginalHomogeneity:
    """The Stuart-Maxwell test: statistic, degrees of freedom and p-value."""

    statistic: float
    df: int
    p_value: float


def stuart_maxwell(table: npt.ArrayLike) -> MarginalHomogeneity:
    """Test that the row and column margins of a square table of paired actions are equal.

    Why: the two policies acted on the same requests, so their action counts are not independent
    samples; the Stuart-Maxwell statistic ``d' S^+ d`` (d = row minus column margins, S their
    covariance under homogeneity: ``S_ii = n_i. + n_.i - 2 n_ii``, ``S_ij = -(n_ij + n_ji)``)
    accounts for that pairing. A Moore-Penrose inverse with df = rank(S) handles the tables a
    live shadow produces (an action only one policy takes, or perfect agreement), where the
    textbook inverse does not exist; on non-singular tables it equals the classic test
    (checked against statsmodels' SquareTable.homogeneity in the unit tests).
    """
    counts = np.asarray(table, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"need a square table, got shape {counts.shape}")
    if (counts < 0).any() or not np.isfinite(counts).all():
        raise ValueError("counts must be finite and non-negative")
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


@dataclass(frozen=True)
class PairedActions:
    """What a shadow window says about the candidate's actions against the incumbent's.

    Attributes:
        n: Paired decisions.
        agreement: Share of pairs where the candidate chose the incumbent's action.
        agreement_low: Lower bound of its Wilson interval at 1 - alpha.
        agreement_high: Upper bound of its Wilson interval at 1 - alpha.
        homogeneity: The Stuart-Maxwell test of equal action shares.
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
    homogeneity: MarginalHomogeneity
    js: float
    psi: float
    out_of_support: float
    actions: tuple[str, ...]
    detail: str


def paired_actions(
    pairs: Mapping[tuple[str, str], int], *, alpha: float, smoothing: float = 0.5
) -> PairedActions:
    """Summarise a window of shadow pairs ``{(incumbent_action, candidate_action): count}``.

    Args:
        pairs: Paired decision counts; at least one pair.
        alpha: One minus the Wilson interval's confidence level.
        smoothing: Pseudo-count of the JS/PSI effect sizes (as in `analysis.drift`).
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
    rate = agreement(agreed, n, alpha)
    incumbent_counts = dict(zip(actions, (int(v) for v in table.sum(axis=1)), strict=True))
    candidate_counts = dict(zip(actions, (int(v) for v in table.sum(axis=0)), strict=True))
    drift = action_drift(incumbent_counts, candidate_counts, smoothing=smoothing, min_per_side=1)
    homogeneity = stuart_maxwell(table)
    js, psi = drift.js or 0.0, drift.psi or 0.0
    new = (
        f", {drift.new_action_share:.2%} on actions the incumbent never took"
        if drift.new_actions
        else ""
    )
    detail = (
        f"agreement {rate.rate:.3f} [{rate.wilson_low:.3f}, {rate.wilson_high:.3f}] of {n} pairs; "
        f"Stuart-Maxwell {homogeneity.statistic:.2f} (df {homogeneity.df}, "
        f"p {homogeneity.p_value:.3g}); JS {js:.4f} nats, PSI {psi:.4f}{new}"
    )
    return PairedActions(
        n=n,
        agreement=rate.rate,
        agreement_low=rate.wilson_low,
        agreement_high=rate.wilson_high,
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

    Fail needs evidence: an agreement rate whose Wilson upper bound is below `min_agreement`,
    action shares that differ significantly (Stuart-Maxwell at `alpha`) *and* by more than an
    effect size limit, or too many actions out of the incumbent's support. Pass needs evidence
    too: the agreement's lower bound at or above the floor. Anything between, and any window of
    fewer than `min_samples` pairs, is inconclusive.
    """
    if result.n < min_samples:
        return Outcome.INCONCLUSIVE, [f"not enough pairs (need {min_samples})"]
    significant = result.homogeneity.p_value < alpha
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
