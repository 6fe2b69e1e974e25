"""The simulated world: its reward law, its draws, its context distribution and true values.

Every test is seeded, so each runs the same draws every time; tolerances are stated with the
standard error they correspond to, so a change to the world that breaks one is a real change.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.artifacts import load_artifact
from simulator.policy import EpsilonMixture, Guarded
from simulator.world import (
    ACTIONS,
    BLOCKED_ACTION,
    FEATURES,
    REGION_FEATURES,
    REGIONS,
    Contexts,
    World,
    context_of,
)

CONTEXT = context_of(recency=0.5, basket_value=1.0, loyalty=0.2, region="eu-west-1")


def _sigmoid(logit: float) -> float:
    return 1.0 / (1.0 + math.exp(-logit))


@pytest.mark.parametrize(
    ("action", "logit"),
    [
        # intercept + recency + basket + loyalty + region_eu, from the coefficient table by hand
        ("none", -1.1 + 0.8 * 0.5 + 0.0 * 1.0 + 2.6 * 0.2 + 0.0),  # -0.18
        ("discount_10", -1.4 + 2.4 * 0.5 + 0.3 * 1.0 + 0.4 * 0.2 + 0.2),  # 0.38
        ("free_shipping", -1.5 + 0.4 * 0.5 + 1.2 * 1.0 + 0.4 * 0.2 - 0.1),  # -0.12
        ("discount_90", -0.3 + 1.6 * 0.5 + 0.6 * 1.0 + 1.4 * 0.2 + 0.0),  # 1.38
    ],
)
def test_the_conversion_probability_is_the_logistic_of_the_linear_law(
    action: str, logit: float
) -> None:
    assert World.expected_reward(CONTEXT, action) == pytest.approx(_sigmoid(logit), abs=1e-12)


def test_hand_checked_values_for_one_context() -> None:
    values = {action: round(World.expected_reward(CONTEXT, action), 6) for action in ACTIONS}
    assert values == {
        "none": 0.455121,
        "discount_10": 0.593873,
        "free_shipping": 0.470036,
        "discount_90": 0.798991,
    }


def test_extra_context_keys_are_ignored_and_unknown_actions_refused() -> None:
    assert World.expected_reward({**CONTEXT, "session": 3.0}, "none") == World.expected_reward(
        CONTEXT, "none"
    )
    with pytest.raises(KeyError, match="discount_50"):
        World.expected_reward(CONTEXT, "discount_50")


def test_the_batch_law_equals_the_single_context_law() -> None:
    contexts = World(3).sample_contexts(50)
    batch = World.expected_rewards(contexts)
    for index, context in enumerate(contexts):
        for column, action in enumerate(ACTIONS):
            assert batch[index, column] == pytest.approx(
                World.expected_reward(context, action), abs=1e-12
            )


def test_bernoulli_rewards_converge_to_the_expected_reward() -> None:
    world = World(11)
    draws = 40_000
    probability = World.expected_reward(CONTEXT, "discount_10")
    mean = np.mean([world.draw_reward(CONTEXT, "discount_10") for _ in range(draws)])
    standard_error = math.sqrt(probability * (1 - probability) / draws)  # 0.0025
    assert abs(mean - probability) < 4 * standard_error
    assert {world.draw_reward(CONTEXT, "none") for _ in range(100)} == {0.0, 1.0}


def test_a_factor_scales_the_conversion_probability() -> None:
    world = World(12)
    draws = 40_000
    probability = 0.7 * World.expected_reward(CONTEXT, "discount_10")
    mean = np.mean([world.draw_reward(CONTEXT, "discount_10", 0.7) for _ in range(draws)])
    assert abs(mean - probability) < 4 * math.sqrt(probability * (1 - probability) / draws)
    assert all(world.draw_reward(CONTEXT, "discount_90", 0.0) == 0.0 for _ in range(1000))


def test_discount_90_converts_best_by_far_which_is_why_only_a_guardrail_can_stop_it() -> None:
    conversion = World.expected_rewards(World.truth_contexts()).mean(axis=0)
    blocked = ACTIONS.index(BLOCKED_ACTION)
    others = np.delete(conversion, blocked)
    assert conversion[blocked] > others.max() + 0.15
    # and no other action dominates: each is the best non-blocked offer for some units
    best = np.delete(World.expected_rewards(World.truth_contexts()), blocked, axis=1).argmax(1)
    shares = np.bincount(best, minlength=3) / len(best)
    assert shares.min() > 0.1, shares


def test_units_are_sticky_draws_with_regions_in_their_traffic_shares() -> None:
    units = World(5).units(20_000)
    assert units == World(5).units(20_000)  # one seed, one pool
    assert len({unit.unit_id for unit in units}) == len(units)
    for region, share in REGIONS.items():
        observed = sum(unit.region == region for unit in units) / len(units)
        assert observed == pytest.approx(share, abs=0.015)  # 4 standard errors at n = 20 000
    for unit in units[:500]:
        assert set(unit.context) == set(FEATURES)
        assert unit.context[REGION_FEATURES[unit.region]] == 1.0
        assert sum(unit.context[feature] for feature in REGION_FEATURES.values()) == 1.0
        assert 0.0 <= unit.context["recency"] <= 1.0
        assert 0.0 <= unit.context["loyalty"] <= 1.0
        assert 0.0 < unit.context["basket_value"] <= 5.0


def test_a_visit_changes_only_the_basket() -> None:
    world = World(8)
    unit = world.units(1)[0]
    visits = [world.visit(unit) for _ in range(200)]
    for visit in visits:
        assert {k: v for k, v in visit.items() if k != "basket_value"} == {
            k: v for k, v in unit.context.items() if k != "basket_value"
        }
        assert 0.0 < visit["basket_value"] <= 5.0
    assert len({visit["basket_value"] for visit in visits}) == len(visits)
    ratio = np.median([visit["basket_value"] for visit in visits]) / unit.context["basket_value"]
    assert ratio == pytest.approx(1.0, abs=0.1)


def test_contexts_round_trip_through_dicts() -> None:
    contexts = World(4).sample_contexts(20)
    again = Contexts.of(list(contexts), list(contexts.regions))
    assert np.array_equal(again.values, contexts.values)
    assert list(again.regions) == list(contexts.regions)
    with pytest.raises(ValueError, match="shape"):
        Contexts(contexts.regions, contexts.values[:, :3])
    with pytest.raises(ValueError, match="unknown region"):
        context_of(0.1, 0.2, 0.3, "mars-north-1")


def test_true_value_is_stable_to_well_under_0_002_across_samples() -> None:
    candidate = load_artifact("candidate.json")
    values = [World.true_value(candidate, seed=seed) for seed in (1, 2, 3)]
    assert max(values) - min(values) < 0.002, values
    assert World.true_value(candidate) == World.true_value(candidate)  # one fixed sample


def test_true_value_matches_simulated_decisions() -> None:
    """Draw actions from the policy and rewards from the world: the mean is the true value."""
    candidate = load_artifact("candidate.json")
    world = World(21)
    contexts = world.sample_contexts(100_000)
    probabilities = candidate.action_probabilities(contexts)
    cumulative = probabilities.cumsum(axis=1)
    actions = (cumulative < world.rng.random((len(contexts), 1))).sum(axis=1)
    conversion = World.expected_rewards(contexts)[np.arange(len(contexts)), actions]
    rewards = world.rng.random(len(contexts)) < conversion
    # a Bernoulli(0.55) mean over 100 000 draws has a standard error of 0.0016
    assert rewards.mean() == pytest.approx(World.true_value(candidate), abs=0.0064)


def test_true_value_applies_region_factors_to_those_regions_only() -> None:
    candidate = load_artifact("candidate.json")
    contexts = World.truth_contexts()
    per_context = (candidate.action_probabilities(contexts) * World.expected_rewards(contexts)).sum(
        axis=1
    )
    in_ap = contexts.regions == "ap-south-1"
    expected = (per_context.sum() - 0.5 * per_context[in_ap].sum()) / len(contexts)
    harmed = World.true_value(candidate, region_factors={"ap-south-1": 0.5})
    assert harmed == pytest.approx(expected, rel=1e-12)
    assert harmed < World.true_value(candidate)


def test_policy_compositions_are_distributions() -> None:
    contexts = World(9).sample_contexts(2000)
    incumbent = load_artifact("incumbent.json")
    violating = load_artifact("candidate-violating.json")
    guarded = Guarded(violating, incumbent, frozenset({BLOCKED_ACTION}))
    exploring = EpsilonMixture(incumbent, 0.2)
    for policy in (incumbent, violating, guarded, exploring):
        probabilities = policy.action_probabilities(contexts)
        assert np.allclose(probabilities.sum(axis=1), 1.0)
        assert (probabilities >= 0).all()
    assert (guarded.action_probabilities(contexts)[:, ACTIONS.index(BLOCKED_ACTION)] < 1e-30).all()
    assert (exploring.action_probabilities(contexts) >= 0.2 / len(ACTIONS) - 1e-15).all()
    with pytest.raises(ValueError, match="epsilon"):
        EpsilonMixture(incumbent, 1.5)
