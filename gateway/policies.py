"""Policy artifacts and the linear softmax policy they describe.

An artifact is a small JSON file, so the demo and the tests can ship real, different policy
versions without a model registry:

    {"name": "offers", "version": "42", "actions": ["none", "discount_10"],
     "features": ["recency", "basket"], "weights": [[0.1, 0.0], [0.5, -0.2]],
     "bias": [0.0, 0.1], "temperature": 1.0}

The probability of action `a` in context `x` is softmax((W x + b) / T)[a]: one weight row and one
bias per action, one weight per feature. The artifact is validated when loaded so that a wrong
shape fails at start-up with the field named, never on the first request.

An action may carry numeric parameters (a discount's amount), each linear in the features:

    "parameters": {"discount": {"amount": {"intercept": 20.0, "weights": {"basket": 0.5}}}}

value = intercept + sum(weights[f] * context[f]) (no `weights`: a constant). Only the listed
actions carry parameters; the policy server answers them as `params` with the action, which is
what the router's value caps and spend metrics read.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import operator
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, cast

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.validation import describe

__all__ = [
    "MAX_PARAMETERS",
    "ArtifactError",
    "ContextError",
    "LinearSoftmaxPolicy",
    "Parameter",
    "PolicyArtifact",
    "load_policy",
]

_Name = Annotated[str, Field(min_length=1)]
_Finite = Annotated[float, Field(allow_inf_nan=False)]

MAX_PARAMETERS = 16
"""Parameters one action may carry (the router refuses answers with more)."""
_PARAMETER_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,63}")


class ArtifactError(ValueError):
    """A policy artifact file cannot be read or does not describe a valid policy."""


class ContextError(ValueError):
    """A decision context cannot be fed to the policy (a missing or non-numeric feature)."""


class Parameter(BaseModel):
    """One numeric parameter of an action, linear in the features (constant without weights)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    intercept: _Finite
    weights: dict[str, _Finite] = Field(default_factory=dict)


