"""The streamed offline gate judges exactly as the in-memory one (issue 16).

A log streamed in batches (`evaluate_batches`, each batch with its own dictionaries) and the same
log held in memory (`evaluate`) must give the same estimates, intervals, diagnostics, refusals
and verdict to 1e-9 relative; and `evaluate` must still be the standalone estimators of
`analysis.offline` on the whole arrays. Parquet files and partitioned directories are streamed by
`activities.decision_log` and judged by the activity.
"""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from temporalio.testing import ActivityEnvironment

from activities.contracts import OfflineEvalInput, Outcome, TriggerVerdict
from activities.decision_log import (
    DecisionLogError,
    read_decision_log,
    stream_decision_log,
)
from activities.offline_eval import OfflineEvalActivities
from analysis.offline import (
    ESTIMATORS,
    DecisionBatch,
    Estimate,
    GateRule,
    LoggedDecisions,
    OfflineEvaluation,
    clipped_ips,
    cross_fitted_rewards,
    doubly_robust,
    evaluate,
    evaluate_batches,
    ips,
    kish_ess,
    snips,
)
from rollout_specs import OfflineEval, PolicyVersion
from simulator.artifacts import load_artifact
from simulator.offline_log import CANDIDATE_COLUMN, write_log

FloatArray = npt.NDArray[np.float64]
RELATIVE = 1e-9
RULE = GateRule(max_regression=0.01, min_ess=10)


def _same(streamed: float, whole: float) -> None:
    if math.isnan(whole):
        assert math.isnan(streamed)
        return
    # Relative to the value, or to 1e-12 for a value that is 0 up to rounding.
    assert abs(streamed - whole) <= RELATIVE * max(abs(whole), 1e-3), (streamed, whole)


def _same_estimate(streamed: Estimate, whole: Estimate) -> None:
    for name in ("value", "se", "lower", "upper"):
        _same(getattr(streamed, name), getattr(whole, name))


def _same_evaluation(streamed: OfflineEvaluation, whole: OfflineEvaluation) -> None:
    for name in ESTIMATORS:
        _same_estimate(streamed.values[name], whole.values[name])
        _same_estimate(streamed.differences[name], whole.differences[name])
    _same_estimate(streamed.incumbent, whole.incumbent)
    a, b = streamed.diagnostics, whole.diagnostics
    assert (a.rows, a.logged_actions, a.deterministic_rows) == (
        b.rows,
        b.logged_actions,
        b.deterministic_rows,
    )
    for name in ("ess", "mean_weight", "max_weight", "unsupported_share"):
        _same(getattr(a, name), getattr(b, name))
    assert [(c.action, c.segment) for c in a.unsupported_cells] == [
        (c.action, c.segment) for c in b.unsupported_cells
    ]
    for cell, other in zip(a.unsupported_cells, b.unsupported_cells, strict=True):
        _same(cell.share, other.share)
    assert streamed.verdict is whole.verdict
    assert streamed.refusals == whole.refusals


# ------------------------------------------------------------------------------ random logs


def _random_log(
    seed: int, rows: int, *, segments: bool = True
) -> tuple[LoggedDecisions, FloatArray, tuple[str, ...]]:
    """A random log: skewed propensities, a few deterministic rows, an unlogged action."""
    rng = np.random.default_rng(seed)
    names = ("a", "b", "c", "d")
    logging = rng.dirichlet(np.ones(len(names)), size=rows)
    actions = (rng.random(rows)[:, None] > np.cumsum(logging, axis=1)).sum(axis=1)
    actions = np.minimum(actions, len(names) - 1).astype(np.intp)
    propensities = logging[np.arange(rows), actions]
    deterministic = rng.random(rows) < 0.01
    propensities[deterministic] = 1.0
    features = np.column_stack(
        [rng.normal(size=rows), rng.random(rows), np.ones(rows), rng.integers(0, 2, rows)]
    ).astype(np.float64)
    rewards = rng.random(rows) * 2 + features[:, 0] * (actions == 1) + rng.normal(size=rows)
    # the candidate also knows "e", which the log never shows: a little unsupported mass
    candidate_actions = (*names, "e")
    candidate = rng.dirichlet(np.ones(len(candidate_actions)) * 3, size=rows)
    candidate[:, -1] *= 0.001
    candidate /= candidate.sum(axis=1, keepdims=True)
    segment_codes = rng.integers(0, 3, rows).astype(np.intp) if segments else None
    log = LoggedDecisions(
        actions=actions,
        action_names=names,
        propensities=propensities,
        rewards=rewards,
        features=features,
        segments=segment_codes,
        segment_names=("eu", "us", "ap") if segments else (),
    )
    return log, candidate, candidate_actions


