"""The demo's scenarios: which candidate artifact is served, and how the world treats it.

- `healthy`: the candidate (42) is slightly better than the incumbent (41), about +3.7 % in
  true value; a rollout should promote it.
- `regression`: the same candidate artifact, but units the candidate serves convert `fraction`
  less often (default 0.3), in every region or only in `region`. This models harm the candidate
  causes that its own artifact does not show and offline evaluation cannot see, such as users
  it annoys into churning; only the live reward of the candidate arm reveals it.
- `violations`: the candidate picks `discount_90`, the blocked action, in about 5 % of decisions;
  the gateway's guardrail serves the incumbent's action instead and counts a violation.
- `broken`: a candidate trained with a sign error, far worse on the logged decisions; the
  offline gate refuses it and no user ever sees it.
- `drifting`: a candidate close in value but over-promoting free shipping; it passes the offline
  gate and the paired shadow analysis refuses its drifting actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from simulator.artifacts import load_artifact
from simulator.policy import Guarded
from simulator.world import BLOCKED_ACTION, REGIONS, World

__all__ = ["DEFAULT_REGRESSION_FRACTION", "SCENARIOS", "ArmValues", "Scenario", "scenario"]

ScenarioName = Literal["healthy", "regression", "violations", "broken", "drifting"]
SCENARIOS: Final[tuple[ScenarioName, ...]] = (
    "healthy",
    "regression",
    "violations",
    "broken",
    "drifting",
)
DEFAULT_REGRESSION_FRACTION: Final = 0.3

_CANDIDATE_ARTIFACTS: Final = MappingProxyType(
    {
        "healthy": "candidate.json",
        "regression": "candidate.json",
        "violations": "candidate-violating.json",
        "broken": "candidate-broken.json",
        "drifting": "candidate-drifting.json",
    }
)


@dataclass(frozen=True)
class ArmValues:
    """True values (expected reward per decision) of what each arm really serves.

    Attributes:
        incumbent: The incumbent artifact's value.
        candidate: The candidate arm's value: its artifact behind the guardrail (blocked picks
            served by the incumbent) and with the scenario's harm applied.
        blocked_share: Expected share of candidate decisions that pick the blocked action.
    """

    incumbent: float
    candidate: float
    blocked_share: float


@dataclass(frozen=True)
class Scenario:
    """A scenario: the candidate artifact to serve and the world's modifiers for its arm.

    Build one with `scenario(name)`, which validates the parameters.

    Attributes:
        name: One of SCENARIOS.
        candidate_artifact: File name in `simulator/artifacts/` the candidate server serves.
        regression_fraction: Share of conversions lost by units the candidate serves (0: none).
        region: Limit the loss to this region; None for every region.
    """

    name: ScenarioName
    candidate_artifact: str
    regression_fraction: float = 0.0
    region: str | None = None

    def reward_factor(self, arm: str, region: str) -> float:
        """The factor on the conversion probability of a decision served by `arm` in `region`.

        Only the candidate arm is harmed: the incumbent's units are the untouched baseline.
        """
        if arm != "candidate" or self.regression_fraction == 0.0:
            return 1.0
        if self.region is not None and region != self.region:
            return 1.0
        return 1.0 - self.regression_fraction

    def candidate_region_factors(self) -> dict[str, float]:
        """`reward_factor("candidate", region)` for every region (for `World.true_value`)."""
        return {region: self.reward_factor("candidate", region) for region in REGIONS}

    def arm_values(self, samples: int | None = None) -> ArmValues:
        """The true values of both arms as the gateway serves them (100 % split, guardrails on).

        Args:
            samples: Contexts averaged; default `World.TRUE_VALUE_SAMPLES`.
        """
        incumbent = load_artifact("incumbent.json")
        candidate = Guarded(
            load_artifact(self.candidate_artifact), incumbent, frozenset({BLOCKED_ACTION})
        )
        contexts = World.truth_contexts(samples)
        return ArmValues(
            incumbent=World.true_value(incumbent, samples=samples),
            candidate=World.true_value(
                candidate, region_factors=self.candidate_region_factors(), samples=samples
            ),
            blocked_share=candidate.blocked_share(contexts),
        )


def scenario(
    name: str,
    *,
    regression_fraction: float = DEFAULT_REGRESSION_FRACTION,
    region: str | None = None,
) -> Scenario:
    """The named scenario; `regression_fraction` and `region` apply to `regression` only.

    Raises:
        ValueError: Unknown name or region, or a fraction outside (0, 1); the message says
            what is allowed.
    """
    for plain in ("healthy", "violations", "broken", "drifting"):
        if name == plain:
            return Scenario(plain, _CANDIDATE_ARTIFACTS[plain])
    if name != "regression":
        raise ValueError(f"unknown scenario {name!r}; use one of {', '.join(SCENARIOS)}")
    if not 0.0 < regression_fraction < 1.0:
        raise ValueError(
            f"regression fraction is {regression_fraction}; use a share of conversions lost, "
            "strictly between 0 and 1 (e.g. 0.3)"
        )
    if region is not None and region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; use one of {', '.join(REGIONS)}")
    return Scenario("regression", _CANDIDATE_ARTIFACTS["regression"], regression_fraction, region)
