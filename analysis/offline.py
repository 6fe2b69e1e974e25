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

Every estimate can be computed from a log streamed in batches (`evaluate_batches`, two passes
in constant memory); `evaluate` is the same arithmetic on arrays held in memory. Pure numpy: no
I/O. `activities/offline_eval.py` reads logs and asks policy servers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import ClassVar, Final

import numpy as np
import numpy.typing as npt

from analysis.verdicts import Outcome

__all__ = [
    "DETERMINISTIC_PROPENSITY",
    "ESTIMATORS",
    "DecisionBatch",
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
    "evaluate_batches",
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
    # The standard library's quantile (Wichura's AS241, accurate to about 1e-16): importing
    # scipy.stats for it would cost a fresh worker over half a second.
    z = NormalDist().inv_cdf(1.0 - alpha / 2.0)
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

    @classmethod
    def zeros(cls, k: int, d: int) -> _Sums:
        """No rows yet, for `k` actions and `d` features."""
        return cls(
            np.zeros(k), np.zeros((k, d)), np.zeros(k), np.zeros((k, d, d)), np.zeros((k, d))
        )

    def grown(self, k: int, d: int) -> _Sums:
        """These sums widened to `k` actions and `d` features (first seen later: no rows, 0)."""
        if self.sum_x.shape == (k, d):
            return self
        return _Sums(
            _grown(self.count, (k,)), _grown(self.sum_x, (k, d)), _grown(self.sum_y, (k,)),
            _grown(self.sum_xx, (k, d, d)), _grown(self.sum_xy, (k, d)),
        )  # fmt: skip

    def add(self, x: FloatArray, a: IntArray, y: FloatArray) -> None:
        """Add rows: features `x`, action codes `a` (below k) and rewards `y`."""
        for action in np.unique(a):
            rows = a == action
            xa, ya = x[rows], y[rows]
            self.count[action] += ya.size
            self.sum_x[action] += xa.sum(axis=0)
            self.sum_y[action] += ya.sum()
            self.sum_xx[action] += xa.T @ xa
            self.sum_xy[action] += xa.T @ ya

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
        sums = _Sums.zeros(n_actions, d)
        sums.add(x, a, y)
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

    The arrays go through `evaluate_batches` as one batch, so a log held in memory and the same
    log streamed in batches are judged by the same arithmetic.

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
    batch = DecisionBatch(
        actions=log.actions,
        action_names=log.action_names,
        propensities=log.propensities,
        rewards=log.rewards,
        features=log.features,
        feature_names=tuple(str(column) for column in range(log.features.shape[1])),
        candidate=candidate,
        candidate_actions=candidate_actions,
        segments=log.segments,
        segment_names=log.segment_names,
    )
    return evaluate_batches(lambda: (batch,), rule)


@dataclass(frozen=True)
class DecisionBatch:
    """Consecutive rows of a log with the candidate's probabilities, and their own dictionaries.

    Why own dictionaries: a streamed batch is decoded on its own (its action, segment, feature
    and candidate-action names are those it holds, in its order); `evaluate_batches` maps them
    onto the log's growing dictionaries, so no batch needs to know the whole log.

    Attributes:
        actions: The logged action of each row, an index into `action_names`.
        action_names: The actions this batch's codes name.
        propensities: pi_b(a_i|x_i), each in (0, 1].
        rewards: r_i, finite.
        features: Numeric context features, one column per `feature_names` entry (0 if absent).
        feature_names: Names of `features`' columns; equal names across batches are one feature.
        candidate: pi_e(a|x_i), shape (rows, len(candidate_actions)).
        candidate_actions: The actions naming `candidate`'s columns.
        segments: The segment of each row, an index into `segment_names`; None: no segments.
        segment_names: The segments this batch's codes name.
    """

    actions: IntArray
    action_names: tuple[str, ...]
    propensities: FloatArray
    rewards: FloatArray
    features: FloatArray
    feature_names: tuple[str, ...]
    candidate: FloatArray
    candidate_actions: tuple[str, ...]
    segments: IntArray | None = None
    segment_names: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        """Number of rows in the batch."""
        return int(self.actions.shape[0])


class _Dictionary:
    """Names in order of first appearance, and each batch's codes translated into them."""

    def __init__(self) -> None:
        self.index: dict[str | None, int] = {}
        self.names: list[str | None] = []

    def codes(self, names: Sequence[str | None]) -> IntArray:
        """The log-wide code of each of `names`; a name not seen before gets the next code."""
        codes = np.empty(len(names), dtype=np.intp)
        for position, name in enumerate(names):
            code = self.index.get(name)
            if code is None:
                code = self.index[name] = len(self.names)
                self.names.append(name)
            codes[position] = code
        return codes


def _grown(array: FloatArray, shape: tuple[int, ...]) -> FloatArray:
    """`array` padded with zeros to `shape` (rows, actions or features seen since it was made)."""
    if array.shape == shape:
        return array
    grown = np.zeros(shape)
    grown[tuple(slice(0, size) for size in array.shape)] = array
    return grown


@dataclass
class _Rows:
    """One batch in the log's dictionaries: what both passes compute from a batch first."""

    actions: IntArray
    segments: IntArray
    features: FloatArray
    candidate_columns: IntArray  # batch candidate column -> log-wide candidate action
    target: FloatArray
    weights: FloatArray


class _Stream:
    """The state of a streamed evaluation: dictionaries, first-pass sums, then the model."""

    def __init__(self, rule: GateRule) -> None:
        if rule.folds < 2:
            raise ValueError(f"folds is {rule.folds}; cross-fitting needs at least 2")
        self.rule = rule
        self.actions = _Dictionary()
        self.segments = _Dictionary()
        self.features = _Dictionary()
        self.candidate_actions = _Dictionary()
        self.has_segments = False
        self.rows = 0
        self.counts = np.zeros((0, 0))  # (segment, logged action): rows
        self.cell_mass = np.zeros((0, 0))  # (segment, candidate action): sum of pi_e
        self.deterministic = 0
        self.sum_weights = 0.0
        self.sum_squared_weights = 0.0
        self.sum_weighted_rewards = 0.0
        self.sum_rewards = 0.0
        self.max_weight = -math.inf
        self.folds = rule.folds
        self.fold_sums: list[_Sums] = [_Sums.zeros(0, 0) for _ in range(rule.folds)]
        self.low = [math.inf] * rule.folds
        self.high = [-math.inf] * rule.folds

    def rows_of(self, batch: DecisionBatch) -> _Rows:
        """The batch's codes in the log's dictionaries, and pi_e and the weight of each row."""
        n = batch.rows
        actions = self.actions.codes(batch.action_names)[batch.actions]
        if batch.segments is None:
            segments = np.full(n, self.segments.codes([None])[0], dtype=np.intp)
        else:
            self.has_segments = True
            segments = self.segments.codes(batch.segment_names)[batch.segments]
        feature_codes = self.features.codes(batch.feature_names)
        features = batch.features
        if not np.array_equal(feature_codes, np.arange(len(self.features.names))):
            features = np.zeros((n, len(self.features.names)))
            features[:, feature_codes] = batch.features
        candidate_columns = self.candidate_actions.codes(batch.candidate_actions)
        # The logged action of each candidate column; an action not logged so far cannot be
        # the logged action of a row of this batch (its actions were coded above).
        to_candidate = np.full(len(self.actions.names), -1, dtype=np.intp)
        for column, name in enumerate(batch.candidate_actions):
            logged = self.actions.index.get(name)
            if logged is not None:
                to_candidate[logged] = column
        columns = to_candidate[actions]
        # pi_e(a_i|x_i): 0 for a logged action the candidate does not have
        target = np.where(columns >= 0, batch.candidate[np.arange(n), np.maximum(columns, 0)], 0.0)
        weights = target / batch.propensities
        return _Rows(actions, segments, features, candidate_columns, target, weights)

    def first_pass(self, batch: DecisionBatch) -> None:
        """Counts for support, sums of the weights, and the reward model's fold statistics."""
        rows = self.rows_of(batch)
        n_segments, n_actions = len(self.segments.names), len(self.actions.names)
        n_candidate = len(self.candidate_actions.names)
        cells = np.bincount(
            rows.segments * n_actions + rows.actions, minlength=n_segments * n_actions
        ).reshape(n_segments, n_actions)
        self.counts = _grown(self.counts, (n_segments, n_actions)) + cells
        self.cell_mass = _grown(self.cell_mass, (n_segments, n_candidate))
        for column, code in enumerate(rows.candidate_columns):
            self.cell_mass[:, code] += np.bincount(
                rows.segments, weights=batch.candidate[:, column], minlength=n_segments
            )
        weights, rewards = rows.weights, batch.rewards
        self.deterministic += int((batch.propensities >= DETERMINISTIC_PROPENSITY).sum())
        self.sum_weights += float(weights.sum())
        self.sum_squared_weights += float(np.dot(weights, weights))
        self.sum_weighted_rewards += float(np.dot(weights, rewards))
        self.sum_rewards += float(rewards.sum())
        self.max_weight = max(self.max_weight, float(weights.max()))
        d = len(self.features.names)
        for fold in range(self.folds):
            start = (fold - self.rows) % self.folds
            x, a = rows.features[start :: self.folds], rows.actions[start :: self.folds]
            y = rewards[start :: self.folds]
            if not y.size:
                continue
            sums = self.fold_sums[fold] = self.fold_sums[fold].grown(n_actions, d)
            sums.add(x, a, y)
            self.low[fold] = min(self.low[fold], float(y.min()))
            self.high[fold] = max(self.high[fold], float(y.max()))
        self.rows += batch.rows

    def fit(self) -> None:
        """Between the passes: every fold's reward model, from the other folds' statistics."""
        folds = min(self.folds, self.rows)
        self.folds = folds
        # Actions and features all known now; one more action column: "never logged".
        n_actions, d = len(self.actions.names) + 1, len(self.features.names)
        statistics = _FoldStatistics(
            [sums.grown(n_actions, d) for sums in self.fold_sums[:folds]],
            self.low[:folds],
            self.high[:folds],
        )
        self.models: list[tuple[FloatArray, FloatArray, float, float]] = []
        for fold in range(folds):
            intercepts, slopes = statistics.without(fold).fit(1.0)
            low = min(statistics.low[f] for f in range(folds) if f != fold)
            high = max(statistics.high[f] for f in range(folds) if f != fold)
            self.models.append((intercepts, slopes, low, high))
        present = self.counts > 0
        self.present = np.concatenate([present, np.zeros((present.shape[0], 1), bool)], axis=1)
        self.mean_weight = self.sum_weights / self.rows
        self.snips_value = (
            self.sum_weighted_rewards / (self.mean_weight * self.rows)
            if self.mean_weight > 0
            else math.nan
        )
        self.mean_reward = self.sum_rewards / self.rows
        self.moments = _Moments(len(_SERIES))
        self.snips_squares = np.zeros(2)  # value, difference
        self.unsupported = 0.0
        self.rows_seen = 0

    def second_pass(self, batch: DecisionBatch) -> None:
        """DR's cross-fitted predictions, every estimator's per-row terms, and support."""
        rows = self.rows_of(batch)
        if (len(self.segments.names), len(self.actions.names) + 1) != self.present.shape or len(
            self.features.names
        ) != self.models[0][1].shape[0]:
            raise ValueError("the log changed between the passes: a new action, segment or feature")
        n, never = batch.rows, len(self.actions.names)
        q = np.empty((n, never + 1))
        for fold, (intercepts, slopes, low, high) in enumerate(self.models):
            start = (fold - self.rows_seen) % self.folds
            x = rows.features[start :: self.folds]
            predicted = (
                x @ slopes + intercepts
                if x.shape[1]
                else np.broadcast_to(intercepts, (x.shape[0], never + 1))
            )
            q[start :: self.folds] = np.clip(predicted, low, high)
        weights, rewards = rows.weights, batch.rewards
        q_logged = q[np.arange(n), rows.actions]
        q_target = np.zeros(n)
        to_logged = np.empty(len(batch.candidate_actions), dtype=np.intp)
        for column, name in enumerate(batch.candidate_actions):
            to_logged[column] = self.actions.index.get(name, never)
            q_target += batch.candidate[:, column] * q[:, to_logged[column]]
        ips_terms = weights * rewards
        clipped_terms = np.minimum(weights, self.rule.clip) * rewards
        dr_terms = q_target + weights * (rewards - q_logged)
        self.moments.add(
            [ips_terms, clipped_terms, dr_terms, ips_terms - rewards, clipped_terms - rewards,
             dr_terms - rewards, rewards]
        )  # fmt: skip
        if self.mean_weight > 0:
            influence = weights * (rewards - self.snips_value) / self.mean_weight
            paired = influence - (rewards - self.mean_reward)
            self.snips_squares += (
                float(np.dot(influence, influence)),
                float(np.dot(paired, paired)),
            )
        per_row = np.zeros(n)
        present = self.present[:, to_logged]  # (segments, batch candidate columns)
        for column in range(len(batch.candidate_actions)):
            if not present[:, column].all():
                per_row += np.where(present[rows.segments, column], 0.0, batch.candidate[:, column])
        deterministic = batch.propensities >= DETERMINISTIC_PROPENSITY
        if deterministic.any():
            per_row = np.where(deterministic, np.maximum(per_row, 1.0 - rows.target), per_row)
        self.unsupported += float(per_row.sum())
        self.rows_seen += n

    def result(self) -> OfflineEvaluation:
        """The estimates, diagnostics and verdict, from both passes' sums."""
        rule, n = self.rule, self.rows
        if self.rows_seen != n:
            raise ValueError(f"the log changed between the passes: {n} rows, then {self.rows_seen}")
        estimates = {
            name: self.moments.estimate(index, rule.alpha) for index, name in enumerate(_SERIES)
        }
        values: dict[str, Estimate] = {}
        differences: dict[str, Estimate] = {}
        for name in ESTIMATORS:
            if name == "snips":
                values[name], differences[name] = self._snips()
            else:
                values[name], differences[name] = estimates[name], estimates[name + "-r"]
        diagnostics = self._diagnostics()
        refusals = _refusals(self._only_action(), diagnostics, rule)
        verdict = (
            Outcome.ERROR if refusals else judge(differences[rule.estimator], rule.max_regression)
        )
        return OfflineEvaluation(
            rule, values, differences, estimates["r"], diagnostics, refusals, verdict
        )

    def _snips(self) -> tuple[Estimate, Estimate]:
        n, alpha = self.rows, self.rule.alpha
        if self.mean_weight <= 0:
            nan = float("nan")
            return (Estimate(nan, nan, nan, nan, alpha),) * 2
        value, difference = self.snips_value, self.snips_value - self.mean_reward
        se_value, se_difference = (
            math.sqrt(float(squares) / n) / math.sqrt(n) for squares in self.snips_squares
        )
        return _interval(value, se_value, alpha), _interval(difference, se_difference, alpha)

    def _only_action(self) -> str:
        logged = np.flatnonzero(self.counts.sum(axis=0) > 0)
        return str(self.actions.names[int(logged[0])]) if logged.size else ""

    def _diagnostics(self) -> Diagnostics:
        n = self.rows
        present = self.present[:, :-1]
        cells = []
        candidate_names = self.candidate_actions.names
        to_logged = [self.actions.index.get(name, -1) for name in candidate_names]
        for segment, column in zip(*np.nonzero(self.cell_mass > 0), strict=True):
            logged = to_logged[column]
            if logged >= 0 and present[segment, logged]:
                continue
            name = self.segments.names[segment] if self.has_segments else None
            share = float(self.cell_mass[segment, column]) / n
            cells.append(UnsupportedCell(str(candidate_names[column]), name, share))
        cells.sort(key=lambda cell: -cell.share)
        squares = self.sum_squared_weights
        return Diagnostics(
            rows=n,
            logged_actions=int((self.counts.sum(axis=0) > 0).sum()),
            deterministic_rows=self.deterministic,
            ess=self.sum_weights**2 / squares if squares else 0.0,
            mean_weight=self.mean_weight,
            max_weight=self.max_weight,
            unsupported_share=self.unsupported / n,
            unsupported_cells=tuple(cells[:5]),
        )


_SERIES: Final = ("ips", "clipped_ips", "dr", "ips-r", "clipped_ips-r", "dr-r", "r")
"""The per-row terms whose means and variances the second pass accumulates (-r: paired)."""


class _Moments:
    """Sums and centred sums of squares of several series, merged batch by batch.

    Why merged rather than sum and sum of squares: the variance from raw sums subtracts two
    large numbers and loses digits; each batch's own centred sum of squares is exact to
    rounding, and merging two batches adds delta^2 n_a n_b / n (Chan, Golub and LeVeque), so a
    streamed log and the same log in one batch agree to rounding error (one batch: numpy's own
    mean and std).
    """

    def __init__(self, series: int) -> None:
        self.count = 0
        self.sums = np.zeros(series)
        self.squares = np.zeros(series)

    def add(self, series: Sequence[FloatArray]) -> None:
        """Merge one batch's terms, one array per series."""
        n = int(series[0].shape[0])
        if not n:
            return
        for index, terms in enumerate(series):
            total = float(terms.sum())
            mean = total / n
            centred = terms - mean
            squares = float(np.dot(centred, centred))
            if self.count:
                delta = mean - float(self.sums[index]) / self.count
                squares += delta * delta * self.count * n / (self.count + n)
            self.sums[index] += total
            self.squares[index] += squares
        self.count += n

    def estimate(self, index: int, alpha: float) -> Estimate:
        """The series' mean with `sd(ddof=1) / sqrt(n)`: VW's gaussian interval."""
        n = self.count
        if n < 2:
            raise ValueError(f"{n} row(s): an interval needs at least 2 rows")
        se = math.sqrt(float(self.squares[index]) / (n - 1)) / math.sqrt(n)
        return _interval(float(self.sums[index]) / n, se, alpha)


def evaluate_batches(
    batches: Callable[[], Iterable[DecisionBatch]], rule: GateRule
) -> OfflineEvaluation:
    """`evaluate` over a log read in batches, twice, in constant memory.

    The first pass counts what support needs, sums the weights (SNIPS, ESS, mean weight) and
    the reward model's per-fold sufficient statistics; between the passes each fold's model is
    fitted; the second pass predicts every row from the model not fitted on it and merges each
    estimator's per-row terms into running sums and centred sums of squares. Memory is that of
    one batch and of the sums (actions x features^2 per fold), whatever the log's length.

    Args:
        batches: Called once per pass; each call reads the log again from its first row, in
            the same order (a row's fold is its position in the log).
        rule: How to judge.

    Raises:
        ValueError: The log has fewer than 2 rows, or the second pass read another log.
    """
    stream = _Stream(rule)
    for batch in batches():
        if batch.rows:
            stream.first_pass(batch)
    if stream.rows < 2:
        raise ValueError(
            f"the log has {stream.rows} row(s); off-policy evaluation needs at least 2"
        )
    stream.fit()
    for batch in batches():
        if batch.rows:
            stream.second_pass(batch)
    return stream.result()


def _refusals(only_action: str, diagnostics: Diagnostics, rule: GateRule) -> tuple[str, ...]:
    """Every reason the log cannot judge the candidate, each with its fix."""
    exploration = _no_exploration(only_action, diagnostics)
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


def _no_exploration(only_action: str, diagnostics: Diagnostics) -> str | None:
    fix = (
        "Fix: log the decisions of an exploring logging policy (for example epsilon-greedy over "
        "every action) with the probability of each chosen action as its propensity."
    )
    if diagnostics.logged_actions == 1:
        return (
            f"The log has no exploration: all {diagnostics.rows} rows took action "
            f"{only_action!r}, so no other action can be valued. {fix}"
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
