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
The files in `simulator/artifacts/` are this module's output, checked by a unit test; regenerate
them with `python -m simulator make-artifacts` after changing the world.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

import numpy as np

from simulator.policy import SoftmaxPolicy
from simulator.world import ACTIONS, BLOCKED_ACTION, COEFFICIENTS, FEATURES, INTERCEPTS

__all__ = [
    "ARTIFACTS_DIR",
    "ARTIFACT_FILES",
    "load_artifact",
    "make_artifacts",
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


def _policy(
    version: str, weights: np.ndarray, bias: np.ndarray, temperature: float
) -> SoftmaxPolicy:
    return SoftmaxPolicy(
        name=POLICY_NAME,
        version=version,
        actions=ACTIONS,
        features=FEATURES,
        weights=tuple(tuple(round(float(w), 6) for w in row) for row in weights),
        bias=tuple(round(float(b), 6) for b in bias),
        temperature=temperature,
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


def render(policy: SoftmaxPolicy) -> str:
    """The artifact file's exact text: JSON with one key, and one weight row, per line."""
    fields = []
    for key, value in policy.to_document().items():
        if key == "weights":
            rows = ",\n".join(f"    {json.dumps(row)}" for row in value)
            fields.append(f'  "weights": [\n{rows}\n  ]')
        else:
            fields.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(fields) + "\n}\n"


def write_artifacts(directory: Path = ARTIFACTS_DIR) -> list[Path]:
    """Write every artifact into `directory` (created if missing); return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, policy in make_artifacts().items():
        path = directory / file_name
        path.write_text(render(policy), encoding="utf-8")
        written.append(path)
    return written


def load_artifact(file_name: str, directory: Path = ARTIFACTS_DIR) -> SoftmaxPolicy:
    """A committed artifact by file name, e.g. a scenario's `candidate_artifact`."""
    return SoftmaxPolicy.load(directory / file_name)
