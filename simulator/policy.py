"""Policies the world can value: artifacts as the gateway reads them, and compositions of them.

`SoftmaxPolicy` is the artifact format the reference gateway serves (`gateway/policies.py`):
probabilities = softmax((W x + b) / T) over the artifact's features, extra context keys ignored.
The simulator keeps its own vectorised reading of it, so that true values over hundreds of
thousands of contexts take milliseconds and the simulator does not depend on the gateway's
internals; a unit test checks both readings agree.

`Guarded` is what a gateway with guardrails really serves, and `EpsilonMixture` is an exploring
logging policy with known propensities.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulator.world import ACTIONS, FEATURES, Contexts, FloatArray, Policy

__all__ = ["EpsilonMixture", "Guarded", "SoftmaxPolicy"]


@dataclass(frozen=True)
class SoftmaxPolicy:
    """A linear softmax policy artifact: one weight row and one bias per action.

    Attributes:
        name: The artifact's name.
        version: The version routes and metrics know the policy by.
        actions: The policy's actions; each must be a world action.
        features: The context features it reads; each must be a world feature.
        weights: One row per action, one weight per feature.
        bias: One per action.
        temperature: Divides the logits; lower is greedier.
    """

    name: str
    version: str
    actions: tuple[str, ...]
    features: tuple[str, ...]
    weights: tuple[tuple[float, ...], ...]
    bias: tuple[float, ...]
    temperature: float = 1.0

    def __post_init__(self) -> None:
        unknown = [a for a in self.actions if a not in ACTIONS]
        unknown += [f for f in self.features if f not in FEATURES]
        if unknown:
            raise ValueError(f"{self.name}: not in the world: {', '.join(unknown)}")
        if len(self.weights) != len(self.actions) or len(self.bias) != len(self.actions):
            raise ValueError(f"{self.name}: weights and bias need one entry per action")
        if any(len(row) != len(self.features) for row in self.weights):
            raise ValueError(f"{self.name}: every weight row needs one weight per feature")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"{self.name}: temperature must be a positive number")

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> SoftmaxPolicy:
        """A policy from an artifact's parsed JSON (ValueError/KeyError when malformed)."""
        return cls(
            name=str(document["name"]),
            version=str(document["version"]),
            actions=tuple(document["actions"]),
            features=tuple(document["features"]),
            weights=tuple(tuple(float(w) for w in row) for row in document["weights"]),
            bias=tuple(float(b) for b in document["bias"]),
            temperature=float(document.get("temperature", 1.0)),
        )

    @classmethod
    def load(cls, path: Path) -> SoftmaxPolicy:
        """Read an artifact file."""
        return cls.from_document(json.loads(path.read_text(encoding="utf-8")))

    def to_document(self) -> dict[str, Any]:
        """The artifact's JSON document, as the gateway's policy server reads it."""
        return {
            "name": self.name,
            "version": self.version,
            "actions": list(self.actions),
            "features": list(self.features),
            "weights": [list(row) for row in self.weights],
            "bias": list(self.bias),
            "temperature": self.temperature,
        }

    def logits(self, contexts: Contexts) -> FloatArray:
        """(W x + b) / T for every context; columns follow `self.actions`."""
        columns = [FEATURES.index(name) for name in self.features]
        weights = np.asarray(self.weights, dtype=np.float64).reshape(
            len(self.actions), len(self.features)
        )
        logits: FloatArray = (contexts.values[:, columns] @ weights.T + np.asarray(self.bias)) / (
            self.temperature
        )
        return logits

    def action_probabilities(self, contexts: Contexts) -> FloatArray:
        """Probabilities in world ACTIONS order (actions the policy lacks get 0)."""
        logits = self.logits(contexts)
        exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
        own = exponentials / exponentials.sum(axis=1, keepdims=True)
        return _to_world_columns(own, self.actions)

    def probabilities(self, context: Mapping[str, float]) -> dict[str, float]:
        """Probabilities of the policy's actions in one context (extra keys ignored).

        Raises:
            KeyError: The context lacks a feature the policy reads.
        """
        x = np.array([context[name] for name in self.features], dtype=np.float64)
        weights = np.asarray(self.weights, dtype=np.float64).reshape(
            len(self.actions), len(self.features)
        )
        logits = (weights @ x + np.asarray(self.bias)) / self.temperature
        exponentials = np.exp(logits - logits.max())
        values = exponentials / exponentials.sum()
        return {action: float(p) for action, p in zip(self.actions, values, strict=True)}


@dataclass(frozen=True)
class Guarded:
    """A candidate behind guardrails: when it picks a blocked action, the fallback's is served.

    This is how the reference gateway serves the candidate arm, so its true value is what the
    candidate arm really earns.

    Attributes:
        policy: The guarded policy (the candidate).
        fallback: Serves instead of a blocked pick (the incumbent).
        blocked: Actions the guarded policy must never serve.
    """

    policy: Policy
    fallback: Policy
    blocked: frozenset[str]

    def action_probabilities(self, contexts: Contexts) -> FloatArray:
        """P(a) = P_policy(a) for allowed a, plus P_policy(blocked) x P_fallback(a)."""
        own = self.policy.action_probabilities(contexts)
        mask = np.array([action in self.blocked for action in ACTIONS])
        overruled = own[:, mask].sum(axis=1, keepdims=True)
        served: FloatArray = np.where(mask, 0.0, own) + overruled * (
            self.fallback.action_probabilities(contexts)
        )
        return served

    def blocked_share(self, contexts: Contexts) -> float:
        """The expected share of decisions in which the guarded policy picks a blocked action."""
        own = self.policy.action_probabilities(contexts)
        mask = np.array([action in self.blocked for action in ACTIONS])
        return float(own[:, mask].sum(axis=1).mean())


@dataclass(frozen=True)
class EpsilonMixture:
    """An exploring policy: `base` with probability 1 - epsilon, uniform over `actions` else.

    Every listed action has probability at least epsilon / len(actions) in every context, so a
    log of it supports off-policy evaluation of any policy over those actions.

    Attributes:
        base: The exploited policy.
        epsilon: The exploration share, in [0, 1].
        actions: Explored actions; default every world action.
    """

    base: Policy
    epsilon: float
    actions: Sequence[str] = ACTIONS

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon is {self.epsilon}; it must be between 0 and 1")
        if not self.actions or any(action not in ACTIONS for action in self.actions):
            raise ValueError(f"explored actions must be world actions: {', '.join(ACTIONS)}")

    def action_probabilities(self, contexts: Contexts) -> FloatArray:
        """(1 - epsilon) x base + epsilon x uniform over the explored actions."""
        uniform = np.array([action in self.actions for action in ACTIONS], dtype=np.float64)
        uniform /= uniform.sum()
        mixed: FloatArray = (1.0 - self.epsilon) * self.base.action_probabilities(
            contexts
        ) + self.epsilon * uniform
        return mixed


def _to_world_columns(values: FloatArray, actions: Sequence[str]) -> FloatArray:
    out = np.zeros((values.shape[0], len(ACTIONS)), dtype=np.float64)
    out[:, [ACTIONS.index(action) for action in actions]] = values
    return out