class PolicyArtifact(BaseModel):
    """The artifact's JSON document, checked for consistent shapes.

    `temperature` defaults to 1 (plain softmax); lower is greedier, higher more exploratory.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: _Name
    version: _Name
    actions: Annotated[list[_Name], Field(min_length=1)]
    features: list[_Name]
    weights: list[list[float]]
    bias: list[float]
    temperature: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0
    parameters: dict[str, dict[str, Parameter]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_parameters(self) -> PolicyArtifact:
        actions, features = set(self.actions), set(self.features)
        for action, fields in self.parameters.items():
            if action not in actions:
                raise ValueError(
                    f"parameters names the action {action!r}, which is not one of `actions`; "
                    "give parameters only to the policy's own actions"
                )
            if len(fields) > MAX_PARAMETERS:
                raise ValueError(
                    f"parameters.{action} has {len(fields)} parameters; at most "
                    f"{MAX_PARAMETERS} per action"
                )
            for field, parameter in fields.items():
                if not _PARAMETER_NAME.fullmatch(field):
                    raise ValueError(
                        f"parameters.{action}: {field!r} is not a parameter name; write letters, "
                        "digits and _ (not starting with a digit, at most 64), like `amount`"
                    )
                unknown = sorted(set(parameter.weights) - features)
                if unknown:
                    raise ValueError(
                        f"parameters.{action}.{field}.weights names {', '.join(unknown)}, not "
                        "among `features`; weigh only the policy's features"
                    )
        return self

    @model_validator(mode="after")
    def _check_shapes(self) -> PolicyArtifact:
        _require_unique("actions", self.actions)
        _require_unique("features", self.features)
        actions, features = len(self.actions), len(self.features)
        if len(self.weights) != actions:
            raise ValueError(
                f"weights has {len(self.weights)} rows but there are {actions} actions; "
                "write one row of weights per action, in the order of `actions`"
            )
        for index, row in enumerate(self.weights):
            if len(row) != features:
                raise ValueError(
                    f"weights[{index}] (action {self.actions[index]!r}) has {len(row)} values "
                    f"but there are {features} features; write one weight per feature"
                )
        if len(self.bias) != actions:
            raise ValueError(
                f"bias has {len(self.bias)} values but there are {actions} actions; "
                "write one bias per action"
            )
        numbers = [*self.bias, *(w for row in self.weights for w in row)]
        if not all(math.isfinite(n) for n in numbers):
            raise ValueError("weights and bias must be finite numbers (no NaN or infinity)")
        return self


def _require_unique(field: str, names: list[str]) -> None:
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise ValueError(f"{field} must be unique; repeated: {', '.join(repeated)}")


class LinearSoftmaxPolicy:
    """A stochastic policy: softmax((W x + b) / T) over the artifact's actions.

    Stochastic on purpose: logged probabilities make off-policy evaluation possible, and two
    versions that disagree only sometimes make shadow agreement a meaningful number.
    """

    def __init__(self, artifact: PolicyArtifact) -> None:
        self.artifact = artifact
        self._features = tuple(artifact.features)
        self._actions = tuple(artifact.actions)
        shape = (len(artifact.actions), len(artifact.features))
        self._weights = np.asarray(artifact.weights, dtype=np.float64).reshape(shape)
        self._bias = np.asarray(artifact.bias, dtype=np.float64)
        self._inverse_temperature = 1.0 / artifact.temperature
        # The same numbers as Python floats, for one context at a time (`_weights_of`).
        self._rows = tuple(
            (tuple(row), bias) for row, bias in zip(artifact.weights, artifact.bias, strict=True)
        )
        self._parameters = {
            action: tuple(
                (field, p.intercept, tuple(p.weights.items())) for field, p in fields.items()
            )
            for action, fields in artifact.parameters.items()
            if fields
        }

    @property
    def version(self) -> str:
        """The version label routes and metrics know this policy by."""
        return self.artifact.version

    @property
    def actions(self) -> tuple[str, ...]:
        """Every action the policy can take, in artifact order."""
        return self._actions

    def feature_vector(self, context: Mapping[str, object]) -> npt.NDArray[np.float64]:
        """The artifact's features read from a context; keys it does not use are ignored.

        Raises:
            ContextError: A feature is missing or is not a finite number; the message names it.
        """
        return np.array(self._feature_values(context), dtype=np.float64)

    def _feature_values(self, context: Mapping[str, object]) -> list[float]:
        """`feature_vector` as a list of Python floats (what one decision computes with)."""
        # The common case first, at half the cost: every feature present, a float, and finite
        # (a non-finite value, or an overflowing sum, makes the sum non-finite); anything else
        # takes the checking path below, which accepts or names the problem.
        try:
            values = [context[name] for name in self._features]
        except KeyError:
            return self._checked_feature_values(context)
        for value in values:
            if type(value) is not float:
                return self._checked_feature_values(context)
        floats = cast("list[float]", values)  # floats, checked just above
        if not math.isfinite(sum(floats)):
            return self._checked_feature_values(context)
        return floats

    def _checked_feature_values(self, context: Mapping[str, object]) -> list[float]:
        """`_feature_values`, checking each feature in turn (ints, and the errors' messages)."""
        missing = [name for name in self._features if name not in context]
        if missing:
            raise ContextError(
                f"the context lacks feature(s) {', '.join(missing)}; policy "
                f"{self.artifact.name} {self.version} needs {', '.join(self._features)}"
            )
        values = []
        for name in self._features:
            value = context[name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ContextError(f"feature {name} must be a number, not {value!r}")
            if not math.isfinite(value):
                raise ContextError(f"feature {name} must be finite, not {value!r}")
            values.append(float(value))
        return values

    def probabilities(self, context: Mapping[str, object]) -> npt.NDArray[np.float64]:
        """The probability of each action (artifact order) in this context; they sum to 1.

        Raises:
            ContextError: The context cannot be fed to the policy.
        """
        # (W x + b) / T, then its softmax, computed in place: no array allocated per step
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused below
            result: npt.NDArray[np.float64] = self._weights @ self.feature_vector(context)
            result += self._bias
            result *= self._inverse_temperature
        if not np.isfinite(result).all():
            raise self._overflow()
        result -= result.max()  # shifted: no overflow for large logits
        np.exp(result, out=result)
        result /= result.sum()
        return result

    def batch_probabilities(
        self, contexts: Sequence[Mapping[str, object]]
    ) -> npt.NDArray[np.float64]:
        """The probability of each action (columns in artifact order) in each of many contexts.

        One matrix product and one softmax for the whole batch, so that scoring a logged
        decision log (offline evaluation) costs a request per thousands of rows, not per row.

        Raises:
            ContextError: A context cannot be fed to the policy; the message starts with its
                index, `contexts[i]: ...`.
        """
        features = np.empty((len(contexts), len(self._features)), dtype=np.float64)
        for index, context in enumerate(contexts):
            try:
                features[index] = self.feature_vector(context)
            except ContextError as exc:
                raise ContextError(f"contexts[{index}]: {exc}") from exc
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused below
            logits = (features @ self._weights.T + self._bias) * self._inverse_temperature
        finite = np.isfinite(logits).all(axis=1)
        if not finite.all():
            index = int(np.argmin(finite))
            raise ContextError(f"contexts[{index}]: {self._overflow()}")
        exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
        result: npt.NDArray[np.float64] = exponentials / exponentials.sum(axis=1, keepdims=True)
        return result

    def act(
        self, context: Mapping[str, object], rng: np.random.Generator
    ) -> tuple[str, dict[str, float]]:
        """Sample one action for this context.

        Args:
            context: Feature values by name; extra keys are ignored.
            rng: The sampler's random source (seeded by the caller for reproducible runs).

        Returns:
            The sampled action and the probability of every action, by action name.

        Raises:
            ContextError: The context cannot be fed to the policy.
        """
        weights, cumulative = self._weights_of(context)
        action = self._actions[self._draw(cumulative, rng)]
        total = cumulative[-1]
        actions = self._actions
        return action, {name: weight / total for name, weight in zip(actions, weights, strict=True)}

    def choose(self, context: Mapping[str, object], rng: np.random.Generator) -> str:
        """Sample one action, as `act` does (one draw of `rng`, the same action for it).

        For a caller that serves the action without the probabilities (the gateway evaluating
        an artifact in-process), so a decision costs no dictionary it would throw away; one
        sampler code path keeps it answering exactly what the policy server answers.

        Raises:
            ContextError: The context cannot be fed to the policy.
        """
        return self._actions[self._draw(self._weights_of(context)[1], rng)]

    def _weights_of(self, context: Mapping[str, object]) -> tuple[list[float], list[float]]:
        """The unnormalised softmax weights of one context's actions, and their running sums.

        Plain Python floats, not numpy: for a handful of actions and features, each numpy
        call costs more than its arithmetic (`probabilities` took 4.7 us a context, this
        about a third of it). `act` and `choose` share it, so the policy server and a
        gateway evaluating the artifact in-process draw the same action from the same draw;
        the numbers agree with `probabilities` to the last bit or two (another order of the
        same sums).
        """
        values = self._feature_values(context)
        scale = self._inverse_temperature
        scores = [(sum(map(operator.mul, row, values)) + bias) * scale for row, bias in self._rows]
        if not all(map(math.isfinite, scores)):
            raise self._overflow()
        top = max(scores)  # shifted: no overflow for large scores
        weights = [math.exp(score - top) for score in scores]
        return weights, list(itertools.accumulate(weights))

    def _overflow(self) -> ContextError:
        """The error of a context whose features are each finite but whose scores are not.

        Features near the largest float (1e308) overflow the weighted sums; softmax over an
        infinite score has no probabilities (NaN), and an action drawn from them would be served
        as if the policy had chosen it.
        """
        return ContextError(
            f"the features are too large for policy {self.artifact.name} {self.version}: its "
            "action scores overflow (not finite numbers); send features on the scale the "
            "policy was trained on"
        )

    def _draw(self, cumulative: list[float], rng: np.random.Generator) -> int:
        """The index of the action one uniform draw of `rng` picks, by inverse CDF."""
        index = bisect.bisect_right(cumulative, rng.random() * cumulative[-1])
        return min(index, len(self._actions) - 1)

    def parameters(self, action: str, context: Mapping[str, object]) -> dict[str, float] | None:
        """The numeric parameters of `action` in this context, or None when it carries none.

        Raises:
            ContextError: A weighted feature is missing or not a finite number, or a value
                overflows to infinity.
        """
        fields = self._parameters.get(action)
        if fields is None:
            return None
        values: dict[str, float] = {}
        for field, intercept, weights in fields:
            value = intercept
            for feature, weight in weights:
                value += weight * _feature(context, feature)
            if not math.isfinite(value):
                raise ContextError(f"parameter {field} of {action} is not finite in this context")
            values[field] = value
        return values


def _feature(context: Mapping[str, object], name: str) -> float:
    """One feature of a context as a float, or a ContextError naming it."""
    if name not in context:
        raise ContextError(f"the context lacks feature {name}")
    value = context[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ContextError(f"feature {name} must be a number, not {value!r}")
    if not math.isfinite(value):
        raise ContextError(f"feature {name} must be finite, not {value!r}")
    return float(value)


def load_policy(path: Path) -> LinearSoftmaxPolicy:
    """Read and validate an artifact file.

    Raises:
        ArtifactError: The file is unreadable, not JSON, or not a valid artifact; the message
            names the file and every problem with its field path.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ArtifactError(f"cannot read policy artifact {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ArtifactError(f"policy artifact {path} is not JSON: {exc}") from exc
    try:
        return LinearSoftmaxPolicy(PolicyArtifact.model_validate(document))
    except ValidationError as exc:
        raise ArtifactError(f"policy artifact {path} is invalid: {describe(exc)}") from exc
