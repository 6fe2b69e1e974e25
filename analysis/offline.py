"""Off-policy evaluation: a candidate's value estimated from the incumbent's logged decisions.

A log row holds a context x, the action a the logging policy chose, that choice's probability
p = pi_b(a|x) (the propensity) and the reward r. Reweighting each row by w = pi_e(a|x) / p turns
the log into an estimate of what the candidate pi_e would have earned:

    IPS           mean(w r)                         unbiased; variance grows with the weights
    clipped IPS   mean(min(w, clip) r)              biased towards 0, lower variance
    SNIPS         sum(w r) / sum(w)                 bounded by the observed rewards; ratio
    DR            mean(q(x, pi_e) + w (r - q(x, a))) unbiased; a reward model q cuts variance

Every estimate comes with a normal confidence interval. The gate judges the **paired
difference** candidate minus incumbent on the same rows: the incumbent is the logging policy, so
its per-row value is the logged reward, and pairing cancels the noise the two share.

Before judging, the log must be able to answer the question at all. The gate refuses (never
passes) when the log has no exploration, when the candidate puts probability on actions the log
never shows being taken (no support), when the effective sample size is too small, or when the
mean importance weight is far from 1 (broken propensity logging). Each refusal says what is wrong
and how to fix it.

Pure numpy/scipy: no I/O. `activities/offline_eval.py` reads logs and asks policy servers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Final

import numpy as np
import numpy.typing as npt
from scipy import stats  # type: ignore[import-untyped]

from analysis.verdicts import Outcome

__all__ = [
    "DETERMINISTIC_PROPENSITY",
    "ESTIMATORS",
    "Diagnostics",
    "Estimate",
    "GateRule",
    "LoggedDecisions",
    "OfflineEvaluation",
    "UnsupportedCell",
    "clipped_ips",
    "cross_fitted_rewards",
    "doubly_robust",
    "evaluate",
    "ips",
    "judge",
    "kish_ess",
    "snips",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

ESTIMATORS: Final = ("ips", "clipped_ips", "snips", "dr")
"""Estimator names, as the spec's `offline_eval.estimator` spells them."""

DETERMINISTIC_PROPENSITY: Final = 1.0 - 1e-9
"""A propensity at least this large means the logging policy had no choice in that context."""


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its standard error and two-sided normal interval at 1 - alpha.

    Why normal: every estimator here is a mean of i.i.d. per-row terms or a smooth function of
    such means, so the CLT applies; it is also what Vowpal Wabbit's estimators report, against
    which the unit tests' reference values were cross-checked.
    """

    value: float
    se: float
    lower: float
    upper: float
    alpha: float

    def describe(self) -> str:
        """`0.5473 [0.5401, 0.5545]`, signed when the estimate is a difference."""
        return f"{self.value:.4f} [{self.lower:.4f}, {self.upper:.4f}]"

    def describe_signed(self) -> str:
        """`+0.0183 [+0.0121, +0.0245]`: a difference reads better with its sign."""
        return f"{self.value:+.4f} [{self.lower:+.4f}, {self.upper:+.4f}]"


def _interval(value: float, se: float, alpha: float) -> Estimate:
    z = float(stats.norm.ppf(1.0 - alpha / 2.0))
    return Estimate(value, se, value - z * se, value + z * se, alpha)


def _mean_of_terms(terms: FloatArray, alpha: float) -> Estimate:
    """The mean of i.i.d. terms with `sd(ddof=1) / sqrt(n)`: VW's gaussian interval."""
    n = terms.size
    if n < 2:
        raise ValueError(f"{n} row(s): an interval needs at least 2 rows")
    return _interval(float(terms.mean()), float(terms.std(ddof=1)) / math.sqrt(n), alpha)


def _paired(terms: FloatArray, baseline: FloatArray | None) -> FloatArray:
    if baseline is None:
        return terms
    if baseline.shape != terms.shape:
        raise ValueError(f"baseline has shape {baseline.shape}; expected {terms.shape}")
    return terms - baseline


