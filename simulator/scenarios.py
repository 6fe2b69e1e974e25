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

The guardrail scenarios serve their own incumbent, `incumbent-guardrails.json` (41: `discount_20`
in 3 % of decisions, vouchers of about 13 euros in 20 %), and each has a candidate (42) that only
one guardrail catches (see `simulator.artifacts` for how each is built, `profile` for its exact
numbers, and `python -m simulator values` to print them):

- `overuse-capped`: `discount_20` in 30 % of decisions (the incumbent: 3 %), better in reward;
  a share cap of 5 % must intervene on about a quarter of the candidate's decisions.
- `review-rejected`: proposes `refund_full` in 20 % of decisions, which the incumbent never does;
  a truthful reviewer (`simulator.reviewer.verdict_for`) rejects about 95 % of proposals. Served
  with the review guardrail, it is better in reward than the incumbent.
- `harm-one-region`: about 1.3 % better on average, about 14 % worse in `ap-south-1` (the region
  each decision's `attributes` carry): only a per-segment test catches it.
- `overspend`: the incumbent's choices with vouchers four times as large (`amount` about 50
  euros instead of 13): slightly better in reward, about four times the spend per decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

import numpy as np

from simulator.artifacts import load_artifact
from simulator.policy import Guarded, SoftmaxPolicy
from simulator.world import (
    AMOUNT_FIELD,
    BLOCKED_ACTION,
    REFUND_MIN_LOYALTY,
    REGIONS,
    REVIEWED_ACTION,
    VOUCHER_ACTION,
    WORLD_ACTIONS,
    Contexts,
    FloatArray,
    World,
)

__all__ = [
    "DEFAULT_REGRESSION_FRACTION",
    "GUARDRAIL_SCENARIOS",
    "SCENARIOS",
    "ArmProfile",
    "ArmValues",
    "Scenario",
    "scenario",
]

ScenarioName = Literal[
    "healthy",
    "regression",
    "violations",
    "broken",
    "drifting",
    "overuse-capped",
    "review-rejected",
    "harm-one-region",
    "overspend",
]
GUARDRAIL_SCENARIOS: Final[tuple[ScenarioName, ...]] = (
    "overuse-capped",
    "review-rejected",
    "harm-one-region",
    "overspend",
)
"""The scenarios of issue 14's guardrails: they serve `incumbent-guardrails.json`."""
SCENARIOS: Final[tuple[ScenarioName, ...]] = (
    "healthy",
    "regression",
    "violations",
    "broken",
    "drifting",
    *GUARDRAIL_SCENARIOS,
)
DEFAULT_REGRESSION_FRACTION: Final = 0.3
INCUMBENT_ARTIFACT: Final = "incumbent.json"
GUARDRAIL_INCUMBENT_ARTIFACT: Final = "incumbent-guardrails.json"

