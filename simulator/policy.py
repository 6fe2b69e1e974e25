"""Policies the world can value: artifacts as the gateway reads them, and compositions of them.

`SoftmaxPolicy` is the artifact format the reference gateway serves (`gateway/policies.py`):
probabilities = softmax((W x + b) / T) over the artifact's features, extra context keys ignored.
The simulator keeps its own vectorised reading of it, so that true values over hundreds of
thousands of contexts take milliseconds and the simulator does not depend on the gateway's
internals; a unit test checks both readings agree.

An artifact may also give actions numeric parameters (`ActionParameter`: a voucher's amount),
each linear in the context, written under the artifact's optional `parameters` key exactly as the
gateway's policy server reads and answers them (`params`).

`Guarded` is what a gateway with guardrails really serves, and `EpsilonMixture` is an exploring
logging policy with known propensities. Both, and the `Policy` protocol, work in the columns of
the four offers (`ACTIONS`), as the offline log does; `SoftmaxPolicy.world_probabilities` covers
the guardrail actions too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulator.world import ACTIONS, FEATURES, WORLD_ACTIONS, Contexts, FloatArray, Policy

__all__ = ["ActionParameter", "EpsilonMixture", "Guarded", "SoftmaxPolicy"]


@dataclass(frozen=True)
class ActionParameter:
    """One numeric parameter of one action: intercept + sum(weight x feature) in each context.

    Linear, like the policy's logits, so the gateway's policy server computes it from the same
    context and the simulator can value a policy's parameters over many contexts at once.

    Attributes:
        action: The action the parameter belongs to.
        field: The parameter's name (e.g. `amount`).
        intercept: The value when every weighted feature is 0 (the whole value without weights).
        weights: (feature, weight) pairs; features must be the policy's own.
    """

    action: str
    field: str
    intercept: float
    weights: tuple[tuple[str, float], ...] = ()

    def value(self, context: Mapping[str, float]) -> float:
        """The parameter in one context (KeyError names a missing feature)."""
        return self.intercept + sum(weight * float(context[f]) for f, weight in self.weights)

    def values(self, contexts: Contexts) -> FloatArray:
        """The parameter in every context."""
        total = np.full(len(contexts), self.intercept, dtype=np.float64)
        for feature, weight in self.weights:
            total += weight * contexts.column(feature)
        return total

    def to_document(self) -> dict[str, Any]:
        """The artifact's `{"intercept", "weights": {feature: weight}}` (no weights: constant)."""
        document: dict[str, Any] = {"intercept": self.intercept}
        if self.weights:
            document["weights"] = dict(self.weights)
        return document


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
        parameters: The actions' numeric parameters; empty for a policy without any (its
            artifact then has no `parameters` key, as before parameters existed).
    """

    name: str
    version: str
    actions: tuple[str, ...]
    features: tuple[str, ...]
    weights: tuple[tuple[float, ...], ...]
    bias: tuple[float, ...]
    temperature: float = 1.0
    parameters: tuple[ActionParameter, ...] = ()

    def __post_init__(self) -> None:
        unknown = [a for a in self.actions if a not in WORLD_ACTIONS]
        unknown += [f for f in self.features if f not in FEATURES]
        if unknown:
            raise ValueError(f"{self.name}: not in the world: {', '.join(unknown)}")
        if len(self.weights) != len(self.actions) or len(self.bias) != len(self.actions):
            raise ValueError(f"{self.name}: weights and bias need one entry per action")
        if any(len(row) != len(self.features) for row in self.weights):
            raise ValueError(f"{self.name}: every weight row needs one weight per feature")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"{self.name}: temperature must be a positive number")
        for parameter in self.parameters:
            if parameter.action not in self.actions:
                raise ValueError(f"{self.name}: parameter of {parameter.action}, not an action")
            if any(feature not in self.features for feature, _ in parameter.weights):
                raise ValueError(f"{self.name}: {parameter.field} weighs a feature it lacks")
        keys = [(parameter.action, parameter.field) for parameter in self.parameters]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{self.name}: a parameter is given twice")

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
            parameters=tuple(
                ActionParameter(
                    action=str(action),
                    field=str(field),
                    intercept=float(spec["intercept"]),
                    weights=tuple(
                        (str(feature), float(weight))
                        for feature, weight in spec.get("weights", {}).items()
                    ),
                )
                for action, fields in document.get("parameters", {}).items()
                for field, spec in fields.items()
            ),
        )

    @classmethod
    def load(cls, path: Path) -> SoftmaxPolicy:
        """Read an artifact file."""
        return cls.from_document(json.loads(path.read_text(encoding="utf-8")))

    def to_document(self) -> dict[str, Any]:
        """The artifact's JSON document, as the gateway's policy server reads it.

        `parameters` ({action: {field: {"intercept", "weights"}}}) is written only when the
        policy has parameters, so older artifacts stay byte for byte what they were.
        """
        document: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "actions": list(self.actions),
            "features": list(self.features),
            "weights": [list(row) for row in self.weights],
            "bias": list(self.bias),
            "temperature": self.temperature,
        }
        if self.parameters:
            nested: dict[str, dict[str, Any]] = {}
            for parameter in self.parameters:
                nested.setdefault(parameter.action, {})[parameter.field] = parameter.to_document()
            document["parameters"] = nested
        return document

    def params(self, action: str, context: Mapping[str, float]) -> dict[str, float]:
        """The parameters of `action` in one context, as the policy server answers `params`."""
        return {p.field: p.value(context) for p in self.parameters if p.action == action}

    def parameter_values(self, contexts: Contexts, action: str, field: str) -> FloatArray:
        """One parameter of one action in every context; zeros when the policy lacks it."""
        for parameter in self.parameters:
            if (parameter.action, parameter.field) == (action, field):
                return parameter.values(contexts)
        return np.zeros(len(contexts), dtype=np.float64)

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
        """Probabilities in world ACTIONS order (actions the policy lacks get 0).

        Raises:
            ValueError: The policy has guardrail actions, which these columns cannot hold (use
                `world_probabilities`); dropping their mass silently would misvalue it.
        """
        extra = [action for action in self.actions if action not in ACTIONS]
        if extra:
            raise ValueError(
                f"{self.name} {self.version} has {', '.join(extra)}, beyond the offers "
                f"({', '.join(ACTIONS)}); use world_probabilities"
            )
        return _to_world_columns(self._own_probabilities(contexts), self.actions)

    def world_probabilities(self, contexts: Contexts) -> FloatArray:
        """Probabilities in WORLD_ACTIONS order, guardrail actions included (absent ones 0)."""
        return _to_world_columns(self._own_probabilities(contexts), self.actions, WORLD_ACTIONS)

    def _own_probabilities(self, contexts: Contexts) -> FloatArray:
        logits = self.logits(contexts)
        exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
        own: FloatArray = exponentials / exponentials.sum(axis=1, keepdims=True)
        return own

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


def _to_world_columns(
    values: FloatArray, actions: Sequence[str], columns: Sequence[str] = ACTIONS
) -> FloatArray:
    out = np.zeros((values.shape[0], len(columns)), dtype=np.float64)
    out[:, [columns.index(action) for action in actions]] = values
    return out