def ips(
    weights: FloatArray,
    rewards: FloatArray,
    *,
    alpha: float = 0.05,
    baseline: FloatArray | None = None,
) -> Estimate:
    """Inverse propensity scoring: mean(w r).

    Unbiased when the propensities are right and the logging policy takes every action the
    candidate may take; its variance grows with the weights, so it serves as a diagnostic and a
    reference rather than the gate's first choice.

    Args:
        weights: pi_e(a_i|x_i) / p_i per row.
        rewards: r_i per row.
        alpha: The interval is two-sided at 1 - alpha.
        baseline: Per-row value of the policy compared against (the logged reward for the
            logging policy); given, the estimate is of the paired difference candidate - baseline.
    """
    return _mean_of_terms(_paired(weights * rewards, baseline), alpha)


def clipped_ips(
    weights: FloatArray,
    rewards: FloatArray,
    clip: float,
    *,
    alpha: float = 0.05,
    baseline: FloatArray | None = None,
) -> Estimate:
    """IPS with weights capped at `clip`: mean(min(w, clip) r).

    Capping trades a bias towards 0 for a lower variance. For non-negative rewards the bias is
    pessimistic (the candidate looks worse), which is the safe side for a gate that asks whether
    the candidate is at least as good; for costs it would be optimistic. Arguments as `ips`.
    """
    if clip <= 0:
        raise ValueError(f"clip is {clip}; it must be positive")
    return _mean_of_terms(_paired(np.minimum(weights, clip) * rewards, baseline), alpha)


def snips(
    weights: FloatArray,
    rewards: FloatArray,
    *,
    alpha: float = 0.05,
    baseline: FloatArray | None = None,
) -> Estimate:
    """Self-normalised IPS: sum(w r) / sum(w), with a delta-method standard error.

    Why: dividing by sum(w) instead of n keeps the estimate inside the observed reward range and
    cancels a common error in the propensities' scale, at the price of a small bias (a ratio).
    The standard error linearises the ratio (the delta method): the influence of row i is
    w_i (r_i - V) / mean(w), and se^2 = mean(influence^2) / n. With a baseline, the difference
    V - mean(baseline) has influence w_i (r_i - V) / mean(w) - (b_i - mean(b)), the same delta
    method applied to the difference. Arguments as `ips`.
    """
    n = weights.size
    if n < 2:
        raise ValueError(f"{n} row(s): an interval needs at least 2 rows")
    mean_weight = float(weights.mean())
    if mean_weight <= 0:
        nan = float("nan")
        return Estimate(nan, nan, nan, nan, alpha)
    value = float(np.dot(weights, rewards)) / (mean_weight * n)
    influence = weights * (rewards - value) / mean_weight
    if baseline is not None:
        if baseline.shape != weights.shape:
            raise ValueError(f"baseline has shape {baseline.shape}; expected {weights.shape}")
        baseline_mean = float(baseline.mean())
        value -= baseline_mean
        influence = influence - (baseline - baseline_mean)
    se = math.sqrt(float(np.dot(influence, influence)) / n) / math.sqrt(n)
    return _interval(value, se, alpha)


def doubly_robust(
    weights: FloatArray,
    rewards: FloatArray,
    q_logged: FloatArray,
    q_target: FloatArray,
    *,
    alpha: float = 0.05,
    baseline: FloatArray | None = None,
) -> Estimate:
    """Doubly robust: mean(q(x, pi_e) + w (r - q(x, a))), for given reward-model predictions.

    The reward model's prediction for the candidate is corrected by the importance-weighted
    residual of the logged action: unbiased when the propensities are right, whatever the model,
    and of lower variance the better the model. The predictions are inputs here so the estimator
    is checkable by hand; `cross_fitted_rewards` makes them without using a row to correct itself.

    Args:
        weights: pi_e(a_i|x_i) / p_i per row.
        rewards: r_i per row.
        q_logged: The model's predicted reward of the logged action, q(x_i, a_i).
        q_target: The model's predicted reward of the candidate, sum_a pi_e(a|x_i) q(x_i, a).
        alpha: The interval is two-sided at 1 - alpha.
        baseline: As in `ips`.
    """
    terms = q_target + weights * (rewards - q_logged)
    return _mean_of_terms(_paired(terms, baseline), alpha)


