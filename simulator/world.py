"""The contextual-bandit world: units in regions, offers, and conversions with a known law.

A **unit** (a shopper) lives in one region and has stable features: how recently it visited
(`recency`, 1 = today), how loyal it is (`loyalty`) and its typical basket (`basket_value`, in
hundreds of euros). Each visit jitters the basket, so a unit's context varies a little from one
decision to the next while its region never changes. Every context also carries the region as
one-hot features (`region_eu`, `region_us`, `region_ap`), so policies can learn regional tastes.

An **action** is an offer. The unit converts with probability
`sigmoid(intercept[a] + coefficients[a] . x)`, and the reward is that conversion: 1.0 or 0.0,
drawn at random. Because the law is known, `World.expected_reward` and `World.true_value` give the
truth that estimators (offline evaluation, the canary's statistics) can be checked against.

`discount_90` converts best of all but sells at a loss; the reward (a conversion) cannot see the
loss, which is exactly why it is the action guardrails block rather than something the reward
metrics would ever catch.

The guardrail scenarios add three actions (`GUARDRAIL_ACTIONS`) whose cost the reward cannot see
either: `discount_20` converts better than `discount_10` but gives away twice the margin (so it is
capped, not blocked), `refund_full` wins shoppers back but is worth it only for loyal ones (so a
human reviews it: `refund_justified`), and `voucher` carries a numeric parameter, its `amount` in
euros, which lifts conversion with diminishing returns (`voucher_lift`) while its cost grows
linearly (so a spend budget watches it). `ACTIONS` stays the four offers the first scenarios and
the offline log use; `WORLD_ACTIONS` is every action the reward law knows.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

__all__ = [
    "ACTIONS",
    "AMOUNT_FIELD",
    "BLOCKED_ACTION",
    "CAPPED_ACTION",
    "FEATURES",
    "GUARDRAIL_ACTIONS",
    "REFUND_MIN_LOYALTY",
    "REGIONS",
    "REGION_FEATURES",
    "REVIEWED_ACTION",
    "VOUCHER_ACTION",
    "WORLD_ACTIONS",
    "Contexts",
    "FloatArray",
    "Policy",
    "Unit",
    "World",
    "refund_justified",
    "voucher_lift",
]

FloatArray = npt.NDArray[np.float64]

REGIONS: Final[Mapping[str, float]] = MappingProxyType(
    {"eu-west-1": 0.45, "us-east-1": 0.35, "ap-south-1": 0.20}
)
"""Regions and their share of units (and so of traffic)."""

REGION_FEATURES: Final[Mapping[str, str]] = MappingProxyType(
    {"eu-west-1": "region_eu", "us-east-1": "region_us", "ap-south-1": "region_ap"}
)
"""The one-hot context feature of each region."""

NUMERIC_FEATURES: Final = ("recency", "basket_value", "loyalty")
FEATURES: Final = (*NUMERIC_FEATURES, *REGION_FEATURES.values())
"""Every context feature, in the column order of `Contexts.values` and of the coefficients."""

ACTIONS: Final = ("none", "discount_10", "free_shipping", "discount_90")
BLOCKED_ACTION: Final = "discount_90"
"""Converts best, loses money: the action the demo's guardrails block."""

CAPPED_ACTION: Final = "discount_20"
"""Converts better than discount_10 at twice the margin given away: fine sparingly, so capped."""
REVIEWED_ACTION: Final = "refund_full"
"""Wins a shopper back at the price of the whole order: a human decides (`refund_justified`)."""
VOUCHER_ACTION: Final = "voucher"
"""A voucher of `amount` euros: the action whose parameter a spend budget adds up."""
AMOUNT_FIELD: Final = "amount"
"""The voucher's numeric parameter, in euros."""
GUARDRAIL_ACTIONS: Final = (CAPPED_ACTION, REVIEWED_ACTION, VOUCHER_ACTION)
"""The actions only the guardrail scenarios' artifacts use (never in the offline log)."""
WORLD_ACTIONS: Final = (*ACTIONS, *GUARDRAIL_ACTIONS)
"""Every action the reward law knows, in the column order of `World.world_rewards`."""

_BASKET_MEDIAN: Final[Mapping[str, float]] = MappingProxyType(
    {"eu-west-1": 0.6, "us-east-1": 0.8, "ap-south-1": 0.4}
)
"""Median typical basket per region, in hundreds of euros."""
_BASKET_SPREAD: Final = 0.5
"""Log-scale spread of typical baskets across units."""
_VISIT_SPREAD: Final = 0.25
"""Log-scale spread of one visit's basket around the unit's typical basket."""
_BASKET_CAP: Final = 5.0


