"""The demo's policy artifacts, derived from the world's reward law so their quality is known.

Each artifact's logits are a model of the conversion logits (weights = coefficients, bias =
intercepts) and its temperature sets how greedily it acts on them:

- `incumbent.json` (41) is a stale model: it gives recency half its real weight, and acts less
  greedily (temperature 0.35). Its true value is about 0.529.
- `candidate.json` (42) knows the law and acts more greedily (temperature 0.25): about 3.7 %
  better (0.548), a small, real improvement.
- `candidate-violating.json` (42) is the candidate that also learned that `discount_90` converts
  best, held back only by a penalty on it: it picks the blocked action in about 5 % of decisions,
  so a reward metric alone would rate it *higher* (0.561) and only the guardrail catches it.

- `candidate-broken.json` (42) was trained with a sign error: every coefficient negated. It is
  far worse (0.420); the offline gate must refuse it before it meets a single user.
- `candidate-drifting.json` (42) knows the law but over-promotes `free_shipping` (+0.8 on its
  logit): close to the incumbent in value (0.512, within a 0.03 offline margin) yet picking free
  shipping twice as often (JS 0.05 against the incumbent's shares); shadow must catch the drift.

None but the violating one ever picks `discount_90` (a logit of -30 / temperature: e^-85 or less).

The guardrail scenarios (issue 14) share their own incumbent and add the guardrail actions
(`simulator.world.GUARDRAIL_ACTIONS`); every one of these artifacts gives `voucher` an `amount`
parameter (euros, linear in `basket_value`, in hundreds of euros), under the `parameters` key:

- `incumbent-guardrails.json` (41): a staler model than `incumbent.json` (a third of recency's
  effect, temperature 0.4); `discount_20` in about 3 % of decisions, a voucher in about 20 %,
  worth 5 + 10 x basket_value euros (about 13 euros). True value about 0.514.
- `candidate-capped.json` (42): knows the law and barely holds back on `discount_20`, which does
  convert better: about 30 % of decisions. Better in reward (about 0.557); a 5 % share cap must
  intervene on about a quarter of its decisions.
- `candidate-reviewed.json` (42): knows the law and proposes `refund_full` (which the incumbent
  cannot pick) in about 20 % of decisions, nearly always to units too little loyal for a refund to
  pay (`simulator.world.refund_justified`): reviewers reject about 95 %. Served with the review
  guardrail (the incumbent decides instead) it is still better than the incumbent.
- `candidate-regional.json` (42): knows the law, except that in `ap-south-1` it believes
  `discount_10` wins and free shipping fails (its `region_ap` weights of both are off by 2): about
  1.3 % better on average, about 14 % worse in ap-south-1. Only a per-segment test sees it.
- `candidate-overspend.json` (42): the incumbent's choices, with the vouchers of a generous
  campaign: 20 + 40 x basket_value euros (about 4 times as much). Conversion rises a little
  (about 0.534, +3.9 %), spend about 4 times (50 euros a voucher, not 13).

The files in `simulator/artifacts/` are this module's output, checked by a unit test; regenerate
them with `python -m simulator make-artifacts` after changing the world.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

import numpy as np

from simulator.policy import ActionParameter, SoftmaxPolicy
from simulator.world import (
    ACTIONS,
    AMOUNT_FIELD,
    BLOCKED_ACTION,
    CAPPED_ACTION,
    COEFFICIENTS,
    FEATURES,
    GUARDRAIL_COEFFICIENTS,
    GUARDRAIL_INTERCEPTS,
    INTERCEPTS,
    REVIEWED_ACTION,
    VOUCHER_ACTION,
    WORLD_ACTIONS,
    voucher_lift,
)

__all__ = [
    "ARTIFACTS_DIR",
    "ARTIFACT_FILES",
    "GUARDRAIL_ARTIFACT_FILES",
    "load_artifact",
    "make_artifacts",
    "make_guardrail_artifacts",
    "render",
    "write_artifacts",
]

ARTIFACTS_DIR: Final = Path(__file__).resolve().parent / "artifacts"
"""Where the committed artifacts live (the demo's policy servers serve these files)."""
ARTIFACT_FILES: Final = (
    "incumbent.json",
    "candidate.json",
    "candidate-violating.json",
    "candidate-broken.json",
    "candidate-drifting.json",
)
"""The first scenarios' artifacts (offers only, no parameters)."""
GUARDRAIL_ARTIFACT_FILES: Final = (
    "incumbent-guardrails.json",
    "candidate-capped.json",
    "candidate-reviewed.json",
    "candidate-regional.json",
    "candidate-overspend.json",
)
"""The guardrail scenarios' artifacts: their incumbent, then one candidate per scenario."""

POLICY_NAME: Final = "offers"
NEVER: Final = -30.0
"""The blocked action's bias in policies that must never pick it."""
INCUMBENT_TEMPERATURE: Final = 0.35
INCUMBENT_RECENCY_WEIGHT: Final = 0.5
"""The share of recency's real effect the stale incumbent model knows."""
CANDIDATE_TEMPERATURE: Final = 0.25
VIOLATION_PENALTY: Final = 1.6
"""Subtracted from `discount_90`'s modelled logit: leaves it about 5 % of decisions."""
DRIFT_ACTION: Final = "free_shipping"
DRIFT_BOOST: Final = 0.8
"""Added to the drifting candidate's `free_shipping` logit."""


GUARDRAIL_INCUMBENT_RECENCY_WEIGHT: Final = 0.3
"""The share of recency's real effect the guardrail incumbent knows (incumbent.json: half)."""
GUARDRAIL_INCUMBENT_TEMPERATURE: Final = 0.4
USUAL_AMOUNT: Final = (5.0, 10.0)
"""A voucher's euros: intercept, and euros per hundred euros of basket (the incumbent's)."""
GENEROUS_AMOUNT: Final = (20.0, 40.0)
"""The overspending candidate's vouchers: about four times the usual."""
TYPICAL_BASKET: Final = 0.6
"""The basket at which policies model a voucher's lift (the median basket is about 0.6).

Every policy models the lift of the usual amount, the one its training data saw: the generous
candidate chooses exactly as the incumbent does and differs only in what its vouchers are worth."""
CAP_RESTRAINT: Final = 0.88
"""Subtracted from `discount_20`'s modelled logit by policies that use it sparingly (about 3 %)."""
CAPPED_RESTRAINT: Final = 0.14
"""The capped candidate's much smaller restraint: about 30 % of decisions."""
CANDIDATE_VOUCHER_RESTRAINT: Final = -0.28
INCUMBENT_VOUCHER_RESTRAINT: Final = -0.09
CAPPED_VOUCHER_RESTRAINT: Final = -0.34
"""Voucher restraints (negative: a preference) that give vouchers about 20 % of decisions."""
REFUND_RESTRAINT: Final = 0.76
"""The reviewed candidate's restraint on `refund_full`: about 20 % of decisions."""
REGION_MISTAKE: Final = MappingProxyType({"discount_10": 2.0, "free_shipping": -2.0})
"""Added to the regional candidate's `region_ap` weights: its belief, wrong in ap-south-1."""


def _policy(
    version: str,
    weights: np.ndarray,
    bias: np.ndarray,
    temperature: float,
    actions: tuple[str, ...] = ACTIONS,
    parameters: tuple[ActionParameter, ...] = (),
) -> SoftmaxPolicy:
    return SoftmaxPolicy(
        name=POLICY_NAME,
        version=version,
        actions=actions,
        features=FEATURES,
        weights=tuple(tuple(round(float(w), 6) for w in row) for row in weights),
        bias=tuple(round(float(b), 6) for b in bias),
        temperature=temperature,
        parameters=parameters,
    )


def make_artifacts() -> dict[str, SoftmaxPolicy]:
    """The demo policies, by file name (in ARTIFACT_FILES order)."""
    blocked = ACTIONS.index(BLOCKED_ACTION)

    stale = COEFFICIENTS.copy()
    stale[:, FEATURES.index("recency")] *= INCUMBENT_RECENCY_WEIGHT
    stale[blocked] = 0.0
    incumbent_bias = INTERCEPTS.copy()
    incumbent_bias[blocked] = NEVER

    known = COEFFICIENTS.copy()
    known[blocked] = 0.0
    candidate_bias = INTERCEPTS.copy()
    candidate_bias[blocked] = NEVER

    tempted_bias = INTERCEPTS.copy()
    tempted_bias[blocked] -= VIOLATION_PENALTY

    inverted = -COEFFICIENTS
    inverted[blocked] = 0.0
    boosted_bias = candidate_bias.copy()
    boosted_bias[ACTIONS.index(DRIFT_ACTION)] += DRIFT_BOOST
    return {
        "incumbent.json": _policy("41", stale, incumbent_bias, INCUMBENT_TEMPERATURE),
        "candidate.json": _policy("42", known, candidate_bias, CANDIDATE_TEMPERATURE),
        "candidate-violating.json": _policy(
            "42", COEFFICIENTS.copy(), tempted_bias, CANDIDATE_TEMPERATURE
        ),
        "candidate-broken.json": _policy("42", inverted, candidate_bias, CANDIDATE_TEMPERATURE),
        "candidate-drifting.json": _policy("42", known.copy(), boosted_bias, CANDIDATE_TEMPERATURE),
    }


def _amount(intercept: float, per_basket: float) -> ActionParameter:
    return ActionParameter(VOUCHER_ACTION, AMOUNT_FIELD, intercept, (("basket_value", per_basket),))


def _guardrail_policy(
    version: str,
    actions: tuple[str, ...],
    restraints: Mapping[str, float],
    amount: tuple[float, float],
    *,
    knows_law: bool,
    region_mistake: Mapping[str, float] | None = None,
) -> SoftmaxPolicy:
    """A policy over `actions` whose logits model the law, less each action's restraint.

    A policy that knows the law acts on it as greedily as the first candidate; one that does not
    is the guardrail incumbent's staler, less greedy model. Its voucher's modelled logit includes
    the lift of the usual amount at a typical basket.
    """
    law_weights = np.vstack([COEFFICIENTS, GUARDRAIL_COEFFICIENTS])
    law_bias = np.concatenate([INTERCEPTS, GUARDRAIL_INTERCEPTS])
    rows = [WORLD_ACTIONS.index(action) for action in actions]
    weights, bias = law_weights[rows].copy(), law_bias[rows].copy()
    if not knows_law:
        weights[:, FEATURES.index("recency")] *= GUARDRAIL_INCUMBENT_RECENCY_WEIGHT
    for index, action in enumerate(actions):
        bias[index] -= restraints.get(action, 0.0)
        if action == VOUCHER_ACTION:
            bias[index] += float(voucher_lift(USUAL_AMOUNT[0] + USUAL_AMOUNT[1] * TYPICAL_BASKET))
        if action == BLOCKED_ACTION:
            weights[index], bias[index] = 0.0, NEVER
        weights[index, FEATURES.index("region_ap")] += (region_mistake or {}).get(action, 0.0)
    temperature = CANDIDATE_TEMPERATURE if knows_law else GUARDRAIL_INCUMBENT_TEMPERATURE
    return _policy(version, weights, bias, temperature, actions, (_amount(*amount),))


def make_guardrail_artifacts() -> dict[str, SoftmaxPolicy]:
    """The guardrail scenarios' policies, by file name (in GUARDRAIL_ARTIFACT_FILES order)."""
    usual = tuple(action for action in WORLD_ACTIONS if action != REVIEWED_ACTION)
    sparing = {CAPPED_ACTION: CAP_RESTRAINT, VOUCHER_ACTION: INCUMBENT_VOUCHER_RESTRAINT}
    knowing = {CAPPED_ACTION: CAP_RESTRAINT, VOUCHER_ACTION: CANDIDATE_VOUCHER_RESTRAINT}
    capped = {CAPPED_ACTION: CAPPED_RESTRAINT, VOUCHER_ACTION: CAPPED_VOUCHER_RESTRAINT}
    refunding = {**knowing, REVIEWED_ACTION: REFUND_RESTRAINT}
    return {
        "incumbent-guardrails.json": _guardrail_policy(
            "41", usual, sparing, USUAL_AMOUNT, knows_law=False
        ),
        "candidate-capped.json": _guardrail_policy(
            "42", usual, capped, USUAL_AMOUNT, knows_law=True
        ),
        "candidate-reviewed.json": _guardrail_policy(
            "42", WORLD_ACTIONS, refunding, USUAL_AMOUNT, knows_law=True
        ),
        "candidate-regional.json": _guardrail_policy(
            "42", usual, knowing, USUAL_AMOUNT, knows_law=True, region_mistake=REGION_MISTAKE
        ),
        "candidate-overspend.json": _guardrail_policy(
            "42", usual, sparing, GENEROUS_AMOUNT, knows_law=False
        ),
    }


def render(policy: SoftmaxPolicy) -> str:
    """The artifact file's exact text: JSON with one key, and one weight row, per line."""
    fields = []
    for key, value in policy.to_document().items():
        if key == "weights":
            rows = ",\n".join(f"    {json.dumps(row)}" for row in value)
            fields.append(f'  "weights": [\n{rows}\n  ]')
        elif key == "parameters":
            actions = ",\n".join(
                f"    {json.dumps(action)}: {json.dumps(per_action)}"
                for action, per_action in value.items()
            )
            fields.append(f'  "parameters": {{\n{actions}\n  }}')
        else:
            fields.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(fields) + "\n}\n"


def write_artifacts(directory: Path = ARTIFACTS_DIR) -> list[Path]:
    """Write every artifact into `directory` (created if missing); return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, policy in {**make_artifacts(), **make_guardrail_artifacts()}.items():
        path = directory / file_name
        path.write_text(render(policy), encoding="utf-8")
        written.append(path)
    return written


def load_artifact(file_name: str, directory: Path = ARTIFACTS_DIR) -> SoftmaxPolicy:
    """A committed artifact by file name, e.g. a scenario's `candidate_artifact`."""
    return SoftmaxPolicy.load(directory / file_name)