def kish_ess(weights: FloatArray) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2, between 1 and n (0 if every w is 0).

    Why: it says how many equally weighted rows the reweighted log is worth. When a few rows
    carry most of the weight, the normal interval is not to be trusted, however large n is.
    """
    squares = float(np.dot(weights, weights))
    if squares == 0.0:
        return 0.0
    return float(weights.sum()) ** 2 / squares


def cross_fitted_rewards(
    features: FloatArray,
    actions: IntArray,
    rewards: FloatArray,
    n_actions: int,
    *,
    folds: int = 5,
    ridge: float = 1.0,
) -> FloatArray:
    """Predicted reward of every action in every row, from a model not fitted on that row.

    Rows are split into `folds` interleaved folds (row i is in fold i mod folds, so a log sorted by
    time or by segment still spreads evenly). The model that predicts fold f is fitted on the
    other folds: if a row's own reward helped fit the model that corrects it, the DR correction
    term would shrink towards 0 and the interval would be too narrow (cross-fitting avoids it).

    The model is one ridge regression per action of the reward on the context features. Why so
    simple: DR stays unbiased with any model, the model only buys variance; a linear fit is
    closed-form, deterministic (a retried activity gives the same verdict), needs nothing beyond
    numpy, and is computed from per-fold sufficient statistics in one pass, so a million rows
    take a fraction of a second. The penalty is `ridge` on standardised features (the weight of
    about one extra observation), which keeps the solve well posed for constant or collinear
    features (one-hot regions) and for actions with few rows, and is negligible otherwise.
    Predictions are clipped to the training folds' reward range. An action with no training
    rows (never logged, or `n_actions` larger than the logged ones) is predicted by the training
    folds' mean reward.

    Args:
        features: One row per decision, one column per numeric context feature.
        actions: The logged action of each row, as an index below `n_actions`.
        rewards: The logged reward of each row.
        n_actions: Columns of the result.
        folds: Number of folds (at most the row count); at least 2.
        ridge: Penalty on standardised coefficients; positive.

    Returns:
        Shape (rows, n_actions): q(x_i, a) for every row i and action a.
    """
    n, d = features.shape
    if folds < 2:
        raise ValueError(f"folds is {folds}; cross-fitting needs at least 2")
    if ridge <= 0:
        raise ValueError(f"ridge is {ridge}; it must be positive")
    folds = min(folds, n)
    if folds < 2:
        raise ValueError(f"{n} row(s): cross-fitting needs at least 2 rows")
    statistics = _fold_statistics(features, actions, rewards, n_actions, folds)
    predictions = np.empty((n, n_actions), dtype=np.float64)
    for fold in range(folds):
        train = statistics.without(fold)
        intercepts, slopes = train.fit(ridge)
        low = min(statistics.low[f] for f in range(folds) if f != fold)
        high = max(statistics.high[f] for f in range(folds) if f != fold)
        fold_rows = features[fold::folds]
        predicted = (
            fold_rows @ slopes + intercepts
            if d
            else np.broadcast_to(intercepts, (fold_rows.shape[0], n_actions))
        )
        predictions[fold::folds] = np.clip(predicted, low, high)
    return predictions


@dataclass
class _Sums:
    """Sufficient statistics of per-action linear fits: counts, sums, cross products."""

    count: FloatArray  # (K,)
    sum_x: FloatArray  # (K, d)
    sum_y: FloatArray  # (K,)
    sum_xx: FloatArray  # (K, d, d)
    sum_xy: FloatArray  # (K, d)

    FIELDS: ClassVar = ("count", "sum_x", "sum_y", "sum_xx", "sum_xy")

    def fit(self, ridge: float) -> tuple[FloatArray, FloatArray]:
        """Intercepts (K,) and slopes (d, K) of the per-action ridge fits."""
        k, d = self.sum_x.shape
        all_count = float(self.count.sum())
        fallback = float(self.sum_y.sum()) / all_count if all_count else 0.0
        intercepts = np.full(k, fallback)
        slopes = np.zeros((d, k))
        for action in range(k):
            n = float(self.count[action])
            if n == 0:
                continue
            mean_x = self.sum_x[action] / n
            mean_y = self.sum_y[action] / n
            if d:
                centred_xx = self.sum_xx[action] - n * np.outer(mean_x, mean_x)
                centred_xy = self.sum_xy[action] - n * mean_x * mean_y
                variances = np.diag(centred_xx) / n
                constant = variances <= 1e-12 * np.maximum(1.0, mean_x * mean_x)
                penalty = ridge * np.where(constant, 1.0, variances)
                beta = np.linalg.solve(centred_xx + np.diag(penalty), centred_xy)
                slopes[:, action] = beta
                intercepts[action] = mean_y - float(mean_x @ beta)
            else:
                intercepts[action] = mean_y
        return intercepts, slopes


@dataclass
class _FoldStatistics:
    per_fold: list[_Sums]
    low: list[float]
    high: list[float]

    def without(self, fold: int) -> _Sums:
        """The other folds' statistics, summed.

        Summed rather than total minus own, which is exact: no trace of a row's reward, not
        even a rounding error, reaches the model that predicts it.
        """
        others = [sums for index, sums in enumerate(self.per_fold) if index != fold]
        return _Sums(
            *(sum((getattr(s, name) for s in others[1:]), getattr(others[0], name).copy())
              for name in _Sums.FIELDS)
        )  # fmt: skip


def _fold_statistics(
    features: FloatArray, actions: IntArray, rewards: FloatArray, n_actions: int, folds: int
) -> _FoldStatistics:
    d = features.shape[1]
    per_fold, low, high = [], [], []
    for fold in range(folds):
        x, a, y = features[fold::folds], actions[fold::folds], rewards[fold::folds]
        sums = _Sums(
            np.zeros(n_actions), np.zeros((n_actions, d)), np.zeros(n_actions),
            np.zeros((n_actions, d, d)), np.zeros((n_actions, d)),
        )  # fmt: skip
        for action in np.unique(a):
            rows = a == action
            xa, ya = x[rows], y[rows]
            sums.count[action] = ya.size
            sums.sum_x[action] = xa.sum(axis=0)
            sums.sum_y[action] = ya.sum()
            sums.sum_xx[action] = xa.T @ xa
            sums.sum_xy[action] = xa.T @ ya
        per_fold.append(sums)
        low.append(float(y.min()))
        high.append(float(y.max()))
    return _FoldStatistics(per_fold, low, high)


@dataclass(frozen=True)
class LoggedDecisions:
    """A decision log as arrays: what the estimators read.

    Attributes:
        actions: The logged action of each row, an index into `action_names`.
        action_names: Every action the log holds.
        propensities: pi_b(a_i|x_i), each in (0, 1].
        rewards: r_i, finite.
        features: Numeric context features, one column each (0 where a row lacks one); used by
            the reward model only, so their choice changes the variance of DR, never its bias.
        segments: The segment of each row, an index into `segment_names`; None when the log has
            no segments (then the whole log is one segment).
        segment_names: Every segment the log holds.
    """

    actions: IntArray
    action_names: tuple[str, ...]
    propensities: FloatArray
    rewards: FloatArray
    features: FloatArray
    segments: IntArray | None = None
    segment_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = self.actions.shape[0]
        shapes = {
            "propensities": self.propensities.shape,
            "rewards": self.rewards.shape,
            "features": self.features.shape[:1],
        }
        if self.segments is not None:
            shapes["segments"] = self.segments.shape
        wrong = {name: shape for name, shape in shapes.items() if shape != (n,)}
        if wrong or self.features.ndim != 2:
            raise ValueError(f"every array needs {n} rows (one per action); got {wrong}")

    @property
    def rows(self) -> int:
        """Number of logged decisions."""
        return int(self.actions.shape[0])


@dataclass(frozen=True)
class GateRule:
    """How the offline gate judges; the spec's `offline_eval` block, minus where the log is.

    Attributes:
        max_regression: Largest tolerated drop of the candidate below the incumbent (reward
            units); the gate passes when the interval's lower bound is above -max_regression.
        estimator: Which estimator's difference the gate judges (one of ESTIMATORS).
        alpha: Intervals are two-sided at 1 - alpha.
        clip: Weight cap of clipped IPS.
        min_ess: Kish effective sample size below which the gate refuses.
        max_weight_error: Largest tolerated |mean weight - 1| before the gate refuses.
        support_tolerance: Largest share of the candidate's probability allowed on actions the
            log never shows being taken (per segment). Those decisions cannot be valued from the
            log, so their share bounds the bias in reward-range units; 0.001 is one decision in
            a thousand.
        folds: Cross-fitting folds of DR's reward model.
    """

    max_regression: float
    estimator: str = "dr"
    alpha: float = 0.05
    clip: float = 10.0
    min_ess: float = 100.0
    max_weight_error: float = 0.1
    support_tolerance: float = 0.001
    folds: int = 5

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {self.estimator!r}; use one of {ESTIMATORS}")
        if not self.max_regression > 0:
            raise ValueError(f"max_regression is {self.max_regression}; it must be positive")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha is {self.alpha}; it must be between 0 and 1")


@dataclass(frozen=True)
class UnsupportedCell:
    """Candidate probability on an action the log never shows in a segment (None: whole log)."""

    action: str
    segment: str | None
    share: float
    """The cell's candidate probability, summed over its rows, over all rows of the log."""


