"""Divergence of the candidate's action distribution from the incumbent's, and shadow agreement.

A candidate policy that suddenly favours other actions, or actions the incumbent never takes,
is worth stopping before its reward says so. These are effect sizes (Jensen-Shannon divergence
and PSI) with a stated smoothing and a minimum sample size, plus the paired agreement rate of
shadow mode with its Wilson interval. Pure functions; `judge_drift` turns a measurement and the
spec's limits into the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import special, stats  # type: ignore[import-untyped]

from analysis.verdicts import Outcome

__all__ = [
    "Agreement",
    "DriftResult",
    "action_drift",
    "agreement",
    "default_min_per_side",
    "judge_drift",
]

FloatArray = npt.NDArray[np.float64]

# Decisions per side and per degree of freedom before PSI/JS are judged (see default_min_per_side).
DECISIONS_PER_DEGREE_OF_FREEDOM = 20


def default_min_per_side(actions: int) -> int:
    """Decisions per side before drift metrics are judged: ``20 (k - 1)``, at least 1.

    Why: with no drift at all PSI is not 0 but about ``(k - 1)(1/n + 1/m)`` on average, so a
    threshold judged on few decisions fires on noise, so the sample must grow with k.
    At exactly ``n = m = 20 (k - 1)`` the no-drift mean is 0.1, which suits thresholds of 0.25
    and above (5 actions, n = 100: P(PSI > 0.25) = 1%, but P(PSI > 0.1) = 23%). For a lower
    threshold ``tau``, pass ``min_per_side >= 20 (k - 1) / tau`` to keep the noise floor at a
    tenth of it.
    """
    return max(1, DECISIONS_PER_DEGREE_OF_FREEDOM * (actions - 1))


@dataclass(frozen=True)
class DriftResult:
    """Drift of the candidate's action distribution (q) from the incumbent's (p).

    Attributes:
        js: Jensen-Shannon divergence in nats (not scipy's distance, which is its square root),
            on the smoothed shares; at most ln 2. None when a side has no decisions.
        psi: Population stability index ``sum (q - p) ln(q / p)`` (the symmetrised KL) on the
            smoothed shares; ``inf`` with ``smoothing=0`` and an action only one side takes.
            None when a side has no decisions.
        new_action_share: Share of the candidate's decisions on actions the incumbent never
            took in the window (0 when the candidate has no decisions).
        new_actions: Those actions, sorted.
        n_incumbent: Incumbent decisions.
        n_candidate: Candidate decisions.
        actions: Number of actions compared (the union of both mappings' keys).
        smoothing: Pseudo-count added to every action's count on both sides.
        min_per_side: Decisions needed per side before ``enough_data``.
        enough_data: Both sides have at least ``min_per_side`` decisions.
        detail: One line for humans.
    """

    js: float | None
    psi: float | None
    new_action_share: float
    new_actions: tuple[str, ...]
    n_incumbent: int
    n_candidate: int
    actions: int
    smoothing: float
    min_per_side: int
    enough_data: bool
    detail: str


def _counts(mapping: Mapping[str, int], keys: list[str], side: str) -> FloatArray:
    values = []
    for key in keys:
        count = mapping.get(key, 0)
        if count < 0:
            raise ValueError(f"{side} count for action {key!r} is negative: {count!r}")
        values.append(float(count))
    return np.asarray(values, dtype=np.float64)


def _shares(counts: FloatArray, smoothing: float) -> FloatArray:
    smoothed = counts + smoothing
    return np.asarray(smoothed / smoothed.sum(), dtype=np.float64)


def _divergences(p: FloatArray, q: FloatArray) -> tuple[float, float]:
    """JS (nats) and PSI of two share vectors; rel_entr handles zero shares exactly."""
    m = 0.5 * (p + q)
    js = 0.5 * float(np.sum(special.rel_entr(p, m))) + 0.5 * float(np.sum(special.rel_entr(q, m)))
    psi = float(np.sum(special.rel_entr(q, p)) + np.sum(special.rel_entr(p, q)))
    # Rounding can leave a tiny negative value for identical distributions.
    return max(js, 0.0), max(psi, 0.0)


def action_drift(
    incumbent_counts: Mapping[str, int],
    candidate_counts: Mapping[str, int],
    *,
    smoothing: float = 0.5,
    min_per_side: int | None = None,
) -> DriftResult:
    """Compare the candidate's action counts with the incumbent's over the same window.

    Why: JS and PSI are the effect sizes a drift threshold is set on. Both need a stated
    smoothing: an action one side never takes makes PSI infinite, and the pseudo-count chosen
    then dominates it (reference counts give PSI 0.0853 with add-0.5 but 0.2554 with add-1e-4).
    The default is Jeffreys' add-0.5 on every action of the union, on both sides. Because a
    *new* action is the important signal for a policy rollout, its share is reported separately
    as ``new_action_share`` instead of being left to the smoothing. ``enough_data`` is False
    below ``min_per_side`` decisions per side (default ``20 (k - 1)``), where PSI is mostly noise.

    Args:
        incumbent_counts: Decisions per action of the incumbent. Pass the policy's whole action
            set (zeros included): ``k`` is the union of both mappings' keys.
        candidate_counts: Decisions per action of the candidate.
        smoothing: Pseudo-count added to each action on both sides, >= 0 (0 = unsmoothed).
        min_per_side: Decisions per side before the metrics are judged; default
            ``default_min_per_side(k)``.

    Returns:
        The divergences, the new-action share and the sample sizes.
    """
    if not (smoothing >= 0.0 and math.isfinite(smoothing)):
        raise ValueError(f"smoothing must be finite and >= 0, got {smoothing!r}")
    keys = sorted(set(incumbent_counts) | set(candidate_counts))
    if not keys:
        raise ValueError("no actions given")
    inc = _counts(incumbent_counts, keys, "incumbent")
    cand = _counts(candidate_counts, keys, "candidate")
    n_inc, n_cand = int(inc.sum()), int(cand.sum())
    needed = default_min_per_side(len(keys)) if min_per_side is None else min_per_side
    if needed < 1:
        raise ValueError(f"min_per_side must be >= 1, got {needed!r}")

    new = tuple(key for key, i, c in zip(keys, inc, cand, strict=True) if i == 0 and c > 0)
    new_share = float(cand[inc == 0].sum()) / n_cand if n_cand else 0.0
    js: float | None = None
    psi: float | None = None
    if n_inc and n_cand:
        js, psi = _divergences(_shares(inc, smoothing), _shares(cand, smoothing))
    enough = min(n_inc, n_cand) >= needed

    if js is None or psi is None:
        metrics = "no decisions on one side"
    else:
        metrics = f"JS {js:.5f} nats, PSI {psi:.4f} (add-{smoothing:g} smoothing)"
    sample = f"n={n_inc}/{n_cand}, {len(keys)} actions"
    data_note = "" if enough else f"; not enough data (need {needed} per side)"
    new_note = f"; {new_share:.2%} of candidate decisions on new actions {list(new)}" if new else ""
    return DriftResult(
        js=js,
        psi=psi,
        new_action_share=new_share,
        new_actions=new,
        n_incumbent=n_inc,
        n_candidate=n_cand,
        actions=len(keys),
        smoothing=smoothing,
        min_per_side=needed,
        enough_data=enough,
        detail=f"{metrics}; {sample}{new_note}{data_note}",
    )


class Agreement(NamedTuple):
    """Shadow-mode agreement rate with its Wilson confidence interval."""

    rate: float
    wilson_low: float
    wilson_high: float


def agreement(agree: int, total: int, alpha: float) -> Agreement:
    """Share of shadow decisions where the candidate chose the incumbent's action.

    Why: in shadow mode both policies act on the same contexts, so the paired agreement rate is
    the direct measure of how different the candidate is. The Wilson score interval (scipy's
    ``binomtest(...).proportion_ci(method="wilson")``) keeps its coverage near 0 and 1, where
    the Wald interval collapses. It is a fixed-sample interval, not an always-valid one: judge
    it once the shadow stage has its planned number of decisions, not at every check.

    Args:
        agree: Decisions on which the two policies agreed, 0 <= agree <= total.
        total: Shadow decisions compared, >= 1.
        alpha: One minus the confidence level, in (0, 1).

    Returns:
        ``(rate, wilson_low, wilson_high)``.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if total < 1:
        raise ValueError("no shadow decisions: an agreement rate needs at least one; it is no data")
    if not 0 <= agree <= total:
        raise ValueError(f"need 0 <= agree <= total, got agree={agree!r}, total={total!r}")
    interval = stats.binomtest(agree, total).proportion_ci(
        confidence_level=1.0 - alpha, method="wilson"
    )
    return Agreement(
        rate=agree / total, wilson_low=float(interval.low), wilson_high=float(interval.high)
    )


def judge_drift(
    result: DriftResult,
    *,
    max_js: float | None = None,
    max_psi: float | None = None,
    max_new_action_share: float | None = None,
) -> tuple[Outcome, list[str]]:
    """The verdict of a drift measurement against the rule's limits, and the limits it breaks.

    Inconclusive until both sides have `min_per_side` decisions, however large the divergence:
    on few decisions the effect sizes are mostly noise. Then fail when any limit is exceeded.
    """
    broken = [
        f"{key} {value:.4g} > {limit:g}"
        for key, value, limit in (
            ("js", result.js, max_js),
            ("psi", result.psi, max_psi),
            ("new actions", result.new_action_share, max_new_action_share),
        )
        if limit is not None and value is not None and value > limit
    ]
    if not result.enough_data:
        return Outcome.INCONCLUSIVE, []
    return (Outcome.FAIL, broken) if broken else (Outcome.PASS, [])
