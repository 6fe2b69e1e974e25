"""The offline log: rows as documented, propensities that are the logging policy's, and a log
from which off-policy estimates recover the world's true values.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simulator.__main__ import main
from simulator.artifacts import load_artifact
from simulator.offline_log import generate_rows, logging_policy, read_log, write_log
from simulator.world import ACTIONS, FEATURES, REGION_FEATURES, REGIONS, Contexts, World

ROWS = 20_000


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("log") / "offers.jsonl"
    write_log(path, ROWS, seed=3)
    return path


def _arrays(path: Path) -> tuple[Contexts, np.ndarray, np.ndarray, np.ndarray]:
    rows = read_log(path)
    contexts = Contexts.of([row["context"] for row in rows], [row["segment"] for row in rows])
    actions = np.array([ACTIONS.index(row["action"]) for row in rows])
    propensities = np.array([row["propensity"] for row in rows])
    rewards = np.array([row["reward"] for row in rows])
    return contexts, actions, propensities, rewards


def test_every_row_has_the_documented_fields(log: Path) -> None:
    lines = log.read_text(encoding="utf-8").splitlines()
    assert len(lines) == ROWS
    for line in lines[:500]:
        row = json.loads(line)
        assert set(row) == {"context", "segment", "action", "propensity", "reward"}
        assert set(row["context"]) == set(FEATURES)
        assert row["segment"] in REGIONS
        assert row["context"][REGION_FEATURES[row["segment"]]] == 1.0
        assert row["action"] in ACTIONS
        assert 0.0 < row["propensity"] <= 1.0
        assert row["reward"] in (0.0, 1.0)


def test_the_same_seed_writes_the_same_log(tmp_path: Path, log: Path) -> None:
    again = tmp_path / "again.jsonl"
    write_log(again, ROWS, seed=3)
    assert again.read_bytes() == log.read_bytes()
    other = tmp_path / "other.jsonl"
    write_log(other, 100, seed=4)
    assert other.read_text().splitlines() != log.read_text().splitlines()[:100]


def test_propensities_are_the_logging_policys_probabilities_of_the_logged_action(
    log: Path,
) -> None:
    contexts, actions, propensities, _ = _arrays(log)
    probabilities = logging_policy().action_probabilities(contexts)  # recomputed from the file
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-12)
    assert np.array_equal(propensities, probabilities[np.arange(len(actions)), actions])
    assert probabilities.min() >= 0.1 / len(ACTIONS) - 1e-15  # every action explored everywhere


def test_inverse_propensities_sum_to_the_row_count_for_every_action(log: Path) -> None:
    """E[1{A=a} / pi_b(A|x)] = 1 for each action a: the propensities are calibrated."""
    _, actions, propensities, _ = _arrays(log)
    for index, action in enumerate(ACTIONS):
        weights = np.where(actions == index, 1.0 / propensities, 0.0)
        standard_error = weights.std() / np.sqrt(ROWS)
        assert weights.mean() == pytest.approx(1.0, abs=4 * standard_error), action


def test_the_logged_reward_is_the_logging_policys_true_value(log: Path) -> None:
    _, _, _, rewards = _arrays(log)
    # Bernoulli(0.53) over 20 000 rows: standard error 0.0035
    assert rewards.mean() == pytest.approx(World.true_value(logging_policy()), abs=0.014)


@pytest.mark.parametrize("artifact", ["incumbent.json", "candidate.json"])
def test_inverse_propensity_estimates_recover_true_values(log: Path, artifact: str) -> None:
    contexts, actions, propensities, rewards = _arrays(log)
    target = load_artifact(artifact).action_probabilities(contexts)
    terms = target[np.arange(len(actions)), actions] / propensities * rewards
    standard_error = terms.std() / np.sqrt(ROWS)
    assert standard_error < 0.01
    truth = World.true_value(load_artifact(artifact))
    assert terms.mean() == pytest.approx(truth, abs=4 * standard_error)


def test_epsilon_zero_logs_the_incumbent_itself() -> None:
    rows = list(generate_rows(300, seed=1, epsilon=0.0))
    contexts = Contexts.of([row["context"] for row in rows], [row["segment"] for row in rows])
    incumbent = load_artifact("incumbent.json").action_probabilities(contexts)
    for index, row in enumerate(rows):
        assert row["propensity"] == pytest.approx(incumbent[index, ACTIONS.index(row["action"])])
    assert all(row["action"] != "discount_90" for row in rows)


def test_the_command_writes_the_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "logs" / "offers.jsonl"
    assert main(["write-log", "--out", str(out), "--rows", "50", "--seed", "9"]) == 0
    assert len(read_log(out)) == 50
    assert "50 rows" in capsys.readouterr().out
    assert read_log(out) == list(generate_rows(50, seed=9))


def test_parquet_holds_the_same_rows_as_json_lines(tmp_path: Path) -> None:
    candidate = load_artifact("candidate.json")
    jsonl = write_log(tmp_path / "offers.jsonl", 300, seed=6, candidate=candidate)
    parquet = write_log(tmp_path / "offers.parquet", 300, seed=6, candidate=candidate)
    assert read_log(parquet.path) == read_log(jsonl.path)
    assert parquet.mean_reward == pytest.approx(jsonl.mean_reward)


def test_the_candidate_column_holds_the_candidates_probabilities() -> None:
    candidate = load_artifact("candidate-violating.json")
    rows = list(generate_rows(200, seed=3, candidate=candidate))
    contexts = Contexts.of([row["context"] for row in rows], [row["segment"] for row in rows])
    expected = candidate.action_probabilities(contexts)
    for index, row in enumerate(rows):
        assert list(row["candidate_probabilities"]) == list(ACTIONS)
        assert list(row["candidate_probabilities"].values()) == expected[index].tolist()
    # the column is an addition: the logged decisions are those of the log without it
    plain = list(generate_rows(200, seed=3))
    assert [{k: v for k, v in row.items() if k != "candidate_probabilities"} for row in rows] == (
        plain
    )


def test_the_command_writes_parquet_with_a_candidate_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "offers.parquet"
    arguments = ["write-log", "--out", str(out), "--rows", "40", "--seed", "2"]
    assert main([*arguments, "--candidate", "candidate.json"]) == 0
    assert "40 rows" in capsys.readouterr().out
    expected = generate_rows(40, seed=2, candidate=load_artifact("candidate.json"))
    assert read_log(out) == list(expected)
    with pytest.raises(SystemExit):
        main([*arguments, "--candidate", "no-such-artifact.json"])
    assert "give an artifact's path or one of incumbent.json" in capsys.readouterr().err