@dataclass(frozen=True)
class Diagnostics:
    """Whether the log can value the candidate at all, and how well.

    Attributes:
        rows: Logged decisions.
        logged_actions: Distinct actions in the log.
        deterministic_rows: Rows logged with propensity 1 (no choice in that context).
        ess: Kish effective sample size of the importance weights.
        mean_weight: Mean importance weight; 1 in expectation when the propensities are right.
        max_weight: Largest importance weight.
        unsupported_share: Share of the candidate's probability, over all rows, on actions the
            logging policy never takes there (see `evaluate`).
        unsupported_cells: The largest unsupported (action, segment) cells, largest first.
    """

    rows: int
    logged_actions: int
    deterministic_rows: int
    ess: float
    mean_weight: float
    max_weight: float
    unsupported_share: float
    unsupported_cells: tuple[UnsupportedCell, ...]


@dataclass(frozen=True)
class OfflineEvaluation:
    """Everything the offline gate found: estimates, differences, diagnostics, and the verdict.

    Attributes:
        rule: The rule judged against.
        values: The candidate's estimated value, by estimator.
        differences: Candidate minus incumbent (paired, per row), by estimator.
        incumbent: The incumbent's (logging policy's) value: the mean logged reward.
        diagnostics: What the log can support.
        refusals: Why the gate refuses to judge, one message each (empty when it judges).
        verdict: PASS, FAIL, INCONCLUSIVE (the interval straddles -max_regression), or ERROR
            when the gate refuses to judge (`refusals` says why).
    """

    rule: GateRule
    values: Mapping[str, Estimate]
    differences: Mapping[str, Estimate]
    incumbent: Estimate
    diagnostics: Diagnostics
    refusals: tuple[str, ...]
    verdict: Outcome

    @property
    def judged(self) -> Estimate:
        """The difference of the rule's estimator: the number the verdict is about."""
        return self.differences[self.rule.estimator]

    @property
    def detail(self) -> str:
        """One paragraph for humans: the verdict and why, then every estimator's numbers."""
        rule, judged = self.rule, self.judged
        level = f"{1 - rule.alpha:.0%}"
        margin = -rule.max_regression
        if self.refusals:
            head = "refused to judge: " + " ".join(self.refusals)
        else:
            head = (
                f"{rule.estimator} candidate - incumbent = {judged.describe_signed()} "
                f"({level} interval) against -max_regression {margin:g}: "
                + _VERDICT_REASON[self.verdict]
            )
        values = ", ".join(f"{name} {v.describe()}" for name, v in self.values.items())
        diagnostics = self.diagnostics
        return (
            f"{head} | candidate value: {values}; incumbent (logged) "
            f"{self.incumbent.describe()} | ESS {diagnostics.ess:.1f} of {diagnostics.rows} rows, "
            f"mean weight {diagnostics.mean_weight:.3f}, max weight {diagnostics.max_weight:.3g}"
        )


