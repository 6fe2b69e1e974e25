"""An offline log of the exploring incumbent, for off-policy evaluation of candidates.

Each row is one logged decision, as JSON Lines:

    {"context": {feature: value}, "segment": region, "action": str,
     "propensity": float, "reward": float}

The logging policy is the incumbent artifact (41) with epsilon-exploration over every action:
pi_b(a|x) = (1 - epsilon) pi_41(a|x) + epsilon / 4. `propensity` is pi_b(action|context) for the
action actually logged, computed from the context exactly as written (floats round-trip through
JSON), so IPS/SNIPS/DR over the log are unbiased. Every action, `discount_90` included, keeps at
least epsilon / 4 in every context: any candidate over the world's actions has support in the log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypedDict

import numpy as np

from simulator.artifacts import load_artifact
from simulator.policy import EpsilonMixture
from simulator.world import ACTIONS, World

__all__ = [
    "DEFAULT_EPSILON",
    "LogRow",
    "LogSummary",
    "generate_rows",
    "logging_policy",
    "read_log",
    "write_log",
]

DEFAULT_EPSILON: Final = 0.1


class LogRow(TypedDict):
    """One logged decision."""

    context: dict[str, float]
    segment: str
    action: str
    propensity: float
    reward: float


@dataclass(frozen=True)
class LogSummary:
    """What `write_log` wrote: row count and the logged mean reward (the logging policy's)."""

    path: Path
    rows: int
    mean_reward: float


def logging_policy(epsilon: float = DEFAULT_EPSILON) -> EpsilonMixture:
    """The policy that wrote the log: the incumbent artifact, exploring with `epsilon`."""
    return EpsilonMixture(load_artifact("incumbent.json"), epsilon)


def generate_rows(rows: int, seed: int, epsilon: float = DEFAULT_EPSILON) -> Iterator[LogRow]:
    """`rows` logged decisions drawn from the world with a seeded random source.

    Contexts, actions and rewards come from one `World(seed)`, so a seed gives the same log.
    """
    if rows < 0:
        raise ValueError(f"rows is {rows}; write zero or more rows")
    world = World(seed)
    contexts = world.sample_contexts(rows)
    probabilities = logging_policy(epsilon).action_probabilities(contexts)
    cumulative = np.cumsum(probabilities, axis=1)
    draws = world.rng.random(rows)[:, None] * cumulative[:, -1:]
    chosen = np.minimum((cumulative <= draws).sum(axis=1), len(ACTIONS) - 1)
    conversion = world.expected_rewards(contexts)[np.arange(rows), chosen]
    rewards = world.rng.random(rows) < conversion
    for index in range(rows):
        action = int(chosen[index])
        yield LogRow(
            context=contexts.row(index),
            segment=str(contexts.regions[index]),
            action=ACTIONS[action],
            propensity=float(probabilities[index, action]),
            reward=1.0 if rewards[index] else 0.0,
        )


def write_log(path: Path, rows: int, seed: int, epsilon: float = DEFAULT_EPSILON) -> LogSummary:
    """Write the log as JSON Lines (parent directories created); return what was written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    total = 0.0
    with path.open("w", encoding="utf-8") as out:
        for row in generate_rows(rows, seed, epsilon):
            out.write(json.dumps(row) + "\n")
            total += row["reward"]
    return LogSummary(path, rows, total / rows if rows else 0.0)


def read_log(path: Path) -> list[LogRow]:
    """Every row of a log written by `write_log`."""
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]