def _frozen(values: list[float] | list[list[float]]) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    array.flags.writeable = False
    return array


INTERCEPTS: Final = _frozen([-1.1, -1.4, -1.5, -0.3])
"""Conversion logit intercept per action (rows follow ACTIONS)."""
COEFFICIENTS: Final = _frozen(
    [
        # recency basket loyalty   eu    us    ap
        [0.8, 0.0, 2.6, 0.0, 0.1, -0.1],  # none: loyal units buy anyway
        [2.4, 0.3, 0.4, 0.2, 0.0, -0.2],  # discount_10: wins back recent visitors
        [0.4, 1.2, 0.4, -0.1, -0.2, 0.5],  # free_shipping: big baskets, and ap-south-1
        [1.6, 0.6, 1.4, 0.0, 0.0, 0.0],  # discount_90: converts best, sells at a loss
    ]
)
"""Conversion logit coefficient per action (rows) and feature (columns follow FEATURES)."""

GUARDRAIL_INTERCEPTS: Final = _frozen([-1.2, -0.4, -1.6])
"""Conversion logit intercept per guardrail action (rows follow GUARDRAIL_ACTIONS)."""
GUARDRAIL_COEFFICIENTS: Final = _frozen(
    [
        # recency basket loyalty   eu    us    ap
        [2.4, 0.5, 0.4, 0.2, 0.0, -0.2],  # discount_20: discount_10, a notch stronger
        [2.0, 0.4, 0.3, 0.0, 0.0, 0.0],  # refund_full: recent (unhappy) visitors come back
        [1.0, 0.6, 0.8, 0.0, 0.1, 0.0],  # voucher: plus voucher_lift(amount)
    ]
)
"""Conversion logit coefficients of the guardrail actions (columns follow FEATURES)."""

VOUCHER_LIFT_MAX: Final = 1.0
"""The most a voucher's amount can add to its conversion logit."""
VOUCHER_LIFT_SCALE: Final = 40.0
"""Euros over which a voucher's lift reaches 63 % of its maximum: diminishing returns."""
REFUND_MIN_LOYALTY: Final = 0.5
"""A full refund is worth its cost only for units at least this loyal (the reviewers' truth)."""


@dataclass(frozen=True)
class Unit:
    """A shopper: a sticky id, a region that never changes, and stable base features.

    `context` is the unit's base context (its typical basket), a plain dict so it can be sent as
    JSON as is; treat it as read-only. `World.visit` gives the context of one visit, which
    differs only in the basket.
    """

    unit_id: str
    region: str
    context: dict[str, float]


@dataclass(frozen=True)
class Contexts:
    """A batch of contexts as one matrix, so values over many contexts are cheap to compute.

    Attributes:
        regions: The region of each row (a numpy array of str).
        values: One row per context, one column per name in FEATURES.
    """

    regions: npt.NDArray[np.str_]
    values: FloatArray

    def __post_init__(self) -> None:
        if self.values.shape != (len(self.regions), len(FEATURES)):
            raise ValueError(
                f"values has shape {self.values.shape}; expected ({len(self.regions)}, "
                f"{len(FEATURES)}): one row per region, one column per feature"
            )

    def __len__(self) -> int:
        return len(self.regions)

    def __iter__(self) -> Iterator[dict[str, float]]:
        for index in range(len(self)):
            yield self.row(index)

    def row(self, index: int) -> dict[str, float]:
        """One context as the gateway's `context` body: feature name to value."""
        return dict(zip(FEATURES, (float(v) for v in self.values[index]), strict=True))

    def column(self, feature: str) -> FloatArray:
        """One feature over every row (KeyError names the known features)."""
        if feature not in FEATURES:
            raise KeyError(f"unknown feature {feature!r}; the world has {', '.join(FEATURES)}")
        column: FloatArray = self.values[:, FEATURES.index(feature)]
        return column

    @classmethod
    def of(cls, rows: list[Mapping[str, float]], regions: list[str]) -> Contexts:
        """A batch from context dicts (as a log or a request carries them)."""
        values = np.array([[row[name] for name in FEATURES] for row in rows], dtype=np.float64)
        return cls(np.array(regions, dtype=np.str_), values.reshape(len(rows), len(FEATURES)))


class Policy(Protocol):
    """Anything that gives, for many contexts at once, a probability for each world action."""

    def action_probabilities(self, contexts: Contexts) -> FloatArray:
        """Shape (len(contexts), len(ACTIONS)); columns follow ACTIONS, rows sum to 1."""
        ...


