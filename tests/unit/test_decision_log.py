"""Reading decision logs (activities.decision_log): both formats, and every bad input named."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from activities.decision_log import DecisionLogError, read_decision_log
from simulator.artifacts import load_artifact
from simulator.offline_log import CANDIDATE_COLUMN, draw_log, write_log
from simulator.world import ACTIONS, FEATURES

ROWS = 2000


def _row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "context": {"x": 0.5, "y": 1.0},
        "action": "a",
        "propensity": 0.5,
        "reward": 1.0,
    }
    row.update(changes)
    return row


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _error(path: Path, column: str | None = None) -> str:
    with pytest.raises(DecisionLogError) as caught:
        read_decision_log(path, column)
    return str(caught.value)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_a_simulator_log_reads_as_the_arrays_it_was_drawn_from(tmp_path: Path, suffix: str) -> None:
    candidate = load_artifact("candidate.json")
    path = tmp_path / f"offers{suffix}"
    write_log(path, ROWS, seed=5, candidate=candidate)
    log = read_decision_log(path, CANDIDATE_COLUMN)
    draw = draw_log(ROWS, seed=5)

    decisions = log.decisions
    assert log.rows == ROWS
    logged = [decisions.action_names[i] for i in decisions.actions]
    assert logged == [ACTIONS[i] for i in draw.actions]
    assert np.array_equal(decisions.propensities, draw.propensities)
    assert np.array_equal(decisions.rewards, draw.rewards)
    assert np.array_equal(decisions.features, draw.contexts.values)  # columns follow FEATURES
    assert decisions.segments is not None
    segments = [decisions.segment_names[i] for i in decisions.segments]
    assert segments == draw.contexts.regions.tolist()
    assert log.candidate_actions == ACTIONS
    assert log.candidate is not None
    assert np.array_equal(log.candidate, candidate.action_probabilities(draw.contexts))
    assert log.context_batch(0, 2) == [draw.contexts.row(0), draw.contexts.row(1)]


def test_a_log_without_a_candidate_column_is_read_for_a_policy_server(tmp_path: Path) -> None:
    path = write_log(tmp_path / "offers.parquet", 50, seed=1).path
    log = read_decision_log(path)
    assert log.candidate is None
    assert log.candidate_actions == ()
    assert list(log.context_batch(10, 13)[0]) == list(FEATURES)


def test_parquet_maps_are_read_like_structs(tmp_path: Path) -> None:
    mapping = pa.map_(pa.string(), pa.float64())
    table = pa.table(
        {
            "context": pa.array([[("x", 1.0)], [("x", 2.0), ("y", 3.0)]], type=mapping),
            "action": ["a", "b"],
            "propensity": [0.5, 0.5],
            "reward": [1, 0],
            "candidate": pa.array([[("a", 1.0)], [("a", 0.25), ("b", 0.75)]], type=mapping),
        }
    )
    path = tmp_path / "log.parquet"
    pq.write_table(table, path)
    log = read_decision_log(path, "candidate")
    assert log.decisions.features.tolist() == [[1.0, 0.0], [2.0, 3.0]]  # absent counts as 0
    assert log.candidate is not None
    assert log.candidate_actions == ("a", "b")
    assert log.candidate.tolist() == [[1.0, 0.0], [0.25, 0.75]]
    assert log.context_batch(0, 2) == [{"x": 1.0}, {"x": 2.0, "y": 3.0}]


def test_sparse_json_contexts_count_absent_features_as_zero(tmp_path: Path) -> None:
    rows = [_row(context={"x": 2}), _row(context={"y": 1.5, "name": "n"}, action="b")]
    log = read_decision_log(_jsonl(tmp_path / "log.jsonl", rows))
    assert log.decisions.features.tolist() == [[2.0, 0.0], [0.0, 1.5]]  # strings left out
    assert log.context_batch(0, 2) == [{"x": 2}, {"y": 1.5, "name": "n"}]


def test_integer_actions_are_read_as_strings_and_null_segments_as_none(tmp_path: Path) -> None:
    rows = [_row(action=3, segment="eu"), _row(action=7, segment=None)]
    decisions = read_decision_log(_jsonl(tmp_path / "log.jsonl", rows)).decisions
    assert decisions.action_names == ("3", "7")
    assert decisions.segment_names == ("eu", "(none)")


def test_a_missing_file_is_named_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.jsonl"
    assert _error(path) == (
        f"log {path} does not exist (as the worker sees it); write the log there or fix "
        "offline_eval.log"
    )


def test_an_unknown_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("a,b\n", encoding="utf-8")
    assert _error(path) == (
        f"log {path}: unknown format .csv; write JSON Lines (.jsonl, .ndjson, .json) or "
        "Parquet (.parquet, .pq)"
    )


def test_a_missing_column_is_named(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "log.jsonl", [{"context": {}, "action": "a", "reward": 1}])
    assert _error(path) == (
        f"log {path} has no column 'propensity'; every row needs context (object of feature -> "
        "number), action, propensity (in (0, 1]) and reward; segment is optional"
    )


def test_a_missing_candidate_column_says_both_ways_out(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "log.jsonl", [_row(), _row()])
    assert _error(path, "candidate") == (
        f"log {path} has no column 'candidate' (named by offline_eval.candidate_probabilities); "
        "write each row's candidate {action: probability} there, or remove "
        "candidate_probabilities to ask the candidate's policy server"
    )


@pytest.mark.parametrize("propensity", [0, 1.5, -0.2])
def test_a_propensity_outside_the_unit_interval_is_named_by_row(
    tmp_path: Path, propensity: float
) -> None:
    path = _jsonl(tmp_path / "log.jsonl", [_row(), _row(), _row(propensity=propensity)])
    assert _error(path) == (
        f"log {path} row 3: propensity {float(propensity)!r} is not in (0, 1] (1 such row(s)); "
        "log the probability with which the logging policy chose the logged action, which is "
        "never 0"
    )


def test_a_missing_reward_is_named_by_row(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "log.jsonl", [_row(), _row(reward=None), _row(reward=None)])
    assert _error(path) == (
        f"log {path} row 2: reward is missing (2 such row(s)); drop rows whose reward is not "
        "known yet, or log it"
    )


def test_a_nan_reward_in_parquet_is_named(tmp_path: Path) -> None:
    table = pa.table(
        {
            "context": [{"x": 1.0}, {"x": 2.0}],
            "action": ["a", "b"],
            "propensity": [0.5, 0.5],
            "reward": [1.0, math.nan],
        }
    )
    path = tmp_path / "log.parquet"
    pq.write_table(table, path)
    assert _error(path) == (
        f"log {path} row 2: reward is NaN (1 such row(s)); drop rows whose reward is not known "
        "yet, or log it"
    )


def test_a_text_propensity_in_parquet_is_a_type_error(tmp_path: Path) -> None:
    table = pa.table(
        {"context": [{"x": 1.0}], "action": ["a"], "propensity": ["high"], "reward": [1.0]}
    )
    path = tmp_path / "log.parquet"
    pq.write_table(table, path)
    assert _error(path) == f"log {path}: column 'propensity' has type string; write numbers"


def test_a_line_that_is_not_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps(_row()) + "\nnot json\n", encoding="utf-8")
    message = _error(path)
    assert message.startswith(f"log {path} is not readable as JSON Lines (one object per line): ")


def test_an_empty_log_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({name: pa.array([], pa.float64()) for name in ("a", "b")}), path)
    assert "has no column 'context', 'action', 'propensity', 'reward'" in _error(path)
    pq.write_table(
        pa.table(
            {
                "context": pa.array([], pa.struct([("x", pa.float64())])),
                "action": pa.array([], pa.string()),
                "propensity": pa.array([], pa.float64()),
                "reward": pa.array([], pa.float64()),
            }
        ),
        path,
    )
    assert _error(path).startswith(f"log {path} has no rows; every row needs context")


def test_a_context_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "log.jsonl", [_row(context=3), _row(context=4)])
    assert _error(path) == (
        f"log {path}: column 'context' has type int64; write an object of name -> number in "
        "every row (a Parquet struct or map<string, double>)"
    )


def test_candidate_probabilities_must_sum_to_one(tmp_path: Path) -> None:
    rows = [_row(candidate={"a": 0.5, "b": 0.5}), _row(candidate={"a": 0.5, "b": 0.3})]
    path = _jsonl(tmp_path / "log.jsonl", rows)
    assert _error(path, "candidate") == (
        f"log {path} column 'candidate' row 2: probabilities sum to 0.8, not 1; write the "
        "candidate's probability of every action it may take"
    )


def test_candidate_probabilities_must_be_non_negative_and_present(tmp_path: Path) -> None:
    rows = [_row(candidate={"a": 1.5, "b": -0.5})]
    path = _jsonl(tmp_path / "log.jsonl", rows)
    assert _error(path, "candidate") == (
        f"log {path} column 'candidate' row 1: the probability of 'b' is -0.5; probabilities "
        "are finite and at least 0"
    )
    path = _jsonl(tmp_path / "gaps.jsonl", [_row(candidate={"a": 1.0}), _row()])
    assert _error(path, "candidate") == (
        f"log {path} row 2: candidate is missing; write the candidate's {{action: probability}} "
        "in every row"
    )