def _batches(
    log: LoggedDecisions,
    candidate: FloatArray,
    candidate_actions: tuple[str, ...],
    sizes: list[int],
    seed: int,
) -> list[DecisionBatch]:
    """The log cut into batches, each with its own (shuffled, partial) dictionaries."""
    rng = np.random.default_rng(seed)
    batches, start = [], 0
    feature_names = tuple(str(column) for column in range(log.features.shape[1]))
    for size in sizes:
        rows = slice(start, start + size)
        start += size
        action_order = rng.permutation(len(log.action_names))  # local code -> log-wide code
        local_actions = np.argsort(action_order)[log.actions[rows]]
        feature_order = rng.permutation(len(feature_names))
        features = log.features[rows][:, feature_order]
        keep = np.flatnonzero(features.any(axis=0))  # a batch without a feature omits it
        candidate_order = rng.permutation(len(candidate_actions))
        segments, segment_names = None, ()
        if log.segments is not None:
            segment_order = rng.permutation(len(log.segment_names))
            segments = np.argsort(segment_order)[log.segments[rows]]
            segment_names = tuple(log.segment_names[i] for i in segment_order)
        batches.append(
            DecisionBatch(
                actions=local_actions.astype(np.intp),
                action_names=tuple(log.action_names[i] for i in action_order),
                propensities=log.propensities[rows],
                rewards=log.rewards[rows],
                features=np.ascontiguousarray(features[:, keep]),
                feature_names=tuple(feature_names[feature_order[i]] for i in keep),
                candidate=candidate[rows][:, candidate_order],
                candidate_actions=tuple(candidate_actions[i] for i in candidate_order),
                segments=None if segments is None else segments.astype(np.intp),
                segment_names=segment_names,
            )
        )
    assert start == log.rows
    return batches