def context_of(
    recency: float, basket_value: float, loyalty: float, region: str
) -> dict[str, float]:
    """A context from its numeric features and region (the region becomes one-hot features)."""
    if region not in REGION_FEATURES:
        raise ValueError(f"unknown region {region!r}; the world has {', '.join(REGIONS)}")
    context = {"recency": recency, "basket_value": basket_value, "loyalty": loyalty}
    for other, feature in REGION_FEATURES.items():
        context[feature] = 1.0 if other == region else 0.0
    return context


def voucher_lift(amount: float | FloatArray) -> FloatArray:
    """What a voucher of `amount` euros adds to its conversion logit (none for amounts <= 0).

    Saturating, so a bigger voucher converts only a little better while it costs its whole
    amount: the trade a spend budget exists for.
    """
    euros = np.maximum(np.asarray(amount, dtype=np.float64), 0.0)
    lift: FloatArray = VOUCHER_LIFT_MAX * (1.0 - np.exp(-euros / VOUCHER_LIFT_SCALE))
    return lift


def refund_justified(context: Mapping[str, float]) -> bool:
    """Whether a full refund is worth its cost for the unit of `context`: the world's truth.

    Only loyal units (loyalty >= REFUND_MIN_LOYALTY) come back often enough to repay the order
    given away; the conversion a refund buys from anyone else is not worth it. The reward cannot
    see this, so a human reviewer (`simulator.reviewer`) applies it.

    Raises:
        KeyError: The context has no `loyalty`.
    """
    return float(context["loyalty"]) >= REFUND_MIN_LOYALTY


