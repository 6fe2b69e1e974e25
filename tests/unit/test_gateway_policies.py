"""Policy artifacts and the linear softmax policy (gateway.policies), numbers checked by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from gateway.policies import (
    ArtifactError,
    ContextError,
    LinearSoftmaxPolicy,
    PolicyArtifact,
    load_policy,
)


def _artifact(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": "offers",
        "version": "42",
        "actions": ["none", "discount_10"],
        "features": ["basket"],
        "weights": [[1.0], [0.0]],
        "bias": [0.0, 0.0],
        "temperature": 1.0,
    }
    document.update(changes)
    return document


def _policy(**changes: Any) -> LinearSoftmaxPolicy:
    return LinearSoftmaxPolicy(PolicyArtifact.model_validate(_artifact(**changes)))


def test_probabilities_are_the_softmax_of_the_linear_scores() -> None:
    # scores: none = 1 * ln 3 = ln 3, discount_10 = 0 -> e^ln3 / (e^ln3 + e^0) = 3 / 4
    probabilities = _policy().probabilities({"basket": math.log(3)})
    assert probabilities.tolist() == pytest.approx([0.75, 0.25])


def test_bias_enters_every_action_score() -> None:
    policy = _policy(
        actions=["a", "b", "c"],
        weights=[[0.0], [0.0], [0.0]],
        bias=[0.0, math.log(2), math.log(5)],
    )
    # e^0 : e^ln2 : e^ln5 = 1 : 2 : 5
    assert policy.probabilities({"basket": 7.0}).tolist() == pytest.approx([1 / 8, 2 / 8, 5 / 8])


def test_temperature_divides_the_scores() -> None:
    # scores (2 ln 3, 0) / T=2 -> (ln 3, 0) -> 3/4, 1/4
    policy = _policy(temperature=2.0)
    assert policy.probabilities({"basket": 2 * math.log(3)}).tolist() == pytest.approx([0.75, 0.25])


def test_huge_scores_do_not_overflow() -> None:
    probabilities = _policy(temperature=0.001).probabilities({"basket": 1000.0})
    assert probabilities.tolist() == [1.0, 0.0]


@pytest.mark.parametrize("basket", [1e308, -1e308])
def test_features_whose_scores_overflow_are_an_error_not_nan_probabilities(basket: float) -> None:
    # the feature is finite, but 2 x 1e308 is not: every way of asking the policy refuses it
    policy = _policy(weights=[[2.0], [0.0]])
    context = {"basket": basket}
    rng = np.random.default_rng(1)
    overflow = "policy offers 42: its action scores overflow"
    with pytest.raises(ContextError, match=overflow):
        policy.probabilities(context)
    with pytest.raises(ContextError, match=overflow):
        policy.act(context, rng)
    with pytest.raises(ContextError, match=overflow):
        policy.choose(context, rng)
    with pytest.raises(ContextError, match=r"^contexts\[1\]: the features are too large"):
        policy.batch_probabilities([{"basket": 1.0}, context])
    assert policy.act({"basket": basket / 10}, rng)[1] == {
        "none": 1.0 if basket > 0 else 0.0,
        "discount_10": 0.0 if basket > 0 else 1.0,
    }


def test_extra_context_keys_are_ignored() -> None:
    policy = _policy()
    assert policy.probabilities({"basket": 1.0, "region_code": 3.0}).tolist() == pytest.approx(
        policy.probabilities({"basket": 1.0}).tolist()
    )


def test_a_missing_feature_is_an_error_naming_it() -> None:
    policy = _policy(features=["basket", "recency"], weights=[[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(ContextError, match=r"lacks feature\(s\) recency"):
        policy.probabilities({"basket": 1.0})


@pytest.mark.parametrize("value", ["3", None, True, float("nan")])
def test_a_feature_that_is_not_a_finite_number_is_an_error_naming_it(value: object) -> None:
    with pytest.raises(ContextError, match="feature basket must be"):
        _policy().probabilities({"basket": value})


def test_act_samples_by_the_probabilities_and_returns_all_of_them() -> None:
    policy = _policy()
    rng = np.random.default_rng(7)
    context = {"basket": math.log(3)}  # 3/4, 1/4
    draws = [policy.act(context, rng) for _ in range(20_000)]
    share = sum(action == "none" for action, _ in draws) / len(draws)
    assert share == pytest.approx(0.75, abs=0.015)
    assert draws[0][1] == pytest.approx({"none": 0.75, "discount_10": 0.25})


def test_the_same_seed_gives_the_same_actions() -> None:
    policy = _policy()
    context = {"basket": 0.3}  # about 57% / 43%: both actions come up
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    first = [policy.act(context, rng_a)[0] for _ in range(200)]
    assert first == [policy.act(context, rng_b)[0] for _ in range(200)]
    assert set(first) == {"none", "discount_10"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"weights": [[1.0]]}, "weights has 1 rows but there are 2 actions"),
        ({"weights": [[1.0], [0.0, 2.0]]}, r"weights\[1\] \(action 'discount_10'\) has 2 values"),
        ({"bias": [0.0]}, "bias has 1 values but there are 2 actions"),
        ({"temperature": 0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"actions": ["none", "none"]}, "actions must be unique; repeated: none"),
        ({"actions": []}, "actions"),
        ({"bias": [0.0, float("inf")]}, "finite"),
        ({"learning_rate": 0.1}, "learning_rate"),
    ],
)
def test_an_invalid_artifact_is_refused_with_the_problem(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        PolicyArtifact.model_validate(_artifact(**changes))


def test_temperature_defaults_to_plain_softmax() -> None:
    document = _artifact()
    del document["temperature"]
    assert PolicyArtifact.model_validate(document).temperature == 1.0


def test_load_policy_reads_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "offers.json"
    path.write_text(json.dumps(_artifact()), encoding="utf-8")
    policy = load_policy(path)
    assert policy.version == "42"
    assert policy.actions == ("none", "discount_10")


def test_load_policy_names_the_file_and_the_field_of_an_invalid_artifact(tmp_path: Path) -> None:
    path = tmp_path / "offers.json"
    path.write_text(json.dumps(_artifact(bias=[0.0])), encoding="utf-8")
    with pytest.raises(ArtifactError, match=r"offers\.json is invalid: body: Value error, bias"):
        load_policy(path)


@pytest.mark.parametrize(
    ("content", "message"), [("{not json", "is not JSON"), (None, "cannot read")]
)
def test_load_policy_refuses_an_unreadable_file(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "offers.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ArtifactError, match=message):
        load_policy(path)


def test_one_decisions_numbers_are_the_vectorised_ones_to_the_last_bits() -> None:
    """`act` computes one context in plain floats; `probabilities` (numpy) gives the same."""
    policy = _policy(
        actions=["a", "b", "c", "d"],
        features=["x", "y", "z"],
        weights=[[0.3, -1.2, 2.0], [0.0, 0.5, -0.7], [1.1, 1.1, 1.1], [-2.0, 0.1, 0.0]],
        bias=[0.1, -0.4, 0.0, 0.9],
        temperature=0.7,
    )
    rng = np.random.default_rng(5)
    for _ in range(200):
        context = {name: float(rng.normal(0, 3)) for name in ("x", "y", "z")}
        _, probabilities = policy.act(context, np.random.default_rng(1))
        expected = policy.probabilities(context).tolist()
        assert list(probabilities.values()) == pytest.approx(expected, rel=1e-12, abs=1e-300)


def test_act_and_choose_draw_the_same_action_from_the_same_draws() -> None:
    policy = _policy(actions=["a", "b", "c"], weights=[[1.0], [0.0], [-1.0]], bias=[0.0, 0.5, 0.2])
    contexts = [{"basket": value / 10} for value in range(-50, 50)]
    acted = np.random.default_rng(9)
    chosen = np.random.default_rng(9)
    sampled = [policy.act(context, acted)[0] for context in contexts]
    assert sampled == [policy.choose(context, chosen) for context in contexts]
    assert len(set(sampled)) == 3