_VERDICT_REASON: Final[Mapping[Outcome, str]] = {
    Outcome.PASS: "pass (the lower bound is above it)",
    Outcome.FAIL: "fail (the upper bound is below it)",
    Outcome.INCONCLUSIVE: (
        "inconclusive (the interval straddles it; more logged decisions could decide, "
        "and the gate does not pass)"
    ),
}


def judge(difference: Estimate, max_regression: float) -> Outcome:
    """Pass when the lower bound clears -max_regression, fail when the upper bound does not.

    Why an interval rather than the point estimate: the gate must not pass a candidate just
    because a noisy estimate happened to land high. When the interval straddles the margin the
    log cannot tell, and the answer is inconclusive, which never passes.
    """
    if difference.lower > -max_regression:
        return Outcome.PASS
    if difference.upper < -max_regression:
        return Outcome.FAIL
    return Outcome.INCONCLUSIVE


def evaluate(
    log: LoggedDecisions,
    candidate: FloatArray,
    candidate_actions: tuple[str, ...],
    rule: GateRule,
) -> OfflineEvaluation:
    """Estimate the candidate's value and its difference to the incumbent, then judge.

    Support is judged from what a log can show. A row records only the probability of the
    action taken, so pi_b(a|x) = 0 for another action is never written down; what is observable
    is that an action never appears in the log within a segment (or at all, without segments),
    and that a row logged with propensity 1 left no probability for any other action. The
    candidate's probability on such (segment, action) cells, and on other actions in such rows,
    is its unsupported share; above `rule.support_tolerance` the gate refuses. Actions that do
    appear but rarely are the effective sample size's business.

    Args:
        log: The logged decisions.
        candidate: pi_e(a|x_i), shape (rows, len(candidate_actions)); rows sum to 1.
        candidate_actions: The candidate's actions, naming `candidate`'s columns. Logged actions
            the candidate lacks get probability 0.
        rule: How to judge.

    Raises:
        ValueError: Shapes disagree or the log has fewer than 2 rows.
    """
    n = log.rows
    if n < 2:
        raise ValueError(f"the log has {n} row(s); off-policy evaluation needs at least 2")
    if candidate.shape != (n, len(candidate_actions)):
        raise ValueError(
            f"candidate probabilities have shape {candidate.shape}; "
            f"expected ({n}, {len(candidate_actions)})"
        )
    logged_index = {name: index for index, name in enumerate(log.action_names)}
    # Column j of `candidate` is logged action columns_to_logged[j], or "never logged" (K).
    never = len(log.action_names)
    to_logged = np.array([logged_index.get(a, never) for a in candidate_actions], dtype=np.intp)
    to_candidate = np.full(never + 1, -1, dtype=np.intp)
    to_candidate[to_logged] = np.arange(len(candidate_actions))
    columns = to_candidate[log.actions]
    # pi_e(a_i|x_i): 0 for a logged action the candidate does not have
    target = np.where(columns >= 0, candidate[np.arange(n), np.maximum(columns, 0)], 0.0)
    weights = target / log.propensities

    rewards, alpha = log.rewards, rule.alpha
    q = cross_fitted_rewards(log.features, log.actions, rewards, never + 1, folds=rule.folds)
    q_logged = q[np.arange(n), log.actions]
    q_target = np.zeros(n)
    for column, logged in enumerate(to_logged):  # column by column: no (rows, actions) temporary
        q_target += candidate[:, column] * q[:, logged]

    def estimates(baseline: FloatArray | None) -> dict[str, Estimate]:
        return {
            "ips": ips(weights, rewards, alpha=alpha, baseline=baseline),
            "clipped_ips": clipped_ips(weights, rewards, rule.clip, alpha=alpha, baseline=baseline),
            "snips": snips(weights, rewards, alpha=alpha, baseline=baseline),
            "dr": doubly_robust(
                weights, rewards, q_logged, q_target, alpha=alpha, baseline=baseline
            ),
        }

    values, differences = estimates(None), estimates(rewards)
    incumbent = _mean_of_terms(rewards, alpha)

    diagnostics = _diagnostics(log, candidate, candidate_actions, to_logged, target, weights)
    refusals = _refusals(log, diagnostics, rule)
    verdict = Outcome.ERROR if refusals else judge(differences[rule.estimator], rule.max_regression)
    return OfflineEvaluation(rule, values, differences, incumbent, diagnostics, refusals, verdict)