class World:
    """Draws units, visits and conversions from one seeded random source.

    The reward law (INTERCEPTS, COEFFICIENTS) is fixed and shared by every World; the seed only
    decides which units, visits and conversions are drawn, so two Worlds with one seed replay the
    same traffic.

    Args:
        seed: Seed of the world's `numpy.random.Generator`.
    """

    TRUE_VALUE_SAMPLES: Final = 400_000
    """Contexts averaged by `true_value`: a Monte Carlo standard error of about 0.0002."""
    TRUE_VALUE_SEED: Final = 20_240_601
    """One fixed sample for every policy, so differences between true values carry no noise."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    # ----------------------------------------------------------------------------- drawing

    def units(self, count: int, prefix: str = "u") -> list[Unit]:
        """`count` units with ids `{prefix}{index:06d}`, regions in REGIONS' shares.

        Args:
            count: How many units.
            prefix: Id prefix, so pools of different drivers never share ids.
        """
        contexts = self._base_contexts(count)
        return [
            Unit(f"{prefix}{index:06d}", region, contexts.row(index))
            for index, region in enumerate(contexts.regions.tolist())
        ]

    def visit(self, unit: Unit) -> dict[str, float]:
        """The context of one visit of `unit`: its base features with this visit's basket."""
        context = dict(unit.context)
        jitter = float(self.rng.lognormal(0.0, _VISIT_SPREAD))
        context["basket_value"] = min(context["basket_value"] * jitter, _BASKET_CAP)
        return context

    def sample_contexts(self, count: int) -> Contexts:
        """`count` independent visits of fresh units: the world's context distribution."""
        contexts = self._base_contexts(count)
        jitter = self.rng.lognormal(0.0, _VISIT_SPREAD, size=count)
        basket = FEATURES.index("basket_value")
        contexts.values[:, basket] = np.minimum(contexts.values[:, basket] * jitter, _BASKET_CAP)
        return contexts

    def draw_reward(
        self,
        context: Mapping[str, float],
        action: str,
        factor: float = 1.0,
        params: Mapping[str, float] | None = None,
    ) -> float:
        """A random conversion (1.0 or 0.0) for one decision.

        Args:
            context: The context the decision was made in.
            action: The action served (any of WORLD_ACTIONS).
            factor: Multiplies the conversion probability (a scenario's harm; 1.0 for none).
            params: The served action's parameters (a voucher's `amount`); None for none.
        """
        probability = self.expected_reward(context, action, params) * factor
        return 1.0 if self.rng.random() < probability else 0.0

    def _base_contexts(self, count: int) -> Contexts:
        picks = self.rng.choice(len(REGIONS), size=count, p=list(REGIONS.values()))
        regions = np.array(list(REGIONS), dtype=np.str_)[picks]
        medians = np.array([_BASKET_MEDIAN[region] for region in REGIONS])[picks]
        values = np.zeros((count, len(FEATURES)), dtype=np.float64)
        values[:, 0] = self.rng.beta(2.0, 3.0, size=count)  # recency
        basket = medians * self.rng.lognormal(0.0, _BASKET_SPREAD, size=count)
        values[:, 1] = np.minimum(basket, _BASKET_CAP)
        values[:, 2] = self.rng.beta(1.5, 3.5, size=count)  # loyalty
        values[np.arange(count), len(NUMERIC_FEATURES) + picks] = 1.0  # region one-hot
        return Contexts(regions, values)

    # ----------------------------------------------------------------------------- the truth

    @staticmethod
    def expected_reward(
        context: Mapping[str, float], action: str, params: Mapping[str, float] | None = None
    ) -> float:
        """The conversion probability of `action` in `context` (extra keys are ignored).

        Args:
            context: The decision's context.
            action: Any of WORLD_ACTIONS.
            params: The action's parameters: a voucher's `amount` lifts its conversion (a
                voucher without one is worth 0 euros); other actions ignore them.

        Raises:
            KeyError: The context lacks a world feature, or the action is unknown.
        """
        x = np.array([context[name] for name in FEATURES], dtype=np.float64)
        if action in ACTIONS:
            row = ACTIONS.index(action)
            logit = float(INTERCEPTS[row] + COEFFICIENTS[row] @ x)
        elif action in GUARDRAIL_ACTIONS:
            row = GUARDRAIL_ACTIONS.index(action)
            logit = float(GUARDRAIL_INTERCEPTS[row] + GUARDRAIL_COEFFICIENTS[row] @ x)
            if action == VOUCHER_ACTION:
                logit += float(voucher_lift((params or {}).get(AMOUNT_FIELD, 0.0)))
        else:
            raise KeyError(f"unknown action {action!r}; the world has {', '.join(WORLD_ACTIONS)}")
        return 1.0 / (1.0 + math.exp(-logit))

    @staticmethod
    def expected_rewards(contexts: Contexts) -> FloatArray:
        """Conversion probability of every action (columns follow ACTIONS) in every context."""
        logits = contexts.values @ COEFFICIENTS.T + INTERCEPTS
        probabilities: FloatArray = 1.0 / (1.0 + np.exp(-logits))
        return probabilities

    @staticmethod
    def world_rewards(contexts: Contexts, amounts: FloatArray | None = None) -> FloatArray:
        """Conversion probability of every WORLD_ACTIONS action (columns) in every context.

        Args:
            contexts: The contexts.
            amounts: The voucher's amount in each context (euros); None values vouchers at 0.
        """
        logits = np.concatenate(
            [
                contexts.values @ COEFFICIENTS.T + INTERCEPTS,
                contexts.values @ GUARDRAIL_COEFFICIENTS.T + GUARDRAIL_INTERCEPTS,
            ],
            axis=1,
        )
        if amounts is not None:
            logits[:, WORLD_ACTIONS.index(VOUCHER_ACTION)] += voucher_lift(amounts)
        probabilities: FloatArray = 1.0 / (1.0 + np.exp(-logits))
        return probabilities

    @classmethod
    def truth_contexts(cls, samples: int | None = None, seed: int | None = None) -> Contexts:
        """The fixed context sample true values average over (read-only, computed once).

        Args:
            samples: Contexts; default TRUE_VALUE_SAMPLES.
            seed: Seed of the sample; default TRUE_VALUE_SEED.
        """
        return _truth_contexts(
            cls.TRUE_VALUE_SAMPLES if samples is None else samples,
            cls.TRUE_VALUE_SEED if seed is None else seed,
        )

    @classmethod
    def true_value(
        cls,
        policy: Policy,
        *,
        region_factors: Mapping[str, float] | None = None,
        samples: int | None = None,
        seed: int | None = None,
    ) -> float:
        """The policy's expected reward per decision over the world's context distribution.

        Exact in the actions (sum of probability x conversion probability), Monte Carlo over
        contexts with a fixed sample: every policy is valued on the same contexts, so the order
        of two policies is decided by the policies and not by sampling noise.

        Args:
            policy: The policy to value.
            region_factors: Multiplies conversion probabilities per region (a scenario's harm to
                the units the policy serves); regions not named keep 1.0.
            samples: Contexts averaged; default TRUE_VALUE_SAMPLES.
            seed: Seed of the context sample; default TRUE_VALUE_SEED.
        """
        contexts = cls.truth_contexts(samples, seed)
        per_context = np.sum(
            policy.action_probabilities(contexts) * cls.expected_rewards(contexts), axis=1
        )
        if region_factors:
            factors = np.ones(len(contexts))
            for region, factor in region_factors.items():
                factors[contexts.regions == region] = factor
            per_context = per_context * factors
        return float(np.mean(per_context))


@functools.lru_cache(maxsize=4)
def _truth_contexts(samples: int, seed: int) -> Contexts:
    contexts = World(seed).sample_contexts(samples)
    contexts.values.flags.writeable = False
    contexts.regions.flags.writeable = False
    return contexts