def _cut(rows: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    sizes, left = [], rows
    while left:
        size = min(left, int(rng.integers(1, rows // 3 + 2)))
        sizes.append(size)
        left -= size
    return sizes


@pytest.mark.parametrize("seed", range(6))
def test_a_log_streamed_in_random_batches_is_judged_as_the_whole_log(seed: int) -> None:
    rows = [997, 5000, 20_011][seed % 3]
    log, candidate, candidate_actions = _random_log(seed, rows, segments=seed % 2 == 0)
    rule = GateRule(max_regression=0.05, min_ess=10, clip=3.0, support_tolerance=0.01)
    whole = evaluate(log, candidate, candidate_actions, rule)
    batches = _batches(log, candidate, candidate_actions, _cut(rows, seed), seed)
    streamed = evaluate_batches(lambda: batches, rule)
    _same_evaluation(streamed, whole)
    assert whole.diagnostics.deterministic_rows > 0
    assert whole.diagnostics.unsupported_share > 0
    assert streamed.detail == whole.detail


def test_refusals_and_their_named_cells_are_the_same_streamed() -> None:
    log, candidate, candidate_actions = _random_log(11, 3000)
    candidate[:, -1] = 0.2  # far too much on the unlogged action: refused, cells named
    candidate[:, :-1] *= 0.8 / candidate[:, :-1].sum(axis=1, keepdims=True)
    whole = evaluate(log, candidate, candidate_actions, RULE)
    batches = _batches(log, candidate, candidate_actions, [1000, 1, 1999], 3)
    streamed = evaluate_batches(lambda: batches, RULE)
    assert whole.verdict is Outcome.ERROR
    assert streamed.refusals == whole.refusals
    assert {c.segment for c in streamed.diagnostics.unsupported_cells} == {"eu", "us", "ap"}
    _same_evaluation(streamed, whole)


def test_the_in_memory_gate_is_the_standalone_estimators_on_the_whole_arrays() -> None:
    log, candidate, candidate_actions = _random_log(5, 4000)
    rule = GateRule(max_regression=0.05, min_ess=10, clip=3.0, support_tolerance=0.01)
    result = evaluate(log, candidate, candidate_actions, rule)
    n = log.rows
    # pi_e of the logged action: candidate columns 0..3 are the log's actions a..d
    target = candidate[np.arange(n), log.actions]
    weights, rewards = target / log.propensities, log.rewards
    q = cross_fitted_rewards(log.features, log.actions, rewards, len(log.action_names) + 1)
    q_logged = q[np.arange(n), log.actions]
    # column 4 of q is the action never logged; the candidate's "e" is valued by it
    q_target = (candidate * q).sum(axis=1)
    for baseline, found in ((None, result.values), (rewards, result.differences)):
        reference = {
            "ips": ips(weights, rewards, baseline=baseline),
            "clipped_ips": clipped_ips(weights, rewards, 3.0, baseline=baseline),
            "snips": snips(weights, rewards, baseline=baseline),
            "dr": doubly_robust(weights, rewards, q_logged, q_target, baseline=baseline),
        }
        for name in ESTIMATORS:
            _same_estimate(found[name], reference[name])
    _same(result.diagnostics.ess, kish_ess(weights))


def test_one_row_is_not_a_log_streamed_either() -> None:
    log, candidate, candidate_actions = _random_log(1, 5)
    batch = _batches(log, candidate, candidate_actions, [5], 1)[0]
    one = DecisionBatch(
        batch.actions[:1], batch.action_names, batch.propensities[:1], batch.rewards[:1],
        batch.features[:1], batch.feature_names, batch.candidate[:1], batch.candidate_actions,
    )  # fmt: skip
    with pytest.raises(ValueError, match="1 row"):
        evaluate_batches(lambda: [one], RULE)


# -------------------------------------------------------------------------- Parquet streams


@pytest.fixture(scope="module")
def parquet_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulator log with the candidate's column, in row groups of 1,000 rows."""
    directory = tmp_path_factory.mktemp("stream")
    path = write_log(
        directory / "whole.parquet", 6000, seed=9, candidate=load_artifact("candidate.json")
    ).path
    pq.write_table(pq.read_table(path), path, row_group_size=1000)
    return path


def _in_memory(path: Path) -> OfflineEvaluation:
    log = read_decision_log(path, CANDIDATE_COLUMN)
    assert log.candidate is not None
    return evaluate(log.decisions, log.candidate, log.candidate_actions, RULE)


def _streamed(path: Path, batch_rows: int) -> OfflineEvaluation:
    stream = stream_decision_log(path, CANDIDATE_COLUMN, batch_rows)
    return evaluate_batches(stream.batches, RULE)


@pytest.mark.parametrize("batch_rows", [333, 1000, 100_000])
def test_a_parquet_file_streamed_is_judged_as_read_whole(
    parquet_log: Path, batch_rows: int
) -> None:
    _same_evaluation(_streamed(parquet_log, batch_rows), _in_memory(parquet_log))


def test_a_directory_of_parquet_files_is_one_log_in_path_order(
    parquet_log: Path, tmp_path: Path
) -> None:
    table = pq.read_table(parquet_log)
    for part, start in enumerate(range(0, table.num_rows, 2500)):
        pq.write_table(table.slice(start, 2500), tmp_path / f"part-{part:03d}.parquet")
    (tmp_path / "_SUCCESS").write_text("")  # writers' markers are not data
    whole = _in_memory(parquet_log)
    _same_evaluation(_in_memory(tmp_path), whole)
    _same_evaluation(_streamed(tmp_path, 700), whole)


def test_hive_partition_directories_are_the_segment_column(
    parquet_log: Path, tmp_path: Path
) -> None:
    table = pq.read_table(parquet_log)
    pq.write_to_dataset(table, tmp_path, partition_cols=["segment"])
    streamed = _streamed(tmp_path, 512)
    _same_evaluation(streamed, _in_memory(tmp_path))
    segments = read_decision_log(tmp_path, CANDIDATE_COLUMN).decisions.segment_names
    assert set(segments) == set(table["segment"].to_pylist())


def test_a_bad_row_in_a_later_file_is_named_by_its_file_and_row(tmp_path: Path) -> None:
    rows = 50
    table = pa.table(
        {
            "context": pa.array([{"x": float(i)} for i in range(rows)]),
            "action": ["a", "b"] * (rows // 2),
            "propensity": [0.5] * rows,
            "reward": [1.0] * rows,
            "p": pa.array([{"a": 0.5, "b": 0.5}] * rows),
        }
    )
    pq.write_table(table, tmp_path / "part-0.parquet")
    propensities = [0.5] * rows
    propensities[41] = 0.0
    pq.write_table(
        table.set_column(2, "propensity", pa.array(propensities)), tmp_path / "part-1.parquet"
    )
    stream = stream_decision_log(tmp_path, "p", batch_rows=20)
    with pytest.raises(DecisionLogError, match=r"part-1\.parquet row 42: propensity 0\.0"):
        evaluate_batches(stream.batches, RULE)


def test_a_stream_checks_its_columns_and_rows_when_opened(tmp_path: Path) -> None:
    with pytest.raises(DecisionLogError, match="does not exist"):
        stream_decision_log(tmp_path / "missing.parquet", "p")
    with pytest.raises(DecisionLogError, match="only Parquet"):
        stream_decision_log(tmp_path / "log.jsonl", "p")
    pq.write_table(
        pa.table({"context": pa.array([{"x": 1.0}]), "action": ["a"]}), tmp_path / "a.pq"
    )
    with pytest.raises(DecisionLogError, match="no column 'propensity', 'reward'"):
        stream_decision_log(tmp_path / "a.pq", "p")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DecisionLogError, match="no column"):
        stream_decision_log(empty, "p")


async def test_the_activity_streams_a_parquet_directory(parquet_log: Path, tmp_path: Path) -> None:
    table = pq.read_table(parquet_log)
    for part, start in enumerate(range(0, table.num_rows, 4000)):
        pq.write_table(table.slice(start, 4000), tmp_path / f"part-{part}.parquet")
    verdicts = []
    for log in (parquet_log, tmp_path):
        request = OfflineEvalInput(
            stage="offline",
            offline=OfflineEval(
                log=str(log),
                max_regression=0.01,
                min_ess=10,
                candidate_probabilities=CANDIDATE_COLUMN,
            ),
            incumbent=PolicyVersion(version="41"),
            candidate=PolicyVersion(version="42"),
        )
        async with httpx.AsyncClient() as client:
            activities = OfflineEvalActivities(client)
            verdict: TriggerVerdict = await ActivityEnvironment().run(
                activities.offline_eval, request
            )
        verdicts.append(verdict)
    file_verdict, directory_verdict = verdicts
    assert file_verdict.outcome is Outcome.PASS
    assert directory_verdict.outcome is file_verdict.outcome
    assert directory_verdict.value == pytest.approx(file_verdict.value, rel=RELATIVE)
    whole = _in_memory(parquet_log)
    assert file_verdict.value == pytest.approx(whole.judged.value, rel=RELATIVE)


def test_a_log_that_changes_between_the_passes_is_an_error() -> None:
    log, candidate, candidate_actions = _random_log(2, 400)
    first = _batches(log, candidate, candidate_actions, [400], 1)
    shorter = _batches(log, candidate, candidate_actions, [200, 200], 1)[:1]
    passes = iter([first, shorter])
    with pytest.raises(ValueError, match="changed between the passes"):
        evaluate_batches(lambda: next(passes), RULE)


def test_map_columns_whose_keys_appear_late_stream_as_read_whole(tmp_path: Path) -> None:
    """A feature, an action and a candidate action first seen in later batches (map columns)."""
    rng = np.random.default_rng(21)
    rows = 3000
    late = np.arange(rows) >= 1700
    actions = np.where(late, rng.choice(["a", "b", "c"], rows), rng.choice(["a", "b"], rows))
    contexts = [
        [("x", float(rng.normal())), *([("z", float(rng.random()))] if is_late else [])]
        for is_late in late
    ]
    candidates = [
        [("a", 0.3), ("b", 0.3), ("c", 0.4)] if is_late else [("a", 0.5), ("b", 0.5)]
        for is_late in late
    ]
    mapping = pa.map_(pa.string(), pa.float64())
    table = pa.table(
        {
            "context": pa.array(contexts, type=mapping),
            "action": actions.tolist(),
            "propensity": np.where(late, 1 / 3, 0.5),
            "reward": rng.random(rows) + (actions == "c"),
            "segment": rng.choice(["eu", "us"], rows).tolist(),
            "candidate": pa.array(candidates, type=mapping),
        }
    )
    path = tmp_path / "log.parquet"
    pq.write_table(table, path, row_group_size=500)
    log = read_decision_log(path, "candidate")
    assert log.candidate is not None
    rule = GateRule(max_regression=0.05, min_ess=10, max_weight_error=0.5)
    whole = evaluate(log.decisions, log.candidate, log.candidate_actions, rule)
    stream = stream_decision_log(path, "candidate", batch_rows=400)
    _same_evaluation(evaluate_batches(stream.batches, rule), whole)