def _diagnostics(
    log: LoggedDecisions,
    candidate: FloatArray,
    candidate_actions: tuple[str, ...],
    to_logged: IntArray,
    target: FloatArray,
    weights: FloatArray,
) -> Diagnostics:
    n, k = log.rows, len(log.action_names)
    segments = log.segments if log.segments is not None else np.zeros(n, dtype=np.intp)
    n_segments = max(len(log.segment_names), int(segments.max()) + 1) if n else 1
    counts = np.bincount(segments * (k + 1) + log.actions, minlength=n_segments * (k + 1))
    logged = counts.reshape(n_segments, k + 1) > 0  # column k: "never logged", always False
    present = logged[:, to_logged]  # (segments, candidate actions)

    deterministic = log.propensities >= DETERMINISTIC_PROPENSITY
    cell_mass = np.zeros((n_segments, len(candidate_actions)))
    for column in range(len(candidate_actions)):
        cell_mass[:, column] = np.bincount(
            segments, weights=candidate[:, column], minlength=n_segments
        )
    unsupported_cells_mass = np.where(present, 0.0, cell_mass)
    per_row = np.zeros(n)
    for column in range(len(candidate_actions)):
        if not present[:, column].all():
            per_row += np.where(present[segments, column], 0.0, candidate[:, column])
    per_row = np.where(deterministic, np.maximum(per_row, 1.0 - target), per_row)

    cells = []
    for segment, column in zip(*np.nonzero(unsupported_cells_mass > 0), strict=True):
        name = log.segment_names[segment] if log.segments is not None else None
        share = float(unsupported_cells_mass[segment, column]) / n
        cells.append(UnsupportedCell(candidate_actions[column], name, share))
    cells.sort(key=lambda cell: -cell.share)
    return Diagnostics(
        rows=n,
        logged_actions=int(np.unique(log.actions).size),
        deterministic_rows=int(deterministic.sum()),
        ess=kish_ess(weights),
        mean_weight=float(weights.mean()),
        max_weight=float(weights.max()),
        unsupported_share=float(per_row.mean()),
        unsupported_cells=tuple(cells[:5]),
    )


