"""Off-policy estimators, diagnostics and the offline gate (analysis.offline).

The hand values are a small toy log's, computed by hand and cross-checked against vw-estimators;
the refusals are pinned word for word, because their text is the engineer's instructions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from analysis.offline import (
    Estimate,
    GateRule,
    LoggedDecisions,
    clipped_ips,
    cross_fitted_rewards,
    doubly_robust,
    evaluate,
    ips,
    judge,
    kish_ess,
    snips,
)
from analysis.verdicts import Outcome
from simulator.artifacts import load_artifact
from simulator.offline_log import draw_log, logging_policy
from simulator.world import ACTIONS as WORLD_ACTIONS
from simulator.world import World

# (action, logging propensity, target probability, reward, q(x, a), q(x, target))
TOY = [
    (0, 0.7, 0.9, 1, 0.60, 0.62),
    (1, 0.2, 0.05, 0, 0.30, 0.55),
    (0, 0.7, 0.9, 0, 0.60, 0.62),
    (2, 0.1, 0.05, 1, 0.40, 0.58),
    (0, 0.7, 0.9, 1, 0.55, 0.57),
    (1, 0.2, 0.6, 1, 0.50, 0.52),
    (2, 0.1, 0.4, 0, 0.20, 0.35),
    (0, 0.7, 0.3, 1, 0.65, 0.50),
]
_columns = [np.array(column, dtype=np.float64) for column in zip(*TOY, strict=True)]
ACTIONS, LOGGING, TARGET, REWARDS, Q_LOGGED, Q_TARGET = _columns
WEIGHTS = TARGET / LOGGING


def _close(estimate: Estimate, value: float, lower: float, upper: float) -> None:
    assert estimate.value == pytest.approx(value, abs=5e-7)
    assert estimate.lower == pytest.approx(lower, abs=5e-7)
    assert estimate.upper == pytest.approx(upper, abs=5e-7)


# ----------------------------------------------------------------------- the hand values


def test_ips_reproduces_the_hand_computed_value_and_interval() -> None:
    estimate = ips(WEIGHTS, REWARDS)
    _close(estimate, 0.8125, 0.097212, 1.527788)
    assert estimate.se == pytest.approx(0.364950, abs=5e-7)


def test_clipped_ips_reproduces_the_hand_computed_value() -> None:
    estimate = clipped_ips(WEIGHTS, REWARDS, 2.0)
    _close(estimate, 0.6875, 0.166399, 1.208601)


def test_snips_reproduces_the_hand_computed_value_with_the_delta_method_interval() -> None:
    estimate = snips(WEIGHTS, REWARDS)
    _close(estimate, 0.540059, 0.083451, 0.996668)
    assert estimate.se == pytest.approx(0.232968, abs=5e-7)


def test_doubly_robust_reproduces_the_hand_computed_value_from_given_q() -> None:
    estimate = doubly_robust(WEIGHTS, REWARDS, Q_LOGGED, Q_TARGET)
    _close(estimate, 0.713304, 0.172486, 1.254121)


def test_kish_ess_reproduces_the_hand_computed_value() -> None:
    assert kish_ess(WEIGHTS) == pytest.approx(4.756418, abs=5e-7)


def test_the_paired_difference_subtracts_the_logged_reward_row_by_row() -> None:
    difference = ips(WEIGHTS, REWARDS, baseline=REWARDS)
    terms = WEIGHTS * REWARDS - REWARDS
    assert difference.value == pytest.approx(0.8125 - 0.625)
    assert difference.se == pytest.approx(terms.std(ddof=1) / math.sqrt(8))


def test_the_snips_difference_uses_the_delta_method_on_the_difference() -> None:
    difference = snips(WEIGHTS, REWARDS, baseline=REWARDS)
    value = 0.540059347181009
    influence = WEIGHTS * (REWARDS - value) / WEIGHTS.mean() - (REWARDS - REWARDS.mean())
    assert difference.value == pytest.approx(value - 0.625)
    assert difference.se == pytest.approx(math.sqrt(np.mean(influence**2) / 8))


def test_estimates_read_well() -> None:
    assert ips(WEIGHTS, REWARDS).describe() == "0.8125 [0.0972, 1.5278]"
    assert ips(WEIGHTS, REWARDS, baseline=REWARDS).describe_signed() == (
        "+0.1875 [-0.3655, +0.7405]"
    )


# ----------------------------------------------------------------------- the verdict


@pytest.mark.parametrize(
    ("lower", "upper", "verdict"),
    [
        (-0.009, 0.03, "pass"),
        (-0.05, -0.011, "fail"),
        (-0.02, 0.01, "inconclusive"),  # straddles -0.01: never a pass
        (-0.01, 0.02, "inconclusive"),  # on the margin is not above it
        (-0.03, -0.01, "inconclusive"),
    ],
)
def test_the_gate_judges_the_interval_against_the_margin(
    lower: float, upper: float, verdict: str
) -> None:
    difference = Estimate((lower + upper) / 2, 0.01, lower, upper, 0.05)
    assert judge(difference, max_regression=0.01) == verdict


# ----------------------------------------------------------------------- evaluate and refusals


def _log(
    actions: list[str],
    propensities: list[float] | np.ndarray,
    rewards: list[float] | np.ndarray,
    segments: list[str] | None = None,
    features: np.ndarray | None = None,
) -> LoggedDecisions:
    names, codes = np.unique(np.array(actions), return_inverse=True)
    segment_codes = None
    segment_names: tuple[str, ...] = ()
    if segments is not None:
        unique, segment_codes = np.unique(np.array(segments), return_inverse=True)
        segment_names = tuple(str(s) for s in unique)
    n = len(actions)
    return LoggedDecisions(
        actions=codes.astype(np.intp),
        action_names=tuple(str(a) for a in names),
        propensities=np.asarray(propensities, dtype=np.float64),
        rewards=np.asarray(rewards, dtype=np.float64),
        features=features if features is not None else np.zeros((n, 0)),
        segments=None if segment_codes is None else segment_codes.astype(np.intp),
        segment_names=segment_names,
    )


def _uniform_log(n: int, seed: int, actions: tuple[str, ...] = ("a", "b", "c")) -> LoggedDecisions:
    """Uniform logging over `actions`; action a converts at 0.6, b at 0.5, c at 0.3."""
    rng = np.random.default_rng(seed)
    chosen = rng.integers(0, len(actions), n)
    rates = np.array([0.6, 0.5, 0.3, 0.4][: len(actions)])
    rewards = (rng.random(n) < rates[chosen]).astype(np.float64)
    features = rng.normal(size=(n, 2))
    return _log(
        [actions[i] for i in chosen], np.full(n, 1.0 / len(actions)), rewards, features=features
    )


def _constant(n: int, probabilities: list[float]) -> np.ndarray:
    return np.tile(np.asarray(probabilities, dtype=np.float64), (n, 1))


def test_evaluate_on_the_toy_log_gives_the_hand_values_and_refuses_to_judge_it() -> None:
    names = ("a0", "a1", "a2")
    log = _log([names[int(a)] for a in ACTIONS], LOGGING, REWARDS)
    candidate = np.zeros((8, 3))
    for row, (action, target) in enumerate(zip(ACTIONS.astype(int), TARGET, strict=True)):
        candidate[row] = (1 - target) / 2
        candidate[row, action] = target
    result = evaluate(log, candidate, names, GateRule(max_regression=0.01))
    assert result.values["ips"].value == pytest.approx(0.8125)
    assert result.values["snips"].value == pytest.approx(0.540059, abs=5e-7)
    assert result.differences["ips"].value == pytest.approx(0.1875)
    assert result.incumbent.value == pytest.approx(0.625)
    assert result.diagnostics.ess == pytest.approx(4.756418, abs=5e-7)
    assert result.verdict is Outcome.ERROR  # refused: an error, never a pass
    assert result.refusals == (
        "The mean importance weight is 1.504, not 1 within max_weight_error 0.1: the logged "
        "propensities are not the probabilities with which the logging policy chose the logged "
        "actions (or the candidate's probabilities do not sum to 1, or it favours unsupported "
        "actions). Fix the propensity logging: record pi_b(action | context) of the action "
        "actually taken, at decision time.",
        "The effective sample size is 4.8 (Kish) of 8 rows, below min_ess 100: the candidate "
        "differs too much from the logging policy for this log (largest weight 4). Fix: log "
        "more decisions or log with more exploration; lower min_ess only if a less reliable "
        "estimate is acceptable.",
    )
    assert result.detail.startswith("refused to judge: The mean importance weight is 1.504")


def test_a_log_of_one_action_is_refused_for_lack_of_exploration() -> None:
    log = _log(["a"] * 300, np.full(300, 0.9), np.ones(300))
    result = evaluate(log, _constant(300, [0.5, 0.5]), ("a", "b"), GateRule(max_regression=0.01))
    assert result.verdict is Outcome.ERROR  # refused: an error, never a pass
    assert result.refusals == (
        "The log has no exploration: all 300 rows took action 'a', so no other action can be "
        "valued. Fix: log the decisions of an exploring logging policy (for example "
        "epsilon-greedy over every action) with the probability of each chosen action as its "
        "propensity.",
    )


def test_a_deterministic_logging_policy_is_refused_for_lack_of_exploration() -> None:
    log = _log(["a", "b"] * 200, np.ones(400), np.ones(400))
    result = evaluate(log, _constant(400, [0.5, 0.5]), ("a", "b"), GateRule(max_regression=0.01))
    assert result.refusals == (
        "The log has no exploration: every propensity is 1 (a deterministic logging policy), "
        "so only the logged actions can be valued. Fix: log the decisions of an exploring "
        "logging policy (for example epsilon-greedy over every action) with the probability of "
        "each chosen action as its propensity.",
    )


def test_probability_on_an_action_the_log_never_shows_is_refused_for_lack_of_support() -> None:
    log = _uniform_log(3000, seed=1, actions=("a", "b"))
    # 5 % on "c", which the log never shows: its value cannot be estimated
    candidate = _constant(3000, [0.5, 0.45, 0.05])
    result = evaluate(log, candidate, ("a", "b", "c"), GateRule(max_regression=0.01))
    assert result.verdict is Outcome.ERROR  # refused: an error, never a pass
    assert result.diagnostics.unsupported_share == pytest.approx(0.05)
    assert result.refusals[0] == (
        "The candidate puts 5.00% of its probability on actions the log never shows being taken "
        "(tolerance 0.10%); largest: 'c' (5.00%). Their value cannot be estimated from this "
        "log. Fix: log with exploration over every action the candidate may take, in every "
        "segment, or remove those actions from the candidate."
    )


def test_support_is_judged_within_each_segment() -> None:
    # "b" is logged in eu only; the candidate gives it 20 % in us as well
    actions = ["a", "b"] * 500 + ["a"] * 1000
    segments = ["eu"] * 1000 + ["us"] * 1000
    propensities = [0.5] * 1000 + [0.9] * 1000
    log = _log(actions, propensities, np.ones(2000), segments=segments)
    candidate = _constant(2000, [0.8, 0.2])
    result = evaluate(log, candidate, ("a", "b"), GateRule(max_regression=0.01))
    assert result.diagnostics.unsupported_share == pytest.approx(0.1)  # 0.2 over half the rows
    assert result.refusals[0].startswith(
        "The candidate puts 10.00% of its probability on actions the log never shows being taken "
        "(tolerance 0.10%); largest: 'b' in segment us (10.00%)."
    )


def test_rows_logged_with_propensity_one_support_no_other_action() -> None:
    log = _uniform_log(2000, seed=2, actions=("a", "b"))
    propensities = log.propensities.copy()
    propensities[:200] = 1.0  # the logging policy had no choice in these contexts
    forced = LoggedDecisions(log.actions, log.action_names, propensities, log.rewards, log.features)
    result = evaluate(forced, _constant(2000, [0.5, 0.5]), ("a", "b"), GateRule(0.01))
    assert result.diagnostics.deterministic_rows == 200
    assert result.diagnostics.unsupported_share == pytest.approx(0.05)  # 200 rows x 0.5 / 2000
    assert "200 row(s) were logged with propensity 1" in result.refusals[0]


def test_a_negligible_probability_on_an_unlogged_action_is_tolerated() -> None:
    log = _uniform_log(3000, seed=3, actions=("a", "b"))
    candidate = _constant(3000, [0.5, 0.5 - 1e-9, 1e-9])  # like e^-85 on a blocked action
    result = evaluate(log, candidate, ("a", "b", "c"), GateRule(max_regression=0.01))
    assert result.refusals == ()


def test_broken_propensity_logging_is_refused_by_the_mean_weight() -> None:
    log = _uniform_log(5000, seed=4)
    halved = LoggedDecisions(
        log.actions, log.action_names, log.propensities / 2, log.rewards, log.features
    )  # logged 1/6 where the truth is 1/3: every weight doubles
    result = evaluate(halved, _constant(5000, [0.4, 0.3, 0.3]), ("a", "b", "c"), GateRule(0.01))
    assert result.diagnostics.mean_weight == pytest.approx(2.0, abs=0.05)
    assert result.verdict is Outcome.ERROR  # refused: an error, never a pass
    assert result.refusals[0].startswith("The mean importance weight is 1.996, not 1 within")


def test_too_small_an_effective_sample_is_refused() -> None:
    log = _uniform_log(90, seed=5)
    result = evaluate(log, _constant(90, [1 / 3, 1 / 3, 1 / 3]), ("a", "b", "c"), GateRule(0.01))
    assert result.diagnostics.ess == pytest.approx(90)
    assert result.refusals == (
        "The effective sample size is 90.0 (Kish) of 90 rows, below min_ess 100: the candidate "
        "differs too much from the logging policy for this log (largest weight 1). Fix: log "
        "more decisions or log with more exploration; lower min_ess only if a less reliable "
        "estimate is acceptable.",
    )


def test_the_logging_policy_judged_against_itself_passes_with_a_zero_difference() -> None:
    log = _uniform_log(4000, seed=6)
    result = evaluate(log, _constant(4000, [1 / 3] * 3), ("a", "b", "c"), GateRule(0.01, "ips"))
    assert result.verdict == "pass"
    assert result.differences["ips"].value == pytest.approx(0.0, abs=1e-12)
    assert result.differences["snips"].value == pytest.approx(0.0, abs=1e-12)
    assert result.values["ips"].value == pytest.approx(log.rewards.mean())


@pytest.mark.parametrize("estimator", ["ips", "clipped_ips", "snips", "dr"])
def test_a_candidate_that_picks_the_worst_action_fails(estimator: str) -> None:
    log = _uniform_log(6000, seed=7)  # values: a 0.6, b 0.5, c 0.3; logging 0.467
    candidate = _constant(6000, [0.0, 0.0, 1.0])
    result = evaluate(log, candidate, ("a", "b", "c"), GateRule(0.05, estimator))
    assert result.verdict == "fail"
    assert result.judged.value == pytest.approx(0.3 - 0.4667, abs=0.05)


@pytest.mark.parametrize("estimator", ["ips", "clipped_ips", "snips", "dr"])
def test_a_candidate_that_picks_the_best_action_passes(estimator: str) -> None:
    log = _uniform_log(6000, seed=8)
    candidate = _constant(6000, [0.9, 0.05, 0.05])
    result = evaluate(log, candidate, ("a", "b", "c"), GateRule(0.01, estimator))
    assert result.verdict == "pass"
    assert "pass (the lower bound is above it)" in result.detail


def test_an_interval_across_the_margin_is_inconclusive_and_says_why() -> None:
    log = _uniform_log(800, seed=1)
    # (0.6 + 0.3) / 2 against the logging policy's 0.467: a true difference of -0.017
    candidate = _constant(800, [0.5, 0.0, 0.5])
    result = evaluate(log, candidate, ("a", "b", "c"), GateRule(0.01, "dr"))
    assert result.verdict == "inconclusive"
    assert result.judged.lower < -0.01 < result.judged.upper
    assert "the interval straddles it" in result.detail
    assert "the gate does not pass" in result.detail


def test_evaluate_checks_shapes_and_row_count() -> None:
    log = _uniform_log(10, seed=10)
    with pytest.raises(ValueError, match=r"expected \(10, 3\)"):
        evaluate(log, _constant(10, [0.5, 0.5]), ("a", "b", "c"), GateRule(0.01))
    one = _log(["a"], [0.5], [1.0])
    with pytest.raises(ValueError, match="needs at least 2"):
        evaluate(one, _constant(1, [1.0]), ("a",), GateRule(0.01))
    with pytest.raises(ValueError, match="unknown estimator 'mean'"):
        GateRule(0.01, "mean")


# ----------------------------------------------------------------------- cross-fitting


def test_a_rows_own_reward_never_fits_the_model_that_predicts_it() -> None:
    rng = np.random.default_rng(11)
    features = rng.normal(size=(500, 3))
    actions = rng.integers(0, 2, 500).astype(np.intp)
    rewards = features @ np.array([0.5, -0.2, 0.1]) + rng.normal(size=500)
    before = cross_fitted_rewards(features, actions, rewards, 2, folds=5)
    changed = rewards.copy()
    changed[7] += 100.0  # row 7 is in fold 2 (7 mod 5)
    after = cross_fitted_rewards(features, actions, changed, 2, folds=5)
    fold = np.arange(500) % 5 == 2
    assert np.array_equal(before[fold], after[fold])
    assert not np.allclose(before[~fold], after[~fold])


def test_the_reward_model_recovers_a_linear_law_per_action() -> None:
    rng = np.random.default_rng(12)
    features = rng.uniform(size=(20_000, 2))
    actions = rng.integers(0, 2, 20_000).astype(np.intp)
    law = np.array([[0.2, 0.5], [0.6, -0.3]])  # per action: slope on each feature
    expected = 0.1 + features @ law.T
    rewards = expected[np.arange(20_000), actions] + rng.normal(scale=0.05, size=20_000)
    predicted = cross_fitted_rewards(features, actions, rewards, 2)
    assert np.abs(predicted - expected).max() < 0.01


def test_an_action_without_rows_is_predicted_by_the_mean_reward_of_the_other_folds() -> None:
    features = np.arange(8, dtype=np.float64).reshape(8, 1)
    actions = np.zeros(8, dtype=np.intp)
    rewards = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0])
    predicted = cross_fitted_rewards(features, actions, rewards, 2, folds=2)
    assert predicted[0::2, 1] == pytest.approx(rewards[1::2].mean())
    assert predicted[1::2, 1] == pytest.approx(rewards[0::2].mean())


def test_constant_and_collinear_features_are_well_posed() -> None:
    rng = np.random.default_rng(13)
    region = rng.integers(0, 2, 1000)
    features = np.column_stack([region, 1 - region, np.ones(1000), np.zeros(1000)]).astype(float)
    actions = np.zeros(1000, dtype=np.intp)
    rewards = np.where(region == 1, 0.8, 0.2) + rng.normal(scale=0.01, size=1000)
    predicted = cross_fitted_rewards(features, actions, rewards, 1)
    assert np.all(np.isfinite(predicted))
    assert predicted[region == 1, 0] == pytest.approx(0.8, abs=0.01)


# ----------------------------------------------------------------------- properties

_n = st.integers(min_value=2, max_value=40)


@st.composite
def _weighted_log(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(_n)
    weights = draw(hnp.arrays(np.float64, n, elements=st.floats(0.05, 20.0)))
    rewards = draw(hnp.arrays(np.float64, n, elements=st.floats(-5.0, 5.0)))
    return weights, rewards


@settings(max_examples=200, deadline=None)
@given(_weighted_log(), st.floats(-10.0, 10.0))
def test_snips_moves_with_a_constant_added_to_the_rewards(
    log: tuple[np.ndarray, np.ndarray], shift: float
) -> None:
    weights, rewards = log
    base, shifted = snips(weights, rewards), snips(weights, rewards + shift)
    assert shifted.value == pytest.approx(base.value + shift, abs=1e-9)
    assert shifted.se == pytest.approx(base.se, abs=1e-9)
    # ... so its paired difference to the logged reward does not move at all
    paired = snips(weights, rewards + shift, baseline=rewards + shift)
    assert paired.value == pytest.approx(snips(weights, rewards, baseline=rewards).value, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(_weighted_log(), st.floats(-10.0, 10.0))
def test_ips_moves_with_a_constant_times_the_mean_weight(
    log: tuple[np.ndarray, np.ndarray], shift: float
) -> None:
    weights, rewards = log
    moved = ips(weights, rewards + shift).value - ips(weights, rewards).value
    assert moved == pytest.approx(shift * weights.mean(), abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(_weighted_log(), st.floats(0.01, 100.0))
def test_snips_ignores_the_scale_of_the_weights(
    log: tuple[np.ndarray, np.ndarray], scale: float
) -> None:
    weights, rewards = log
    base, scaled = snips(weights, rewards), snips(weights * scale, rewards)
    assert scaled.value == pytest.approx(base.value, abs=1e-9)
    assert scaled.se == pytest.approx(base.se, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(_weighted_log())
def test_snips_stays_within_the_observed_rewards(log: tuple[np.ndarray, np.ndarray]) -> None:
    weights, rewards = log
    value = snips(weights, rewards).value
    assert rewards.min() - 1e-9 <= value <= rewards.max() + 1e-9


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float64, _n, elements=st.floats(-5.0, 5.0)))
def test_ips_of_the_logging_policy_is_the_logged_mean(rewards: np.ndarray) -> None:
    ones = np.ones_like(rewards)
    estimate = ips(ones, rewards)
    assert estimate.value == pytest.approx(rewards.mean(), abs=1e-12)
    assert estimate.se == pytest.approx(rewards.std(ddof=1) / math.sqrt(rewards.size), abs=1e-12)
    paired = ips(ones, rewards, baseline=rewards)
    assert (paired.value, paired.se) == (0.0, 0.0)


@settings(max_examples=200, deadline=None)
@given(_weighted_log())
def test_kish_ess_is_between_one_and_the_row_count(log: tuple[np.ndarray, np.ndarray]) -> None:
    weights, _ = log
    assert 1.0 - 1e-9 <= kish_ess(weights) <= weights.size * (1 + 1e-12)
    assert kish_ess(np.full(weights.size, 3.0)) == pytest.approx(weights.size)


@settings(max_examples=200, deadline=None)
@given(_weighted_log())
def test_doubly_robust_with_a_zero_model_is_ips(log: tuple[np.ndarray, np.ndarray]) -> None:
    weights, rewards = log
    zero = np.zeros_like(rewards)
    dr, plain = doubly_robust(weights, rewards, zero, zero), ips(weights, rewards)
    assert (dr.value, dr.se) == pytest.approx((plain.value, plain.se), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(_weighted_log(), st.floats(1.0, 30.0))
def test_clipping_only_lowers_ips_of_non_negative_rewards(
    log: tuple[np.ndarray, np.ndarray], clip: float
) -> None:
    weights, rewards = log
    rewards = np.abs(rewards)
    assert clipped_ips(weights, rewards, clip).value <= ips(weights, rewards).value + 1e-12
    unclipped = clipped_ips(weights, rewards, float(weights.max()))
    assert unclipped.value == pytest.approx(ips(weights, rewards).value, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(_weighted_log(), st.floats(0.001, 0.5))
def test_the_interval_is_centred_and_narrows_with_alpha(
    log: tuple[np.ndarray, np.ndarray], alpha: float
) -> None:
    weights, rewards = log
    wide, narrow = ips(weights, rewards, alpha=alpha), ips(weights, rewards, alpha=alpha * 1.5)
    assert wide.lower <= wide.value <= wide.upper
    assert wide.value - wide.lower == pytest.approx(wide.upper - wide.value, abs=1e-9)
    assert narrow.upper - narrow.lower <= wide.upper - wide.lower + 1e-12


# ----------------------------------------------------------------------- against the truth


@pytest.mark.parametrize("artifact", ["candidate.json", "candidate-violating.json"])
def test_every_interval_on_a_simulator_log_covers_the_true_value(artifact: str) -> None:
    """The world's reward law is known, so a biased estimator or a too-narrow interval fails.

    99% intervals, one fixed log: six intervals at 95% would miss by chance too often for a
    test (benchmarks/offline_eval.py measures the 95% coverage over many logs).
    """
    draw = draw_log(20_000, seed=21)
    regions, segments = np.unique(draw.contexts.regions, return_inverse=True)
    log = LoggedDecisions(
        actions=draw.actions,
        action_names=WORLD_ACTIONS,
        propensities=draw.propensities,
        rewards=draw.rewards,
        features=draw.contexts.values,
        segments=segments.astype(np.intp),
        segment_names=tuple(str(r) for r in regions),
    )
    policy = load_artifact(artifact)
    candidate = policy.action_probabilities(draw.contexts)
    result = evaluate(log, candidate, WORLD_ACTIONS, GateRule(max_regression=0.01, alpha=0.01))
    truth = World.true_value(policy)
    true_difference = truth - World.true_value(logging_policy())
    assert result.refusals == ()
    for name in ("ips", "snips", "dr"):
        value, difference = result.values[name], result.differences[name]
        assert value.lower <= truth <= value.upper, (name, value, truth)
        assert difference.lower <= true_difference <= difference.upper, (name, difference)
    # DR's reward model buys precision over IPS on the same rows
    assert result.values["dr"].se < 0.9 * result.values["ips"].se
