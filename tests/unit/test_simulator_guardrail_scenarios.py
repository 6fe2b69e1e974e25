"""The guardrail scenarios: each candidate does what its scenario claims, served as the stack does.

Two kinds of check. Exact ones read the artifacts over the world's fixed truth sample (exact in
the actions, see `Scenario.profile`), so the claims (30 % vs 3 %, -14 % in one region, four
times the spend) are pinned without noise. Sampled ones draw decisions the way the running stack
makes them (the gateway's own policy loader samples the action and computes its `params`, the
world draws the conversion from them, as the driver does), with a fixed seed, and compare with
the exact numbers within 5 standard errors of the sample size; a seeded run is the same every
time, and the tolerance says how far off a different seed could honestly be.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from gateway.policies import load_policy
from simulator.__main__ import main
from simulator.artifacts import (
    ARTIFACT_FILES,
    ARTIFACTS_DIR,
    GUARDRAIL_ARTIFACT_FILES,
    load_artifact,
    make_guardrail_artifacts,
    render,
)
from simulator.driver import DriveConfig, Driver
from simulator.reviewer import verdict_for
from simulator.scenarios import GUARDRAIL_SCENARIOS, SCENARIOS, scenario
from simulator.world import (
    ACTIONS,
    GUARDRAIL_ACTIONS,
    REGIONS,
    WORLD_ACTIONS,
    World,
    context_of,
    refund_justified,
    voucher_lift,
)

SAMPLE = 20_000
"""Decisions drawn per arm: a share near 0.3 has a standard error of 0.0032."""
INCUMBENT = "incumbent-guardrails.json"
USUAL_AMOUNT = {"intercept": 5.0, "weights": {"basket_value": 10.0}}
GENEROUS_AMOUNT = {"intercept": 20.0, "weights": {"basket_value": 40.0}}


@dataclass(frozen=True)
class Drawn:
    """Decisions as the stack makes them: what was served, where, with which params and reward."""

    contexts: list[dict[str, float]]
    regions: list[str]
    actions: list[str]
    params: list[dict[str, float]]
    rewards: np.ndarray

    def share(self, action: str) -> float:
        return sum(a == action for a in self.actions) / len(self.actions)

    def mean_reward(self, region: str | None = None) -> float:
        chosen = [i for i, r in enumerate(self.regions) if region is None or r == region]
        return float(self.rewards[chosen].mean())

    def spend_per_decision(self) -> float:
        return sum(p.get("amount", 0.0) for p in self.params) / len(self.params)


_DRAWN: dict[str, Drawn] = {}


def _draw(artifact: str, seed: int = 14) -> Drawn:
    """SAMPLE decisions of `artifact` on one seeded stream of visits (shared by both arms)."""
    if artifact not in _DRAWN:
        served = load_policy(ARTIFACTS_DIR / artifact)  # the gateway's own reading
        world, sampler = World(seed), np.random.default_rng(seed + 1)
        contexts = world.sample_contexts(SAMPLE)
        drawn_actions, drawn_params, rewards = [], [], np.empty(SAMPLE)
        for index, context in enumerate(contexts):
            action, _ = served.act(context, sampler)
            params = served.parameters(action, context) or {}
            rewards[index] = world.draw_reward(context, action, params=params)
            drawn_actions.append(action)
            drawn_params.append(params)
        _DRAWN[artifact] = Drawn(
            list(contexts), contexts.regions.tolist(), drawn_actions, drawn_params, rewards
        )
    return _DRAWN[artifact]


def _close(observed: float, expected: float, standard_error: float) -> None:
    assert abs(observed - expected) < 5 * standard_error, (observed, expected, standard_error)


def _share_error(p: float, n: int = SAMPLE) -> float:
    return math.sqrt(max(p * (1 - p), 1e-4) / n)


# ----------------------------------------------------------------------------- artifacts


def test_the_committed_guardrail_artifacts_are_exactly_the_generators_output() -> None:
    generated = make_guardrail_artifacts()
    assert tuple(generated) == GUARDRAIL_ARTIFACT_FILES
    for name, policy in generated.items():
        committed = (ARTIFACTS_DIR / name).read_text(encoding="utf-8")
        assert committed == render(policy), f"run `python -m simulator make-artifacts`: {name}"
        assert load_artifact(name) == policy


def test_make_artifacts_writes_the_guardrail_artifacts_too(tmp_path: Path) -> None:
    assert main(["make-artifacts", "--out", str(tmp_path)]) == 0
    for name in (*ARTIFACT_FILES, *GUARDRAIL_ARTIFACT_FILES):
        assert (tmp_path / name).read_bytes() == (ARTIFACTS_DIR / name).read_bytes()


def test_parameters_are_written_in_the_contracts_format_and_only_where_needed() -> None:
    for name in ARTIFACT_FILES:
        assert "parameters" not in json.loads((ARTIFACTS_DIR / name).read_text(encoding="utf-8"))
    documents = {
        name: json.loads((ARTIFACTS_DIR / name).read_text(encoding="utf-8"))
        for name in GUARDRAIL_ARTIFACT_FILES
    }
    for name, document in documents.items():
        expected = GENEROUS_AMOUNT if name == "candidate-overspend.json" else USUAL_AMOUNT
        assert document["parameters"] == {"voucher": {"amount": expected}}, name
        assert "voucher" in document["actions"]
    assert {name: d["version"] for name, d in documents.items()} == {
        INCUMBENT: "41",
        "candidate-capped.json": "42",
        "candidate-reviewed.json": "42",
        "candidate-regional.json": "42",
        "candidate-overspend.json": "42",
    }
    assert "refund_full" not in documents[INCUMBENT]["actions"]  # the incumbent never refunds
    assert "refund_full" in documents["candidate-reviewed.json"]["actions"]


def test_the_gateway_serves_the_guardrail_artifacts_as_the_simulator_reads_them() -> None:
    world = World(41)
    for name in GUARDRAIL_ARTIFACT_FILES:
        served, ours = load_policy(ARTIFACTS_DIR / name), load_artifact(name)
        assert (served.version, served.actions) == (ours.version, ours.actions)
        for unit in world.units(20):
            context = world.visit(unit)
            theirs = dict(zip(served.actions, served.probabilities(context).tolist(), strict=True))
            assert theirs == pytest.approx(ours.probabilities(context), abs=1e-12)
            for action in ours.actions:
                assert (served.parameters(action, context) or {}) == pytest.approx(
                    ours.params(action, context), abs=1e-12
                )
        assert ours.params("voucher", context_of(0.5, 1.5, 0.2, "eu-west-1")) == {
            "amount": 20.0 if name != "candidate-overspend.json" else 80.0
        }


def test_offer_only_columns_refuse_a_policy_with_guardrail_actions() -> None:
    contexts = World(2).sample_contexts(100)
    with pytest.raises(ValueError, match="world_probabilities"):
        load_artifact("candidate-capped.json").action_probabilities(contexts)
    for name in ARTIFACT_FILES:  # the first artifacts read the same in both column sets
        policy = load_artifact(name)
        world_columns = policy.world_probabilities(contexts)
        assert np.array_equal(
            world_columns[:, : len(ACTIONS)], policy.action_probabilities(contexts)
        )
        assert not world_columns[:, len(ACTIONS) :].any()
    for name in GUARDRAIL_ARTIFACT_FILES:
        probabilities = load_artifact(name).world_probabilities(contexts)
        assert np.allclose(probabilities.sum(axis=1), 1.0)
        assert probabilities[:, WORLD_ACTIONS.index("discount_90")].max() < 1e-30


# ----------------------------------------------------------------------------- the world


def test_the_guardrail_actions_follow_the_law_and_a_voucher_its_amount() -> None:
    context = context_of(recency=0.5, basket_value=1.0, loyalty=0.2, region="eu-west-1")
    by_hand = {
        "discount_20": -1.2 + 2.4 * 0.5 + 0.5 * 1.0 + 0.4 * 0.2 + 0.2,
        "refund_full": -0.4 + 2.0 * 0.5 + 0.4 * 1.0 + 0.3 * 0.2,
        "voucher": -1.6 + 1.0 * 0.5 + 0.6 * 1.0 + 0.8 * 0.2 + float(voucher_lift(30.0)),
    }
    for action, logit in by_hand.items():
        expected = 1 / (1 + math.exp(-logit))
        params = {"amount": 30.0} if action == "voucher" else None
        assert World.expected_reward(context, action, params) == pytest.approx(expected, abs=1e-12)
    assert float(voucher_lift(0.0)) == 0.0 == float(voucher_lift(-5.0))
    lifts = [float(voucher_lift(amount)) for amount in (10, 20, 40, 80, 160)]
    assert lifts == sorted(lifts)
    assert lifts[-1] < 1.0
    assert lifts[1] - lifts[0] > lifts[4] - lifts[3] > 0
    assert World.expected_reward(context, "voucher") < World.expected_reward(
        context, "voucher", {"amount": 30.0}
    )
    with pytest.raises(KeyError, match="refund_half"):
        World.expected_reward(context, "refund_half")


def test_the_batch_law_covers_every_world_action() -> None:
    contexts = World(3).sample_contexts(40)
    amounts = np.linspace(0.0, 90.0, len(contexts))
    batch = World.world_rewards(contexts, amounts)
    assert np.array_equal(batch[:, : len(ACTIONS)], World.expected_rewards(contexts))
    for index, context in enumerate(contexts):
        for column, action in enumerate(WORLD_ACTIONS):
            params = {"amount": float(amounts[index])}
            assert batch[index, column] == pytest.approx(
                World.expected_reward(context, action, params), abs=1e-12
            )
    assert WORLD_ACTIONS[len(ACTIONS) :] == GUARDRAIL_ACTIONS


# ----------------------------------------------------------------------------- scenarios


def test_the_guardrail_scenarios_are_named_and_serve_their_own_incumbent() -> None:
    assert GUARDRAIL_SCENARIOS == (
        "overuse-capped",
        "review-rejected",
        "harm-one-region",
        "overspend",
    )
    assert set(GUARDRAIL_SCENARIOS) <= set(SCENARIOS)
    for name in SCENARIOS:
        chosen = scenario(name)
        expected = INCUMBENT if name in GUARDRAIL_SCENARIOS else "incumbent.json"
        assert chosen.incumbent_artifact == expected
        assert (ARTIFACTS_DIR / chosen.candidate_artifact).is_file()
        assert set(chosen.candidate_region_factors().values()) == (
            {1.0} if name != "regression" else {0.7}
        )


def test_overuse_capped_picks_discount_20_ten_times_as_often_and_is_otherwise_healthy() -> None:
    chosen = scenario("overuse-capped")
    incumbent, candidate = chosen.profile("incumbent"), chosen.profile("candidate")
    assert 0.28 < candidate.action_shares["discount_20"] < 0.32
    assert 0.025 < incumbent.action_shares["discount_20"] < 0.035  # under a 5 % cap
    assert candidate.value > incumbent.value * 1.05  # reward alone would promote it
    assert all(candidate.region_values[r] > incumbent.region_values[r] for r in REGIONS)
    assert candidate.spend_per_decision < 1.1 * incumbent.spend_per_decision
    for profile, artifact in ((incumbent, INCUMBENT), (candidate, chosen.candidate_artifact)):
        share = profile.action_shares["discount_20"]
        _close(_draw(artifact).share("discount_20"), share, _share_error(share))
        _close(_draw(artifact).mean_reward(), profile.value, _share_error(profile.value))


def test_review_rejected_proposes_refunds_a_truthful_reviewer_mostly_rejects() -> None:
    chosen = scenario("review-rejected")
    incumbent, candidate = chosen.profile("incumbent"), chosen.profile("candidate")
    assert incumbent.action_shares["refund_full"] == 0.0
    assert 0.17 < candidate.action_shares["refund_full"] < 0.23
    assert candidate.reject_share > 0.9
    values = chosen.arm_values()  # served with review: the incumbent decides instead
    assert values.candidate > values.incumbent * 1.02  # otherwise healthy

    drawn = _draw(chosen.candidate_artifact)
    proposals = [
        {"action": a, "params": p, "context": c, "attributes": {"region": r}}
        for a, p, c, r in zip(
            drawn.actions, drawn.params, drawn.contexts, drawn.regions, strict=True
        )
        if a == "refund_full"
    ]
    share = candidate.action_shares["refund_full"]
    _close(len(proposals) / SAMPLE, share, _share_error(share))
    verdicts = [verdict_for(proposal)[0] for proposal in proposals]
    rejected = verdicts.count("reject") / len(verdicts)
    _close(rejected, candidate.reject_share, _share_error(candidate.reject_share, len(verdicts)))
    assert "approve" in verdicts  # a real review: loyal units do get their refund
    assert _draw(INCUMBENT).share("refund_full") == 0.0


def test_harm_one_region_is_better_on_average_and_worse_by_a_tenth_in_ap_south_1() -> None:
    chosen = scenario("harm-one-region")
    incumbent, candidate = chosen.profile("incumbent"), chosen.profile("candidate")
    assert candidate.value > incumbent.value * 1.01
    drops = {r: 1 - candidate.region_values[r] / incumbent.region_values[r] for r in REGIONS}
    assert drops["ap-south-1"] > 0.12
    assert drops["eu-west-1"] < -0.03
    assert drops["us-east-1"] < -0.02
    for region in REGIONS:
        for profile, artifact in ((incumbent, INCUMBENT), (candidate, chosen.candidate_artifact)):
            drawn = _draw(artifact)
            n = drawn.regions.count(region)
            expected = profile.region_values[region]
            _close(drawn.mean_reward(region), expected, _share_error(expected, n))
    # what a per-segment test sees in one sample: ap-south-1 alone, clearly worse
    ap_gap = _draw(INCUMBENT).mean_reward("ap-south-1") - _draw(
        chosen.candidate_artifact
    ).mean_reward("ap-south-1")
    n_ap = _draw(INCUMBENT).regions.count("ap-south-1")
    assert ap_gap > 3 * math.sqrt(2 * 0.25 / n_ap), ap_gap


def test_overspend_gives_vouchers_four_times_as_large_for_a_little_more_reward() -> None:
    chosen = scenario("overspend")
    incumbent, candidate = chosen.profile("incumbent"), chosen.profile("candidate")
    assert candidate.action_shares == pytest.approx(incumbent.action_shares, abs=1e-12)
    assert 3.5 < candidate.spend_per_decision / incumbent.spend_per_decision < 4.5
    assert 2.0 < incumbent.spend_per_decision < 3.0
    assert 9.0 < candidate.spend_per_decision < 11.0
    assert incumbent.value * 1.02 < candidate.value < incumbent.value * 1.06  # looks fine
    for profile, artifact in ((incumbent, INCUMBENT), (candidate, chosen.candidate_artifact)):
        drawn = _draw(artifact)
        amounts = np.array([p.get("amount", 0.0) for p in drawn.params])
        _close(
            drawn.spend_per_decision(),
            profile.spend_per_decision,
            amounts.std() / math.sqrt(SAMPLE),
        )
        _close(drawn.mean_reward(), profile.value, _share_error(profile.value))
        vouchers = [p for a, p in zip(drawn.actions, drawn.params, strict=True) if a == "voucher"]
        assert all(set(p) == {"amount"} for p in vouchers)
        assert all(
            p == {} for a, p in zip(drawn.actions, drawn.params, strict=True) if a != "voucher"
        )
    assert max(p.get("amount", 0.0) for p in _draw(chosen.candidate_artifact).params) <= 220.0


def test_the_values_command_prints_each_arms_profile(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["values", "--scenario", "review-rejected"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("review-rejected: incumbent 0.51")
    assert lines[1].startswith(f"  incumbent {INCUMBENT}: value 0.51")
    assert "refund_full 19.9%" in lines[2]
    assert "reviewers reject 95." in lines[2]


# ----------------------------------------------------------------------------- reviewer


def _proposal(
    action: str, params: dict[str, Any] | None = None, **features: float
) -> dict[str, Any]:
    context = context_of(features.pop("recency", 0.5), features.pop("basket_value", 0.6),
                         features.pop("loyalty", 0.2), "us-east-1")  # fmt: skip
    return {
        "id": "p1",
        "created_at": "2026-12-01T05:00:00Z",
        "unit_id": "u000001",
        "version": "42",
        "action": action,
        "params": params,
        "context": context,
        "attributes": {"region": "us-east-1"},
    }


def test_the_reviewer_approves_refunds_only_for_loyal_units() -> None:
    verdict, reason = verdict_for(_proposal("refund_full", loyalty=0.7))
    assert verdict == "approve"
    assert "loyalty 0.70 >= 0.5" in reason
    verdict, reason = verdict_for(_proposal("refund_full", loyalty=0.3))
    assert verdict == "reject"
    assert "loyalty 0.30 < 0.5" in reason
    assert refund_justified({"loyalty": 0.5})
    assert not refund_justified({"loyalty": 0.49})


def test_the_reviewer_judges_vouchers_by_amount_and_basket() -> None:
    assert verdict_for(_proposal("voucher", {"amount": 11.0}, basket_value=0.6))[0] == "approve"
    assert verdict_for(_proposal("voucher", {"amount": 45.0}, basket_value=2.0))[0] == "approve"
    verdict, reason = verdict_for(_proposal("voucher", {"amount": 44.0}, basket_value=0.6))
    assert verdict == "reject"
    assert "44.00" in reason
    assert verdict_for(_proposal("voucher", None))[0] == "reject"  # no amount: cannot judge


@pytest.mark.parametrize(
    ("proposal", "verdict", "reason"),
    [
        (_proposal("discount_90"), "reject", "sells at a loss"),
        (_proposal("discount_20"), "approve", "ordinary offer"),
        (_proposal("none"), "approve", "ordinary offer"),
        (_proposal("refund_half"), "reject", "unknown action"),
        ({"action": "refund_full"}, "reject", "cannot judge"),
        ({**_proposal("refund_full"), "context": {"recency": 0.5}}, "reject", "no numeric loyalty"),
        ({**_proposal("refund_full"), "params": [1]}, "reject", "params is not an object"),
        ({**_proposal("refund_full", loyalty=0.9), "context": {"loyalty": True}}, "reject",
         "no numeric loyalty"),
    ],
)  # fmt: skip
def test_the_reviewer_rejects_what_it_cannot_check(
    proposal: dict[str, Any], verdict: str, reason: str
) -> None:
    assert verdict_for(proposal)[0] == verdict
    assert reason in verdict_for(proposal)[1]


# ----------------------------------------------------------------------------- the driver


async def test_the_driver_sends_regions_counts_spend_and_rewards_the_served_params() -> None:
    """A fake gateway serving generous vouchers: conversions follow the amount it answered."""
    sent: list[dict[str, Any]] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path.endswith("/decide"):
            sent.append(body)
            kind = "share" if len(sent) % 4 == 0 else None
            return httpx.Response(
                200,
                json={
                    "decision_id": f"d{len(sent)}",
                    "action": "voucher",
                    "arm": "candidate",
                    "version": "42",
                    "guardrail": "discount_20" if kind else None,
                    "intervention": kind,
                    "params": {"amount": 100.0},
                },
            )
        return httpx.Response(200, json={})

    config = DriveConfig(
        "http://gateway.test", "offers", scenario("overspend"), rate=2000, duration=0.2, seed=3
    )
    report = await Driver(config, transport=httpx.MockTransport(handle)).run()
    assert report.sent == len(sent) == 400
    assert {body["attributes"]["region"] for body in sent} == set(REGIONS)
    arm = report.arms["candidate"]
    assert arm.spend == pytest.approx(100.0 * 400)
    assert report.interventions == {"share": 100}
    assert report.violations == 0
    assert "interventions share 100" in report.summary()
    assert "spend 40000.00" in report.summary()
    expected = np.mean(
        [World.expected_reward(body["context"], "voucher", {"amount": 100.0}) for body in sent]
    )
    _close(arm.reward_total / arm.rewarded, float(expected), math.sqrt(0.25 / 400))


async def test_the_driver_refuses_params_that_are_not_numbers() -> None:
    async def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/decide"):
            return httpx.Response(
                200,
                json={"decision_id": "d", "action": "voucher", "arm": "incumbent",
                      "params": {"amount": "lots"}},
            )  # fmt: skip
        return httpx.Response(200, json={})

    config = DriveConfig(
        "http://gateway.test", "offers", scenario("overspend"), rate=100, duration=0.05
    )
    report = await Driver(config, transport=httpx.MockTransport(handle)).run()
    assert report.errors == report.sent == 5
    assert report.last_error is not None
    assert "params" in report.last_error