_CANDIDATE_ARTIFACTS: Final = MappingProxyType(
    {
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
)
_REVIEWED: Final = MappingProxyType({"review-rejected": frozenset({REVIEWED_ACTION})})
"""Actions the scenario's spec routes to review: the incumbent decides instead, as it serves."""


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
class ArmProfile:
    """What one arm's artifact does over the world's context distribution, exactly in actions.

    Attributes:
        value: Expected reward per decision (the artifact's own picks, no guardrail).
        region_values: The same, per region: what a per-segment test compares.
        action_shares: Expected share of decisions per action (WORLD_ACTIONS; absent ones 0).
        spend_per_decision: Expected voucher `amount` per decision (euros; 0 when no voucher).
        amount_per_voucher: Expected `amount` of a voucher when one is given (euros).
        reject_share: Share of its `refund_full` picks a truthful reviewer rejects (0 if none).
    """

    value: float
    region_values: dict[str, float]
    action_shares: dict[str, float]
    spend_per_decision: float
    amount_per_voucher: float
    reject_share: float


@dataclass(frozen=True)
class Scenario:
    """A scenario: the candidate artifact to serve and the world's modifiers for its arm.

    Build one with `scenario(name)`, which validates the parameters.

    Attributes:
        name: One of SCENARIOS.
        candidate_artifact: File name in `simulator/artifacts/` the candidate server serves.
        regression_fraction: Share of conversions lost by units the candidate serves (0: none).
        region: Limit the loss to this region; None for every region.
        incumbent_artifact: File name in `simulator/artifacts/` the incumbent server serves
            (the guardrail scenarios have their own, whose actions carry parameters).
    """

    name: ScenarioName
    candidate_artifact: str
    regression_fraction: float = 0.0
    region: str | None = None
    incumbent_artifact: str = INCUMBENT_ARTIFACT

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

        For the guardrail scenarios, "guardrails on" means the blocked action and the actions
        the scenario's spec reviews are served by the incumbent; share caps are left out (what
        they let through depends on the window), so see `profile` for the candidate's own picks.

        Args:
            samples: Contexts averaged; default `World.TRUE_VALUE_SAMPLES`.
        """
        if self.name in GUARDRAIL_SCENARIOS:
            return self._guardrail_arm_values(samples)
        incumbent = load_artifact(self.incumbent_artifact)
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

    def profile(self, arm: str, samples: int | None = None) -> ArmProfile:
        """What the arm's artifact does (`arm`: incumbent or candidate), with the scenario's harm.

        Args:
            arm: "incumbent" or "candidate".
            samples: Contexts averaged; default `World.TRUE_VALUE_SAMPLES`.

        Raises:
            ValueError: `arm` is neither.
        """
        if arm not in ("incumbent", "candidate"):
            raise ValueError(f"arm is {arm!r}; use incumbent or candidate")
        policy = load_artifact(
            self.incumbent_artifact if arm == "incumbent" else self.candidate_artifact
        )
        contexts = World.truth_contexts(samples)
        probabilities = policy.world_probabilities(contexts)
        amounts = policy.parameter_values(contexts, VOUCHER_ACTION, AMOUNT_FIELD)
        per_context = _values_per_action(policy, contexts).sum(axis=1)
        per_context *= self._factors(arm, contexts)
        voucher = probabilities[:, WORLD_ACTIONS.index(VOUCHER_ACTION)]
        refund = probabilities[:, WORLD_ACTIONS.index(REVIEWED_ACTION)]
        unjustified = contexts.column("loyalty") < REFUND_MIN_LOYALTY  # refund_justified, batched
        shares = probabilities.mean(axis=0)
        return ArmProfile(
            value=float(per_context.mean()),
            region_values={
                region: float(per_context[contexts.regions == region].mean()) for region in REGIONS
            },
            action_shares={action: float(shares[i]) for i, action in enumerate(WORLD_ACTIONS)},
            spend_per_decision=float(np.mean(voucher * amounts)),
            amount_per_voucher=_weighted_mean(amounts, voucher),
            reject_share=_weighted_mean(unjustified.astype(np.float64), refund),
        )

    def _factors(self, arm: str, contexts: Contexts) -> FloatArray:
        factors = np.ones(len(contexts))
        for region in REGIONS:
            factors[contexts.regions == region] = self.reward_factor(arm, region)
        return factors

    def _guardrail_arm_values(self, samples: int | None) -> ArmValues:
        incumbent = load_artifact(self.incumbent_artifact)
        candidate = load_artifact(self.candidate_artifact)
        contexts = World.truth_contexts(samples)
        overruled = {BLOCKED_ACTION} | _REVIEWED.get(self.name, frozenset())
        mask = np.array([action in overruled for action in WORLD_ACTIONS])
        own = _values_per_action(candidate, contexts)
        fallback = _values_per_action(incumbent, contexts).sum(axis=1)
        probabilities = candidate.world_probabilities(contexts)
        served = (
            np.where(mask, 0.0, own).sum(axis=1) + probabilities[:, mask].sum(axis=1) * fallback
        )
        return ArmValues(
            incumbent=float(fallback.mean()),
            candidate=float(np.mean(served * self._factors("candidate", contexts))),
            blocked_share=float(probabilities[:, WORLD_ACTIONS.index(BLOCKED_ACTION)].mean()),
        )


def _weighted_mean(values: FloatArray, weights: FloatArray) -> float:
    """Mean of `values` weighted by `weights` (an action's probability); 0 with no weight."""
    total = float(weights.sum())
    return float(np.sum(values * weights)) / total if total > 0 else 0.0


def _values_per_action(policy: SoftmaxPolicy, contexts: Contexts) -> FloatArray:
    """P(a|x) x P(conversion | x, a, the policy's own parameters), per context and action."""
    amounts = policy.parameter_values(contexts, VOUCHER_ACTION, AMOUNT_FIELD)
    values: FloatArray = policy.world_probabilities(contexts) * World.world_rewards(
        contexts, amounts
    )
    return values


def scenario(
    name: str,
    *,
    regression_fraction: float = DEFAULT_REGRESSION_FRACTION,
    region: str | None = None,
) -> Scenario:
    """The named scenario; `regression_fraction` and `region` apply to `regression` only.

    The guardrail scenarios (GUARDRAIL_SCENARIOS) serve `incumbent-guardrails.json`, so a stack
    running one must start its incumbent policy server on `incumbent_artifact`.

    Raises:
        ValueError: Unknown name or region, or a fraction outside (0, 1); the message says
            what is allowed.
    """
    for plain in ("healthy", "violations", "broken", "drifting"):
        if name == plain:
            return Scenario(plain, _CANDIDATE_ARTIFACTS[plain])
    for guarded in GUARDRAIL_SCENARIOS:
        if name == guarded:
            return Scenario(
                guarded,
                _CANDIDATE_ARTIFACTS[guarded],
                incumbent_artifact=GUARDRAIL_INCUMBENT_ARTIFACT,
            )
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
