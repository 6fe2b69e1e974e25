"""The demo's artifacts and scenarios: committed files, the quality they claim, the harm modifier.

The artifacts are data other parts run (the demo's policy servers, the end-to-end tests), so the
committed files must be exactly what the generator writes, must load in the gateway, and must be
ordered as the scenarios say.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.policies import load_policy
from simulator.__main__ import main
from simulator.artifacts import ARTIFACT_FILES, ARTIFACTS_DIR, load_artifact, make_artifacts, render
from simulator.policy import Guarded
from simulator.scenarios import SCENARIOS, Scenario, scenario
from simulator.world import ACTIONS, BLOCKED_ACTION, REGIONS, World


def test_the_committed_artifacts_are_exactly_the_generators_output() -> None:
    generated = make_artifacts()
    assert tuple(generated) == ARTIFACT_FILES
    for name, policy in generated.items():
        committed = (ARTIFACTS_DIR / name).read_text(encoding="utf-8")
        assert committed == render(policy), f"run `python -m simulator make-artifacts`: {name}"
        assert load_artifact(name) == policy


def test_make_artifacts_writes_the_same_files(tmp_path: Path) -> None:
    assert main(["make-artifacts", "--out", str(tmp_path / "out")]) == 0
    for name in ARTIFACT_FILES:
        assert (tmp_path / "out" / name).read_bytes() == (ARTIFACTS_DIR / name).read_bytes()


def test_the_gateway_reads_the_artifacts_as_the_simulator_does() -> None:
    world = World(31)
    for name in ARTIFACT_FILES:
        served = load_policy(ARTIFACTS_DIR / name)  # the gateway's own loader and validation
        ours = load_artifact(name)
        assert (served.version, served.actions) == (ours.version, ours.actions)
        for unit in world.units(20):
            context = world.visit(unit)
            theirs = dict(zip(served.actions, served.probabilities(context).tolist(), strict=True))
            assert theirs == pytest.approx(ours.probabilities(context), abs=1e-12)


def test_versions_and_blocked_action_shares_are_as_named() -> None:
    contexts = World.truth_contexts()
    blocked = ACTIONS.index(BLOCKED_ACTION)
    shares = {
        name: float(load_artifact(name).action_probabilities(contexts)[:, blocked].mean())
        for name in ARTIFACT_FILES
    }
    assert {name: load_artifact(name).version for name in ARTIFACT_FILES} == {
        "incumbent.json": "41",
        "candidate.json": "42",
        "candidate-violating.json": "42",
        "candidate-broken.json": "42",
        "candidate-drifting.json": "42",
    }
    assert shares["incumbent.json"] < 1e-30
    assert shares["candidate-broken.json"] < 1e-30
    assert shares["candidate-drifting.json"] < 1e-30
    free = ACTIONS.index("free_shipping")
    boosted, usual = (
        float(load_artifact(name).action_probabilities(contexts)[:, free].mean())
        for name in ("candidate-drifting.json", "incumbent.json")
    )
    assert boosted > 1.8 * usual  # drifting: free shipping about twice as often
    assert shares["candidate.json"] < 1e-30
    assert 0.03 < shares["candidate-violating.json"] < 0.08  # a few violations a second in a demo


def test_true_values_are_ordered_as_the_scenarios_claim() -> None:
    incumbent, candidate, violating, broken, drifting = (
        World.true_value(load_artifact(name)) for name in ARTIFACT_FILES
    )
    assert broken < incumbent - 0.05  # broken: far worse, for the offline gate to refuse
    assert incumbent - 0.03 < drifting < incumbent  # drifting: close in value, not in actions
    assert 1.02 < candidate / incumbent < 1.05  # healthy: slightly, really better
    # violations: reward alone would prefer the violating candidate; only a guardrail stops it
    assert violating > candidate > incumbent
    guarded = World.true_value(
        Guarded(load_artifact("candidate-violating.json"), load_artifact("incumbent.json"),
                frozenset({BLOCKED_ACTION}))
    )  # fmt: skip
    assert incumbent < guarded < violating


def test_each_scenario_values_its_arms_as_it_claims() -> None:
    healthy = scenario("healthy").arm_values()
    regression = scenario("regression").arm_values()
    eu_only = scenario("regression", region="eu-west-1").arm_values()
    violations = scenario("violations").arm_values()
    assert healthy.candidate > healthy.incumbent
    assert regression.candidate == pytest.approx(0.7 * healthy.candidate, rel=1e-12)
    assert regression.candidate < eu_only.candidate < healthy.candidate
    assert eu_only.candidate < healthy.incumbent  # even a one-region harm is a regression overall
    assert violations.blocked_share > 0.03
    assert healthy.blocked_share == regression.blocked_share == pytest.approx(0.0, abs=1e-30)
    assert len({healthy.incumbent, regression.incumbent, violations.incumbent}) == 1


def _per_region(artifact: str) -> dict[str, float]:
    contexts = World.truth_contexts()
    policy = load_artifact(artifact)
    per_context = (policy.action_probabilities(contexts) * World.expected_rewards(contexts)).sum(
        axis=1
    )
    return {region: float(per_context[contexts.regions == region].mean()) for region in REGIONS}


def test_the_margins_are_wide_enough_for_a_short_demo_to_judge() -> None:
    """The demo compares the arms' rewards in stages of seconds, some scoped to one region.

    A healthy candidate must be better in every region (a scoped stage sees one region only),
    and a regression must drop far more than the demo's tolerated 5 points.
    """
    incumbent, candidate = _per_region("incumbent.json"), _per_region("candidate.json")
    for region in REGIONS:
        assert candidate[region] - incumbent[region] > 0.01, region
        assert candidate[region] > 0.5, region  # and well above a 0.45 floor, for absolute specs
    regression = scenario("regression").arm_values()
    assert regression.incumbent - regression.candidate > 0.1
    eu_harmed = 0.7 * candidate["eu-west-1"]
    assert incumbent["eu-west-1"] - eu_harmed > 0.1  # what an eu-scoped stage would see


def test_the_regression_harms_only_the_candidate_and_only_in_its_region() -> None:
    everywhere = scenario("regression")
    for region in REGIONS:
        assert everywhere.reward_factor("candidate", region) == pytest.approx(0.7)
        assert everywhere.reward_factor("incumbent", region) == 1.0
    eu = scenario("regression", regression_fraction=0.5, region="eu-west-1")
    assert eu.candidate_region_factors() == {"eu-west-1": 0.5, "us-east-1": 1.0, "ap-south-1": 1.0}
    assert eu.reward_factor("incumbent", "eu-west-1") == 1.0
    for name in ("healthy", "violations", "broken", "drifting"):
        assert set(scenario(name).candidate_region_factors().values()) == {1.0}


def test_each_scenario_serves_a_committed_artifact() -> None:
    artifacts = {name: scenario(name).candidate_artifact for name in SCENARIOS}
    assert artifacts == {
        "healthy": "candidate.json",
        "regression": "candidate.json",
        "violations": "candidate-violating.json",
        "broken": "candidate-broken.json",
        "drifting": "candidate-drifting.json",
        "overuse-capped": "candidate-capped.json",
        "review-rejected": "candidate-reviewed.json",
        "harm-one-region": "candidate-regional.json",
        "overspend": "candidate-overspend.json",
    }
    assert all((ARTIFACTS_DIR / artifact).is_file() for artifact in artifacts.values())


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("chaos", {}, "unknown scenario 'chaos'; use one of healthy, regression, violations"),
        ("regression", {"regression_fraction": 1.0}, "strictly between 0 and 1"),
        ("regression", {"regression_fraction": 0.0}, "strictly between 0 and 1"),
        ("regression", {"region": "mars-1"}, "unknown region 'mars-1'"),
    ],
)
def test_bad_scenarios_are_refused_with_what_is_allowed(
    name: str, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        scenario(name, **options)  # type: ignore[arg-type]


def test_a_scenario_is_a_plain_value() -> None:
    assert scenario("regression", region="ap-south-1") == Scenario(
        "regression", "candidate.json", 0.3, "ap-south-1"
    )