def _refusals(log: LoggedDecisions, diagnostics: Diagnostics, rule: GateRule) -> tuple[str, ...]:
    """Every reason the log cannot judge the candidate, each with its fix."""
    exploration = _no_exploration(log, diagnostics)
    if exploration is not None:
        return (exploration,)  # support, weights and ESS all follow from it; say the cause
    refusals = []
    if diagnostics.unsupported_share > rule.support_tolerance:
        refusals.append(_unsupported(diagnostics, rule))
    if abs(diagnostics.mean_weight - 1.0) > rule.max_weight_error:
        refusals.append(
            f"The mean importance weight is {diagnostics.mean_weight:.3f}, not 1 within "
            f"max_weight_error {rule.max_weight_error:g}: the logged propensities are not the "
            "probabilities with which the logging policy chose the logged actions (or the "
            "candidate's probabilities do not sum to 1, or it favours unsupported actions). "
            "Fix the propensity logging: record pi_b(action | context) of the action actually "
            "taken, at decision time."
        )
    if diagnostics.ess < rule.min_ess:
        refusals.append(
            f"The effective sample size is {diagnostics.ess:.1f} (Kish) of {diagnostics.rows} "
            f"rows, below min_ess {rule.min_ess:g}: the candidate differs too much from the "
            f"logging policy for this log (largest weight {diagnostics.max_weight:.3g}). Fix: "
            "log more decisions or log with more exploration; lower min_ess only if a less "
            "reliable estimate is acceptable."
        )
    return tuple(refusals)


def _no_exploration(log: LoggedDecisions, diagnostics: Diagnostics) -> str | None:
    fix = (
        "Fix: log the decisions of an exploring logging policy (for example epsilon-greedy over "
        "every action) with the probability of each chosen action as its propensity."
    )
    if diagnostics.logged_actions == 1:
        only = log.action_names[int(log.actions[0])]
        return (
            f"The log has no exploration: all {diagnostics.rows} rows took action {only!r}, so "
            f"no other action can be valued. {fix}"
        )
    if diagnostics.deterministic_rows == diagnostics.rows:
        return (
            "The log has no exploration: every propensity is 1 (a deterministic logging "
            f"policy), so only the logged actions can be valued. {fix}"
        )
    return None


def _unsupported(diagnostics: Diagnostics, rule: GateRule) -> str:
    shown = []
    for cell in diagnostics.unsupported_cells:
        where = f" in segment {cell.segment}" if cell.segment is not None else ""
        shown.append(f"{cell.action!r}{where} ({cell.share:.2%})")
    listed = "; largest: " + ", ".join(shown) if shown else ""
    if diagnostics.deterministic_rows:
        listed += f"; {diagnostics.deterministic_rows} row(s) were logged with propensity 1"
    return (
        f"The candidate puts {diagnostics.unsupported_share:.2%} of its probability on actions "
        f"the log never shows being taken (tolerance {rule.support_tolerance:.2%}){listed}. "
        "Their value cannot be estimated from this log. Fix: log with exploration over every "
        "action the candidate may take, in every segment, or remove those actions from the "
        "candidate."
    )
