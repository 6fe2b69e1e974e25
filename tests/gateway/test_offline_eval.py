"""The offline gate's activity against real policy servers and real log files.

The candidate's probabilities come either from its policy server (uvicorn on 127.0.0.1, scored
in batches) or from a column of a Parquet log; both must give the same judgement. Activities run
in Temporal's ActivityEnvironment, which records their heartbeats.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from temporalio.testing import ActivityEnvironment

from activities.contracts import OfflineEvalInput, Outcome, TriggerVerdict
from activities.http_boundary import ReadRetries
from activities.offline_eval import OfflineEvalActivities
from gateway.policies import load_policy
from gateway.policy_server import MAX_BATCH
from rollout_specs import OfflineEval, PolicyVersion
from simulator.artifacts import ARTIFACTS_DIR, load_artifact
from simulator.offline_log import CANDIDATE_COLUMN, logging_policy, write_log
from simulator.world import World
from tests.gateway.servers import PolicyServer

ROWS = 20_000
CANDIDATE = ARTIFACTS_DIR / "candidate.json"


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("logs")
    candidate = load_artifact("candidate.json")
    return {
        "plain": write_log(directory / "offers.parquet", ROWS, seed=11).path,
        "column": write_log(directory / "scored.parquet", ROWS, seed=11, candidate=candidate).path,
        "jsonl": write_log(directory / "scored.jsonl", 3000, seed=12, candidate=candidate).path,
        "no-exploration": write_log(directory / "greedy.parquet", ROWS, seed=13, epsilon=0.0).path,
    }


@pytest.fixture(scope="module")
def candidate_server() -> Iterator[PolicyServer]:
    with PolicyServer(CANDIDATE, seed=1) as server:
        yield server


def _request(log: Path, candidate: dict[str, Any], **offline: Any) -> OfflineEvalInput:
    return OfflineEvalInput(
        stage="offline",
        offline=OfflineEval.model_validate({"log": str(log), "max_regression": 0.01, **offline}),
        incumbent=PolicyVersion(version="41"),
        candidate=PolicyVersion.model_validate(candidate),
    )


async def _run(
    http: httpx.AsyncClient, request: OfflineEvalInput, **options: Any
) -> tuple[TriggerVerdict, list[str]]:
    env = ActivityEnvironment()
    heartbeats: list[str] = []
    env.on_heartbeat = lambda *details: heartbeats.append(str(details[0]))
    activities = OfflineEvalActivities(http, **options)
    verdict: TriggerVerdict = await env.run(activities.offline_eval, request)
    return verdict, heartbeats


# ----------------------------------------------------------------------- the batch endpoint


async def test_the_batch_form_scores_many_contexts_like_the_single_form(
    http: httpx.AsyncClient, candidate_server: PolicyServer
) -> None:
    contexts = [
        {"recency": 0.2 * i, "basket_value": 0.5, "loyalty": 0.1 * i,
         "region_eu": 1.0, "region_us": 0.0, "region_ap": 0.0}
        for i in range(5)
    ]  # fmt: skip
    batch = await http.post(f"{candidate_server.url}/act", json={"contexts": contexts})
    assert batch.status_code == 200
    body = batch.json()
    assert body["version"] == "42"
    assert len(body["probabilities"]) == 5
    for context, probabilities in zip(contexts, body["probabilities"], strict=True):
        single = await http.post(f"{candidate_server.url}/act", json={"context": context})
        assert single.status_code == 200
        assert set(single.json()) == {"action", "probabilities", "version"}
        assert probabilities == pytest.approx(single.json()["probabilities"], abs=1e-12)


async def test_the_batch_form_names_the_bad_context(
    http: httpx.AsyncClient, candidate_server: PolicyServer
) -> None:
    good = {name: 0.5 for name in load_policy(CANDIDATE).artifact.features}
    response = await http.post(
        f"{candidate_server.url}/act", json={"contexts": [good, {"recency": 1.0}]}
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith("contexts[1]: the context lacks feature(s)")
    response = await http.post(f"{candidate_server.url}/act", json={"contexts": {"a": 1}})
    assert response.status_code == 422
    too_many = await http.post(
        f"{candidate_server.url}/act", json={"contexts": [good] * (MAX_BATCH + 1)}
    )
    assert too_many.status_code == 422
    assert too_many.json()["detail"] == (
        f"{MAX_BATCH + 1} contexts in one request; send at most {MAX_BATCH} per request"
    )


# ----------------------------------------------------------------------- the activity


async def test_the_candidate_is_judged_from_its_policy_server(
    http: httpx.AsyncClient, candidate_server: PolicyServer, logs: dict[str, Path]
) -> None:
    request = _request(logs["plain"], candidate_server.as_version())
    verdict, heartbeats = await _run(http, request)

    truth = World.true_value(load_artifact("candidate.json")) - World.true_value(
        logging_policy()
    )  # about +0.018
    assert verdict.outcome is Outcome.PASS, verdict.detail
    assert verdict.evidence is not None
    assert verdict.evidence.lower is not None
    assert verdict.evidence.upper is not None
    assert verdict.evidence.lower <= truth <= verdict.evidence.upper
    assert verdict.evidence.n_candidate == ROWS
    assert verdict.evidence.statistic is not None
    assert verdict.evidence.statistic > 1000
    assert verdict.threshold is not None
    assert verdict.threshold.below == -0.01
    assert verdict.detail.startswith("dr candidate - incumbent = +0.0")
    for name in ("ips", "clipped_ips", "snips", "dr"):
        assert f"{name} 0.5" in verdict.detail
    assert heartbeats[0] == f"reading {logs['plain']}"
    assert f"scored {ROWS} of {ROWS} rows at {candidate_server.url}/act" in heartbeats
    assert heartbeats[-1] == f"estimating over {ROWS} rows"


async def test_the_log_column_and_the_policy_server_give_the_same_judgement(
    http: httpx.AsyncClient, candidate_server: PolicyServer, logs: dict[str, Path]
) -> None:
    served, _ = await _run(http, _request(logs["plain"], candidate_server.as_version()))
    column, heartbeats = await _run(
        http,
        _request(logs["column"], {"version": "42"}, candidate_probabilities=CANDIDATE_COLUMN),
    )
    assert column.outcome is Outcome.PASS
    assert served.evidence is not None
    assert column.evidence is not None
    assert column.evidence.estimate == pytest.approx(served.evidence.estimate, abs=1e-9)
    assert column.evidence.lower == pytest.approx(served.evidence.lower, abs=1e-9)
    assert not any(beat.startswith("scored") for beat in heartbeats)  # no server asked


@pytest.mark.parametrize("estimator", ["ips", "clipped_ips", "snips", "dr"])
async def test_every_estimator_judges_a_json_lines_log(
    http: httpx.AsyncClient, logs: dict[str, Path], estimator: str
) -> None:
    request = _request(
        logs["jsonl"],
        {"version": "42"},
        estimator=estimator,
        candidate_probabilities=CANDIDATE_COLUMN,
        max_regression=0.05,
    )
    verdict, _ = await _run(http, request)
    assert verdict.outcome is Outcome.PASS, verdict.detail
    assert verdict.query == f"offline {estimator} on {logs['jsonl']}"
    assert verdict.detail.startswith(f"{estimator} candidate - incumbent = ")


async def test_small_batches_assemble_in_row_order(
    http: httpx.AsyncClient, candidate_server: PolicyServer, logs: dict[str, Path]
) -> None:
    whole, _ = await _run(http, _request(logs["plain"], candidate_server.as_version()))
    pieces, heartbeats = await _run(
        http,
        _request(logs["plain"], candidate_server.as_version()),
        batch_size=777,
        concurrency=3,
    )
    assert pieces.evidence == whole.evidence
    assert sum(beat.startswith("scored") for beat in heartbeats) == -(-ROWS // 777)


async def test_a_log_without_exploration_cannot_judge_a_candidate_that_needs_it(
    http: httpx.AsyncClient, logs: dict[str, Path]
) -> None:
    # The incumbent alone never takes discount_90; the violating candidate does, 5% of the time.
    with PolicyServer(ARTIFACTS_DIR / "candidate-violating.json") as violating:
        verdict, _ = await _run(http, _request(logs["no-exploration"], violating.as_version()))
    assert verdict.outcome is Outcome.ERROR
    assert verdict.detail.startswith(
        "refused to judge: The candidate puts 5.41% of its probability"
    )
    assert "largest: 'discount_90' in segment" in verdict.detail
    assert "Fix: log with exploration over every action the candidate may take" in verdict.detail


async def test_a_missing_log_is_an_error_verdict(http: httpx.AsyncClient, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.parquet"
    verdict, _ = await _run(http, _request(missing, {"version": "42", "uri": "http://x"}))
    assert verdict.outcome is Outcome.ERROR
    assert verdict.detail == (
        f"DecisionLogError: log {missing} does not exist (as the worker sees it); write the log "
        "there or fix offline_eval.log"
    )


async def test_a_candidate_without_a_policy_server_is_an_error_verdict(
    http: httpx.AsyncClient, logs: dict[str, Path]
) -> None:
    verdict, _ = await _run(http, _request(logs["plain"], {"version": "42", "uri": "models:/x"}))
    assert verdict.outcome is Outcome.ERROR
    assert verdict.detail == (
        "CandidateScoringError: candidate 42 has no policy server URL (uri: 'models:/x'); set "
        "candidate.uri to its policy server (http://host:port, serving POST /act) or name the "
        "log's column of candidate probabilities in offline_eval.candidate_probabilities"
    )


async def test_a_candidate_server_that_is_down_is_an_error_verdict(
    http: httpx.AsyncClient, logs: dict[str, Path]
) -> None:
    with PolicyServer(CANDIDATE) as server:
        down = server.url
    request = _request(logs["plain"], {"version": "42", "uri": down})
    verdict, _ = await _run(http, request, retries=ReadRetries(first_wait=0.0, max_wait=0.0))
    assert verdict.outcome is Outcome.ERROR
    assert verdict.detail.startswith(
        f"CandidateScoringError: candidate policy server {down}/act (rows 1-2000) could not be "
        "reached (3 attempts"
    )


async def test_a_server_of_another_version_is_an_error_verdict(
    http: httpx.AsyncClient, logs: dict[str, Path]
) -> None:
    with PolicyServer(ARTIFACTS_DIR / "incumbent.json") as incumbent:
        request = _request(logs["plain"], {"version": "42", "uri": incumbent.url})
        verdict, _ = await _run(http, request)
    assert verdict.outcome is Outcome.ERROR
    assert "serves version '41', not the candidate's '42'" in verdict.detail


def test_the_gateway_and_the_simulator_read_artifacts_alike() -> None:
    """The column (simulator) and the server (gateway) must be the same policy for the test."""
    contexts = World(3).sample_contexts(50)
    served = load_policy(CANDIDATE).batch_probabilities(list(contexts))
    simulated = load_artifact("candidate.json").action_probabilities(contexts)
    assert np.allclose(served, simulated, atol=1e-12)
