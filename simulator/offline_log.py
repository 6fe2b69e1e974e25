"""An offline log of the exploring incumbent, for off-policy evaluation of candidates.

Each row is one logged decision, as JSON Lines (`.jsonl`) or Parquet (`.parquet`, same columns,
`context` a struct):

    {"context": {feature: value}, "segment": region, "action": str,
     "propensity": float, "reward": float}

Given a candidate policy, each row also carries `candidate_probabilities`: {action: pi_e(a|x)}
for every world action, so the offline gate can judge the candidate without a policy server.

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
from typing import Any, Final, NotRequired, TypedDict, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from simulator.artifacts import load_artifact
from simulator.policy import EpsilonMixture
from simulator.world import ACTIONS, FEATURES, Contexts, FloatArray, Policy, World

__all__ = [
    "CANDIDATE_COLUMN",
    "DEFAULT_EPSILON",
    "LogDraw",
    "LogRow",
    "LogSummary",
    "draw_log",
    "generate_rows",
    "logging_policy",
    "read_log",
    "write_log",
]

DEFAULT_EPSILON: Final = 0.1
CANDIDATE_COLUMN: Final = "candidate_probabilities"
"""The column holding the candidate's probabilities, when a log is written with a candidate."""


class LogRow(TypedDict):
    """One logged decision."""

    context: dict[str, float]
    segment: str
    action: str
    propensity: float
    reward: float
    candidate_probabilities: NotRequired[dict[str, float]]


@dataclass(frozen=True)
class LogDraw:
    """A log as arrays, before it is written: what the benchmark and the writers share.

    Attributes:
        contexts: One context per row.
        actions: The logged action of each row, an index into ACTIONS.
        propensities: pi_b(action|context) of the logged action.
        rewards: 1.0 (conversion) or 0.0.
    """

    contexts: Contexts
    actions: npt.NDArray[np.intp]
    propensities: FloatArray
    rewards: FloatArray


@dataclass(frozen=True)
class LogSummary:
    """What `write_log` wrote: row count and the logged mean reward (the logging policy's)."""

    path: Path
    rows: int
    mean_reward: float


def logging_policy(epsilon: float = DEFAULT_EPSILON) -> EpsilonMixture:
    """The policy that wrote the log: the incumbent artifact, exploring with `epsilon`."""
    return EpsilonMixture(load_artifact("incumbent.json"), epsilon)


def draw_log(rows: int, seed: int, epsilon: float = DEFAULT_EPSILON) -> LogDraw:
    """`rows` logged decisions drawn from the world with a seeded random source, as arrays.

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
    return LogDraw(
        contexts=contexts,
        actions=chosen.astype(np.intp),
        propensities=probabilities[np.arange(rows), chosen],
        rewards=rewards.astype(np.float64),
    )


def generate_rows(
    rows: int, seed: int, epsilon: float = DEFAULT_EPSILON, candidate: Policy | None = None
) -> Iterator[LogRow]:
    """`rows` logged decisions drawn from the world with a seeded random source (`draw_log`).

    Args:
        rows: How many decisions.
        seed: Seed of the world; a seed gives the same log.
        epsilon: Exploration share of the logging policy.
        candidate: Add each row's `candidate_probabilities` for this policy.
    """
    draw = draw_log(rows, seed, epsilon)
    scores = None if candidate is None else candidate.action_probabilities(draw.contexts)
    for index in range(rows):
        row = LogRow(
            context=draw.contexts.row(index),
            segment=str(draw.contexts.regions[index]),
            action=ACTIONS[int(draw.actions[index])],
            propensity=float(draw.propensities[index]),
            reward=float(draw.rewards[index]),
        )
        if scores is not None:
            row["candidate_probabilities"] = dict(
                zip(ACTIONS, (float(p) for p in scores[index]), strict=True)
            )
        yield row


def write_log(
    path: Path,
    rows: int,
    seed: int,
    epsilon: float = DEFAULT_EPSILON,
    candidate: Policy | None = None,
) -> LogSummary:
    """Write the log (parent directories created); return what was written.

    A `.parquet` path writes Parquet, built column by column (a million rows in about a second);
    any other path writes JSON Lines.

    Args:
        path: Where to write.
        rows: How many decisions.
        seed: Seed of the world; a seed gives the same log in either format.
        epsilon: Exploration share of the logging policy.
        candidate: Add a `candidate_probabilities` column for this policy.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        draw = draw_log(rows, seed, epsilon)
        pq.write_table(_table(draw, candidate), path)
        return LogSummary(path, rows, float(draw.rewards.mean()) if rows else 0.0)
    total = 0.0
    with path.open("w", encoding="utf-8") as out:
        for row in generate_rows(rows, seed, epsilon, candidate):
            out.write(json.dumps(row) + "\n")
            total += row["reward"]
    return LogSummary(path, rows, total / rows if rows else 0.0)


def _table(draw: LogDraw, candidate: Policy | None) -> Any:
    """The log as a pyarrow Table, with the columns and order of the JSON Lines rows."""
    contexts = draw.contexts
    columns = {
        "context": pa.StructArray.from_arrays(
            [pa.array(contexts.values[:, index]) for index in range(len(FEATURES))],
            names=list(FEATURES),
        ),
        "segment": pa.array(contexts.regions.tolist(), type=pa.string()),
        "action": pa.array(np.asarray(ACTIONS, dtype=object)[draw.actions], type=pa.string()),
        "propensity": pa.array(draw.propensities),
        "reward": pa.array(draw.rewards),
    }
    if candidate is not None:
        scores = candidate.action_probabilities(contexts)
        columns[CANDIDATE_COLUMN] = pa.StructArray.from_arrays(
            [pa.array(scores[:, index]) for index in range(len(ACTIONS))], names=list(ACTIONS)
        )
    return pa.table(columns)


def read_log(path: Path) -> list[LogRow]:
    """Every row of a log written by `write_log`, in either format."""
    if path.suffix == ".parquet":
        return cast(list[LogRow], pq.read_table(path).to_pylist())
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]
