"""How the offline activity treats a policy server that answers nonsense: an ERROR verdict.

Each test swaps the server for one handler (httpx.MockTransport); the real server is exercised
in tests/gateway/test_offline_eval.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from temporalio.testing import ActivityEnvironment

from activities.contracts import OfflineEvalInput, Outcome, TriggerVerdict
from activities.http_boundary import ReadRetries
from activities.offline_eval import OfflineEvalActivities
from rollout_specs import OfflineEval, PolicyVersion
from simulator.offline_log import write_log

URL = "http://candidate.test"
NO_WAIT = ReadRetries(first_wait=0.0, max_wait=0.0)


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_log(tmp_path_factory.mktemp("log") / "offers.jsonl", 500, seed=4).path


async def _judge(log: Path, handler: Callable[[httpx.Request], httpx.Response]) -> TriggerVerdict:
    request = OfflineEvalInput(
        stage="offline",
        offline=OfflineEval(log=str(log), max_regression=0.01, min_ess=10),
        incumbent=PolicyVersion(version="41"),
        candidate=PolicyVersion(version="42", uri=URL),
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        activities = OfflineEvalActivities(client, batch_size=200, retries=NO_WAIT)
        verdict: TriggerVerdict = await ActivityEnvironment().run(activities.offline_eval, request)
    return verdict


def _probabilities(request: httpx.Request, each: dict[str, float]) -> httpx.Response:
    contexts = json.loads(request.content)["contexts"]
    return httpx.Response(200, json={"probabilities": [each] * len(contexts), "version": "42"})


async def test_a_server_error_is_retried_then_reported(log: Path) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(503, text="warming up")

    verdict = await _judge(log, handler)
    assert verdict.outcome is Outcome.ERROR
    assert verdict.detail == (
        f"CandidateScoringError: candidate policy server {URL}/act (rows 1-200) answered HTTP "
        "503: warming up"
    )
    assert calls[:3] == [f"{URL}/act"] * 3


async def test_one_failed_attempt_is_absorbed(log: Path) -> None:
    failures = iter([True])

    def handler(request: httpx.Request) -> httpx.Response:
        if next(failures, False):
            raise httpx.ConnectError("connection reset")
        return _probabilities(request, {"none": 0.25, "discount_10": 0.25,
                                        "free_shipping": 0.25, "discount_90": 0.25})  # fmt: skip

    verdict = await _judge(log, handler)
    assert verdict.outcome is not Outcome.ERROR, verdict.detail


async def test_probabilities_that_do_not_sum_to_one_are_an_error(log: Path) -> None:
    verdict = await _judge(log, lambda r: _probabilities(r, {"none": 0.5, "discount_10": 0.4}))
    assert verdict.outcome is Outcome.ERROR
    assert verdict.detail == (
        f"CandidateScoringError: candidate policy server {URL}/act (rows 1-200) row 1: "
        "probabilities sum to 0.9, not 1; write the candidate's probability of every action it "
        "may take"
    )


async def test_an_answer_of_the_wrong_length_is_an_error(log: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"probabilities": [{"none": 1.0}], "version": "42"})

    verdict = await _judge(log, handler)
    assert verdict.outcome is Outcome.ERROR
    assert "with one entry per context; is it a lockgate policy server" in verdict.detail


async def test_a_body_that_is_not_json_is_an_error(log: Path) -> None:
    verdict = await _judge(log, lambda request: httpx.Response(200, text="<html>"))
    assert verdict.outcome is Outcome.ERROR
    assert verdict.detail.endswith("(rows 1-200) answered with a body that is not JSON")


async def test_non_numeric_probabilities_are_an_error(log: Path) -> None:
    verdict = await _judge(log, lambda r: _probabilities(r, {"none": "high"}))  # type: ignore[dict-item]
    assert verdict.outcome is Outcome.ERROR
    assert verdict.detail == (
        f"CandidateScoringError: candidate policy server {URL}/act (rows 1-200): probabilities "
        "must be numbers (could not convert string to float: 'high')"
    )
